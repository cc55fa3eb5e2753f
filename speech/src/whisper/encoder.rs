//! Whisper's audio encoder as CTranslate2 computes it: two convolutions with
//! the exact (erf) GELU (candle-transformers' encoder uses the tanh
//! approximation), the stored position encodings, pre-norm blocks of
//! self-attention and MLP, a final layer norm.

use candle_core::{Device, Tensor};
use candle_nn::{layer_norm, linear, Conv1d, Conv1dConfig, LayerNorm, Linear, Module, VarBuilder};
use candle_transformers::models::whisper::Config;

use super::decoder::{attend, gelu, heads, Attention};
use super::Result;

struct Block {
    attn: Attention,
    attn_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    mlp_ln: LayerNorm,
}

/// The encoder's weights.
pub(crate) struct Encoder {
    conv1: Conv1d,
    conv2: Conv1d,
    positions: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
    n_head: usize,
    n_mels: usize,
    device: Device,
}

impl Encoder {
    pub(crate) fn load(vb: VarBuilder, cfg: &Config) -> Result<Encoder> {
        let d = cfg.d_model;
        let ln = |vb: VarBuilder| layer_norm(d, 1e-5, vb);
        let conv = |c_in: usize, stride: usize, vb: VarBuilder| -> Result<Conv1d> {
            let config = Conv1dConfig {
                padding: 1,
                stride,
                dilation: 1,
                groups: 1,
                cudnn_fwd_algo: None,
            };
            Ok(Conv1d::new(
                vb.get((d, c_in, 3), "weight")?,
                Some(vb.get(d, "bias")?),
                config,
            ))
        };
        let blocks = (0..cfg.encoder_layers)
            .map(|i| -> Result<Block> {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(Block {
                    attn: Attention::load(d, vb.pp("self_attn"))?,
                    attn_ln: ln(vb.pp("self_attn_layer_norm"))?,
                    fc1: linear(d, 4 * d, vb.pp("fc1"))?,
                    fc2: linear(4 * d, d, vb.pp("fc2"))?,
                    mlp_ln: ln(vb.pp("final_layer_norm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder {
            conv1: conv(cfg.num_mel_bins, 1, vb.pp("conv1"))?,
            conv2: conv(d, 2, vb.pp("conv2"))?,
            positions: vb.get((cfg.max_source_positions, d), "embed_positions.weight")?,
            blocks,
            ln: ln(vb.pp("layer_norm"))?,
            n_head: cfg.encoder_attention_heads,
            n_mels: cfg.num_mel_bins,
            device: vb.device().clone(),
        })
    }

    /// Encodes one window of features (`n_mels × frames`, mel-major): the
    /// encoder output `[1, frames / 2, d]`.
    pub(crate) fn forward(&self, features: Vec<f32>, frames: usize) -> Result<Tensor> {
        let x = Tensor::from_vec(features, (1, self.n_mels, frames), &self.device)?;
        let x = gelu(&self.conv1.forward(&x)?)?;
        let x = gelu(&self.conv2.forward(&x)?)?;
        let x = x.transpose(1, 2)?;
        let n = x.dim(1)?;
        let mut x = x.broadcast_add(&self.positions.narrow(0, 0, n)?)?;
        for b in &self.blocks {
            let h = b.attn_ln.forward(&x)?;
            let q = b.attn.q.forward(&h)?;
            let k = heads(&b.attn.k.forward(&h)?, self.n_head)?;
            let v = heads(&b.attn.v.forward(&h)?, self.n_head)?;
            let a = attend(&q, &k.t()?.contiguous()?, &v, None, self.n_head)?;
            x = (x + b.attn.out.forward(&a)?)?;
            let h = b.mlp_ln.forward(&x)?;
            x = (&x + b.fc2.forward(&gelu(&b.fc1.forward(&h)?)?)?)?;
        }
        Ok(self.ln.forward(&x)?)
    }
}
