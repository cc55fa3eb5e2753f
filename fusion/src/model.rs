//! The cross-attention fusion module (candle).
//!
//! Per segment the inputs are:
//! * **text tokens**: the embeddings of the cues that fall into the segment, each with its overlap weight;
//! * **visual tokens**: the embedding of the segment's label text ("tabby cat, sofa", embedded by the caller with
//!   the text encoder) and the frames' token grids, averaged over the segment's frames per grid position and
//!   projected into the text space by `grid_proj`.
//!
//! Text tokens attend over the visual tokens and visual tokens attend back (multi-head cross-attention, each
//! direction with its own query/key/value/output projections), each followed by a residual connection and a layer
//! norm. The attended tokens are mean-pooled per side (text tokens by their cue weight) and blended into **one fused
//! vector** in the text encoder's space. Beside it the model keeps the **text-only** vector (weighted mean of the
//! raw cue embeddings) and the **visual-only** vector (mean of the raw visual tokens); all three are unit length.
//!
//! # Default weights ([`FusionModel::identity`])
//!
//! Before any training the module must already be useful, so its default weights are chosen, not random:
//! * every query/key/value/output projection is the identity with zero bias, and every layer norm has gain 1 and
//!   bias 0;
//! * the attention logit scale is `10 × heads` (tensor `*.logit_scale`), so that for unit-length tokens each head's
//!   logits are on average ten times the cosine similarity of the two tokens: a text token attends mostly to
//!   the visual tokens closest to it in meaning;
//! * `grid_proj` is the identity on the first `min(text_dim, visual_dim)` dimensions, but `grid_gate` is 0: raw
//!   Swin grid features do not live in the text encoder's space, so until a trained head supplies a projection
//!   (and a non-zero gate) the grid tokens are left out and the visual concepts enter through the label text;
//! * `blend = [1, 1]`: the pooled text side and the pooled visual side (each unit length) weigh the same;
//! * `pool_proj` is zero and `pool_gate` 0, `label_gate` 1: the frames' pooled Swin vector is not used, the label
//!   embedding is the visual side.
//!
//! # Trained weights
//!
//! `kino train` learns `pool_proj` (the pooled Swin vector of a segment's frames → the text space) from the time
//! alignment of frames with the text said and shown at that moment, opens `pool_gate` and sets `label_gate` to what
//! worked best on held-out videos (see [`crate::train`]). The projected pooled vector is then one more visual token:
//! it takes part in the cross-attention and in the visual-only vector, weighted by its gate, so a segment with no
//! words at all is found by what it shows.
//!
//! Under these weights the fused vector is a relevance-weighted blend of what is said and what is seen: each cue
//! moves towards the visual concepts related to it, the label embedding towards the cues related to it.
//!
//! # Weights file
//!
//! [`FusionModel::load`] reads a safetensors file with the tensors below (`D` = text_dim, `V` = visual_dim); a
//! trained head replaces the default without code changes. `grid_gate`, `blend`, the `logit_scale`s and the
//! `pool_*`/`label_gate` tensors may be left out and then take the defaults above.
//!
//! | tensor | shape |
//! | --- | --- |
//! | `grid_proj.weight`, `grid_proj.bias` | `[D, V]`, `[D]` |
//! | `grid_gate` | `[1]` |
//! | `pool_proj.weight`, `pool_proj.bias` | `[D, V]`, `[D]` |
//! | `pool_gate`, `label_gate` | `[1]`, `[1]` |
//! | `blend` | `[2]` (text side, visual side) |
//! | `{t2v,v2t}.{q,k,v,o}_proj.weight`, `….bias` | `[D, D]`, `[D]` |
//! | `{t2v,v2t}.norm.weight`, `….bias` | `[D]` |
//! | `{t2v,v2t}.logit_scale` | `[1]` |

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, Linear};

use crate::vecmath::normalize;
use crate::FusionError;

const LN_EPS: f64 = 1e-5;
const VERSION_PREFIX: &str = "kino-fusion-xattn-v1";

/// Shapes of the fusion module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FusionConfig {
    /// Width of the text encoder's embeddings (384 for all-MiniLM-L6-v2); the fused vector has this width.
    pub text_dim: usize,
    /// Width of a visual grid token (768 for Swin-tiny's last stage).
    pub visual_dim: usize,
    /// Number of attention heads; must divide `text_dim`.
    pub heads: usize,
}

impl FusionConfig {
    fn validate(&self) -> Result<(), FusionError> {
        if self.text_dim == 0 || self.visual_dim == 0 || self.text_dim.checked_rem(self.heads) != Some(0) {
            return Err(FusionError::Config(format!(
                "text_dim ({}) and visual_dim ({}) must be positive and heads ({}) must divide text_dim",
                self.text_dim, self.visual_dim, self.heads
            )));
        }
        Ok(())
    }
}

/// One frame's token grid, row-major `tokens × hidden`.
#[derive(Debug, Clone, PartialEq)]
pub struct VisualGrid {
    /// Number of tokens.
    pub tokens: usize,
    /// Width of a token.
    pub hidden: usize,
    /// `tokens × hidden` values.
    pub data: Vec<f32>,
}

/// What the fusion module needs for one segment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentInputs {
    /// Embeddings of the segment's cues (text space).
    pub text: Vec<Vec<f32>>,
    /// Weight of each cue (its share inside the segment); empty means all 1.
    pub text_weights: Vec<f32>,
    /// Token grids of the segment's frames (all the same shape).
    pub grids: Vec<VisualGrid>,
    /// Embedding of the segment's label text (text space), when it has tags.
    pub labels: Option<Vec<f32>>,
    /// Mean of the frames' pooled visual vectors (width `visual_dim`), when the segment has frames with features.
    pub pooled: Option<Vec<f32>>,
}

/// The vectors of one segment, all unit length, in the text encoder's space.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedSegment {
    /// The fused vector.
    pub fused: Vec<f32>,
    /// Text only: the weighted mean of the cue embeddings (`None` without cues).
    pub text: Option<Vec<f32>>,
    /// Visual only: the mean of the visual tokens (`None` without any).
    pub visual: Option<Vec<f32>>,
}

struct CrossAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norm: LayerNorm,
    logit_scale: f64,
    heads: usize,
}

impl CrossAttention {
    /// `x`: `[n, D]` queries, `ctx`: `[m, D]` keys and values; returns `norm(x + attention)`.
    fn forward(&self, x: &Tensor, ctx: &Tensor) -> candle_core::Result<Tensor> {
        let (n, d) = x.dims2()?;
        let m = ctx.dim(0)?;
        let hd = d / self.heads;
        let split = |t: Tensor, len: usize| -> candle_core::Result<Tensor> {
            t.reshape((len, self.heads, hd))?.transpose(0, 1)?.contiguous()
        };
        let q = split(self.q.forward(x)?, n)?;
        let k = split(self.k.forward(ctx)?, m)?;
        let v = split(self.v.forward(ctx)?, m)?;
        let logits = (q.matmul(&k.t()?)? * self.logit_scale)?;
        let att = candle_nn::ops::softmax_last_dim(&logits)?;
        let out = att.matmul(&v)?.transpose(0, 1)?.contiguous()?.reshape((n, d))?;
        let out = self.o.forward(&out)?;
        self.norm.forward(&(x + out)?)
    }
}

/// The fusion module. Cheap to share: fusion of one segment takes well under a millisecond.
pub struct FusionModel {
    config: FusionConfig,
    grid_proj: Linear,
    grid_gate: f32,
    pool_proj: Linear,
    pool_gate: f32,
    label_gate: f32,
    blend: [f32; 2],
    t2v: CrossAttention,
    v2t: CrossAttention,
    tensors: HashMap<String, Tensor>,
    version: String,
}

impl std::fmt::Debug for FusionModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusionModel")
            .field("config", &self.config)
            .field("version", &self.version)
            .finish()
    }
}

/// Reads every tensor of a safetensors file (onto the CPU), as `candle_core::safetensors::load_buffer` does, but
/// refuses a shape whose dimensions multiply past `usize::MAX`: candle 0.11 computes element counts and strides
/// without overflow checks, so an empty tensor with a huge dimension such as `[0, 2^64 - 1, 2]` (which
/// safetensors accepts: it holds no bytes) panics where overflow is checked and gets wrapped strides elsewhere.
pub(crate) fn read_safetensors(bytes: &[u8]) -> candle_core::Result<HashMap<String, Tensor>> {
    use candle_core::safetensors::Load;
    let file = candle_core::safetensors::SliceSafetensors::new(bytes)?;
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let shape = view.shape();
            // Zero dimensions aside, every partial product (candle's strides) is at most the full one.
            let fits = shape
                .iter()
                .filter(|&&d| d != 0)
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .is_some();
            if !fits {
                candle_core::bail!("tensor {name}: shape {shape:?} is too large");
            }
            Ok((name, view.load(&Device::Cpu)?))
        })
        .collect()
}

/// [`read_safetensors`] of the file at `path`.
pub(crate) fn read_safetensors_file(path: &Path) -> candle_core::Result<HashMap<String, Tensor>> {
    read_safetensors(&std::fs::read(path)?)
}

fn identity_weights(cfg: &FusionConfig) -> candle_core::Result<HashMap<String, Tensor>> {
    let dev = Device::Cpu;
    let (d, v) = (cfg.text_dim, cfg.visual_dim);
    let mut t = HashMap::new();
    let mut proj = vec![0f32; d * v];
    for i in 0..d.min(v) {
        proj[i * v + i] = 1.0;
    }
    t.insert("grid_proj.weight".to_string(), Tensor::from_vec(proj, (d, v), &dev)?);
    t.insert("grid_proj.bias".to_string(), Tensor::zeros(d, DType::F32, &dev)?);
    t.insert("grid_gate".to_string(), Tensor::new(&[0f32], &dev)?);
    t.insert("pool_proj.weight".to_string(), Tensor::zeros((d, v), DType::F32, &dev)?);
    t.insert("pool_proj.bias".to_string(), Tensor::zeros(d, DType::F32, &dev)?);
    t.insert("pool_gate".to_string(), Tensor::new(&[0f32], &dev)?);
    t.insert("label_gate".to_string(), Tensor::new(&[1f32], &dev)?);
    t.insert("blend".to_string(), Tensor::new(&[1f32, 1.0], &dev)?);
    for side in ["t2v", "v2t"] {
        for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            t.insert(format!("{side}.{p}.weight"), Tensor::eye(d, DType::F32, &dev)?);
            t.insert(format!("{side}.{p}.bias"), Tensor::zeros(d, DType::F32, &dev)?);
        }
        t.insert(format!("{side}.norm.weight"), Tensor::ones(d, DType::F32, &dev)?);
        t.insert(format!("{side}.norm.bias"), Tensor::zeros(d, DType::F32, &dev)?);
        t.insert(
            format!("{side}.logit_scale"),
            Tensor::new(&[10.0 * cfg.heads as f32], &dev)?,
        );
    }
    Ok(t)
}

impl FusionModel {
    /// The documented default weights (see the module docs): identity projections, grid tokens gated off,
    /// text and visual sides blended equally.
    pub fn identity(text_dim: usize, visual_dim: usize, heads: usize) -> Result<Self, FusionError> {
        let config = FusionConfig {
            text_dim,
            visual_dim,
            heads,
        };
        config.validate()?;
        let tensors = identity_weights(&config)?;
        let version = format!("{VERSION_PREFIX}:identity:d{text_dim}-v{visual_dim}-h{heads}");
        Self::from_tensors(config, tensors, version, Path::new("(identity weights)"))
    }

    /// Loads weights from a safetensors file (see the module docs for names and shapes).
    pub fn load(path: &Path, config: FusionConfig) -> Result<Self, FusionError> {
        config.validate()?;
        let err = |message: String| FusionError::Weights {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let loaded = read_safetensors(&bytes).map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let defaults = identity_weights(&config)?;
        let mut tensors = HashMap::new();
        for (name, default) in defaults {
            let optional = name == "grid_gate"
                || name == "blend"
                || name.ends_with("logit_scale")
                || name.starts_with("pool_")
                || name == "label_gate";
            let t = match loaded.get(&name) {
                Some(t) => t.to_dtype(DType::F32).map_err(|e| err(format!("tensor {name}: {e}")))?,
                None if optional => default.clone(),
                None => return Err(err(format!("missing tensor {name}"))),
            };
            if t.dims() != default.dims() {
                return Err(err(format!(
                    "tensor {name} has shape {:?}, expected {:?}",
                    t.dims(),
                    default.dims()
                )));
            }
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            if values.iter().any(|x| !x.is_finite()) {
                return Err(err(format!("tensor {name} holds a non-finite value")));
            }
            tensors.insert(name, t);
        }
        let version = content_version(&tensors)?;
        Self::from_tensors(config, tensors, version, path)
    }

    fn from_tensors(
        config: FusionConfig,
        tensors: HashMap<String, Tensor>,
        version: String,
        path: &Path,
    ) -> Result<Self, FusionError> {
        let get = |name: &str| -> Result<Tensor, FusionError> {
            tensors.get(name).cloned().ok_or_else(|| FusionError::Weights {
                path: PathBuf::from(path),
                message: format!("missing tensor {name}"),
            })
        };
        let scalar = |name: &str| -> Result<Vec<f32>, FusionError> { Ok(get(name)?.to_vec1::<f32>()?) };
        let linear = |prefix: &str| -> Result<Linear, FusionError> {
            Ok(Linear::new(
                get(&format!("{prefix}.weight"))?,
                Some(get(&format!("{prefix}.bias"))?),
            ))
        };
        let attention = |side: &str| -> Result<CrossAttention, FusionError> {
            Ok(CrossAttention {
                q: linear(&format!("{side}.q_proj"))?,
                k: linear(&format!("{side}.k_proj"))?,
                v: linear(&format!("{side}.v_proj"))?,
                o: linear(&format!("{side}.o_proj"))?,
                norm: LayerNorm::new(
                    get(&format!("{side}.norm.weight"))?,
                    get(&format!("{side}.norm.bias"))?,
                    LN_EPS,
                ),
                logit_scale: scalar(&format!("{side}.logit_scale"))?[0] as f64,
                heads: config.heads,
            })
        };
        let blend = scalar("blend")?;
        Ok(Self {
            config,
            grid_proj: linear("grid_proj")?,
            grid_gate: scalar("grid_gate")?[0],
            pool_proj: linear("pool_proj")?,
            pool_gate: scalar("pool_gate")?[0],
            label_gate: scalar("label_gate")?[0],
            blend: [blend[0], blend[1]],
            t2v: attention("t2v")?,
            v2t: attention("v2t")?,
            version,
            tensors,
        })
    }

    /// Writes the weights as a safetensors file that [`load`](Self::load) reads back.
    pub fn save(&self, path: &Path) -> Result<(), FusionError> {
        candle_core::safetensors::save(&self.tensors, path).map_err(|e| FusionError::Weights {
            path: path.to_path_buf(),
            message: format!("cannot write: {e}"),
        })
    }

    /// The shapes.
    pub fn config(&self) -> FusionConfig {
        self.config
    }

    /// Identifies the weights: `kino-fusion-xattn-v1:identity:d384-v768-h4` for the defaults, or
    /// `kino-fusion-xattn-v1:weights:<hash of the tensors>` (the same whether loaded from a file or made in memory
    /// by [`with_pool_projection`](Self::with_pool_projection)); stored with each segment so stale ones can be
    /// re-fused.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the fused vectors depend on the Swin token grids (a trained
    /// head with its grid gate open). When they do not, a segment re-fused
    /// from its stored visual vector (the label embedding) comes out as it
    /// would from the frames.
    pub fn reads_grids(&self) -> bool {
        self.grid_gate > 0.0
    }

    /// Whether the fused vectors depend on the frames' pooled visual vectors (a trained projection with its gate
    /// open): a segment can then only be re-fused from its kept features.
    pub fn reads_pooled(&self) -> bool {
        self.pool_gate > 0.0
    }

    /// The gates: `(pool_gate, label_gate, grid_gate)`.
    pub fn gates(&self) -> (f32, f32, f32) {
        (self.pool_gate, self.label_gate, self.grid_gate)
    }

    /// The pooled projection `(weight [D×V row-major], bias [D])`.
    pub fn pool_projection(&self) -> Result<(Vec<f32>, Vec<f32>), FusionError> {
        let w = self.pool_proj.weight().flatten_all()?.to_vec1::<f32>()?;
        let b = match self.pool_proj.bias() {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; self.config.text_dim],
        };
        Ok((w, b))
    }

    /// These weights with a new pooled projection (`weight`: `D×V` row-major, `bias`: `D`) and gates; the version
    /// names the new tensors.
    pub fn with_pool_projection(
        &self,
        weight: &[f32],
        bias: &[f32],
        pool_gate: f32,
        label_gate: f32,
    ) -> Result<Self, FusionError> {
        let (d, v) = (self.config.text_dim, self.config.visual_dim);
        check_dim("pool_proj.weight", d * v, weight.len())?;
        check_dim("pool_proj.bias", d, bias.len())?;
        if weight.iter().chain(bias).any(|x| !x.is_finite()) || !pool_gate.is_finite() || !label_gate.is_finite() {
            return Err(FusionError::Config("a pooled projection with non-finite values".into()));
        }
        let dev = Device::Cpu;
        let mut tensors = self.tensors.clone();
        tensors.insert(
            "pool_proj.weight".into(),
            Tensor::from_vec(weight.to_vec(), (d, v), &dev)?,
        );
        tensors.insert("pool_proj.bias".into(), Tensor::from_vec(bias.to_vec(), d, &dev)?);
        tensors.insert("pool_gate".into(), Tensor::new(&[pool_gate.max(0.0)], &dev)?);
        tensors.insert("label_gate".into(), Tensor::new(&[label_gate.max(0.0)], &dev)?);
        let version = content_version(&tensors)?;
        Self::from_tensors(self.config, tensors, version, Path::new("(trained weights)"))
    }

    /// One weight tensor by its name in the weights file (see the module docs), `None` for an unknown name.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// These weights with some tensors replaced (names and shapes as in the weights file); the version names the
    /// new tensors. Fails on an unknown name, a wrong shape or a non-finite value.
    pub fn with_tensors(&self, updates: HashMap<String, Tensor>) -> Result<Self, FusionError> {
        let mut tensors = self.tensors.clone();
        for (name, t) in updates {
            let Some(old) = tensors.get(&name) else {
                return Err(FusionError::Config(format!("no fusion tensor is named {name}")));
            };
            if old.dims() != t.dims() {
                return Err(FusionError::Config(format!(
                    "tensor {name} has shape {:?}, expected {:?}",
                    t.dims(),
                    old.dims()
                )));
            }
            let t = t.to_dtype(DType::F32)?;
            if t.flatten_all()?.to_vec1::<f32>()?.iter().any(|x| !x.is_finite()) {
                return Err(FusionError::Config(format!("tensor {name} holds a non-finite value")));
            }
            tensors.insert(name, t);
        }
        let version = content_version(&tensors)?;
        Self::from_tensors(self.config, tensors, version, Path::new("(trained weights)"))
    }

    /// The projection of a pooled visual vector into the text space, unit length (`None` while the gate is shut or
    /// the result is zero).
    pub fn project_pooled(&self, pooled: &[f32]) -> Result<Option<Vec<f32>>, FusionError> {
        if self.pool_gate <= 0.0 {
            return Ok(None);
        }
        check_dim("pooled visual vector", self.config.visual_dim, pooled.len())?;
        let t = Tensor::from_vec(pooled.to_vec(), (1, pooled.len()), &Device::Cpu)?;
        let mut r = rows(&self.pool_proj.forward(&t)?)?.remove(0);
        normalize(&mut r);
        Ok(r.iter().any(|x| *x != 0.0).then_some(r))
    }

    /// Fuses one segment. Fails on vectors of the wrong width, on grids of different shapes, and on a segment
    /// with neither cues nor visual tokens ([`FusionError::NothingToFuse`]).
    pub fn fuse(&self, inputs: &SegmentInputs) -> Result<FusedSegment, FusionError> {
        let d = self.config.text_dim;
        for (i, t) in inputs.text.iter().enumerate() {
            check_dim(&format!("cue embedding {i}"), d, t.len())?;
        }
        if !inputs.text_weights.is_empty() && inputs.text_weights.len() != inputs.text.len() {
            return Err(FusionError::Dimension {
                context: "text_weights (one per cue embedding)".into(),
                expected: inputs.text.len(),
                got: inputs.text_weights.len(),
            });
        }
        let weights: Vec<f32> = if inputs.text_weights.is_empty() {
            vec![1.0; inputs.text.len()]
        } else {
            inputs
                .text_weights
                .iter()
                .map(|w| if w.is_finite() { w.max(0.0) } else { 0.0 })
                .collect()
        };

        // Text tokens, unit length.
        let text_tokens: Vec<Vec<f32>> = inputs.text.iter().map(|t| crate::vecmath::normalized(t)).collect();

        // Visual tokens, each with its weight on the visual side: the label embedding, the projected pooled
        // vector (trained weights), then (when the gate is open) the projected mean grid.
        let mut visual: Vec<(Vec<f32>, f32)> = Vec::new();
        if let Some(l) = &inputs.labels {
            check_dim("label embedding", d, l.len())?;
            if self.label_gate > 0.0 {
                visual.push((crate::vecmath::normalized(l), self.label_gate));
            }
        }
        if let Some(p) = &inputs.pooled {
            if let Some(t) = self.project_pooled(p)? {
                visual.push((t, self.pool_gate));
            }
        }
        if self.grid_gate > 0.0 && !inputs.grids.is_empty() {
            visual.extend(self.grid_tokens(&inputs.grids)?.into_iter().map(|t| (t, 1.0)));
        }
        let (visual_tokens, visual_weights): (Vec<Vec<f32>>, Vec<f32>) =
            visual.into_iter().filter(|(t, _)| t.iter().any(|x| *x != 0.0)).unzip();

        let text_only = weighted_mean(&text_tokens, &weights);
        let visual_only = weighted_mean(&visual_tokens, &visual_weights);

        let fused = match (&text_only, &visual_only) {
            (None, None) => return Err(FusionError::NothingToFuse),
            (Some(t), None) => t.clone(),
            (None, Some(v)) => v.clone(),
            (Some(_), Some(_)) => {
                let dev = Device::Cpu;
                let tt = to_tensor(&text_tokens, d, &dev)?;
                let vt = to_tensor(&visual_tokens, d, &dev)?;
                let t_att = rows(&self.t2v.forward(&tt, &vt)?)?;
                let v_att = rows(&self.v2t.forward(&vt, &tt)?)?;
                let t_norm: Vec<Vec<f32>> = t_att.iter().map(|r| crate::vecmath::normalized(r)).collect();
                let v_norm: Vec<Vec<f32>> = v_att.iter().map(|r| crate::vecmath::normalized(r)).collect();
                let t_pool = weighted_mean(&t_norm, &weights).unwrap_or_else(|| vec![0.0; d]);
                let v_pool = weighted_mean(&v_norm, &visual_weights).unwrap_or_else(|| vec![0.0; d]);
                let mut f: Vec<f32> = t_pool
                    .iter()
                    .zip(&v_pool)
                    .map(|(a, b)| self.blend[0] * a + self.blend[1] * b)
                    .collect();
                normalize(&mut f);
                f
            }
        };
        Ok(FusedSegment {
            fused,
            text: text_only,
            visual: visual_only,
        })
    }

    /// Mean grid over frames, projected into the text space, scaled by the gate: one token per grid position.
    fn grid_tokens(&self, grids: &[VisualGrid]) -> Result<Vec<Vec<f32>>, FusionError> {
        let first = &grids[0];
        check_dim("grid token width", self.config.visual_dim, first.hidden)?;
        let len = first.tokens * first.hidden;
        let mut mean = vec![0f32; len];
        for (i, g) in grids.iter().enumerate() {
            if g.tokens != first.tokens || g.hidden != first.hidden || g.data.len() != len {
                return Err(FusionError::Dimension {
                    context: format!("grid of frame {i} ({}×{}, {} values)", g.tokens, g.hidden, g.data.len()),
                    expected: len,
                    got: g.data.len(),
                });
            }
            mean.iter_mut().zip(&g.data).for_each(|(m, x)| *m += x);
        }
        let n = grids.len() as f32;
        mean.iter_mut().for_each(|m| *m /= n);
        let t = Tensor::from_vec(mean, (first.tokens, first.hidden), &Device::Cpu)?;
        let projected = rows(&self.grid_proj.forward(&t)?)?;
        Ok(projected
            .into_iter()
            .map(|mut r| {
                normalize(&mut r);
                r.iter_mut().for_each(|x| *x *= self.grid_gate);
                r
            })
            .collect())
    }
}

fn check_dim(context: &str, expected: usize, got: usize) -> Result<(), FusionError> {
    if expected != got {
        return Err(FusionError::Dimension {
            context: context.to_string(),
            expected,
            got,
        });
    }
    Ok(())
}

fn to_tensor(rows: &[Vec<f32>], d: usize, dev: &Device) -> candle_core::Result<Tensor> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), d), dev)
}

fn rows(t: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    t.to_vec2::<f32>()
}

/// Unit-length weighted mean of `rows`; `None` when there are no rows or all weights are 0.
fn weighted_mean(rows: &[Vec<f32>], weights: &[f32]) -> Option<Vec<f32>> {
    let total: f32 = weights.iter().sum();
    if rows.is_empty() || total <= 0.0 {
        return None;
    }
    let mut out = vec![0f32; rows[0].len()];
    for (r, w) in rows.iter().zip(weights) {
        out.iter_mut().zip(r).for_each(|(o, x)| *o += w * x);
    }
    normalize(&mut out);
    if out.iter().all(|x| *x == 0.0) {
        return None;
    }
    Some(out)
}

/// The version of a set of tensors: 64-bit FNV-1a over their sorted names and f32 values.
fn content_version(tensors: &HashMap<String, Tensor>) -> Result<String, FusionError> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        eat(name.as_bytes());
        for x in tensors[name].flatten_all()?.to_vec1::<f32>()? {
            eat(&x.to_le_bytes());
        }
    }
    Ok(format!("{VERSION_PREFIX}:weights:{h:016x}"))
}
