//! Stage 2 of `kino train`: the Swin token grid's projection and gate, and the cross-attention, learnt with the
//! target cue held out of the input.
//!
//! Stage 1 ([`crate::train`]) learns the pooled projection. This stage starts from its weights and trains the rest
//! of [`FusionModel`] with the pooled projection frozen.
//!
//! # Method
//!
//! * **Examples.** Every cue of a training segment is, once, the *target*: the segment's other cues are the text
//!   tokens, its label embedding, projected pooled vector and mean token grid the visual tokens. The target is never
//!   an input of the vector trained on it.
//! * **Forward.** The computation of [`FusionModel::fuse`], batched (padding masked out): grid tokens
//!   `grid_gate · unit(W_g ḡ + b_g)`, text tokens attend over visual tokens and back, each side pooled by its
//!   weights and blended. [`tests`](self) check that the two agree.
//! * **Loss.** Symmetric InfoNCE of the fused vector against the batch's targets, plus the same for the
//!   visual-only vector (which trains the grid projection and its gate from no text at all). A target that is a
//!   (near-)duplicate of a row's own (cosine > 0.99) is masked out of that row's negatives.
//! * **Optimiser.** AdamW; the grid projection and gate at `lr`, the cross-attention projections, layer norms and
//!   blend at the lower `lr_attention`; linear warm-up then cosine decay; gradients clipped by global norm.
//! * **Selection.** The caller's held-out score after every epoch; the weights of the best epoch are returned with
//!   their score and the starting weights' score: whether they replace the starting ones is the caller's choice.

mod checkpoint;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use checkpoint::{Adam, Meta};

use candle_core::{DType, Device, Tensor, Var, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::model::{FusionModel, SegmentInputs, VisualGrid};
use crate::vecmath::{dot, normalized};
use crate::FusionError;

const LN_EPS: f64 = 1e-5;
const MASKED: f32 = -1e9;

/// One segment as stage 2 reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FusionSegment {
    /// Embeddings of its cues (text space).
    pub cues: Vec<Vec<f32>>,
    /// Weight of each cue (its share inside the segment).
    pub weights: Vec<f32>,
    /// Embedding of its label text, when it has tags.
    pub labels: Option<Vec<f32>>,
    /// Mean of its frames' pooled visual vectors.
    pub pooled: Option<Vec<f32>>,
    /// Mean of its frames' token grids.
    pub grid: Option<VisualGrid>,
}

impl FusionSegment {
    /// The fusion inputs of this segment, with cue `hold_out` left out.
    pub fn inputs(&self, hold_out: Option<usize>) -> SegmentInputs {
        let keep = |i: &usize| Some(*i) != hold_out;
        SegmentInputs {
            text: (0..self.cues.len())
                .filter(keep)
                .map(|i| self.cues[i].clone())
                .collect(),
            text_weights: (0..self.cues.len())
                .filter(keep)
                .map(|i| self.weights.get(i).copied().unwrap_or(1.0))
                .collect(),
            grids: self.grid.iter().cloned().collect(),
            labels: self.labels.clone(),
            pooled: self.pooled.clone(),
        }
    }
}

/// Options of [`train_fusion`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FusionTrainOptions {
    /// Passes over the examples (8).
    pub epochs: usize,
    /// Wall-clock limit, in seconds (none).
    pub max_seconds: Option<f64>,
    /// Peak learning rate of the grid projection and gate (1e-3).
    pub lr: f64,
    /// Peak learning rate of the cross-attention and blend (2e-4).
    pub lr_attention: f64,
    /// Steps of linear warm-up (20).
    pub warmup_steps: usize,
    /// Decoupled weight decay (1e-4).
    pub weight_decay: f64,
    /// Examples per step (32).
    pub batch: usize,
    /// Global gradient-norm limit (1.0).
    pub clip_norm: f64,
    /// Softmax temperature of the cosine logits (0.07).
    pub temperature: f64,
    /// The grid gate to start from when the starting weights keep it shut (0.02).
    pub grid_gate_init: f32,
    /// Epochs without a better held-out score before stopping (3; 0 never stops early).
    pub patience: usize,
    /// Seed of the shuffles (17).
    pub seed: u64,
}

impl Default for FusionTrainOptions {
    fn default() -> Self {
        Self {
            epochs: 8,
            max_seconds: None,
            lr: 1e-3,
            lr_attention: 2e-4,
            warmup_steps: 20,
            weight_decay: 1e-4,
            batch: 32,
            clip_norm: 1.0,
            temperature: 0.07,
            grid_gate_init: 0.02,
            patience: 3,
            seed: 17,
        }
    }
}

/// What [`train_fusion`] did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FusionTrainReport {
    /// (segment, held-out cue) examples trained on.
    pub examples: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// The epoch of the returned weights (1-based; 0 only when no epoch ran).
    pub best_epoch: usize,
    /// The held-out score of the starting weights.
    pub score_start: f64,
    /// The held-out score of the returned weights.
    pub score: f64,
    /// Mean loss of the first epoch.
    pub first_loss: f64,
    /// Mean loss of the last epoch.
    pub final_loss: f64,
    /// Stopped because `max_seconds` had passed (the checkpoint, if any, is kept to continue later).
    pub stopped_by_time: bool,
    /// The epoch a checkpoint was resumed at.
    pub resumed_from_epoch: Option<usize>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

struct Attention {
    names: [&'static str; 10],
    vars: Vec<Var>,
    scale: f64,
}

struct Params {
    grid_w: Var,
    grid_b: Var,
    log_gate: Var,
    blend: Var,
    t2v: Attention,
    v2t: Attention,
    label_gate: f32,
    pool_gate: f32,
    heads: usize,
}

const ATTENTION_NAMES: [&str; 10] = [
    "q_proj.weight",
    "q_proj.bias",
    "k_proj.weight",
    "k_proj.bias",
    "v_proj.weight",
    "v_proj.bias",
    "o_proj.weight",
    "o_proj.bias",
    "norm.weight",
    "norm.bias",
];

fn tensor(model: &FusionModel, name: &str) -> Result<Tensor, FusionError> {
    model
        .tensor(name)
        .cloned()
        .ok_or_else(|| FusionError::Config(format!("the fusion weights have no tensor {name}")))
}

fn scalar(model: &FusionModel, name: &str) -> Result<f32, FusionError> {
    Ok(tensor(model, name)?.to_vec1::<f32>()?[0])
}

impl Params {
    fn new(base: &FusionModel, opts: &FusionTrainOptions) -> Result<Self, FusionError> {
        let (pool_gate, label_gate, grid_gate) = base.gates();
        // A shut grid starts from the pooled projection: the pooled vector is the mean of the grid's tokens.
        let (gw, gb) = if grid_gate <= 0.0 && pool_gate > 0.0 {
            (tensor(base, "pool_proj.weight")?, tensor(base, "pool_proj.bias")?)
        } else {
            (tensor(base, "grid_proj.weight")?, tensor(base, "grid_proj.bias")?)
        };
        let gate = if grid_gate > 0.0 {
            grid_gate
        } else {
            opts.grid_gate_init.max(1e-6)
        };
        let attention = |side: &str| -> Result<Attention, FusionError> {
            Ok(Attention {
                names: ATTENTION_NAMES,
                vars: ATTENTION_NAMES
                    .iter()
                    .map(|n| Ok(Var::from_tensor(&tensor(base, &format!("{side}.{n}"))?)?))
                    .collect::<Result<_, FusionError>>()?,
                scale: scalar(base, &format!("{side}.logit_scale"))? as f64,
            })
        };
        Ok(Self {
            grid_w: Var::from_tensor(&gw)?,
            grid_b: Var::from_tensor(&gb)?,
            log_gate: Var::from_tensor(&Tensor::new(&[gate.ln()], &Device::Cpu)?)?,
            blend: Var::from_tensor(&tensor(base, "blend")?)?,
            t2v: attention("t2v")?,
            v2t: attention("v2t")?,
            label_gate,
            pool_gate,
            heads: base.config().heads,
        })
    }

    fn grid_vars(&self) -> Vec<Var> {
        vec![self.grid_w.clone(), self.grid_b.clone(), self.log_gate.clone()]
    }

    fn attention_vars(&self) -> Vec<Var> {
        let mut v: Vec<Var> = self.t2v.vars.iter().chain(&self.v2t.vars).cloned().collect();
        v.push(self.blend.clone());
        v
    }

    /// A copy of the trained tensors under their weights-file names (a copy: the optimiser updates the
    /// variables' storage in place).
    fn export(&self) -> Result<HashMap<String, Tensor>, FusionError> {
        let mut out = HashMap::new();
        out.insert("grid_proj.weight".into(), self.grid_w.as_tensor().copy()?);
        out.insert("grid_proj.bias".into(), self.grid_b.as_tensor().copy()?);
        out.insert("grid_gate".into(), self.log_gate.as_tensor().exp()?);
        out.insert("blend".into(), self.blend.as_tensor().copy()?);
        for (side, a) in [("t2v", &self.t2v), ("v2t", &self.v2t)] {
            for (n, v) in a.names.iter().zip(&a.vars) {
                out.insert(format!("{side}.{n}"), v.as_tensor().copy()?);
            }
        }
        Ok(out)
    }
}

/// A batch of examples as tensors.
struct Batch {
    /// Context cues `[B, T, D]`, their weights `[B, T]` and additive mask `[B, T]`.
    text: Tensor,
    text_w: Tensor,
    text_mask: Tensor,
    /// 1 where the example has context cues, `[B, 1]`.
    has_text: Tensor,
    /// Label and projected pooled tokens `[B, 2, D]`, their weights `[B, 2]`.
    fixed: Tensor,
    fixed_w: Tensor,
    /// Mean grids `[B, G, V]` (when any segment has one), their weights `[B, G]`.
    grid: Option<(Tensor, Tensor)>,
    /// Additive mask of all visual tokens `[B, 2 + G]`.
    visual_mask: Tensor,
    /// Target cues `[B, D]`, and the additive mask of duplicate targets `[B, B]`.
    target: Tensor,
    duplicates: Tensor,
}

/// A segment's constant visual inputs.
struct Visual {
    label: Option<Vec<f32>>,
    pooled: Option<Vec<f32>>,
}

fn build_batch(
    segments: &[FusionSegment],
    visual: &[Visual],
    examples: &[(usize, usize)],
    d: usize,
    grid_shape: Option<(usize, usize)>,
    params: &Params,
) -> Result<Batch, FusionError> {
    let dev = Device::Cpu;
    let b = examples.len();
    let t = examples
        .iter()
        .map(|(s, _)| segments[*s].cues.len().saturating_sub(1))
        .max()
        .unwrap_or(0)
        .max(1);
    let (mut text, mut text_w, mut text_mask, mut has_text) = (
        vec![0f32; b * t * d],
        vec![0f32; b * t],
        vec![MASKED; b * t],
        vec![0f32; b],
    );
    let (mut fixed, mut fixed_w) = (vec![0f32; b * 2 * d], vec![0f32; b * 2]);
    let g = grid_shape.map_or(0, |(g, _)| g);
    let m = 2 + g;
    let mut visual_mask = vec![MASKED; b * m];
    let mut grid = grid_shape.map(|(g, v)| (vec![0f32; b * g * v], vec![0f32; b * g]));
    let mut target = vec![0f32; b * d];
    for (row, &(s, held)) in examples.iter().enumerate() {
        let seg = &segments[s];
        let mut k = 0;
        for (i, c) in seg.cues.iter().enumerate() {
            if i == held {
                continue;
            }
            let w = seg.weights.get(i).copied().unwrap_or(1.0);
            let w = if w.is_finite() { w.max(0.0) } else { 0.0 };
            let at = (row * t + k) * d;
            text[at..at + d].copy_from_slice(&normalized(c));
            text_w[row * t + k] = w;
            text_mask[row * t + k] = 0.0;
            k += 1;
        }
        if k > 0 {
            has_text[row] = 1.0;
        } else {
            // Nothing to attend to: an all-masked row would make NaNs (its result is not used).
            text_mask[row * t] = 0.0;
        }
        for (slot, (token, gate)) in [
            (&visual[s].label, params.label_gate),
            (&visual[s].pooled, params.pool_gate),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(token) = token.as_ref().filter(|_| gate > 0.0) {
                let at = (row * 2 + slot) * d;
                fixed[at..at + d].copy_from_slice(token);
                fixed_w[row * 2 + slot] = gate;
                visual_mask[row * m + slot] = 0.0;
            }
        }
        if let (Some((gv, gw)), Some((gt, hidden)), Some(sg)) = (grid.as_mut(), grid_shape, seg.grid.as_ref()) {
            if sg.tokens == gt && sg.hidden == hidden && sg.data.len() == gt * hidden {
                gv[row * gt * hidden..(row + 1) * gt * hidden].copy_from_slice(&sg.data);
                gw[row * gt..(row + 1) * gt].fill(1.0);
                visual_mask[row * m + 2..(row + 1) * m].fill(0.0);
            }
        }
        if visual_mask[row * m..(row + 1) * m].iter().all(|x| *x == MASKED) {
            visual_mask[row * m] = 0.0;
        }
        target[row * d..(row + 1) * d].copy_from_slice(&normalized(&seg.cues[held]));
    }
    let mut duplicates = vec![0f32; b * b];
    for i in 0..b {
        for j in 0..b {
            if i != j && dot(&target[i * d..(i + 1) * d], &target[j * d..(j + 1) * d]) > 0.99 {
                duplicates[i * b + j] = MASKED;
            }
        }
    }
    Ok(Batch {
        text: Tensor::from_vec(text, (b, t, d), &dev)?,
        text_w: Tensor::from_vec(text_w, (b, t), &dev)?,
        text_mask: Tensor::from_vec(text_mask, (b, t), &dev)?,
        has_text: Tensor::from_vec(has_text, (b, 1), &dev)?,
        fixed: Tensor::from_vec(fixed, (b, 2, d), &dev)?,
        fixed_w: Tensor::from_vec(fixed_w, (b, 2), &dev)?,
        grid: match (grid, grid_shape) {
            (Some((gv, gw)), Some((gt, hidden))) => Some((
                Tensor::from_vec(gv, (b, gt, hidden), &dev)?,
                Tensor::from_vec(gw, (b, gt), &dev)?,
            )),
            _ => None,
        },
        visual_mask: Tensor::from_vec(visual_mask, (b, m), &dev)?,
        target: Tensor::from_vec(target, (b, d), &dev)?,
        duplicates: Tensor::from_vec(duplicates, (b, b), &dev)?,
    })
}

fn unit(t: &Tensor) -> candle_core::Result<Tensor> {
    t.broadcast_div(&(t.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?)
}

fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.broadcast_matmul(&w.t()?)?.broadcast_add(b)
}

/// Unit-length weighted mean over dimension 1: `tokens [B, N, D]`, `w [B, N]`.
fn weighted_mean(tokens: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    unit(&tokens.broadcast_mul(&w.unsqueeze(2)?)?.sum(1)?)
}

fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

fn log_sum_exp(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    x.broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .broadcast_add(&max)
}

/// `norm(x + attention(x → ctx))`: `x [B, N, D]`, `ctx [B, M, D]`, `mask [B, M]`.
fn attend(x: &Tensor, ctx: &Tensor, mask: &Tensor, a: &Attention, heads: usize) -> candle_core::Result<Tensor> {
    let (b, n, d) = x.dims3()?;
    let m = ctx.dim(1)?;
    let hd = d / heads;
    let p = |i: usize| a.vars[i].as_tensor();
    let split = |t: Tensor, len: usize| -> candle_core::Result<Tensor> {
        t.reshape((b, len, heads, hd))?.transpose(1, 2)?.contiguous()
    };
    let q = split(linear(x, p(0), p(1))?, n)?;
    let k = split(linear(ctx, p(2), p(3))?, m)?;
    let v = split(linear(ctx, p(4), p(5))?, m)?;
    let logits =
        (q.matmul(&k.transpose(2, 3)?.contiguous()?)? * a.scale)?.broadcast_add(&mask.reshape((b, 1, 1, m))?)?;
    let out = softmax(&logits)?
        .matmul(&v)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, n, d))?;
    let y = (x + linear(&out, p(6), p(7))?)?;
    let mean = y.mean_keepdim(D::Minus1)?;
    let c = y.broadcast_sub(&mean)?;
    let var = c.sqr()?.mean_keepdim(D::Minus1)?;
    c.broadcast_div(&(var + LN_EPS)?.sqrt()?)?
        .broadcast_mul(p(8))?
        .broadcast_add(p(9))
}

/// The fused and visual-only vectors of a batch, `[B, D]` each.
fn forward(p: &Params, b: &Batch) -> candle_core::Result<(Tensor, Tensor)> {
    let (visual, visual_w) = match &b.grid {
        Some((grid, grid_w)) => {
            let gate = p.log_gate.as_tensor().exp()?;
            let tokens = unit(&linear(grid, p.grid_w.as_tensor(), p.grid_b.as_tensor())?)?.broadcast_mul(&gate)?;
            (
                Tensor::cat(&[&b.fixed, &tokens], 1)?,
                Tensor::cat(&[&b.fixed_w, grid_w], 1)?,
            )
        }
        None => (b.fixed.clone(), b.fixed_w.clone()),
    };
    let visual_only = weighted_mean(&visual, &visual_w)?;
    let t_att = attend(&b.text, &visual, &b.visual_mask, &p.t2v, p.heads)?;
    let v_att = attend(&visual, &b.text, &b.text_mask, &p.v2t, p.heads)?;
    let t_pool = weighted_mean(&unit(&t_att)?, &b.text_w)?;
    let v_pool = weighted_mean(&unit(&v_att)?, &visual_w)?;
    let blend = p.blend.as_tensor();
    let mixed = (t_pool.broadcast_mul(&blend.narrow(0, 0, 1)?)? + v_pool.broadcast_mul(&blend.narrow(0, 1, 1)?)?)?;
    let fused_text = unit(&mixed)?;
    let fused = (fused_text.broadcast_mul(&b.has_text)? + visual_only.broadcast_mul(&(1.0 - &b.has_text)?)?)?;
    Ok((fused, visual_only))
}

/// Symmetric InfoNCE of `a [B, D]` against `targets [B, D]`.
fn info_nce(a: &Tensor, targets: &Tensor, duplicates: &Tensor, temperature: f64) -> candle_core::Result<Tensor> {
    let b = a.dim(0)?;
    let logits = ((a.matmul(&targets.t()?)? / temperature)? + duplicates)?;
    let eye = Tensor::eye(b, DType::F32, a.device())?;
    let diag = (&logits * &eye)?.sum_keepdim(1)?;
    let rows = (log_sum_exp(&logits)? - &diag)?.mean_all()?;
    let cols = (log_sum_exp(&logits.t()?.contiguous()?)? - &diag)?.mean_all()?;
    (rows + cols)? / 2.0
}

/// The projected pooled vector and label token of each segment (constants of this stage).
fn visual_constants(base: &FusionModel, segments: &[FusionSegment]) -> Result<Vec<Visual>, FusionError> {
    segments
        .iter()
        .map(|s| {
            Ok(Visual {
                label: s.labels.as_ref().map(|l| normalized(l)),
                pooled: match &s.pooled {
                    Some(p) => base.project_pooled(p)?,
                    None => None,
                },
            })
        })
        .collect()
}

/// The most common grid shape `(tokens, width)` among the segments, when its width is the model's.
fn grid_shape(base: &FusionModel, segments: &[FusionSegment]) -> Option<(usize, usize)> {
    let mut counts: HashMap<(usize, usize), usize> = HashMap::new();
    for g in segments.iter().filter_map(|s| s.grid.as_ref()) {
        if g.hidden == base.config().visual_dim && g.tokens > 0 && g.data.len() == g.tokens * g.hidden {
            *counts.entry((g.tokens, g.hidden)).or_default() += 1;
        }
    }
    counts.into_iter().max_by_key(|(shape, n)| (*n, *shape)).map(|(s, _)| s)
}

/// Trains the grid projection and gate and the cross-attention of `base` on `segments` (the training videos'
/// segments); see the [module documentation](self). `evaluate` scores a candidate on held-out data (higher is
/// better); it is called for `base` first and after every epoch, and the best epoch's weights are returned (even
/// when `base` scored higher: compare [`FusionTrainReport::score_start`] and [`FusionTrainReport::score`]). Fails with [`FusionError::Train`] when no segment
/// has both a cue and a visual token.
///
/// `checkpoint` is `(stem, fingerprint of the data)`: after every epoch `<stem>.safetensors` is written
/// (atomically) with the variables, the optimiser's moments, the best epoch's weights and the position; a run with
/// the same data fingerprint, starting weights and options resumes at the epoch after it. The file is deleted when
/// the run completes and kept when it stops for `max_seconds`.
pub fn train_fusion(
    base: &FusionModel,
    segments: &[FusionSegment],
    opts: &FusionTrainOptions,
    checkpoint: Option<(&Path, &str)>,
    evaluate: &mut dyn FnMut(&FusionModel) -> Result<f64, FusionError>,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<(FusionModel, FusionTrainReport), FusionError> {
    let started = Instant::now();
    if opts.batch < 2
        || !opts.temperature.is_finite()
        || opts.temperature <= 0.0
        || !opts.lr.is_finite()
        || opts.lr <= 0.0
        || !opts.lr_attention.is_finite()
        || opts.lr_attention < 0.0
    {
        return Err(FusionError::Config(
            "stage 2 needs a batch of 2 or more, a positive temperature and learning rate".into(),
        ));
    }
    let d = base.config().text_dim;
    let visual = visual_constants(base, segments)?;
    let shape = grid_shape(base, segments);
    let examples: Vec<(usize, usize)> = segments
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            visual[*i].pooled.is_some()
                || (visual[*i].label.is_some() && base.gates().1 > 0.0)
                || s.grid.as_ref().map(|g| (g.tokens, g.hidden)) == shape && shape.is_some()
        })
        .flat_map(|(i, s)| (0..s.cues.len()).map(move |c| (i, c)))
        .collect();
    if examples.len() < opts.batch {
        return Err(FusionError::Train(format!(
            "{} segment–cue examples with visual features: at least {} are needed",
            examples.len(),
            opts.batch
        )));
    }
    let params = Params::new(base, opts)?;
    let grid_vars = params.grid_vars();
    let all_vars: Vec<Var> = grid_vars.iter().cloned().chain(params.attention_vars()).collect();
    let mut adam = Adam::new(&all_vars)?;

    // A checkpoint of this very run (same data, starting weights and options) is resumed at its epoch.
    let fingerprint = checkpoint.map(|(_, data)| {
        format!(
            "stage2-v1:{data}:{}:{}:{}",
            base.version(),
            examples.len(),
            serde_json::to_string(opts).unwrap_or_default()
        )
    });
    let saved = match (checkpoint, &fingerprint) {
        (Some((stem, _)), Some(f)) => checkpoint::load(stem, f, &all_vars),
        _ => None,
    };
    let (mut meta, mut best): (Meta, Option<Best>) = match saved {
        Some(saved) => {
            for (v, x) in all_vars.iter().zip(&saved.vars) {
                v.set(x)?;
            }
            adam = saved.adam;
            tracing::info!(epoch = saved.meta.epoch, "stage 2 resumes from its checkpoint");
            let best = best_from(base, saved.best, &saved.meta)?;
            (saved.meta, best)
        }
        None => (
            Meta {
                fingerprint: fingerprint.clone().unwrap_or_default(),
                epoch: 0,
                step: 0,
                best_epoch: None,
                best_score: f64::NEG_INFINITY,
                score_start: evaluate(base)?,
                since_best: 0,
                first_loss: f64::NAN,
                final_loss: f64::NAN,
            },
            None,
        ),
    };
    let resumed_from_epoch = (meta.epoch > 0).then_some(meta.epoch);
    let lr_of: Vec<f64> = (0..all_vars.len())
        .map(|i| {
            if i < grid_vars.len() {
                opts.lr
            } else {
                opts.lr_attention
            }
        })
        .collect();
    let steps_per_epoch = examples.len().div_ceil(opts.batch);
    let total = (steps_per_epoch * opts.epochs).max(1);
    let mut stopped_by_time = false;
    let mut epochs_run = meta.epoch;
    for epoch in meta.epoch..opts.epochs {
        let mut order = examples.clone();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            opts.seed ^ (epoch as u64 + 1).wrapping_mul(0x9e37_79b9),
        ));
        let mut losses = Vec::new();
        let mut step = meta.step;
        for chunk in order.chunks(opts.batch) {
            if chunk.len() < 2 {
                continue;
            }
            let batch = build_batch(segments, &visual, chunk, d, shape, &params)?;
            let (fused, visual_only) = forward(&params, &batch)?;
            let loss = (info_nce(&fused, &batch.target, &batch.duplicates, opts.temperature)?
                + info_nce(&visual_only, &batch.target, &batch.duplicates, opts.temperature)?)?;
            let mut grads = loss.backward()?;
            let mut norm2 = 0f64;
            for v in &all_vars {
                if let Some(g) = grads.get(v.as_tensor()) {
                    norm2 += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                }
            }
            let norm = norm2.sqrt();
            if opts.clip_norm > 0.0 && norm > opts.clip_norm {
                let s = opts.clip_norm / norm;
                for v in &all_vars {
                    if let Some(g) = grads.remove(v.as_tensor()) {
                        grads.insert(v.as_tensor(), (g * s)?);
                    }
                }
            }
            step += 1;
            let factor = schedule(step, opts.warmup_steps, total);
            let lr: Vec<f64> = lr_of.iter().map(|l| l * factor).collect();
            adam.step(&all_vars, &grads, &lr, opts.weight_decay)?;
            let l = loss.to_scalar::<f32>()? as f64;
            losses.push(l);
            progress(epoch, step, l);
            if opts.max_seconds.is_some_and(|s| started.elapsed().as_secs_f64() > s) {
                stopped_by_time = true;
                break;
            }
        }
        if stopped_by_time {
            // The last checkpoint (an epoch's end) stays for the next run.
            break;
        }
        epochs_run = epoch + 1;
        let mean = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
        if epoch == 0 {
            meta.first_loss = mean;
        }
        meta.final_loss = mean;
        meta.step = step;
        meta.epoch = epoch + 1;
        let tensors = params.export()?;
        let candidate = base.with_tensors(tensors.clone())?;
        let score = evaluate(&candidate)?;
        tracing::debug!(epoch, score, loss = mean, "fusion stage 2");
        if meta.best_epoch.is_none() || score > meta.best_score {
            best = Some((candidate, tensors));
            meta.best_score = score;
            meta.best_epoch = Some(epoch + 1);
            meta.since_best = 0;
        } else {
            meta.since_best += 1;
        }
        if let Some((stem, _)) = checkpoint {
            checkpoint::save(stem, &meta, &all_vars, &adam, best.as_ref().map(|(_, t)| t))?;
        }
        if opts.patience > 0 && meta.since_best >= opts.patience {
            break;
        }
    }
    if let Some((stem, _)) = checkpoint.filter(|_| !stopped_by_time) {
        checkpoint::remove(stem);
    }
    let (model, score, best_epoch) = match best {
        Some((m, _)) => (m, meta.best_score, meta.best_epoch.unwrap_or(0)),
        None => (base.with_tensors(HashMap::new())?, meta.score_start, 0),
    };
    Ok((
        model,
        FusionTrainReport {
            examples: examples.len(),
            steps: meta.step,
            epochs_run,
            best_epoch,
            score_start: meta.score_start,
            score,
            first_loss: meta.first_loss,
            final_loss: meta.final_loss,
            stopped_by_time,
            resumed_from_epoch,
            seconds: started.elapsed().as_secs_f64(),
        },
    ))
}

/// The best epoch's weights, as a model and as its trained tensors.
type Best = (FusionModel, HashMap<String, Tensor>);

/// The best epoch's weights of a saved run.
fn best_from(base: &FusionModel, best: HashMap<String, Tensor>, meta: &Meta) -> Result<Option<Best>, FusionError> {
    if meta.best_epoch.is_none() || best.is_empty() {
        return Ok(None);
    }
    Ok(Some((base.with_tensors(best.clone())?, best)))
}

/// Linear warm-up, then cosine decay to 10 %.
fn schedule(step: usize, warmup: usize, total: usize) -> f64 {
    if warmup > 0 && step <= warmup {
        return step as f64 / warmup as f64;
    }
    let t = (step.saturating_sub(warmup)) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// Held-out cue recall of `model`: each cue of a segment marked in `queries` (with at least one other cue) is
/// held out of its segment, the segment fused from what remains; the cue as a query must rank that vector above
/// the fused vectors of every other segment (all of `segments`, fused whole) that does not hold the same text
/// (cosine > 0.99; those are left out). Ties count against. Returns (recall@1, recall@5, queries).
pub fn held_out_cue_recall(
    model: &FusionModel,
    segments: &[&FusionSegment],
    queries: &[bool],
) -> Result<(f64, f64, usize), FusionError> {
    let whole: Vec<Option<Vec<f32>>> = segments
        .iter()
        .map(|s| match model.fuse(&s.inputs(None)) {
            Ok(f) => Ok(Some(f.fused)),
            Err(FusionError::NothingToFuse) => Ok(None),
            Err(e) => Err(e),
        })
        .collect::<Result<_, FusionError>>()?;
    let (mut hit1, mut hit5, mut n) = (0usize, 0usize, 0usize);
    for (i, seg) in segments.iter().enumerate() {
        if !queries.get(i).copied().unwrap_or(false) || seg.cues.len() < 2 {
            continue;
        }
        for (j, q) in seg.cues.iter().enumerate() {
            let own = match model.fuse(&seg.inputs(Some(j))) {
                Ok(f) => dot(q, &f.fused),
                Err(FusionError::NothingToFuse) => continue,
                Err(e) => return Err(e),
            };
            let rank = 1 + segments
                .iter()
                .zip(&whole)
                .enumerate()
                .filter(|(k, (other, v))| {
                    *k != i
                        && v.as_ref().is_some_and(|v| dot(q, v) >= own)
                        && !other.cues.iter().any(|c| dot(c, q) > 0.99)
                })
                .count();
            n += 1;
            hit1 += usize::from(rank == 1);
            hit5 += usize::from(rank <= 5);
        }
    }
    if n == 0 {
        return Ok((0.0, 0.0, 0));
    }
    Ok((hit1 as f64 / n as f64, hit5 as f64 / n as f64, n))
}

#[cfg(test)]
#[path = "train_fusion_tests.rs"]
mod tests;

/// Stage 2's checkpoint reader, for the hostile-input tests (`crate::fuzz_tests`): whether the checkpoint at `stem`
/// is one of `fingerprint` with variables shaped like `vars`, and usable.
#[cfg(test)]
pub(crate) fn read_checkpoint(stem: &Path, fingerprint: &str, vars: &[Var]) -> bool {
    checkpoint::load(stem, fingerprint, vars).is_some()
}
