//! Stage 2's optimiser (AdamW over candle variables, its moments kept so a run can be saved) and its checkpoint:
//! one safetensors file holding the variables, the moments, the best epoch's weights and the run's position (as a
//! JSON byte tensor), written beside and renamed into place, so a kill leaves either the old file or the new one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::FusionError;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// AdamW with decoupled weight decay; each variable has its own learning-rate multiplier.
pub(super) struct Adam {
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    pub t: usize,
}

impl Adam {
    pub fn new(vars: &[Var]) -> Result<Self, FusionError> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(Self {
            m: vars.iter().map(zeros).collect::<Result<_, _>>()?,
            v: vars.iter().map(zeros).collect::<Result<_, _>>()?,
            t: 0,
        })
    }

    /// One step: `lr[i]` is variable `i`'s learning rate.
    pub fn step(&mut self, vars: &[Var], grads: &GradStore, lr: &[f64], wd: f64) -> Result<(), FusionError> {
        self.t += 1;
        let (c1, c2) = (1.0 - BETA1.powi(self.t as i32), 1.0 - BETA2.powi(self.t as i32));
        for (i, var) in vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            self.m[i] = ((&self.m[i] * BETA1)? + (g * (1.0 - BETA1))?)?;
            self.v[i] = ((&self.v[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let update = ((&self.m[i] / c1)? / ((&self.v[i] / c2)?.sqrt()? + EPS)?)?;
            let next = ((var.as_tensor() * (1.0 - lr[i] * wd))? - (update * lr[i])?)?;
            var.set(&next)?;
        }
        Ok(())
    }
}

/// Where a stage-2 run is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct Meta {
    pub fingerprint: String,
    /// The next epoch to run.
    pub epoch: usize,
    pub step: usize,
    pub best_epoch: Option<usize>,
    pub best_score: f64,
    pub score_start: f64,
    pub since_best: usize,
    pub first_loss: f64,
    pub final_loss: f64,
}

/// A saved run.
pub(super) struct Saved {
    pub meta: Meta,
    pub vars: Vec<Tensor>,
    pub adam: Adam,
    pub best: HashMap<String, Tensor>,
}

pub(super) fn path(stem: &Path) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(".safetensors");
    PathBuf::from(s)
}

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> FusionError {
    FusionError::Train(format!("{what} {}: {e}", path.display()))
}

/// Writes the run atomically.
pub(super) fn save(
    stem: &Path,
    meta: &Meta,
    vars: &[Var],
    adam: &Adam,
    best: Option<&HashMap<String, Tensor>>,
) -> Result<(), FusionError> {
    let file = path(stem);
    let mut t: HashMap<String, Tensor> = HashMap::new();
    for (i, v) in vars.iter().enumerate() {
        t.insert(format!("var.{i}"), v.as_tensor().copy()?);
        t.insert(format!("adam_m.{i}"), adam.m[i].clone());
        t.insert(format!("adam_v.{i}"), adam.v[i].clone());
    }
    for (name, x) in best.into_iter().flatten() {
        t.insert(format!("best.{name}"), x.clone());
    }
    let json = serde_json::to_vec(&(meta, adam.t)).map_err(|e| err("cannot encode", &file, e))?;
    let n = json.len();
    t.insert("meta".into(), Tensor::from_vec(json, n, &Device::Cpu)?);
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    candle_core::safetensors::save(&t, &tmp).map_err(|e| err("cannot write checkpoint", &tmp, e))?;
    std::fs::rename(&tmp, &file).map_err(|e| err("cannot rename checkpoint", &file, e))
}

/// Reads a saved run of this `fingerprint` with variables shaped like `vars`; `None` when there is none, it is
/// another run's, or it cannot be used (logged: training starts afresh).
pub(super) fn load(stem: &Path, fingerprint: &str, vars: &[Var]) -> Option<Saved> {
    let file = path(stem);
    if !file.is_file() {
        return None;
    }
    let read = || -> Result<Option<Saved>, FusionError> {
        let t = crate::model::read_safetensors_file(&file).map_err(|e| err("unreadable", &file, e))?;
        let meta_bytes = t
            .get("meta")
            .ok_or_else(|| err("no meta in", &file, "checkpoint"))?
            .to_dtype(DType::U8)?
            .to_vec1::<u8>()?;
        let (meta, adam_t): (Meta, usize) =
            serde_json::from_slice(&meta_bytes).map_err(|e| err("unreadable meta in", &file, e))?;
        if meta.fingerprint != fingerprint {
            return Ok(None);
        }
        let get = |name: String, like: &Var| -> Result<Tensor, FusionError> {
            let x = t.get(&name).ok_or_else(|| err("checkpoint lacks", &file, &name))?;
            if x.dims() != like.as_tensor().dims() {
                return Err(err("wrong shape in", &file, &name));
            }
            Ok(x.clone())
        };
        let mut adam = Adam {
            m: Vec::new(),
            v: Vec::new(),
            t: adam_t,
        };
        let mut saved_vars = Vec::new();
        for (i, v) in vars.iter().enumerate() {
            saved_vars.push(get(format!("var.{i}"), v)?);
            adam.m.push(get(format!("adam_m.{i}"), v)?);
            adam.v.push(get(format!("adam_v.{i}"), v)?);
        }
        let best = t
            .iter()
            .filter_map(|(k, x)| k.strip_prefix("best.").map(|n| (n.to_string(), x.clone())))
            .collect();
        Ok(Some(Saved {
            meta,
            vars: saved_vars,
            adam,
            best,
        }))
    };
    match read() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{e}: stage 2 starts afresh");
            None
        }
    }
}

/// Deletes the checkpoint (a missing one is fine).
pub(super) fn remove(stem: &Path) {
    let file = path(stem);
    if let Err(e) = std::fs::remove_file(&file) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %file.display(), error = %e, "cannot delete the stage-2 checkpoint");
        }
    }
}
