//! The trainer's state: a small seedable random generator, the AdamW optimiser and the checkpoint files.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{TrainOptions, TrainVideo};
use crate::FusionError;

/// SplitMix64: tiny, seedable, and its whole state is one `u64` (so a checkpoint can hold it).
#[derive(Debug, Clone)]
pub(super) struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn gaussian(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A uniformly shuffled `0..n` (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            p.swap(i, j);
        }
        p
    }
}

/// The SplitMix64 finaliser: a good 64-bit mixer.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, fed incrementally.
#[derive(Debug, Clone)]
pub(super) struct Hasher(u64);

impl Hasher {
    pub fn new() -> Self {
        Self(0xCBF2_9CE4_8422_2325)
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        for &x in b {
            self.0 = (self.0 ^ x as u64).wrapping_mul(0x0000_0100_0000_01B3);
        }
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn finish(&self) -> u64 {
        mix(self.0)
    }
}

/// AdamW over flat parameter vectors, with decoupled weight decay on the ones marked for it.
#[derive(Debug, Clone)]
pub(super) struct AdamW {
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    pub t: usize,
}

pub(super) const BETA1: f64 = 0.9;
pub(super) const BETA2: f64 = 0.999;
pub(super) const EPS: f64 = 1e-8;

impl AdamW {
    pub fn new(sizes: &[usize]) -> Self {
        Self {
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            t: 0,
        }
    }

    /// One update of `params[k]` by `grads[k]` at learning rate `lr`; `decay[k]` says whether weight decay applies.
    pub fn step(&mut self, params: &mut [&mut Vec<f32>], grads: &[Vec<f32>], decay: &[bool], lr: f64, wd: f64) {
        self.t += 1;
        let c1 = 1.0 - BETA1.powi(self.t as i32);
        let c2 = 1.0 - BETA2.powi(self.t as i32);
        let (b1, b2) = (BETA1 as f32, BETA2 as f32);
        for (k, p) in params.iter_mut().enumerate() {
            let (m, v, g) = (&mut self.m[k], &mut self.v[k], &grads[k]);
            let shrink = if decay[k] { (1.0 - lr * wd) as f32 } else { 1.0 };
            let step = (lr / c1) as f32;
            let c2s = c2.sqrt() as f32;
            for i in 0..p.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                p[i] = p[i] * shrink - step * m[i] / (v[i].sqrt() / c2s + EPS as f32);
            }
        }
    }
}

/// Linear warm-up for `warmup` steps, then cosine decay to 10 % of `lr` at `total` steps. `step` is 1-based.
pub(super) fn learning_rate(lr: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if warmup > 0 && step <= warmup {
        return lr * step as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step.saturating_sub(warmup)) as f64 / span).clamp(0.0, 1.0);
    lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

/// A fingerprint of the data and options a run trains on: a checkpoint is resumed only under the same one.
pub(super) fn fingerprint(videos: &[TrainVideo], opts: &TrainOptions, init: Option<&super::Projection>) -> String {
    let mut h = Hasher::new();
    let (mut frames, mut cues) = (0usize, 0usize);
    for v in videos {
        h.u64(v.id.len() as u64).bytes(v.id.as_bytes());
        h.u64(v.frames.len() as u64);
        for f in &v.frames {
            h.u64(f.pts_ms as u64);
        }
        h.u64(v.cues.len() as u64);
        for c in &v.cues {
            h.u64(c.start_ms as u64).u64(c.end_ms as u64);
        }
        h.u64(v.negatives.len() as u64);
        for c in &v.negatives {
            h.u64(c.start_ms as u64).u64(c.end_ms as u64);
        }
        frames += v.frames.len();
        cues += v.cues.len();
    }
    // The time limit may change between runs without invalidating the checkpoint.
    let opts = TrainOptions {
        max_seconds: None,
        ..opts.clone()
    };
    let mut o = Hasher::new();
    o.bytes(serde_json::to_string(&opts).unwrap_or_default().as_bytes());
    if let Some(p) = init {
        for x in p.weight.iter().chain(&p.bias) {
            o.u64(x.to_bits() as u64);
        }
    }
    format!(
        "videos={} frames={frames} cues={cues} data={:016x} options={:016x}",
        videos.len(),
        h.finish(),
        o.finish()
    )
}

/// What a checkpoint's JSON file holds (the tensors are in the safetensors file beside it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Meta {
    pub format: String,
    pub fingerprint: String,
    /// Optimiser steps taken.
    pub step: usize,
    /// The epoch to continue in, and the position in its shuffled order.
    pub epoch: usize,
    pub position: usize,
    pub seed: u64,
    pub best_recall: Option<f64>,
    pub best_step: usize,
    pub recall_start: Option<f64>,
    pub evals_without_improvement: usize,
    pub last_loss: f64,
}

pub(super) const FORMAT: &str = "kino-train-checkpoint-v1";

/// The trainer's full state, in the standardised input space.
#[derive(Debug, Clone)]
pub(super) struct State {
    pub meta: Meta,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub adam: AdamW,
    pub best_weight: Vec<f32>,
    pub best_bias: Vec<f32>,
}

fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = stem.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The two files of a checkpoint: `<stem>.safetensors` and `<stem>.json`.
pub(super) fn paths(stem: &Path) -> (PathBuf, PathBuf) {
    (with_suffix(stem, ".safetensors"), with_suffix(stem, ".json"))
}

fn train_err(what: &str, path: &Path, e: impl std::fmt::Display) -> FusionError {
    FusionError::Train(format!("{what} {}: {e}", path.display()))
}

/// Writes the checkpoint atomically: each file goes to a temporary name first and is renamed into place, the
/// tensors before the JSON (which names the step the tensors must also hold).
pub(super) fn save(stem: &Path, state: &State, d: usize, v: usize) -> Result<(), FusionError> {
    let (st_path, json_path) = paths(stem);
    let dev = Device::Cpu;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let mut put = |name: &str, data: &[f32], shape: &[usize]| -> Result<(), FusionError> {
        t.insert(name.to_string(), Tensor::from_slice(data, shape, &dev)?);
        Ok(())
    };
    put("weight", &state.weight, &[d, v])?;
    put("bias", &state.bias, &[d])?;
    put("adam_m.weight", &state.adam.m[0], &[d, v])?;
    put("adam_v.weight", &state.adam.v[0], &[d, v])?;
    put("adam_m.bias", &state.adam.m[1], &[d])?;
    put("adam_v.bias", &state.adam.v[1], &[d])?;
    put("best.weight", &state.best_weight, &[d, v])?;
    put("best.bias", &state.best_bias, &[d])?;
    // The step as two exact u32 halves, to tie the tensors to the JSON.
    t.insert(
        "step".into(),
        Tensor::from_slice(&[state.meta.step as u32, (state.meta.step >> 32) as u32], 2, &dev)?,
    );
    let tmp = with_suffix(&st_path, ".tmp");
    candle_core::safetensors::save(&t, &tmp).map_err(|e| train_err("cannot write checkpoint", &tmp, e))?;
    std::fs::rename(&tmp, &st_path).map_err(|e| train_err("cannot rename checkpoint", &st_path, e))?;
    let tmp = with_suffix(&json_path, ".tmp");
    let json = serde_json::to_vec_pretty(&state.meta).map_err(|e| train_err("cannot encode checkpoint", &tmp, e))?;
    std::fs::write(&tmp, json).map_err(|e| train_err("cannot write checkpoint", &tmp, e))?;
    std::fs::rename(&tmp, &json_path).map_err(|e| train_err("cannot rename checkpoint", &json_path, e))?;
    Ok(())
}

/// Reads a checkpoint. `Ok(None)` when there is none, when it belongs to other data or options, and when it cannot
/// be used (unreadable, its two files from different steps after a kill between their renames, wrong shapes): a
/// checkpoint only saves time, so a broken one is reported in the log and training starts afresh.
pub(super) fn load(stem: &Path, fingerprint: &str, d: usize, v: usize) -> Result<Option<State>, FusionError> {
    match load_checked(stem, fingerprint, d, v) {
        Ok(s) => Ok(s),
        Err(e) => {
            tracing::warn!("{e}; training starts afresh");
            remove(stem);
            Ok(None)
        }
    }
}

pub(super) fn load_checked(stem: &Path, fingerprint: &str, d: usize, v: usize) -> Result<Option<State>, FusionError> {
    let (st_path, json_path) = paths(stem);
    let Ok(text) = std::fs::read(&json_path) else {
        return Ok(None);
    };
    let meta: Meta = match serde_json::from_slice(&text) {
        Ok(m) => m,
        Err(e) => return Err(train_err("unreadable checkpoint", &json_path, e)),
    };
    if meta.format != FORMAT || meta.fingerprint != fingerprint {
        tracing::info!(path = %json_path.display(), "checkpoint is for other data or options: starting afresh");
        return Ok(None);
    }
    let t =
        crate::model::read_safetensors_file(&st_path).map_err(|e| train_err("unreadable checkpoint", &st_path, e))?;
    let get = |name: &str, len: usize| -> Result<Vec<f32>, FusionError> {
        let x = t
            .get(name)
            .ok_or_else(|| train_err("checkpoint lacks", &st_path, name))?;
        let x = x.flatten_all()?.to_vec1::<f32>()?;
        if x.len() != len {
            return Err(train_err("checkpoint tensor of the wrong size in", &st_path, name));
        }
        Ok(x)
    };
    let step_parts = t
        .get("step")
        .ok_or_else(|| train_err("checkpoint lacks", &st_path, "step"))?
        .to_vec1::<u32>()?;
    let step =
        step_parts.first().copied().unwrap_or(0) as usize | (step_parts.get(1).copied().unwrap_or(0) as usize) << 32;
    if step != meta.step {
        return Err(train_err(
            "checkpoint halves disagree (interrupted while saving)",
            &st_path,
            format!("tensors at step {step}, JSON at step {}", meta.step),
        ));
    }
    let adam = AdamW {
        m: vec![get("adam_m.weight", d * v)?, get("adam_m.bias", d)?],
        v: vec![get("adam_v.weight", d * v)?, get("adam_v.bias", d)?],
        t: meta.step,
    };
    Ok(Some(State {
        weight: get("weight", d * v)?,
        bias: get("bias", d)?,
        adam,
        best_weight: get("best.weight", d * v)?,
        best_bias: get("best.bias", d)?,
        meta,
    }))
}

/// Deletes a checkpoint's files (those that exist).
pub(super) fn remove(stem: &Path) {
    let (a, b) = paths(stem);
    for p in [b, a] {
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %p.display(), error = %e, "cannot delete the training checkpoint");
            }
        }
    }
}

/// Takes a held-out recall@1 into account: later weights win ties; only a gain above 1e-9 resets the patience.
pub(super) fn record_eval(st: &mut State, r: f64) {
    let best = st.meta.best_recall.unwrap_or(f64::NEG_INFINITY);
    if r >= best - 1e-9 {
        st.best_weight.clone_from(&st.weight);
        st.best_bias.clone_from(&st.bias);
        st.meta.best_step = st.meta.step;
    }
    if r > best + 1e-9 {
        st.meta.best_recall = Some(r);
        st.meta.evals_without_improvement = 0;
    } else {
        st.meta.evals_without_improvement += 1;
    }
}
