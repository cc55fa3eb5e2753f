//! Learning the visual projection from time alignment (MIL-NCE).
//!
//! The pooled visual vector of a frame (width `V`: 768 for Swin-tiny) is mapped by a linear projection into the
//! frozen text encoder's space (width `D`: 384), so that a frame lands close to the sentence embeddings of the text
//! said or shown around it. There are no labels: the only supervision is the time alignment of frames and cues.
//!
//! # Method
//!
//! * **Data.** A frame's *positive bag* is the set of cues of its video that overlap the window
//!   `[pts − window/2, pts + window/2]`; frames with an empty bag do not train. Videos are split into training and
//!   held-out sets by a hash of their id ([`split`]).
//! * **Inputs** are standardised per dimension (mean and standard deviation over the training frames); the
//!   exported [`Projection`] has the standardisation folded into its weights and takes raw pooled vectors.
//! * **Loss.** A micro-batch of frames is scored against the union of their bags (cosine of the projected,
//!   normalised frame with each cue, over a temperature). A frame's loss is the negative log of the softmax mass on
//!   its bag, where cues of the same video outside the bag are masked out of the denominator rather than treated as
//!   negatives (they may well describe the same scene); the text→frame direction is added symmetrically.
//! * **Optimiser.** AdamW (decoupled weight decay on the weight matrix only), linear warm-up then cosine decay to
//!   10 % of the learning rate, gradients averaged over `accumulate` micro-batches and clipped by global norm.
//! * **Selection.** Text→video recall@1 on the held-out videos ([`recall`]) is measured before training, every
//!   `eval_every` steps and at the end of each epoch; the best weights are returned and training stops early after
//!   `patience` evaluations without improvement, or when `max_seconds` have passed.
//! * **Checkpoints** (optional) let an interrupted run resume exactly where it was saved.

mod batch;
mod eval;
mod setup;
mod state;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::FusionError;
use batch::{CueIndex, Prepared};
use eval::Evaluator;
use setup::{check_options, fold, unfold, widths};
use state::{record_eval, AdamW, Hasher, Meta, Rng, State};

/// One sampled frame of a training video.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainFrame {
    /// Presentation time, in milliseconds.
    pub pts_ms: i64,
    /// The pooled visual vector (width `V`).
    pub pooled: Vec<f32>,
}

/// One piece of timed text of a training video.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainCue {
    /// Start, in milliseconds.
    pub start_ms: i64,
    /// End, in milliseconds (exclusive; `end_ms <= start_ms` is a point in time).
    pub end_ms: i64,
    /// Its unit-length sentence embedding (width `D`).
    pub embedding: Vec<f32>,
}

/// The frames and cues of one video.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainVideo {
    /// A stable identifier (decides the train/held-out split).
    pub id: String,
    /// Its sampled frames, in any order.
    pub frames: Vec<TrainFrame>,
    /// Its cues, in any order.
    pub cues: Vec<TrainCue>,
    /// Hard negatives: text its frames in that span must not match (a user marked the moment wrong for it). They
    /// join the candidates of those frames as negatives; they are never queries nor positives.
    pub negatives: Vec<TrainCue>,
}

/// A learnt linear map from raw pooled visual vectors into the text space.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Projection {
    /// Output width `D`.
    pub text_dim: usize,
    /// Input width `V`.
    pub visual_dim: usize,
    /// `D × V`, row-major.
    pub weight: Vec<f32>,
    /// `D` values.
    pub bias: Vec<f32>,
}

impl Projection {
    /// `W x + b`, scaled to unit length.
    ///
    /// # Panics
    /// When `pooled` does not have `visual_dim` values.
    pub fn apply(&self, pooled: &[f32]) -> Vec<f32> {
        assert_eq!(
            pooled.len(),
            self.visual_dim,
            "Projection::apply: pooled vector of the wrong width"
        );
        let mut y: Vec<f32> = self
            .weight
            .chunks_exact(self.visual_dim.max(1))
            .zip(&self.bias)
            .map(|(row, b)| crate::vecmath::dot(row, pooled) + b)
            .collect();
        crate::vecmath::normalize(&mut y);
        y
    }
}

/// Options of [`train_projection`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainOptions {
    /// Passes over the training frames (30).
    pub epochs: usize,
    /// Wall-clock limit of one call, in seconds (none).
    pub max_seconds: Option<f64>,
    /// Peak learning rate (2e-3).
    pub lr: f64,
    /// Steps of linear warm-up (50).
    pub warmup_steps: usize,
    /// Decoupled weight decay of the weight matrix (1e-4).
    pub weight_decay: f64,
    /// Frames per micro-batch (64).
    pub batch: usize,
    /// Micro-batches per optimiser step (4).
    pub accumulate: usize,
    /// Global gradient-norm limit (1.0).
    pub clip_norm: f64,
    /// Softmax temperature of the cosine logits (0.07).
    pub temperature: f64,
    /// Cues overlapping `[pts − window/2, pts + window/2]` form a frame's positive bag (5,000 ms).
    pub window_ms: i64,
    /// Segment length of the recall evaluation (10,000 ms).
    pub segment_ms: i64,
    /// Share of the videos held out for evaluation (0.1).
    pub holdout: f64,
    /// Evaluations without improvement before stopping (4; 0 never stops early).
    pub patience: usize,
    /// Evaluate every this many steps, and at the end of each epoch (100; 0: only at epoch ends).
    pub eval_every: usize,
    /// Write a checkpoint every this many steps (200; 0: never).
    pub checkpoint_every: usize,
    /// Fewest time-aligned frame–text pairs to train on (200).
    pub min_pairs: usize,
    /// Seed of the initialisation and the shuffles (17).
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 30,
            max_seconds: None,
            lr: 2e-3,
            warmup_steps: 50,
            weight_decay: 1e-4,
            batch: 64,
            accumulate: 4,
            clip_norm: 1.0,
            temperature: 0.07,
            window_ms: 5000,
            segment_ms: 10_000,
            holdout: 0.1,
            patience: 4,
            eval_every: 100,
            checkpoint_every: 200,
            min_pairs: 200,
            seed: 17,
        }
    }
}

/// What a training run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    /// Videos trained on.
    pub videos_train: usize,
    /// Videos held out for evaluation.
    pub videos_holdout: usize,
    /// Frames with a non-empty positive bag in the training videos.
    pub pairs_train: usize,
    /// The same in the held-out videos.
    pub pairs_holdout: usize,
    /// Epochs started (counting those of an earlier, resumed run).
    pub epochs_run: usize,
    /// Optimiser steps taken (counting those of an earlier, resumed run).
    pub steps: usize,
    /// The step of the returned weights (0: the initial ones).
    pub best_step: usize,
    /// Held-out recall@1 of the returned projection.
    pub recall_at_1: f64,
    /// Held-out recall@5 of the returned projection.
    pub recall_at_5: f64,
    /// Held-out recall@1 before the first step.
    pub recall_at_1_start: f64,
    /// Stopped after `patience` evaluations without improvement.
    pub stopped_early: bool,
    /// Stopped because `max_seconds` had passed (the checkpoint, if any, is kept to continue later).
    pub stopped_by_time: bool,
    /// The step a checkpoint was resumed from.
    pub resumed_from_step: Option<usize>,
    /// Loss of the last step.
    pub final_loss: f64,
    /// Wall-clock seconds of this call.
    pub seconds: f64,
}

/// Reported after every optimiser step.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The current epoch (0-based).
    pub epoch: usize,
    /// Steps taken so far.
    pub step: usize,
    /// The loss of this step.
    pub loss: f64,
    /// Held-out recall@1 when this step was followed by an evaluation.
    pub recall_at_1: Option<f64>,
}

/// Frames with at least one cue in their window.
pub fn count_pairs(videos: &[TrainVideo], window_ms: i64) -> usize {
    pairs_in(videos, window_ms)
}

fn pairs_in<'a>(videos: impl IntoIterator<Item = &'a TrainVideo>, window_ms: i64) -> usize {
    let mut bag = Vec::new();
    videos
        .into_iter()
        .map(|v| {
            let index = CueIndex::new(&v.cues);
            v.frames
                .iter()
                .filter(|f| {
                    let (lo, hi) = batch::window(f.pts_ms, window_ms);
                    index.overlapping(lo, hi, &mut bag);
                    !bag.is_empty()
                })
                .count()
        })
        .sum()
}

/// Deterministic split by a hash of the video id (not by order): returns (train indices, held-out indices), both
/// ascending. A video is held out when its hash key is below `holdout` (so a video keeps its side as the library
/// grows), and then the lowest keys join until the share is reached. With `holdout > 0` and at least 2 videos, at
/// least one is held out and at least one trains.
pub fn split(videos: &[TrainVideo], holdout: f64) -> (Vec<usize>, Vec<usize>) {
    let keys: Vec<f64> = videos
        .iter()
        .map(|v| (Hasher::new().bytes(v.id.as_bytes()).finish() >> 11) as f64 / (1u64 << 53) as f64)
        .collect();
    let mut held: Vec<bool> = keys.iter().map(|&k| k < holdout).collect();
    if holdout > 0.0 && videos.len() >= 2 {
        let by_key = |a: &usize, b: &usize| keys[*a].total_cmp(&keys[*b]).then(videos[*a].id.cmp(&videos[*b].id));
        // At least the expected share (rounded, one at the least): the videos with the lowest keys join.
        let want = ((videos.len() as f64 * holdout).round() as usize).clamp(1, videos.len() - 1);
        let mut order: Vec<usize> = (0..videos.len()).collect();
        order.sort_by(by_key);
        for i in order {
            if held.iter().filter(|h| **h).count() >= want {
                break;
            }
            held[i] = true;
        }
        if !held.contains(&false) {
            held[(0..videos.len()).max_by(by_key).expect("two videos")] = false;
        }
    }
    (0..videos.len()).partition(|&i| !held[i])
}

/// Text→video recall of a projection on `videos`: segments are fixed windows of `segment_ms` per video, a
/// segment's vector the unit mean of its frames' projected vectors, a video scores as its best segment; every cue
/// is a query ranked against all the videos by cosine. A query hits at `k` when one of the `k` best videos is its
/// own, or one where a cue with a (near-)identical embedding (cosine > 0.99) falls on frames, so that repeated
/// subtitles are not penalised. Ties are counted in the query's favour; cues that fall on no frame are left out.
/// Returns (recall@1, recall@5), (0, 0) without any query.
///
/// # Panics
/// When frame or cue widths disagree with the projection's.
pub fn recall(projection: &Projection, videos: &[&TrainVideo], segment_ms: i64) -> (f64, f64) {
    Evaluator::new(videos, videos.len(), segment_ms)
        .and_then(|e| e.evaluate(projection))
        .unwrap_or_else(|e| panic!("recall: {e}"))
}

/// Trains a [`Projection`] on `videos`; see the [module documentation](self) for the method.
///
/// `init` starts from these weights instead of a small seeded Gaussian. `checkpoint` is a path stem: every
/// `checkpoint_every` steps `<stem>.safetensors` and `<stem>.json` are written (each atomically) with the weights,
/// the AdamW moments, the position in the run, the seed, the best weights so far and a fingerprint of the data
/// and options; a checkpoint with the same fingerprint is resumed (`resumed_from_step`), one with another is
/// ignored and overwritten. The files are deleted when the run completes; they are kept (written at the stop)
/// when it stops for `max_seconds`, so a later call continues. Errors with [`FusionError::Train`] when there are
/// fewer than 2 videos or fewer than `min_pairs` time-aligned pairs ([`count_pairs`]).
pub fn train_projection(
    videos: &[TrainVideo],
    init: Option<&Projection>,
    opts: &TrainOptions,
    checkpoint: Option<&Path>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(Projection, TrainReport), FusionError> {
    let started = Instant::now();
    check_options(opts)?;
    if videos.len() < 2 {
        return Err(FusionError::Train(format!(
            "{} video(s): at least 2 are needed",
            videos.len()
        )));
    }
    let pairs = count_pairs(videos, opts.window_ms);
    if pairs < opts.min_pairs {
        return Err(FusionError::Train(format!(
            "only {pairs} frames have a cue within ±{} ms (time-aligned pairs); at least {} are needed",
            opts.window_ms / 2,
            opts.min_pairs
        )));
    }
    let (v, d) = widths(videos)?;
    if let Some(p) = init {
        for (context, expected, got) in [
            ("initial projection: visual width", v, p.visual_dim),
            ("initial projection: text width", d, p.text_dim),
            ("initial projection: weights", d * v, p.weight.len()),
            ("initial projection: bias", d, p.bias.len()),
        ] {
            if expected != got {
                return Err(FusionError::Dimension {
                    context: context.into(),
                    expected,
                    got,
                });
            }
        }
    }
    let (train_idx, hold_idx) = split(videos, opts.holdout);
    let train: Vec<&TrainVideo> = train_idx.iter().map(|&i| &videos[i]).collect();
    let hold: Vec<&TrainVideo> = hold_idx.iter().map(|&i| &videos[i]).collect();
    let prep = Prepared::new(&train, opts.window_ms, v, d)?;
    let n = prep.samples.len();
    if n == 0 {
        return Err(FusionError::Train(
            "the training videos hold no time-aligned frame–text pair".into(),
        ));
    }
    // Held-out cues are the queries; the training videos' segments compete with the held-out ones (with few
    // held-out videos, ranking among them alone says little).
    let pool: Vec<&TrainVideo> = hold.iter().chain(train.iter()).copied().collect();
    let evaluator = Evaluator::new(&pool, hold.len(), opts.segment_ms)?;
    let can_eval = evaluator.queries() > 0;
    if !can_eval {
        tracing::warn!("the held-out videos have no usable cue: no evaluation, the last weights are kept");
    }
    let evaluate = |w: &[f32], b: &[f32]| -> Result<Option<f64>, FusionError> {
        if !can_eval {
            return Ok(None);
        }
        Ok(Some(evaluator.evaluate(&fold(w, b, &prep.mean, &prep.std))?.0))
    };

    let fingerprint = state::fingerprint(videos, opts, init);
    let resumed = match checkpoint {
        Some(stem) => state::load(stem, &fingerprint, d, v)?,
        None => None,
    };
    let resumed_from_step = resumed.as_ref().map(|s| s.meta.step);
    let mut st = match resumed {
        Some(s) => {
            tracing::info!(
                step = s.meta.step,
                epoch = s.meta.epoch,
                "resuming training from its checkpoint"
            );
            s
        }
        None => {
            let (weight, bias) = match init {
                Some(p) => unfold(p, &prep.mean, &prep.std),
                None => {
                    let mut rng = Rng(opts.seed);
                    (
                        (0..d * v).map(|_| (0.02 * rng.gaussian()) as f32).collect(),
                        vec![0.0; d],
                    )
                }
            };
            let start = evaluate(&weight, &bias)?;
            State {
                meta: Meta {
                    format: state::FORMAT.into(),
                    fingerprint: fingerprint.clone(),
                    step: 0,
                    epoch: 0,
                    position: 0,
                    seed: opts.seed,
                    best_recall: start,
                    best_step: 0,
                    recall_start: start,
                    evals_without_improvement: 0,
                    last_loss: f64::NAN,
                },
                adam: AdamW::new(&[d * v, d]),
                best_weight: weight.clone(),
                best_bias: bias.clone(),
                weight,
                bias,
            }
        }
    };

    let dev = Device::Cpu;
    let per_step = opts.batch * opts.accumulate;
    let steps_per_epoch = n.div_ceil(per_step);
    let total_steps = opts.epochs * steps_per_epoch;
    let w_var = Var::from_slice(&st.weight, (d, v), &dev)?;
    let b_var = Var::from_slice(&st.bias, d, &dev)?;
    let (mut stopped_early, mut stopped_by_time) = (false, false);
    let mut epochs_run = if st.meta.position > 0 {
        st.meta.epoch + 1
    } else {
        st.meta.epoch
    };
    let mut evaluated_last = true;

    'epochs: for epoch in st.meta.epoch..opts.epochs {
        let order = Rng(state::mix(opts.seed ^ state::mix(epoch as u64 + 1))).permutation(n);
        let mut pos = if epoch == st.meta.epoch { st.meta.position } else { 0 };
        while pos < n {
            epochs_run = epoch + 1;
            let chunk = &order[pos..(pos + per_step).min(n)];
            pos += chunk.len();
            let (mut gw, mut gb) = (vec![0f32; d * v], vec![0f32; d]);
            let mut loss = 0f64;
            for micro in chunk.chunks(opts.batch) {
                let (l, w_g, b_g) = batch::loss_and_grads(&prep, micro, &w_var, &b_var, opts.temperature)?;
                let share = micro.len() as f32 / chunk.len() as f32;
                gw.iter_mut().zip(&w_g).for_each(|(a, g)| *a += share * g);
                gb.iter_mut().zip(&b_g).for_each(|(a, g)| *a += share * g);
                loss += share as f64 * l;
            }
            let norm = gw
                .iter()
                .chain(&gb)
                .map(|g| (*g as f64) * (*g as f64))
                .sum::<f64>()
                .sqrt();
            if opts.clip_norm > 0.0 && norm > opts.clip_norm {
                let s = (opts.clip_norm / norm) as f32;
                gw.iter_mut().chain(gb.iter_mut()).for_each(|g| *g *= s);
            }
            let step = st.meta.step + 1;
            let lr = state::learning_rate(opts.lr, step, opts.warmup_steps, total_steps);
            st.adam.step(
                &mut [&mut st.weight, &mut st.bias],
                &[gw, gb],
                &[true, false],
                lr,
                opts.weight_decay,
            );
            w_var.set(&Tensor::from_slice(&st.weight, (d, v), &dev)?)?;
            b_var.set(&Tensor::from_slice(&st.bias, d, &dev)?)?;
            st.meta.step = step;
            st.meta.last_loss = loss;
            let (next_epoch, next_pos) = if pos >= n { (epoch + 1, 0) } else { (epoch, pos) };
            st.meta.epoch = next_epoch;
            st.meta.position = next_pos;

            let due = pos >= n || (opts.eval_every > 0 && step % opts.eval_every == 0);
            let mut recall_now = None;
            if due {
                recall_now = evaluate(&st.weight, &st.bias)?;
                evaluated_last = true;
                if let Some(r) = recall_now {
                    record_eval(&mut st, r);
                }
            } else {
                evaluated_last = false;
            }
            progress(&Progress {
                epoch,
                step,
                loss,
                recall_at_1: recall_now,
            });
            if opts.patience > 0 && st.meta.evals_without_improvement >= opts.patience {
                stopped_early = true;
                break 'epochs;
            }
            if opts
                .max_seconds
                .is_some_and(|limit| started.elapsed().as_secs_f64() > limit)
            {
                stopped_by_time = true;
                break 'epochs;
            }
            if let Some(stem) = checkpoint {
                if opts.checkpoint_every > 0 && step % opts.checkpoint_every == 0 {
                    state::save(stem, &st, d, v)?;
                }
            }
        }
    }

    if stopped_by_time && !evaluated_last {
        if let Some(r) = evaluate(&st.weight, &st.bias)? {
            record_eval(&mut st, r);
        }
    }
    let (weight, bias) = if can_eval {
        (&st.best_weight, &st.best_bias)
    } else {
        (&st.weight, &st.bias)
    };
    let projection = fold(weight, bias, &prep.mean, &prep.std);
    if let Some(stem) = checkpoint {
        if stopped_by_time {
            state::save(stem, &st, d, v)?;
        } else {
            state::remove(stem);
        }
    }
    let (recall_at_1, recall_at_5) = evaluator.evaluate(&projection)?;
    let report = TrainReport {
        videos_train: train.len(),
        videos_holdout: hold.len(),
        pairs_train: n,
        pairs_holdout: pairs_in(hold.iter().copied(), opts.window_ms),
        epochs_run,
        steps: st.meta.step,
        best_step: if can_eval { st.meta.best_step } else { st.meta.step },
        recall_at_1,
        recall_at_5,
        recall_at_1_start: st.meta.recall_start.unwrap_or(0.0),
        stopped_early,
        stopped_by_time,
        resumed_from_step,
        final_loss: st.meta.last_loss,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((projection, report))
}

/// Stage 1's checkpoint reader, for the hostile-input tests (`crate::fuzz_tests`): `Ok(true)` when the checkpoint
/// at `stem` is one of `fingerprint` with `d × v` weights, and usable.
#[cfg(test)]
pub(crate) fn read_checkpoint(stem: &Path, fingerprint: &str, d: usize, v: usize) -> Result<bool, FusionError> {
    state::load_checked(stem, fingerprint, d, v).map(|s| s.is_some())
}
