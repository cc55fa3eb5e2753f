//! Training data (standardised frames with their positive bags) and the MIL-NCE loss of one micro-batch.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var, D};

use super::{TrainCue, TrainVideo};
use crate::FusionError;

/// The logit added to masked pairs.
const MASKED: f32 = -1e4;

/// A cue's time span as a half-open interval; a point in time (`end <= start`) lasts one millisecond.
fn span(c: &TrainCue) -> (i64, i64) {
    (c.start_ms, c.end_ms.max(c.start_ms + 1))
}

/// Cue indices sorted by start, with the longest cue's duration, for window look-ups.
pub(super) struct CueIndex {
    by_start: Vec<(i64, i64, usize)>,
    longest: i64,
}

impl CueIndex {
    pub fn new(cues: &[TrainCue]) -> Self {
        let mut by_start: Vec<(i64, i64, usize)> = cues
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (s, e) = span(c);
                (s, e, i)
            })
            .collect();
        by_start.sort_unstable();
        let longest = by_start.iter().map(|&(s, e, _)| e - s).max().unwrap_or(0);
        Self { by_start, longest }
    }

    /// Indices (ascending) of the cues overlapping the closed window `[lo, hi]`.
    pub fn overlapping(&self, lo: i64, hi: i64, out: &mut Vec<usize>) {
        out.clear();
        let first = self
            .by_start
            .partition_point(|&(s, _, _)| s <= lo.saturating_sub(self.longest));
        let last = self.by_start.partition_point(|&(s, _, _)| s <= hi);
        out.extend(
            self.by_start[first..last]
                .iter()
                .filter(|&&(_, e, _)| e > lo)
                .map(|&(_, _, i)| i),
        );
        out.sort_unstable();
    }
}

/// The window `[pts − w/2, pts + w/2]` of a frame.
pub(super) fn window(pts_ms: i64, window_ms: i64) -> (i64, i64) {
    let half = window_ms.max(0) / 2;
    (
        pts_ms.saturating_sub(half),
        pts_ms.saturating_add(window_ms.max(0) - half),
    )
}

/// One training sample: a frame with a non-empty positive bag.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    /// Index of its video among the training videos.
    pub video: u32,
    /// Global indices (into [`Prepared::cues`]) of the cues in its window, ascending.
    pub bag: Vec<u32>,
    /// Global indices of the hard negatives in its window.
    pub hard: Vec<u32>,
}

/// Everything the trainer needs, computed once.
pub(super) struct Prepared {
    /// Per-dimension mean and standard deviation of the training videos' pooled vectors.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Standardised pooled vectors of the samples, `N × V`.
    pub x: Tensor,
    pub samples: Vec<Sample>,
    /// All cue embeddings of the training videos, `M × D`.
    pub cues: Tensor,
    /// The training-video index of each global cue ([`HARD`] for a hard negative).
    pub cue_video: Vec<u32>,
}

/// The video index of a hard negative: no video's, so it is never masked as "the same video's other text".
const HARD: u32 = u32::MAX;

impl Prepared {
    pub fn new(videos: &[&TrainVideo], window_ms: i64, v: usize, d: usize) -> Result<Self, FusionError> {
        let dev = Device::Cpu;
        let (mut sum, mut sq, mut n) = (vec![0f64; v], vec![0f64; v], 0usize);
        for f in videos.iter().flat_map(|v| &v.frames) {
            for (k, &x) in f.pooled.iter().enumerate() {
                sum[k] += x as f64;
                sq[k] += x as f64 * x as f64;
            }
            n += 1;
        }
        let n = n.max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std: Vec<f32> = sq
            .iter()
            .zip(&sum)
            .map(|(q, s)| ((q / n - (s / n) * (s / n)).max(0.0).sqrt() as f32).max(1e-6))
            .collect();

        let (mut xs, mut samples, mut cue_rows, mut cue_video) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut bag, mut hard) = (Vec::new(), Vec::new());
        for (vi, video) in videos.iter().enumerate() {
            let base = cue_video.len() as u32;
            for c in &video.cues {
                cue_rows.extend_from_slice(&c.embedding);
                cue_video.push(vi as u32);
            }
            let hard_base = cue_video.len() as u32;
            for c in &video.negatives {
                cue_rows.extend_from_slice(&c.embedding);
                cue_video.push(HARD);
            }
            let index = CueIndex::new(&video.cues);
            let hard_index = CueIndex::new(&video.negatives);
            for f in &video.frames {
                let (lo, hi) = window(f.pts_ms, window_ms);
                index.overlapping(lo, hi, &mut bag);
                if bag.is_empty() {
                    continue;
                }
                xs.extend(
                    f.pooled
                        .iter()
                        .zip(mean.iter().zip(&std))
                        .map(|(x, (m, s))| (x - m) / s),
                );
                hard_index.overlapping(lo, hi, &mut hard);
                samples.push(Sample {
                    video: vi as u32,
                    bag: bag.iter().map(|&i| base + i as u32).collect(),
                    hard: hard.iter().map(|&i| hard_base + i as u32).collect(),
                });
            }
        }
        let x = Tensor::from_vec(xs, (samples.len(), v), &dev)?;
        let cues = Tensor::from_vec(cue_rows, (cue_video.len(), d), &dev)?;
        Ok(Self {
            mean,
            std,
            x,
            samples,
            cues,
            cue_video,
        })
    }
}

/// `log Σ exp` along `dim`, kept as a size-1 dimension (the maximum is detached: it cancels in the gradient).
fn logsumexp(t: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let m = t.max_keepdim(dim)?.detach();
    t.broadcast_sub(&m)?.exp()?.sum_keepdim(dim)?.log()?.broadcast_add(&m)
}

/// The projected, unit-length rows `normalise(x Wᵀ + b)`.
pub(super) fn project(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let y = x.matmul(&w.t()?)?.broadcast_add(b)?;
    let norm = y.sqr()?.sum_keepdim(D::Minus1)?.affine(1.0, 1e-12)?.sqrt()?;
    y.broadcast_div(&norm)
}

/// The symmetric MIL-NCE loss of one micro-batch and its gradients with respect to `w` and `b`.
///
/// Candidates are the union of the frames' positive bags. Frame `i` against candidate cue `j`: positive when `j` is
/// in `i`'s bag, masked when `j` is another cue of the same video, negative otherwise; the text→frame direction
/// uses the same pairing, seen from the cues.
pub(super) fn loss_and_grads(
    prep: &Prepared,
    batch: &[usize],
    w: &Var,
    b: &Var,
    temperature: f64,
) -> Result<(f64, Vec<f32>, Vec<f32>), FusionError> {
    let dev = Device::Cpu;
    let mut column: HashMap<u32, usize> = HashMap::new();
    let mut cands: Vec<u32> = Vec::new();
    for &s in batch {
        for &c in &prep.samples[s].bag {
            column.entry(c).or_insert_with(|| {
                cands.push(c);
                cands.len() - 1
            });
        }
    }
    // Hard negatives after the bags' cues: negatives for every frame, never a text→frame query.
    let nk_bags = cands.len();
    for &s in batch {
        for &c in &prep.samples[s].hard {
            column.entry(c).or_insert_with(|| {
                cands.push(c);
                cands.len() - 1
            });
        }
    }
    let (nb, nk) = (batch.len(), cands.len());
    let mut pos = vec![MASKED; nb * nk];
    let mut allowed = vec![0f32; nb * nk];
    for (i, &s) in batch.iter().enumerate() {
        let sample = &prep.samples[s];
        for (j, &c) in cands.iter().enumerate() {
            if prep.cue_video[c as usize] == sample.video {
                allowed[i * nk + j] = MASKED;
            }
        }
        for c in &sample.bag {
            let j = column[c];
            pos[i * nk + j] = 0.0;
            allowed[i * nk + j] = 0.0;
        }
    }
    let pos = Tensor::from_vec(pos, (nb, nk), &dev)?;
    let allowed = Tensor::from_vec(allowed, (nb, nk), &dev)?;
    let rows: Vec<u32> = batch.iter().map(|&s| s as u32).collect();
    let x = prep.x.index_select(&Tensor::from_vec(rows, nb, &dev)?, 0)?;
    let c = prep.cues.index_select(&Tensor::from_vec(cands, nk, &dev)?, 0)?;
    let y = project(&x, w.as_tensor(), b.as_tensor())?;
    let logits = y.matmul(&c.t()?)?.affine(1.0 / temperature, 0.0)?;
    let with_pos = logits.add(&pos)?;
    let with_allowed = logits.add(&allowed)?;
    let frame_to_text = logsumexp(&with_allowed, 1)?
        .sub(&logsumexp(&with_pos, 1)?)?
        .mean_all()?;
    let text_to_frame = logsumexp(&with_allowed.narrow(1, 0, nk_bags)?, 0)?
        .sub(&logsumexp(&with_pos.narrow(1, 0, nk_bags)?, 0)?)?
        .mean_all()?;
    let loss = frame_to_text.add(&text_to_frame)?.affine(0.5, 0.0)?;
    let grads = loss.backward()?;
    let gw = grads
        .get(w.as_tensor())
        .map(|g| g.flatten_all()?.to_vec1::<f32>())
        .transpose()?;
    let gb = grads.get(b.as_tensor()).map(|g| g.to_vec1::<f32>()).transpose()?;
    let (d, v) = w.as_tensor().dims2()?;
    Ok((
        loss.to_scalar::<f32>()? as f64,
        gw.unwrap_or_else(|| vec![0.0; d * v]),
        gb.unwrap_or_else(|| vec![0.0; d]),
    ))
}
