//! Throughput of the fusion crate's hot paths on synthetic data (shapes as in production: 384-d text space,
//! 768-d Swin grids), for `scripts/bench.d/fusion.sh`:
//!
//! * `fuse`: segments per second through the default cross-attention module (4 cues + 1 label token each);
//! * `rank`: queries per second over N stored segments (fused + text + visual vectors, k = 10, with merging);
//! * `align`: frames per second through the streaming segment builder (3 h at 2 fps, a cue every 4 s).
//!
//! Usage: `fusion_bench [SEGMENTS_TO_FUSE] [CANDIDATES] [QUERIES]`; prints `name=value` lines.

use std::time::Instant;

use kino_fusion::score::rank;
use kino_fusion::vecmath::normalized;
use kino_fusion::{Candidate, FrameVisual, FusionModel, SegmentInputs, Segmenter, TimedText};

/// A small deterministic generator (xorshift), so runs are repeatable without extra dependencies.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
    fn unit(&mut self, d: usize) -> Vec<f32> {
        normalized(&(0..d).map(|_| self.next()).collect::<Vec<_>>())
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let n_fuse = args.first().copied().unwrap_or(5_000);
    let n_cand = args.get(1).copied().unwrap_or(100_000);
    let n_query = args.get(2).copied().unwrap_or(20);
    let d = 384;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // fuse
    let model = FusionModel::identity(d, 768, 4)?;
    let inputs: Vec<SegmentInputs> = (0..n_fuse.min(1_000))
        .map(|_| SegmentInputs {
            text: (0..4).map(|_| rng.unit(d)).collect(),
            text_weights: vec![1.0, 1.0, 0.5, 0.5],
            grids: vec![],
            labels: Some(rng.unit(d)),
            pooled: None,
        })
        .collect();
    let t = Instant::now();
    let mut check = 0.0f32;
    for i in 0..n_fuse {
        check += model.fuse(&inputs[i % inputs.len()])?.fused[0];
    }
    let secs = t.elapsed().as_secs_f64();
    println!("fuse_segments={n_fuse}");
    println!("fuse_seconds={secs:.4}");
    println!("fuse_per_second={:.1}", n_fuse as f64 / secs);
    eprintln!("(checksum {check})");

    // rank
    let candidates: Vec<Candidate> = (0..n_cand)
        .map(|i| Candidate {
            segment_id: i as i64,
            video_id: (i / 360) as i64,
            start_ms: (i % 360) as i64 * 10_000,
            end_ms: (i % 360) as i64 * 10_000 + 10_000,
            fused: rng.unit(d),
            text: Some(rng.unit(d)),
            visual: Some(rng.unit(d)),
            transcript: String::new(),
            tags: vec![],
        })
        .collect();
    let queries: Vec<Vec<f32>> = (0..n_query).map(|_| rng.unit(d)).collect();
    let t = Instant::now();
    let mut found = 0;
    for q in &queries {
        found += rank(q, &candidates, 10)?.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!("rank_candidates={n_cand}");
    println!("rank_queries={n_query}");
    println!("rank_seconds={secs:.4}");
    println!("rank_queries_per_second={:.2}", n_query as f64 / secs);
    eprintln!("({found} moments)");
    drop(candidates);

    // align
    let duration = 3 * 3_600_000i64;
    let pooled = rng.unit(768);
    let seg = Segmenter {
        snap_to_shots: true,
        ..Segmenter::default()
    };
    let mut b = seg.builder(Some(duration))?;
    let t = Instant::now();
    let (mut frames, mut segments, mut next_cue) = (0usize, 0usize, 0i64);
    let mut pts = 0;
    while pts < duration {
        while next_cue * 4_000 <= pts {
            let c = TimedText {
                start_ms: next_cue * 4_000,
                end_ms: next_cue * 4_000 + 3_000,
                text: "words are said here".into(),
                source: "subtitle".into(),
                embedding: vec![],
            };
            segments += b.push_cue(&c)?.len();
            next_cue += 1;
        }
        let f = FrameVisual {
            pts_ms: pts,
            pooled: pooled.clone(),
            grid: vec![],
            grid_tokens: 0,
            hidden: 0,
            labels: vec![("tabby, tabby cat".into(), 0.6)],
        };
        segments += b.push_frame(&f)?.len();
        frames += 1;
        pts += 500;
    }
    segments += b.finish().len();
    let secs = t.elapsed().as_secs_f64();
    println!("align_frames={frames}");
    println!("align_segments={segments}");
    println!("align_seconds={secs:.4}");
    println!("align_frames_per_second={:.0}", frames as f64 / secs);
    Ok(())
}
