//! Whisper's text decoder with a key/value cache: candle-transformers'
//! decoder recomputes the whole prefix at every step, this one feeds only
//! the new tokens. Same weights (HF names), same layout: pre-norm blocks of
//! causal self-attention, cross-attention over the encoder output and an MLP
//! with the exact (erf) GELU, as CTranslate2 computes it.

use candle_core::{Device, Tensor, D};
use candle_nn::{layer_norm, linear, linear_no_bias, LayerNorm, Linear, Module, VarBuilder};
use candle_transformers::models::whisper::Config;

use super::Result;

/// The four projections of one attention (HF names `q_proj`, `k_proj`
/// (no bias), `v_proj`, `out_proj`).
pub(super) struct Attention {
    pub(super) q: Linear,
    pub(super) k: Linear,
    pub(super) v: Linear,
    pub(super) out: Linear,
}

impl Attention {
    pub(super) fn load(d: usize, vb: VarBuilder) -> Result<Attention> {
        Ok(Attention {
            q: linear(d, d, vb.pp("q_proj"))?,
            k: linear_no_bias(d, d, vb.pp("k_proj"))?,
            v: linear(d, d, vb.pp("v_proj"))?,
            out: linear(d, d, vb.pp("out_proj"))?,
        })
    }
}

struct Block {
    attn: Attention,
    attn_ln: LayerNorm,
    cross: Attention,
    cross_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    mlp_ln: LayerNorm,
}

/// The decoder's weights.
pub(crate) struct Decoder {
    embed: Tensor,
    positions: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
    n_head: usize,
    device: Device,
}

/// The cache of one window: cross-attention keys (transposed) and values of the encoder
/// output, and the self-attention keys and values of the tokens fed so far.
pub(crate) struct State {
    cross: Vec<(Tensor, Tensor)>,
    past: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl Decoder {
    pub(crate) fn load(vb: VarBuilder, cfg: &Config) -> Result<Decoder> {
        let d = cfg.d_model;
        let ln = |vb: VarBuilder| layer_norm(d, 1e-5, vb);
        let blocks = (0..cfg.decoder_layers)
            .map(|i| -> Result<Block> {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(Block {
                    attn: Attention::load(d, vb.pp("self_attn"))?,
                    attn_ln: ln(vb.pp("self_attn_layer_norm"))?,
                    cross: Attention::load(d, vb.pp("encoder_attn"))?,
                    cross_ln: ln(vb.pp("encoder_attn_layer_norm"))?,
                    fc1: linear(d, 4 * d, vb.pp("fc1"))?,
                    fc2: linear(4 * d, d, vb.pp("fc2"))?,
                    mlp_ln: ln(vb.pp("final_layer_norm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Decoder {
            embed: vb.get((cfg.vocab_size, d), "embed_tokens.weight")?,
            positions: vb.get((cfg.max_target_positions, d), "embed_positions.weight")?,
            blocks,
            ln: ln(vb.pp("layer_norm"))?,
            n_head: cfg.decoder_attention_heads,
            device: vb.device().clone(),
        })
    }

    /// A fresh cache for the encoder output `audio` (`[1, frames, d]`).
    pub(crate) fn start(&self, audio: &Tensor) -> Result<State> {
        let cross = self
            .blocks
            .iter()
            .map(|b| -> Result<(Tensor, Tensor)> {
                // Keys kept transposed for the score products of every step.
                let kt = heads(&b.cross.k.forward(audio)?, self.n_head)?.t()?.contiguous()?;
                let v = heads(&b.cross.v.forward(audio)?, self.n_head)?;
                Ok((kt, v))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(State {
            past: vec![None; self.blocks.len()],
            cross,
            len: 0,
        })
    }

    /// Feeds `tokens` after those already in `state`; returns the final
    /// hidden states of the new tokens (`[1, n, d]`, layer-normed).
    pub(crate) fn forward(&self, tokens: &[u32], state: &mut State) -> Result<Tensor> {
        let n = tokens.len();
        let offset = state.len;
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self
            .embed
            .index_select(&ids, 0)?
            .broadcast_add(&self.positions.narrow(0, offset, n)?)?
            .unsqueeze(0)?;
        let mask = if n > 1 {
            let total = offset + n;
            let m: Vec<f32> = (0..n)
                .flat_map(|i| (0..total).map(move |j| if j > offset + i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            Some(Tensor::from_vec(m, (n, total), &self.device)?)
        } else {
            None
        };
        for (i, b) in self.blocks.iter().enumerate() {
            let h = b.attn_ln.forward(&x)?;
            let q = b.attn.q.forward(&h)?;
            let k = heads(&b.attn.k.forward(&h)?, self.n_head)?;
            let v = heads(&b.attn.v.forward(&h)?, self.n_head)?;
            let (k, v) = match state.past[i].take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            let a = attend(&q, &k.t()?.contiguous()?, &v, mask.as_ref(), self.n_head)?;
            state.past[i] = Some((k, v));
            x = (x + b.attn.out.forward(&a)?)?;

            let h = b.cross_ln.forward(&x)?;
            let q = b.cross.q.forward(&h)?;
            let (ck, cv) = &state.cross[i];
            let a = attend(&q, ck, cv, None, self.n_head)?;
            x = (x + b.cross.out.forward(&a)?)?;

            let h = b.mlp_ln.forward(&x)?;
            let h = b.fc2.forward(&gelu(&b.fc1.forward(&h)?)?)?;
            x = (x + h)?;
        }
        state.len += n;
        Ok(self.ln.forward(&x)?)
    }

    /// Logits (f32) of the hidden state at position `i` of `hidden`.
    pub(crate) fn logits(&self, hidden: &Tensor, i: usize) -> Result<Vec<f32>> {
        let h = hidden.narrow(1, i, 1)?.squeeze(0)?;
        Ok(h.matmul(&self.embed.t()?)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// `[1, n, d]` → `[1, heads, n, d / heads]`.
pub(super) fn heads(x: &Tensor, n_head: usize) -> Result<Tensor> {
    let (b, n, d) = x.dims3()?;
    Ok(x.reshape((b, n, n_head, d / n_head))?.transpose(1, 2)?.contiguous()?)
}

/// Scaled dot-product attention of `q` (`[1, n, d]`) over keys (transposed:
/// `[1, heads, d / heads, m]`) and values (`[1, heads, m, d / heads]`); `mask` is added to the scores. Returns `[1, n, d]`.
pub(super) fn attend(q: &Tensor, kt: &Tensor, v: &Tensor, mask: Option<&Tensor>, n_head: usize) -> Result<Tensor> {
    let dh = q.dim(D::Minus1)?;
    let q = (heads(q, n_head)? * ((dh / n_head) as f64).powf(-0.5))?;
    let mut w = q.matmul(kt)?;
    if let Some(mask) = mask {
        w = w.broadcast_add(mask)?;
    }
    let w = match mask {
        Some(_) => candle_nn::ops::softmax_last_dim(&w)?,
        None => softmax(&w)?,
    };
    let (b, _, n, _) = w.dims4()?;
    Ok(w.matmul(v)?.transpose(1, 2)?.reshape((b, n, dh))?)
}

/// Exact (erf) GELU through kino-kernels' vectorised erf (|error| < 2e-6;
/// candle's `gelu_erf` calls a scalar erf per element).
pub(super) fn gelu(x: &Tensor) -> Result<Tensor> {
    let shape = x.dims().to_vec();
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    kino_kernels::gelu_in_place(&mut v);
    Ok(Tensor::from_vec(v, shape, x.device())?)
}

/// Softmax over the last dimension through kino-kernels (vectorised `exp`),
/// rows spread over rayon's threads. For unmasked scores: a masked (−∞)
/// score would get the smallest normal float instead of 0.
fn softmax(x: &Tensor) -> Result<Tensor> {
    use rayon::prelude::*;
    let shape = x.dims().to_vec();
    let n = shape.last().copied().unwrap_or(1).max(1);
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    let rows_per_task = (kino_kernels::MIN_CHUNK / n).max(1);
    v.par_chunks_mut(rows_per_task * n)
        .for_each(|c| kino_kernels::softmax_rows(c, n));
    Ok(Tensor::from_vec(v, shape, x.device())?)
}
