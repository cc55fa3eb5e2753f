//! Whisper's text decoder with a key/value cache: candle-transformers'
//! decoder recomputes the whole prefix at every step, this one feeds only
//! the new tokens. Same weights (HF names), same layout: pre-norm blocks of
//! causal self-attention, cross-attention over the encoder output and an MLP
//! with the exact (erf) GELU, as CTranslate2 computes it.
//!
//! Runs on plain f32 buffers (`cpu`): one decoding step is a handful of
//! matrix-vector products over the weights (memory-bound, spread over all
//! threads), the attention of one query per head; the cross-attention keys
//! are computed once per window, transposed (`d × frames`, each head's
//! `dh × frames` block contiguous).

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::Config;
use kino_kernels::{Mat, Threads};

use super::cpu::{self, Linear, Norm, Weights};
use super::{Result, WhisperError};

struct Block {
    attn_ln: Norm,
    /// q, k (no bias), v side by side: `3d × d`.
    qkv: Linear,
    out: Linear,
    cross_ln: Norm,
    cross_q: Linear,
    /// Cross-attention keys (no bias) and values.
    cross_k: Linear,
    cross_v: Linear,
    cross_out: Linear,
    mlp_ln: Norm,
    fc1: Linear,
    fc2: Linear,
}

/// The decoder's weights.
pub(crate) struct Decoder {
    /// Token embeddings `vocab × d`, also the output projection.
    embed: Vec<f32>,
    /// `embed` in half floats instead (then empty) where that is exact, as
    /// for the layers (`Linear::half`): the output projection, a product
    /// with 51,865 rows at every step, reads half the bytes.
    embed16: Vec<u16>,
    positions: Vec<f32>,
    blocks: Vec<Block>,
    ln: Norm,
    n_head: usize,
    d: usize,
    vocab: usize,
    device: Device,
}

/// The cache of one window: per layer the cross-attention keys (transposed,
/// `d × frames`) and values (per head, `heads × frames × dh`) of the encoder output, and the
/// self-attention keys and values (`len × d`) of the tokens fed so far.
pub(crate) struct State {
    cross_kt: Vec<Vec<f32>>,
    cross_v: Vec<Vec<f32>>,
    frames: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl Decoder {
    pub(crate) fn load(vb: VarBuilder, cfg: &Config) -> Result<Decoder> {
        let d = cfg.d_model;
        let blocks = (0..cfg.decoder_layers)
            .map(|i| -> Result<Block> {
                let vb = vb.pp(format!("layers.{i}"));
                let a = vb.pp("self_attn");
                let c = vb.pp("encoder_attn");
                Ok(Block {
                    attn_ln: Norm::load(vb.pp("self_attn_layer_norm"), d)?,
                    qkv: Linear::fuse(vec![
                        Linear::load(a.pp("q_proj"), d, d, true)?,
                        Linear::load(a.pp("k_proj"), d, d, false)?,
                        Linear::load(a.pp("v_proj"), d, d, true)?,
                    ])
                    .half(),
                    out: Linear::load(a.pp("out_proj"), d, d, true)?.half(),
                    cross_ln: Norm::load(vb.pp("encoder_attn_layer_norm"), d)?,
                    cross_q: Linear::load(c.pp("q_proj"), d, d, true)?.half(),
                    cross_k: Linear::load(c.pp("k_proj"), d, d, false)?,
                    cross_v: Linear::load(c.pp("v_proj"), d, d, true)?,
                    cross_out: Linear::load(c.pp("out_proj"), d, d, true)?.half(),
                    mlp_ln: Norm::load(vb.pp("final_layer_norm"), d)?,
                    fc1: Linear::load(vb.pp("fc1"), d, 4 * d, true)?.half(),
                    fc2: Linear::load(vb.pp("fc2"), 4 * d, d, true)?.half(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut embed = cpu::values(&vb, &[cfg.vocab_size, d], "embed_tokens.weight")?;
        let embed16 = cpu::to_f16(&embed).unwrap_or_default();
        if !embed16.is_empty() {
            embed = Vec::new();
        }
        Ok(Decoder {
            embed,
            embed16,
            positions: cpu::values(&vb, &[cfg.max_target_positions, d], "embed_positions.weight")?,
            blocks,
            ln: Norm::load(vb.pp("layer_norm"), d)?,
            n_head: cfg.decoder_attention_heads,
            d,
            vocab: cfg.vocab_size,
            device: vb.device().clone(),
        })
    }

    /// A fresh cache for the encoder output `audio` (`[1, frames, d]`).
    pub(crate) fn start(&self, audio: &Tensor) -> Result<State> {
        let d = self.d;
        let frames = audio.dim(1)?;
        let dh = d / self.n_head;
        let audio = audio.flatten_all()?.to_vec1::<f32>()?;
        let mut cross_kt = Vec::with_capacity(self.blocks.len());
        let mut cross_v = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            // Kᵀ = W_k · audioᵀ: `d × frames`, each head's rows together.
            let mut kt = vec![0f32; d * frames];
            kino_kernels::matmul(
                d,
                d,
                frames,
                Mat::rows(&b.cross_k.w, d),
                Mat::rows(&audio, d).t(),
                &mut kt,
                frames,
                false,
                1.0,
                Threads::All,
            );
            let mut v = vec![0f32; frames * d];
            b.cross_v.apply(&audio, frames, &mut v, false, false);
            // Each head's values together (`frames × dh`), streamed once per step.
            let mut vh = vec![0f32; frames * d];
            for (j, row) in v.chunks_exact(d).enumerate() {
                for (h, part) in row.chunks_exact(dh).enumerate() {
                    vh[(h * frames + j) * dh..][..dh].copy_from_slice(part);
                }
            }
            cross_kt.push(kt);
            cross_v.push(vh);
        }
        Ok(State {
            cross_kt,
            cross_v,
            frames,
            keys: vec![Vec::new(); self.blocks.len()],
            values: vec![Vec::new(); self.blocks.len()],
            len: 0,
        })
    }

    /// Feeds `tokens` after those already in `state`; returns the final
    /// hidden states of the new tokens (`[1, n, d]`, layer-normed).
    pub(crate) fn forward(&self, tokens: &[u32], state: &mut State) -> Result<Tensor> {
        let (d, n) = (self.d, tokens.len());
        let offset = state.len;
        let max_positions = self.positions.len() / d;
        if offset + n > max_positions {
            return Err(WhisperError::Model(format!(
                "{} tokens exceed the decoder's {max_positions} positions",
                offset + n
            )));
        }
        let mut x = vec![0f32; n * d];
        for (i, (&t, row)) in tokens.iter().zip(x.chunks_exact_mut(d)).enumerate() {
            let t = t as usize;
            if t >= self.vocab {
                return Err(WhisperError::Model(format!("token {t} is outside the vocabulary")));
            }
            let p = &self.positions[(offset + i) * d..(offset + i + 1) * d];
            if self.embed16.is_empty() {
                let e = &self.embed[t * d..(t + 1) * d];
                for ((v, e), p) in row.iter_mut().zip(e).zip(p) {
                    *v = e + p;
                }
            } else {
                let e = &self.embed16[t * d..(t + 1) * d];
                for ((v, &e), p) in row.iter_mut().zip(e).zip(p) {
                    *v = half::f16::from_bits(e).to_f32() + p;
                }
            }
        }
        let (heads, dh) = (self.n_head, d / self.n_head);
        let total = offset + n;
        let frames = state.frames;
        let mut h = vec![0f32; n * d];
        let mut qkv = vec![0f32; n * 3 * d];
        let mut a = vec![0f32; n * d];
        let mut f = vec![0f32; n * 4 * d];
        for (l, b) in self.blocks.iter().enumerate() {
            b.attn_ln.apply(&x, &mut h);
            b.qkv.apply(&h, n, &mut qkv, false, false);
            let (keys, values) = (&mut state.keys[l], &mut state.values[l]);
            for row in qkv.chunks_exact(3 * d) {
                keys.extend_from_slice(&row[d..2 * d]);
                values.extend_from_slice(&row[2 * d..]);
            }
            let (keys, values) = (&*keys, &*values);
            cpu::attention(
                n,
                total,
                heads,
                dh,
                &qkv,
                3 * d,
                |hd| {
                    Mat {
                        data: &keys[hd * dh..],
                        row_stride: d,
                        col_stride: 1,
                    }
                    .t()
                },
                |hd| Mat {
                    data: &values[hd * dh..],
                    row_stride: d,
                    col_stride: 1,
                },
                |i| offset + i + 1,
                &mut a,
                d,
            );
            b.out.apply(&a, n, &mut x, true, false);

            b.cross_ln.apply(&x, &mut h);
            b.cross_q.apply(&h, n, &mut qkv[..n * d], false, false);
            let (kt, v) = (&state.cross_kt[l], &state.cross_v[l]);
            cpu::attention(
                n,
                frames,
                heads,
                dh,
                &qkv[..n * d],
                d,
                |hd| Mat::rows(&kt[hd * dh * frames..(hd + 1) * dh * frames], frames),
                |hd| Mat::rows(&v[hd * frames * dh..(hd + 1) * frames * dh], dh),
                |_| frames,
                &mut a,
                d,
            );
            b.cross_out.apply(&a, n, &mut x, true, false);

            b.mlp_ln.apply(&x, &mut h);
            b.fc1.apply(&h, n, &mut f, false, true);
            b.fc2.apply(&f, n, &mut x, true, false);
        }
        state.len = total;
        self.ln.apply_in_place(&mut x);
        Ok(Tensor::from_vec(x, (1, n, d), &self.device)?)
    }

    /// Logits (f32) of the hidden state at position `i` of `hidden`.
    pub(crate) fn logits(&self, hidden: &Tensor, i: usize) -> Result<Vec<f32>> {
        let h = hidden.narrow(1, i, 1)?.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; self.vocab];
        let zero = vec![0f32; self.vocab];
        let w = if self.embed16.is_empty() {
            Weights::F32(&self.embed)
        } else {
            Weights::F16(&self.embed16)
        };
        cpu::matvec(&h, w, &zero, &mut out, false, false);
        Ok(out)
    }
}
