//! `kino train`'s learning step at the size of a one-hour library: 3,600 frames (1 fps) of Swin-T's 768-d pooled
//! vectors from 120 half-minute videos of 20 scene classes, a cue every 3 s (one text per class) in the 384-d
//! text space, 30 epochs
//! without early stopping (the longest a run takes), default options otherwise; then stage 2 (grid and
//! cross-attention) on 360 ten-second segments of that hour.
//!
//! Usage: `cargo run --release -p kino-fusion --example train_bench [EPOCHS]`; prints `name=value` lines.

use std::time::Instant;

use kino_fusion::train::{train_projection, TrainCue, TrainFrame, TrainOptions, TrainVideo};
use kino_fusion::train_fusion::{held_out_cue_recall, train_fusion, FusionSegment, FusionTrainOptions};
use kino_fusion::vecmath::normalized;
use kino_fusion::{FusionModel, VisualGrid};

/// A small deterministic generator (xorshift, Box–Muller).
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gaussian(&mut self) -> f32 {
        let (a, b) = (self.uniform(), self.uniform());
        ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
    }
    fn vector(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.gaussian()).collect()
    }
}

fn main() -> anyhow::Result<()> {
    let epochs: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(30);
    let (d, v, classes) = (384, 768, 20);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let text: Vec<Vec<f32>> = (0..classes).map(|_| normalized(&rng.vector(d))).collect();
    let visual: Vec<Vec<f32>> = (0..classes).map(|_| normalized(&rng.vector(v))).collect();
    let videos: Vec<TrainVideo> = (0..120)
        .map(|i| TrainVideo {
            negatives: Vec::new(),
            id: format!("video-{i}"),
            frames: (0..30)
                .map(|f| TrainFrame {
                    pts_ms: f * 1000,
                    pooled: visual[i % classes].iter().map(|x| 3.0 * x + rng.gaussian()).collect(),
                })
                .collect(),
            cues: (0..10)
                .map(|c| TrainCue {
                    start_ms: c * 3000,
                    end_ms: c * 3000 + 3000,
                    // What is said in a class's videos repeats (as subtitles of one kind of scene do): the
                    // held-out recall then counts any video of the right class.
                    embedding: text[i % classes].clone(),
                })
                .collect(),
        })
        .collect();
    let opts = TrainOptions {
        epochs,
        patience: 0,
        ..TrainOptions::default()
    };
    let t = Instant::now();
    let (projection, report) = train_projection(&videos, None, &opts, None, &mut |_| {})?;
    let secs = t.elapsed().as_secs_f64();
    println!("frames={}", videos.len() * 30);
    println!("epochs={}", report.epochs_run);
    println!("steps={}", report.steps);
    println!("train_seconds={secs:.2}");
    println!("heldout_recall_at_1={:.3}", report.recall_at_1);

    // Stage 2 on the same hour: 360 ten-second segments, each with its cues, mean pooled vector and a 7×7 mean
    // token grid, default options (8 epochs), scored after each epoch by held-out cue recall on 36 of them.
    let (weight, bias) = (projection.weight.clone(), projection.bias.clone());
    let base = FusionModel::identity(d, v, 4)?.with_pool_projection(&weight, &bias, 1.0, 0.0)?;
    let segments: Vec<FusionSegment> = (0..360)
        .map(|s| {
            let class = (s / 3) % classes;
            let look = |rng: &mut Rng| -> Vec<f32> { visual[class].iter().map(|x| 3.0 * x + rng.gaussian()).collect() };
            FusionSegment {
                cues: (0..3).map(|_| text[class].clone()).collect(),
                weights: vec![1.0; 3],
                labels: None,
                pooled: Some(look(&mut rng)),
                grid: Some(VisualGrid {
                    tokens: 49,
                    hidden: v,
                    data: (0..49).flat_map(|_| look(&mut rng)).collect(),
                }),
            }
        })
        .collect();
    let (held, train) = segments.split_at(36);
    let held: Vec<&FusionSegment> = held.iter().collect();
    let queries = vec![true; held.len()];
    let t = Instant::now();
    let (_, r2) = train_fusion(
        &base,
        train,
        &FusionTrainOptions {
            patience: 0,
            ..FusionTrainOptions::default()
        },
        None,
        &mut |m| Ok(held_out_cue_recall(m, &held, &queries)?.0),
        &mut |_, _, _| {},
    )?;
    println!("stage2_examples={}", r2.examples);
    println!("stage2_epochs={}", r2.epochs_run);
    println!("stage2_seconds={:.2}", t.elapsed().as_secs_f64());
    Ok(())
}
