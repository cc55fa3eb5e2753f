//! Swin Transformer (v1) in candle, weight-for-weight and op-for-op the
//! Hugging Face transformers `SwinModel` / `SwinForImageClassification`
//! (`transformers/models/swin/modeling_swin.py`; Liu et al., "Swin
//! Transformer: Hierarchical Vision Transformer using Shifted Windows", 2021).
//!
//! Layout: `embeddings` (patch projection, layer norm, optional absolute
//! position embeddings) → `encoder.layers.N` stages of `blocks.M` (window
//! attention with a relative position bias, shifted windows on odd blocks,
//! MLP) each but the last followed by `downsample` (patch merging) →
//! `layernorm` → average pooling → optional `classifier`.
//!
//! Speed notes (CPU): the feature-map padding, cyclic shift and window
//! partition of a block are one `index_select` with a precomputed index (and
//! its inverse one more), as is the strided concatenation of patch merging;
//! the relative position bias and the shifted-window mask are summed into one
//! tensor per block and input size, computed once and cached; q, k and v are one
//! matmul, with the attention scale folded into the query weights.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::{Activation, SwinConfig};
use crate::error::{Result, VisionError};
use crate::ops;

mod cpu;
mod int8;

pub use int8::{bundled_scenes, Accuracy, Calibration, Int8Swin, DEFAULT_PERCENTILE, MIN_COSINE, MIN_TOP5_AGREEMENT};
pub use kino_kernels::ChannelRanges;

/// A linear layer whose weight is kept transposed (`in x out`) for a plain matmul.
#[derive(Debug, Clone)]
struct Linear {
    wt: Tensor,
    b: Option<Tensor>,
}

impl Linear {
    fn load(vb: &VarBuilder, input: usize, output: usize, bias: bool) -> candle_core::Result<Linear> {
        let w = vb.get((output, input), "weight")?;
        let b = if bias { Some(vb.get(output, "bias")?) } else { None };
        Ok(Linear {
            wt: w.t()?.contiguous()?,
            b,
        })
    }

    /// `x` is `(rows, in)`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.matmul(&self.wt)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

#[derive(Debug, Clone)]
struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn load(vb: &VarBuilder, dim: usize, eps: f64) -> candle_core::Result<LayerNorm> {
        Ok(LayerNorm {
            w: vb.get(dim, "weight")?,
            b: vb.get(dim, "bias")?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.w, &self.b, self.eps)
    }
}

/// One Swin block (`SwinLayer` in transformers).
#[derive(Debug)]
struct Block {
    layernorm_before: LayerNorm,
    /// Query, key and value projections fused (`in x 3*dim`); the query part
    /// is pre-multiplied by `head_dim^-0.5`.
    qkv: Linear,
    /// The `(2w-1)^2 x heads` relative position bias table.
    bias_table: Vec<f32>,
    output: Linear,
    layernorm_after: LayerNorm,
    intermediate: Linear,
    mlp_out: Linear,
    heads: usize,
    /// Shift the config asks for (0 on even blocks, `window/2` on odd ones).
    shift: usize,
}

/// A checked pixel tensor's `(batch, channels, height, width)` and the
/// patch grid `gh x gw` it gives.
struct InputShape {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    gh: usize,
    gw: usize,
}

/// Patch merging (`SwinPatchMerging`).
#[derive(Debug)]
struct Merge {
    norm: LayerNorm,
    reduction: Linear,
}

#[derive(Debug)]
struct Stage {
    dim: usize,
    blocks: Vec<Block>,
    downsample: Option<Merge>,
}

/// Precomputed gathers and biases of one block for one input size.
#[derive(Debug)]
struct BlockPlan {
    /// Index into `(tokens [+ one zero row])` giving the windowed, shifted,
    /// padded order (`partition_idx` on the model's device).
    partition: Tensor,
    /// `partition` on the host; the index `H*W` stands for a zero row.
    partition_idx: Vec<u32>,
    /// Whether `partition` uses the zero row (the feature map is padded).
    padded: bool,
    /// Index into the windowed order giving back the `H*W` tokens
    /// (`reverse_idx` on the model's device).
    reverse: Tensor,
    /// `reverse` on the host.
    reverse_idx: Vec<u32>,
    /// Windows per image.
    windows: usize,
    /// Tokens per window.
    window_tokens: usize,
    /// Relative position bias plus shifted-window mask: `(1 or windows, heads, N, N)`.
    bias: Tensor,
    /// `bias` transposed for the CPU kernel (`[.., key, query]`, queries
    /// padded with zeros to [`ops::bias_pad`]); empty off the CPU.
    bias_t: Vec<f32>,
}

#[derive(Debug)]
struct MergePlan {
    /// For each output token, its four input tokens in transformers' order
    /// (`index_idx` on the model's device); `H*W` stands for a zero row.
    index: Tensor,
    /// `index` on the host.
    index_idx: Vec<u32>,
    padded: bool,
    out: (usize, usize),
}

#[derive(Debug)]
struct StagePlan {
    blocks: Vec<BlockPlan>,
    merge: Option<MergePlan>,
}

/// Everything precomputed for one patch-grid size.
#[derive(Debug)]
struct Plan {
    stages: Vec<StagePlan>,
    /// Final `(height, width)` of the token grid.
    out: (usize, usize),
}

/// The raw outputs of a forward pass.
#[derive(Debug, Clone)]
pub struct SwinOutput {
    /// `(batch, tokens, hidden)` after the final layer norm.
    pub last_hidden_state: Tensor,
    /// `(height, width)` of the final token grid.
    pub grid: (usize, usize),
    /// `(batch, hidden)` average of the last hidden state.
    pub pooled: Tensor,
    /// `(batch, labels)` classifier logits, when the checkpoint has a head.
    pub logits: Option<Tensor>,
}

/// Visual features of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameFeatures {
    /// Pooled embedding (`hidden` floats).
    pub pooled: Vec<f32>,
    /// Last hidden state, row-major `grid_tokens x hidden`.
    pub grid: Vec<f32>,
    /// Number of tokens in `grid` (49 for Swin-T at 224).
    pub grid_tokens: usize,
    /// Width of a token and of `pooled`.
    pub hidden: usize,
    /// Top-k `(label, softmax probability)`, best first; empty without a classifier head.
    pub labels: Vec<(String, f32)>,
}

/// A loaded Swin Transformer with its image processor.
#[derive(Debug)]
pub struct Swin {
    config: SwinConfig,
    device: Device,
    patch_wt: Tensor,
    patch_b: Tensor,
    embed_norm: LayerNorm,
    position_embeddings: Option<Tensor>,
    stages: Vec<Stage>,
    layernorm: LayerNorm,
    classifier: Option<Linear>,
    labels: Vec<String>,
    activation: Activation,
    preprocessor: crate::Preprocessor,
    top_k: usize,
    f32_version: String,
    plans: RwLock<HashMap<(usize, usize), Arc<Plan>>>,
    /// Buffers of the CPU forward pass, one per forward pass in flight,
    /// kept for the next batch.
    workspaces: Mutex<Vec<cpu::Workspace>>,
    /// The linear layers in int8, when [`Swin::set_int8`] chose them.
    int8: Option<Arc<Int8Swin>>,
}

/// The default number of labels [`Swin::embed`] reports.
pub const DEFAULT_TOP_K: usize = 5;

impl Swin {
    /// Loads `dir/config.json`, `dir/model.safetensors` and (when present)
    /// `dir/preprocessor_config.json`. Accepts `SwinForImageClassification`
    /// checkpoints (`swin.` prefix, `classifier.*`) and bare `SwinModel` ones.
    pub fn load(dir: &Path, device: &Device) -> Result<Swin> {
        let config = SwinConfig::from_file(&dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights).map_err(|source| VisionError::Io {
            path: weights.clone(),
            source,
        })?;
        let hash = blake3::hash(&bytes).to_hex();
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "swin".into());
        let version = format!("{name}@{}", &hash.as_str()[..12]);
        let vb =
            VarBuilder::from_buffered_safetensors(bytes, DType::F32, device).map_err(|e| VisionError::Weights {
                path: weights.clone(),
                msg: e.to_string(),
            })?;
        let preprocessor = crate::Preprocessor::from_dir(dir)?;
        Swin::from_var_builder(config, vb, preprocessor, version, device, &weights)
    }

    /// Builds the model from an already opened `VarBuilder` (HF names;
    /// `weights` is only used in error messages).
    pub fn from_var_builder(
        config: SwinConfig,
        vb: VarBuilder,
        preprocessor: crate::Preprocessor,
        version: String,
        device: &Device,
        weights: &Path,
    ) -> Result<Swin> {
        let werr = |e: candle_core::Error| VisionError::Weights {
            path: weights.to_path_buf(),
            msg: e.to_string(),
        };
        config.validate().map_err(|msg| VisionError::Config {
            path: weights.with_file_name("config.json"),
            msg,
        })?;
        let activation = Activation::parse(&config.hidden_act).expect("validated");
        let root = if vb.contains_tensor("swin.embeddings.patch_embeddings.projection.weight") {
            vb.pp("swin")
        } else {
            vb.clone()
        };
        let (ph, pw) = config.patch_size.hw();
        let c = config.num_channels;
        let d = config.embed_dim;
        let emb = root.pp("embeddings");
        let proj = emb.pp("patch_embeddings").pp("projection");
        let pwt = proj.get((d, c, ph, pw), "weight").map_err(werr)?;
        let patch_wt = pwt
            .reshape((d, c * ph * pw))
            .and_then(|w| w.t()?.contiguous())
            .map_err(werr)?;
        let patch_b = proj.get(d, "bias").map_err(werr)?;
        // transformers builds this norm with nn.LayerNorm's default eps.
        let embed_norm = LayerNorm::load(&emb.pp("norm"), d, 1e-5).map_err(werr)?;
        let position_embeddings = if config.use_absolute_embeddings {
            let (ih, iw) = config.image_size.hw();
            let n = (ih / ph) * (iw / pw);
            Some(emb.get((1, n, d), "position_embeddings").map_err(werr)?)
        } else {
            None
        };
        let ws = config.window_size;
        let table_len = (2 * ws - 1) * (2 * ws - 1);
        let mut stages = Vec::new();
        for (si, (&depth, &heads)) in config.depths.iter().zip(&config.num_heads).enumerate() {
            let dim = config.stage_dim(si);
            let svb = root.pp("encoder").pp("layers").pp(si);
            let mut blocks = Vec::new();
            for bi in 0..depth {
                let b = svb.pp("blocks").pp(bi);
                let att = b.pp("attention");
                let sa = att.pp("self");
                let q = Linear::load(&sa.pp("query"), dim, dim, config.qkv_bias).map_err(werr)?;
                let k = Linear::load(&sa.pp("key"), dim, dim, config.qkv_bias).map_err(werr)?;
                let v = Linear::load(&sa.pp("value"), dim, dim, config.qkv_bias).map_err(werr)?;
                let scale = ((dim / heads) as f64).powf(-0.5);
                let qkv = fuse_qkv(&q, &k, &v, scale).map_err(werr)?;
                let bias_table = sa
                    .get((table_len, heads), "relative_position_bias_table")
                    .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                    .map_err(werr)?;
                let mlp = config.mlp_dim(dim);
                blocks.push(Block {
                    layernorm_before: LayerNorm::load(&b.pp("layernorm_before"), dim, config.layer_norm_eps)
                        .map_err(werr)?,
                    qkv,
                    bias_table,
                    output: Linear::load(&att.pp("output").pp("dense"), dim, dim, true).map_err(werr)?,
                    layernorm_after: LayerNorm::load(&b.pp("layernorm_after"), dim, config.layer_norm_eps)
                        .map_err(werr)?,
                    intermediate: Linear::load(&b.pp("intermediate").pp("dense"), dim, mlp, true).map_err(werr)?,
                    mlp_out: Linear::load(&b.pp("output").pp("dense"), mlp, dim, true).map_err(werr)?,
                    heads,
                    shift: if bi % 2 == 0 { 0 } else { ws / 2 },
                });
            }
            let downsample = if si + 1 < config.depths.len() {
                let m = svb.pp("downsample");
                Some(Merge {
                    norm: LayerNorm::load(&m.pp("norm"), 4 * dim, 1e-5).map_err(werr)?,
                    reduction: Linear::load(&m.pp("reduction"), 4 * dim, 2 * dim, false).map_err(werr)?,
                })
            } else {
                None
            };
            stages.push(Stage {
                dim,
                blocks,
                downsample,
            });
        }
        let hidden = config.hidden_size();
        let layernorm = LayerNorm::load(&root.pp("layernorm"), hidden, config.layer_norm_eps).map_err(werr)?;
        let labels = config.labels();
        let classifier = if !labels.is_empty() && vb.contains_tensor("classifier.weight") {
            Some(Linear::load(&vb.pp("classifier"), hidden, labels.len(), true).map_err(werr)?)
        } else {
            None
        };
        Ok(Swin {
            config,
            device: device.clone(),
            patch_wt,
            patch_b,
            embed_norm,
            position_embeddings,
            stages,
            layernorm,
            classifier,
            labels,
            activation,
            preprocessor,
            top_k: DEFAULT_TOP_K,
            f32_version: version,
            plans: RwLock::new(HashMap::new()),
            workspaces: Mutex::new(Vec::new()),
            int8: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SwinConfig {
        &self.config
    }

    /// The image processor used by [`Swin::embed`].
    pub fn preprocessor(&self) -> &crate::Preprocessor {
        &self.preprocessor
    }

    /// Replaces the image processor.
    pub fn set_preprocessor(&mut self, p: crate::Preprocessor) {
        self.preprocessor = p;
    }

    /// Sets how many labels [`Swin::embed`] returns per image.
    pub fn set_top_k(&mut self, k: usize) {
        self.top_k = k;
    }

    /// Width of the pooled embedding and of each grid token.
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size()
    }

    /// Class names of the head (empty without one).
    pub fn labels(&self) -> &[String] {
        if self.classifier.is_some() {
            &self.labels
        } else {
            &[]
        }
    }

    /// Whether the checkpoint has a classifier head.
    pub fn has_head(&self) -> bool {
        self.classifier.is_some()
    }

    /// `name@hash`: the model directory's name and the first 12 hex digits
    /// of the blake3 hash of its weights file.
    pub fn version(&self) -> String {
        match &self.int8 {
            Some(q) => q.version(),
            None => self.f32_version.clone(),
        }
    }

    /// [`Swin::version`] at f32: the folder's name and the weights' digest.
    pub fn f32_version(&self) -> &str {
        &self.f32_version
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Preprocesses and runs a batch of RGB images.
    pub fn embed(&self, images: &[image::RgbImage]) -> Result<Vec<FrameFeatures>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let pixels = self.preprocessor.batch(images, &self.device)?;
        let out = self.forward(&pixels)?;
        self.features(&out)
    }

    /// Runs a batch of images already resized by this model's
    /// [`crate::Preprocessor::resize`] (see [`Swin::preprocessor`]).
    pub fn embed_resized(&self, images: &[image::RgbImage]) -> Result<Vec<FrameFeatures>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let pixels = self.preprocessor.batch_resized(images, &self.device)?;
        let out = self.forward(&pixels)?;
        self.features(&out)
    }

    /// Turns a forward pass's tensors into per-image [`FrameFeatures`].
    pub fn features(&self, out: &SwinOutput) -> Result<Vec<FrameFeatures>> {
        let (b, tokens, hidden) = out.last_hidden_state.dims3()?;
        let grid = out.last_hidden_state.to_vec3::<f32>()?;
        let pooled = out.pooled.to_vec2::<f32>()?;
        let probs = match &out.logits {
            Some(l) => Some(candle_nn::ops::softmax_last_dim(l)?.to_vec2::<f32>()?),
            None => None,
        };
        let mut res = Vec::with_capacity(b);
        for (i, (g, p)) in grid.into_iter().zip(pooled).enumerate() {
            let labels = match &probs {
                Some(pr) => top_k(&pr[i], &self.labels, self.top_k),
                None => Vec::new(),
            };
            res.push(FrameFeatures {
                pooled: p,
                grid: g.into_iter().flatten().collect(),
                grid_tokens: tokens,
                hidden,
                labels,
            });
        }
        Ok(res)
    }

    /// Runs the model on `(batch, channels, height, width)` pixel values
    /// (already preprocessed), like transformers' `forward(pixel_values)`.
    ///
    /// On the CPU this runs kino's own forward pass on plain buffers
    /// (`swin/cpu.rs`); on other devices candle's ops
    /// ([`Swin::forward_generic`]). Both compute the same function.
    pub fn forward(&self, pixels: &Tensor) -> Result<SwinOutput> {
        if self.device.is_cpu() {
            self.forward_cpu(pixels)
        } else {
            self.forward_generic(pixels)
        }
    }

    /// Checks a pixel tensor against the model.
    fn check_input(&self, pixels: &Tensor) -> Result<InputShape> {
        let (b, c, h, w) = pixels.dims4()?;
        if c != self.config.num_channels {
            return Err(VisionError::Input(format!(
                "pixel values have {c} channels, the model takes {}",
                self.config.num_channels
            )));
        }
        if b == 0 || h == 0 || w == 0 {
            return Err(VisionError::Input(format!("empty pixel tensor {b}x{c}x{h}x{w}")));
        }
        let (ph, pw) = self.config.patch_size.hw();
        let (gh, gw) = (h.div_ceil(ph), w.div_ceil(pw));
        if let Some(pe) = &self.position_embeddings {
            if pe.dim(1)? != gh * gw {
                return Err(VisionError::Input(format!(
                    "a {h}x{w} input gives {} patches but the absolute position embeddings cover {} \
                     (image_size {:?}); resize the input to the model's image size",
                    gh * gw,
                    pe.dim(1)?,
                    self.config.image_size
                )));
            }
        }
        Ok(InputShape { b, c, h, w, gh, gw })
    }

    /// [`Swin::forward`] with candle's ops on any device: what runs on GPUs,
    /// and the reference the CPU forward pass is tested against.
    pub fn forward_generic(&self, pixels: &Tensor) -> Result<SwinOutput> {
        let InputShape { b, c, h, w, gh, gw } = self.check_input(pixels)?;
        let (ph, pw) = self.config.patch_size.hw();
        let plan = self.plan(gh, gw)?;
        // Patch embedding: pad to a multiple of the patch, then a strided conv as one matmul.
        let mut x = pixels.to_device(&self.device)?.to_dtype(DType::F32)?;
        if gh * ph != h {
            x = x.pad_with_zeros(2, 0, gh * ph - h)?;
        }
        if gw * pw != w {
            x = x.pad_with_zeros(3, 0, gw * pw - w)?;
        }
        let x = x
            .reshape((b, c, gh, ph, gw, pw))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * gh * gw, c * ph * pw))?;
        let x = x.matmul(&self.patch_wt)?.broadcast_add(&self.patch_b)?;
        let mut x = self
            .embed_norm
            .forward(&x)?
            .reshape((b, gh * gw, self.config.embed_dim))?;
        if let Some(pe) = &self.position_embeddings {
            x = x.broadcast_add(pe)?;
        }
        for (stage, sp) in self.stages.iter().zip(&plan.stages) {
            for (block, bp) in stage.blocks.iter().zip(&sp.blocks) {
                x = self.block_forward(block, bp, stage.dim, &x)?;
            }
            if let (Some(m), Some(mp)) = (&stage.downsample, &sp.merge) {
                x = merge_forward(m, mp, stage.dim, &x)?;
            }
        }
        let (_, tokens, hidden) = x.dims3()?;
        let last = self
            .layernorm
            .forward(&x.reshape((b * tokens, hidden))?)?
            .reshape((b, tokens, hidden))?;
        let pooled = last.mean(1)?;
        let logits = match &self.classifier {
            Some(cl) => Some(cl.forward(&pooled)?),
            None => None,
        };
        Ok(SwinOutput {
            last_hidden_state: last,
            grid: plan.out,
            pooled,
            logits,
        })
    }

    fn block_forward(&self, blk: &Block, bp: &BlockPlan, dim: usize, x: &Tensor) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let heads = blk.heads;
        let hd = dim / heads;
        let n = bp.window_tokens;
        let nw = bp.windows;
        let bw = b * nw;
        let h = blk.layernorm_before.forward(x)?;
        let h = if bp.padded {
            Tensor::cat(&[&h, &Tensor::zeros((b, 1, dim), DType::F32, &self.device)?], 1)?
        } else {
            h
        };
        let win = h.index_select(&bp.partition, 1)?.reshape((bw * n, dim))?;
        let qkv = blk.qkv.forward(&win)?;
        let ctx = ops::window_attention(&qkv, &bp.bias, nw, n, heads, hd)?;
        let att = blk.output.forward(&ctx)?.reshape((b, nw * n, dim))?;
        let att = att.index_select(&bp.reverse, 1)?;
        let x = (x + att)?;
        let h = blk.layernorm_after.forward(&x)?.reshape((b * l, dim))?;
        let h = match self.activation {
            Activation::GeluErf => blk.intermediate.forward(&h)?.gelu_erf()?,
            Activation::GeluTanh => blk.intermediate.forward(&h)?.gelu()?,
            Activation::Relu => blk.intermediate.forward(&h)?.relu()?,
            Activation::Silu => blk.intermediate.forward(&h)?.silu()?,
            Activation::QuickGelu => {
                let h = blk.intermediate.forward(&h)?;
                (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?
            }
        };
        let h = blk.mlp_out.forward(&h)?.reshape((b, l, dim))?;
        Ok((x + h)?)
    }

    /// The cached plan for a patch grid of `gh x gw`, built on first use.
    fn plan(&self, gh: usize, gw: usize) -> Result<Arc<Plan>> {
        if let Some(p) = self.plans.read().expect("plan cache lock").get(&(gh, gw)) {
            return Ok(p.clone());
        }
        let plan = Arc::new(self.build_plan(gh, gw)?);
        self.plans
            .write()
            .expect("plan cache lock")
            .insert((gh, gw), plan.clone());
        Ok(plan)
    }

    fn build_plan(&self, gh: usize, gw: usize) -> Result<Plan> {
        let cfg_ws = self.config.window_size;
        let (mut h, mut w) = (gh, gw);
        let mut stages = Vec::new();
        for (si, stage) in self.stages.iter().enumerate() {
            let mut blocks = Vec::new();
            for blk in &stage.blocks {
                // transformers' set_shift_and_window_size: a feature map not larger
                // than the window is one window (per side) with no shift.
                let (ws, shift) = if h.min(w) <= cfg_ws {
                    (h.min(w), 0)
                } else {
                    (cfg_ws, blk.shift)
                };
                if ws != cfg_ws {
                    return Err(VisionError::Input(format!(
                        "stage {si} works on a {h}x{w} token grid, smaller than the {cfg_ws}x{cfg_ws} window its \
                         relative position bias covers (transformers cannot run this input either); \
                         use a larger input image"
                    )));
                }
                blocks.push(self.block_plan(blk, h, w, ws, shift)?);
            }
            let merge = if stage.downsample.is_some() {
                let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
                let mut idx = Vec::with_capacity(oh * ow * 4);
                let mut padded = false;
                for i in 0..oh {
                    for j in 0..ow {
                        // transformers concatenates [0::2,0::2], [1::2,0::2], [0::2,1::2], [1::2,1::2].
                        for (dr, dc) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            let (r, c) = (2 * i + dr, 2 * j + dc);
                            if r < h && c < w {
                                idx.push((r * w + c) as u32);
                            } else {
                                padded = true;
                                idx.push((h * w) as u32);
                            }
                        }
                    }
                }
                let index = Tensor::from_slice(&idx, oh * ow * 4, &self.device)?;
                let m = MergePlan {
                    index,
                    index_idx: idx,
                    padded,
                    out: (oh, ow),
                };
                (h, w) = (oh, ow);
                Some(m)
            } else {
                None
            };
            stages.push(StagePlan { blocks, merge });
        }
        Ok(Plan { stages, out: (h, w) })
    }

    fn block_plan(&self, blk: &Block, h: usize, w: usize, ws: usize, shift: usize) -> Result<BlockPlan> {
        let hp = h.div_ceil(ws) * ws;
        let wp = w.div_ceil(ws) * ws;
        let (nh, nwc) = (hp / ws, wp / ws);
        let n = ws * ws;
        let windows = nh * nwc;
        let pad_row = (h * w) as u32;
        let mut partition = vec![0u32; windows * n];
        let mut reverse = vec![0u32; h * w];
        let mut padded = false;
        // Label of each position of the shifted, padded map (transformers' get_attn_mask regions).
        let region = |r: usize, size: usize| -> usize { (r >= size - ws) as usize + (r >= size - shift) as usize };
        let mut labels = vec![0usize; windows * n];
        for wi in 0..nh {
            for wj in 0..nwc {
                for a in 0..ws {
                    for bb in 0..ws {
                        let p = ((wi * nwc + wj) * ws + a) * ws + bb;
                        let (r, c) = (wi * ws + a, wj * ws + bb);
                        // torch.roll(shifts=-shift): shifted[r][c] = padded[(r+s)%Hp][(c+s)%Wp].
                        let (sr, sc) = ((r + shift) % hp, (c + shift) % wp);
                        if sr < h && sc < w {
                            partition[p] = (sr * w + sc) as u32;
                            reverse[sr * w + sc] = p as u32;
                        } else {
                            partition[p] = pad_row;
                            padded = true;
                        }
                        if shift > 0 {
                            labels[p] = region(r, hp) * 3 + region(c, wp);
                        }
                    }
                }
            }
        }
        // Relative position bias, (heads, N, N), plus the mask per window when shifted.
        let heads = blk.heads;
        let span = 2 * ws - 1;
        let mut rel = vec![0f32; heads * n * n];
        for i in 0..n {
            let (ai, bi) = (i / ws, i % ws);
            for j in 0..n {
                let (aj, bj) = (j / ws, j % ws);
                let idx = (ai + ws - 1 - aj) * span + (bi + ws - 1 - bj);
                for hh in 0..heads {
                    rel[(hh * n + i) * n + j] = blk.bias_table[idx * heads + hh];
                }
            }
        }
        let all = if shift > 0 {
            let mut all = Vec::with_capacity(windows * heads * n * n);
            for win in 0..windows {
                let lab = &labels[win * n..(win + 1) * n];
                for hh in 0..heads {
                    for i in 0..n {
                        for j in 0..n {
                            let m = if lab[i] == lab[j] { 0.0 } else { -100.0 };
                            all.push(rel[(hh * n + i) * n + j] + m);
                        }
                    }
                }
            }
            all
        } else {
            rel
        };
        let groups = all.len() / (n * n);
        let bias_t = if self.device.is_cpu() {
            let np = ops::bias_pad(n);
            let mut t = vec![0f32; groups * n * np];
            for g in 0..groups {
                for i in 0..n {
                    for j in 0..n {
                        t[(g * n + j) * np + i] = all[(g * n + i) * n + j];
                    }
                }
            }
            t
        } else {
            Vec::new()
        };
        let bias = Tensor::from_vec(all, (groups / heads, heads, n, n), &self.device)?;
        Ok(BlockPlan {
            partition: Tensor::from_slice(&partition, windows * n, &self.device)?,
            partition_idx: partition,
            padded,
            reverse: Tensor::from_slice(&reverse, h * w, &self.device)?,
            reverse_idx: reverse,
            windows,
            window_tokens: n,
            bias,
            bias_t,
        })
    }
}

fn merge_forward(m: &Merge, mp: &MergePlan, dim: usize, x: &Tensor) -> Result<Tensor> {
    let (b, _, _) = x.dims3()?;
    let x = if mp.padded {
        Tensor::cat(&[x, &Tensor::zeros((b, 1, dim), DType::F32, x.device())?], 1)?
    } else {
        x.clone()
    };
    let (oh, ow) = mp.out;
    let x = x.index_select(&mp.index, 1)?.reshape((b * oh * ow, 4 * dim))?;
    let x = m.norm.forward(&x)?;
    Ok(m.reduction.forward(&x)?.reshape((b, oh * ow, 2 * dim))?)
}

fn fuse_qkv(q: &Linear, k: &Linear, v: &Linear, scale: f64) -> candle_core::Result<Linear> {
    let wt = Tensor::cat(&[&(&q.wt * scale)?, &k.wt, &v.wt], 1)?.contiguous()?;
    let b = match (&q.b, &k.b, &v.b) {
        (Some(qb), Some(kb), Some(vb)) => Some(Tensor::cat(&[&(qb * scale)?, kb, vb], 0)?),
        _ => None,
    };
    Ok(Linear { wt, b })
}

/// The `k` best `(label, probability)` pairs, best first.
fn top_k(probs: &[f32], labels: &[String], k: usize) -> Vec<(String, f32)> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    idx.into_iter()
        .take(k)
        .map(|i| (labels.get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}")), probs[i]))
        .collect()
}

/// `true` when `dir` looks like a Swin checkpoint (has `config.json` and `model.safetensors`).
pub fn is_model_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file() && dir.join("model.safetensors").is_file()
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Swin>();
}
