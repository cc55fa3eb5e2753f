//! `SwinConfig`: the Hugging Face `config.json` of `SwinModel` /
//! `SwinForImageClassification`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, VisionError};

/// An integer or an `[height, width]` pair, as HF configs allow for
/// `image_size` and `patch_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrPair {
    /// The same value for height and width.
    One(usize),
    /// `[height, width]`.
    Pair([usize; 2]),
}

impl OneOrPair {
    /// `(height, width)`.
    pub fn hw(self) -> (usize, usize) {
        match self {
            OneOrPair::One(v) => (v, v),
            OneOrPair::Pair([h, w]) => (h, w),
        }
    }
}

fn d_image_size() -> OneOrPair {
    OneOrPair::One(224)
}
fn d_patch_size() -> OneOrPair {
    OneOrPair::One(4)
}
fn d_num_channels() -> usize {
    3
}
fn d_embed_dim() -> usize {
    96
}
fn d_depths() -> Vec<usize> {
    vec![2, 2, 6, 2]
}
fn d_num_heads() -> Vec<usize> {
    vec![3, 6, 12, 24]
}
fn d_window_size() -> usize {
    7
}
fn d_mlp_ratio() -> f64 {
    4.0
}
fn d_true() -> bool {
    true
}
fn d_hidden_act() -> String {
    "gelu".into()
}
fn d_layer_norm_eps() -> f64 {
    1e-5
}

/// The Swin (v1) configuration, read from a Hugging Face `config.json`.
/// Defaults are those of `transformers.SwinConfig` (Swin-T, 224, window 7).
/// Fields that only matter for training (dropouts, drop path, initialisation)
/// are ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwinConfig {
    /// `model_type`; must be `swin` when present.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Input image size the model was built for (an int or `[h, w]`).
    #[serde(default = "d_image_size")]
    pub image_size: OneOrPair,
    /// Patch size (an int or `[h, w]`).
    #[serde(default = "d_patch_size")]
    pub patch_size: OneOrPair,
    /// Input channels.
    #[serde(default = "d_num_channels")]
    pub num_channels: usize,
    /// Width of the first stage.
    #[serde(default = "d_embed_dim")]
    pub embed_dim: usize,
    /// Blocks per stage.
    #[serde(default = "d_depths")]
    pub depths: Vec<usize>,
    /// Attention heads per stage.
    #[serde(default = "d_num_heads")]
    pub num_heads: Vec<usize>,
    /// Attention window size (in tokens).
    #[serde(default = "d_window_size")]
    pub window_size: usize,
    /// MLP hidden width as a multiple of the stage width.
    #[serde(default = "d_mlp_ratio")]
    pub mlp_ratio: f64,
    /// Whether query/key/value projections have a bias.
    #[serde(default = "d_true")]
    pub qkv_bias: bool,
    /// MLP activation (`gelu`, `gelu_new`, `gelu_pytorch_tanh`, `relu`, `silu`, `quick_gelu`).
    #[serde(default = "d_hidden_act")]
    pub hidden_act: String,
    /// Whether absolute position embeddings are added after the patch embedding.
    #[serde(default)]
    pub use_absolute_embeddings: bool,
    /// Epsilon of the block and final layer norms (the embedding and patch
    /// merging norms use PyTorch's default 1e-5, as in transformers).
    #[serde(default = "d_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Class names of the classifier head, keyed by index (`"0"`, `"1"`, ...).
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
}

impl Default for SwinConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("all fields have defaults")
    }
}

impl SwinConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<SwinConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| VisionError::Io {
            path: path.into(),
            source,
        })?;
        let cfg: SwinConfig = serde_json::from_str(&text).map_err(|e| VisionError::Config {
            path: path.into(),
            msg: e.to_string(),
        })?;
        cfg.validate()
            .map_err(|msg| VisionError::Config { path: path.into(), msg })?;
        Ok(cfg)
    }

    /// Checks that the sizes are consistent; returns what is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if let Some(t) = &self.model_type {
            if t != "swin" {
                return Err(format!(
                    "model_type is {t:?}, only \"swin\" (Swin Transformer v1) is supported"
                ));
            }
        }
        if self.depths.is_empty() {
            return Err("depths is empty".into());
        }
        if self.depths.len() != self.num_heads.len() {
            return Err(format!(
                "depths has {} stages but num_heads has {}",
                self.depths.len(),
                self.num_heads.len()
            ));
        }
        let (ph, pw) = self.patch_size.hw();
        let (ih, iw) = self.image_size.hw();
        if ph == 0 || pw == 0 || ih == 0 || iw == 0 || self.num_channels == 0 || self.embed_dim == 0 {
            return Err("image_size, patch_size, num_channels and embed_dim must be positive".into());
        }
        if self.window_size == 0 {
            return Err("window_size must be positive".into());
        }
        if self.mlp_ratio.is_nan() || self.mlp_ratio <= 0.0 {
            return Err(format!("mlp_ratio {} must be positive", self.mlp_ratio));
        }
        for (i, &h) in self.num_heads.iter().enumerate() {
            let dim = self.stage_dim(i);
            if h == 0 || !dim.is_multiple_of(h) {
                return Err(format!("stage {i}: width {dim} is not divisible by {h} heads"));
            }
        }
        Activation::parse(&self.hidden_act)?;
        for k in self.id2label.keys() {
            if k.parse::<usize>().map_or(true, |i| i >= self.id2label.len()) {
                return Err(format!(
                    "id2label key {k:?} is not an index below {}",
                    self.id2label.len()
                ));
            }
        }
        Ok(())
    }

    /// Width of stage `i` (`embed_dim * 2^i`).
    pub fn stage_dim(&self, i: usize) -> usize {
        self.embed_dim << i
    }

    /// Width of the last hidden state and the pooled output.
    pub fn hidden_size(&self) -> usize {
        self.stage_dim(self.depths.len() - 1)
    }

    /// MLP hidden width for a stage of width `dim` (`int(mlp_ratio * dim)`, as in transformers).
    pub fn mlp_dim(&self, dim: usize) -> usize {
        (self.mlp_ratio * dim as f64) as usize
    }

    /// Class names in index order (empty when there is no `id2label`).
    pub fn labels(&self) -> Vec<String> {
        let mut v = vec![String::new(); self.id2label.len()];
        for (k, name) in &self.id2label {
            if let Ok(i) = k.parse::<usize>() {
                if i < v.len() {
                    v[i] = name.clone();
                }
            }
        }
        v
    }
}

/// The MLP activation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU (`erf`), transformers' `gelu`.
    GeluErf,
    /// Tanh-approximated GELU (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    /// ReLU.
    Relu,
    /// SiLU / swish.
    Silu,
    /// `x * sigmoid(1.702 x)`.
    QuickGelu,
}

impl Activation {
    /// Parses a transformers `hidden_act` name.
    pub fn parse(name: &str) -> std::result::Result<Activation, String> {
        Ok(match name {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "quick_gelu" => Activation::QuickGelu,
            other => return Err(format!("hidden_act {other:?} is not supported")),
        })
    }
}
