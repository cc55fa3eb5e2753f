//! Checks of the inputs and options, and the folding of the input standardisation into the weights.

use super::{Projection, TrainOptions, TrainVideo};
use crate::FusionError;

/// The raw-input projection of standardised-space weights: `W' = W / std` column-wise, `b' = b − W'·mean`.
pub(super) fn fold(weight: &[f32], bias: &[f32], mean: &[f32], std: &[f32]) -> Projection {
    let v = mean.len();
    let w: Vec<f32> = weight
        .chunks_exact(v)
        .flat_map(|row| row.iter().zip(std).map(|(w, s)| w / s))
        .collect();
    let b = w
        .chunks_exact(v)
        .zip(bias)
        .map(|(row, b)| b - crate::vecmath::dot(row, mean))
        .collect();
    Projection {
        text_dim: bias.len(),
        visual_dim: v,
        weight: w,
        bias: b,
    }
}

/// The standardised-space weights of a raw-input projection: `W = W'·diag(std)`, `b = b' + W'·mean`.
pub(super) fn unfold(p: &Projection, mean: &[f32], std: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let v = mean.len();
    let w = p
        .weight
        .chunks_exact(v)
        .flat_map(|row| row.iter().zip(std).map(|(w, s)| w * s))
        .collect();
    let b = p
        .weight
        .chunks_exact(v)
        .zip(&p.bias)
        .map(|(row, b)| b + crate::vecmath::dot(row, mean))
        .collect();
    (w, b)
}

/// Checks the widths of every frame and cue; returns `(V, D)`.
pub(super) fn widths(videos: &[TrainVideo]) -> Result<(usize, usize), FusionError> {
    let v = videos
        .iter()
        .flat_map(|x| &x.frames)
        .map(|f| f.pooled.len())
        .next()
        .unwrap_or(0);
    let d = videos
        .iter()
        .flat_map(|x| &x.cues)
        .map(|c| c.embedding.len())
        .next()
        .unwrap_or(0);
    for video in videos {
        if let Some(f) = video.frames.iter().find(|f| f.pooled.len() != v) {
            let context = format!("pooled vector of video {} at {} ms", video.id, f.pts_ms);
            return Err(FusionError::Dimension {
                context,
                expected: v,
                got: f.pooled.len(),
            });
        }
        if let Some(c) = video.cues.iter().find(|c| c.embedding.len() != d) {
            let context = format!("cue embedding of video {} at {} ms", video.id, c.start_ms);
            return Err(FusionError::Dimension {
                context,
                expected: d,
                got: c.embedding.len(),
            });
        }
    }
    if v == 0 || d == 0 {
        return Err(FusionError::Train("no frames or no cues to train on".into()));
    }
    Ok((v, d))
}

pub(super) fn check_options(opts: &TrainOptions) -> Result<(), FusionError> {
    let bad = |what: &str| Err(FusionError::Config(format!("training option {what}")));
    if opts.batch == 0 || opts.accumulate == 0 {
        return bad("batch and accumulate must be at least 1");
    }
    if opts.temperature.is_nan()
        || opts.temperature <= 0.0
        || opts.lr.is_nan()
        || opts.lr <= 0.0
        || !(0.0..1.0).contains(&opts.holdout)
    {
        return bad("temperature and lr must be positive, holdout in [0, 1)");
    }
    if opts.window_ms < 0 || opts.segment_ms <= 0 {
        return bad("window_ms must not be negative, segment_ms must be positive");
    }
    Ok(())
}
