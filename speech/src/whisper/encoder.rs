//! Whisper's audio encoder as CTranslate2 computes it: two convolutions with
//! the exact (erf) GELU (candle-transformers' encoder uses the tanh
//! approximation), the stored position encodings, pre-norm blocks of
//! self-attention and MLP, a final layer norm.
//!
//! Runs on plain f32 buffers (`cpu`): the convolutions are matrix products
//! over overlapping rows of a time-major, zero-padded input (a row of the
//! product's left side is three consecutive input frames, so no copy is
//! made), the block's q and v one fused product and the keys one product
//! written transposed, the attention per head
//! and block of 64 query rows with the scores kept in cache.

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::Config;
use kino_kernels::{Mat, Threads};

use super::cpu::{self, Linear, Norm};
use super::Result;

struct Block {
    attn_ln: Norm,
    /// q and v side by side: `2d × d`.
    qv: Linear,
    /// The key projection (no bias): its product is computed transposed.
    k: Vec<f32>,
    out: Linear,
    mlp_ln: Norm,
    fc1: Linear,
    fc2: Linear,
}

/// A 1-D convolution of kernel 3 and padding 1, its weight reordered to
/// `out × (tap, in)` so that a row of the product's left side is three
/// consecutive time-major input frames.
struct Conv {
    w: Vec<f32>,
    b: Vec<f32>,
    c_in: usize,
    c_out: usize,
}

impl Conv {
    fn load(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<Conv> {
        let w = cpu::values(&vb, &[c_out, c_in, 3], "weight")?;
        let mut r = vec![0f32; w.len()];
        for o in 0..c_out {
            for c in 0..c_in {
                for t in 0..3 {
                    r[o * 3 * c_in + t * c_in + c] = w[o * 3 * c_in + c * 3 + t];
                }
            }
        }
        Ok(Conv {
            w: r,
            b: cpu::values(&vb, &[c_out], "bias")?,
            c_in,
            c_out,
        })
    }

    /// `gelu(conv(x))` for `n_out` output frames at `stride`: `x` is
    /// time-major with one zero frame before the input (and enough after),
    /// `y` gets `n_out × c_out`, row stride `ldy`.
    fn forward(&self, x: &[f32], stride: usize, n_out: usize, y: &mut [f32], ldy: usize) {
        let k = 3 * self.c_in;
        let a = Mat {
            data: x,
            row_stride: stride * self.c_in,
            col_stride: 1,
        };
        let b = Mat::rows(&self.w, k).t();
        kino_kernels::matmul(n_out, k, self.c_out, a, b, y, ldy, false, 1.0, Threads::All);
        let rows = &mut y[..n_out * ldy];
        cpu::bias_rows_in_place(rows, &self.b, true);
    }
}

/// The encoder's weights.
pub(crate) struct Encoder {
    conv1: Conv,
    conv2: Conv,
    positions: Vec<f32>,
    blocks: Vec<Block>,
    ln: Norm,
    n_head: usize,
    n_mels: usize,
    d: usize,
    device: Device,
}

impl Encoder {
    pub(crate) fn load(vb: VarBuilder, cfg: &Config) -> Result<Encoder> {
        let d = cfg.d_model;
        let blocks = (0..cfg.encoder_layers)
            .map(|i| -> Result<Block> {
                let vb = vb.pp(format!("layers.{i}"));
                let a = vb.pp("self_attn");
                Ok(Block {
                    attn_ln: Norm::load(vb.pp("self_attn_layer_norm"), d)?,
                    qv: Linear::fuse(vec![
                        Linear::load(a.pp("q_proj"), d, d, true)?,
                        Linear::load(a.pp("v_proj"), d, d, true)?,
                    ]),
                    k: cpu::values(&a.pp("k_proj"), &[d, d], "weight")?,
                    out: Linear::load(a.pp("out_proj"), d, d, true)?,
                    mlp_ln: Norm::load(vb.pp("final_layer_norm"), d)?,
                    fc1: Linear::load(vb.pp("fc1"), d, 4 * d, true)?,
                    fc2: Linear::load(vb.pp("fc2"), 4 * d, d, true)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder {
            conv1: Conv::load(vb.pp("conv1"), cfg.num_mel_bins, d)?,
            conv2: Conv::load(vb.pp("conv2"), d, d)?,
            positions: cpu::values(&vb, &[cfg.max_source_positions, d], "embed_positions.weight")?,
            blocks,
            ln: Norm::load(vb.pp("layer_norm"), d)?,
            n_head: cfg.encoder_attention_heads,
            n_mels: cfg.num_mel_bins,
            d,
            device: vb.device().clone(),
        })
    }

    /// Runs the blocks' linear layers (q and v, the attention output, the
    /// MLP) in int8 from now on: weights per output column, activations per
    /// row at run time, as they are. (Smoothing with ranges calibrated on
    /// speech, as the sentence encoder and Swin do, made the transcripts of
    /// the parity clips worse here: 9.45 % WER against 8.27 % without and
    /// 7.87 % in f32.) The key projection (computed transposed) and the
    /// convolutions stay f32.
    pub(crate) fn quantize(&mut self) {
        for b in &mut self.blocks {
            for l in [&mut b.qv, &mut b.out, &mut b.fc1, &mut b.fc2] {
                let zeros = vec![0f32; l.n_in];
                l.quantize(&zeros);
            }
        }
    }

    /// Encodes one window of features (`n_mels × frames`, mel-major): the
    /// encoder output `[1, frames / 2, d]`.
    pub(crate) fn forward(&self, features: Vec<f32>, frames: usize) -> Result<Tensor> {
        let (d, n_mels) = (self.d, self.n_mels);
        assert_eq!(
            features.len(),
            n_mels * frames,
            "encoder: features are not n_mels × frames"
        );
        // Time-major input with a zero frame before and after.
        let mut input = vec![0f32; (frames + 2) * n_mels];
        for (m, row) in features.chunks_exact(frames.max(1)).enumerate().take(n_mels) {
            for (t, &v) in row.iter().enumerate() {
                input[(t + 1) * n_mels + m] = v;
            }
        }
        drop(features);
        // conv1 (stride 1) into a buffer with a zero frame before (and one after).
        let mut h1 = vec![0f32; (frames + 2) * d];
        self.conv1.forward(&input, 1, frames, &mut h1[d..], d);
        drop(input);
        let n = frames.div_ceil(2);
        let mut x = vec![0f32; n * d];
        self.conv2.forward(&h1, 2, n, &mut x, d);
        drop(h1);
        if n > self.positions.len() / d {
            return Err(super::WhisperError::Model(format!(
                "{frames} frames exceed the encoder's {} positions",
                self.positions.len() / d
            )));
        }
        for (row, p) in x.chunks_exact_mut(d).zip(self.positions.chunks_exact(d)) {
            for (v, p) in row.iter_mut().zip(p) {
                *v += p;
            }
        }

        let (heads, dh) = (self.n_head, d / self.n_head);
        let mut h = vec![0f32; n * d];
        let mut qv = vec![0f32; n * 2 * d];
        let mut kt = vec![0f32; d * n];
        let mut a = vec![0f32; n * d];
        let mut f = vec![0f32; n * 4 * d];
        for b in &self.blocks {
            b.attn_ln.apply(&x, &mut h);
            b.qv.apply(&h, n, &mut qv, false, false);
            // Kᵀ = W_k · hᵀ (`d × n`): each head's keys a contiguous
            // `dh × n` block, read as is by the score products.
            kino_kernels::matmul(
                d,
                d,
                n,
                Mat::rows(&b.k, d),
                Mat::rows(&h, d).t(),
                &mut kt,
                n,
                false,
                1.0,
                Threads::All,
            );
            let ld = 2 * d;
            cpu::attention(
                n,
                n,
                heads,
                dh,
                &qv,
                ld,
                |hd| Mat::rows(&kt[hd * dh * n..(hd + 1) * dh * n], n),
                |hd| Mat {
                    data: &qv[d + hd * dh..],
                    row_stride: ld,
                    col_stride: 1,
                },
                |_| n,
                &mut a,
                d,
            );
            b.out.apply(&a, n, &mut x, true, false);
            b.mlp_ln.apply(&x, &mut h);
            b.fc1.apply(&h, n, &mut f, false, true);
            b.fc2.apply(&f, n, &mut x, true, false);
        }
        self.ln.apply_in_place(&mut x);
        Ok(Tensor::from_vec(x, (1, n, d), &self.device)?)
    }
}
