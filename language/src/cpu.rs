//! The BERT encoder forward pass for the CPU on plain f32 buffers, with the
//! sequences of a batch packed one after another (no padding tokens at all).
//!
//! It computes what candle-transformers' `BertModel` (and Hugging Face
//! transformers) computes for the real tokens of each sequence: with an additive
//! `f32::MIN` mask a padded key gets exactly zero attention weight, and the
//! padded query rows are discarded by pooling, so leaving padding out changes
//! nothing but the work done. Per layer:
//!
//! 1. `qkv = x·Wqkv + b` — one product over all tokens (bias pre-filled).
//! 2. per (sequence, head), in parallel: `softmax(q·kᵀ/√d)·v`, read straight
//!    from the `qkv` rows through strides, written into the head's columns.
//! 3. `x = LayerNorm(x + b + ctx·Wo)` — residual and bias pre-filled, the
//!    product accumulates onto them.
//! 4. `i = GELU(b + x·Wi)`, then `x = LayerNorm(x + b + i·Wo2)`.
//!
//! At [`Precision::Int8`] the four products with weights (steps 1, 3, 4) run
//! in int8 (`kino_kernels::int8`: weights per output channel, activations per
//! token); the attention products, softmax, GELU and layer norms stay f32.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};
use kino_kernels::{
    gelu_in_place, layer_norm_in_place, matmul, matmul_ptr, softmax_rows, ChannelRanges, Int8Linear, Mat, SendPtr,
    Threads,
};
use rayon::prelude::*;

fn vec1(t: Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

/// The arithmetic of the encoder's linear layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 throughout (the reference: matches sentence-transformers).
    #[default]
    F32,
    /// The linear layers' products in int8 (weights quantized per output
    /// channel at load, activations per token at run time, int32 sums that
    /// are exact and identical on every CPU), about 4× smaller weights and
    /// about twice as fast on a CPU with VNNI; cosine ≥ 0.995 to the f32 vectors on
    /// all-MiniLM-L6-v2 (see `tests/int8.rs`). Attention, softmax and layer
    /// norms stay f32.
    Int8,
}

/// Text run through the f32 model once when loading at
/// [`Precision::Int8`], to find the linear layers' outlier input channels
/// (fixed, so that the int8 model is the same on every load).
pub const CALIBRATION: &[&str] = &[
    "A man is slicing a tomato in the kitchen.",
    "Two dogs run across a snowy field at dawn.",
    "The president speaks to reporters outside the White House.",
    "un chat dort sur le canapé",
    "Der Zug kommt um 10:45 Uhr in Berlin an.",
    "[MUSIC PLAYING]",
    "- Where are you going?\n- Home, I guess.",
    "Stocks fell 3% on Tuesday after the central bank raised interest rates again.",
    "lol that was sooo funny 😂",
    "How do I reset my password?",
    "The mitochondria is the powerhouse of the cell.",
    "ok",
    "",
    "A red car parked next to an old brick building, with a bicycle leaning against the wall and people \
     walking by on a busy street full of shops and cafés in the afternoon sun.",
];

/// A linear layer: weight transposed to `in × out` (row-major) and bias.
struct Dense {
    /// The f32 weights (empty once quantized).
    w: Vec<f32>,
    /// The int8 layer, when quantized.
    q: Option<Int8Linear>,
    b: Vec<f32>,
    inp: usize,
    out: usize,
}

impl Dense {
    fn load(vb: &VarBuilder, inp: usize, out: usize) -> Result<Dense> {
        Ok(Dense {
            w: vec1(vb.get((out, inp), "weight")?.t()?.contiguous()?)?,
            q: None,
            b: vec1(vb.get(out, "bias")?)?,
            inp,
            out,
        })
    }

    /// Quantizes the weights to int8, given the largest |input| seen per
    /// input channel on calibration text (`amax`). Outlier channels (BERT's
    /// hidden states have a few, tens of times larger than the rest) are
    /// smoothed first as in SmoothQuant ([`Int8Linear::quantize`]). (The
    /// calibration runs the f32 model, whose last bits may differ between
    /// CPUs; so may then, rarely, a weight's int8 value. The int8 products
    /// themselves are exact everywhere.)
    fn quantize(&mut self, amax: &[f32]) {
        let w = std::mem::take(&mut self.w);
        self.q = Some(Int8Linear::quantize(&w, self.inp, self.out, amax));
    }

    /// Several layers on the same input as one (outputs side by side).
    fn fused(vb: &[VarBuilder], inp: usize, out: usize) -> Result<Dense> {
        let ws = vb
            .iter()
            .map(|v| v.get((out, inp), "weight"))
            .collect::<Result<Vec<_>>>()?;
        let bs = vb.iter().map(|v| v.get(out, "bias")).collect::<Result<Vec<_>>>()?;
        Ok(Dense {
            w: vec1(Tensor::cat(&ws, 0)?.t()?.contiguous()?)?,
            q: None,
            b: vec1(Tensor::cat(&bs, 0)?)?,
            inp,
            out: out * vb.len(),
        })
    }

    /// `dst = pre + b + x·W` for `x` of `t` rows (`pre` is `dst`'s current
    /// content when `residual`, else nothing).
    fn forward_into(&self, x: &[f32], t: usize, dst: &mut [f32], residual: bool) {
        let inp = self.inp;
        let o = self.out;
        if let Some(q) = &self.q {
            return q.forward(x, t, Some(&self.b), dst, o, residual);
        }
        dst[..t * o].par_chunks_mut(o * 64).for_each(|rows| {
            for row in rows.chunks_exact_mut(o) {
                if residual {
                    for (d, b) in row.iter_mut().zip(&self.b) {
                        *d += b;
                    }
                } else {
                    row.copy_from_slice(&self.b);
                }
            }
        });
        matmul(
            t,
            inp,
            o,
            Mat::rows(&x[..t * inp], inp),
            Mat::rows(&self.w, o),
            &mut dst[..t * o],
            o,
            true,
            1.0,
            Threads::All,
        );
    }
}

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn load(vb: &VarBuilder, h: usize, eps: f64) -> Result<Norm> {
        let (w, b) = match (vb.get(h, "weight"), vb.get(h, "bias")) {
            (Ok(w), Ok(b)) => (w, b),
            // Old TF-converted checkpoints name them gamma/beta.
            _ => (vb.get(h, "gamma")?, vb.get(h, "beta")?),
        };
        Ok(Norm {
            w: vec1(w)?,
            b: vec1(b)?,
            eps: eps as f32,
        })
    }

    fn apply(&self, x: &mut [f32]) {
        layer_norm_in_place(x, &self.w, &self.b, self.eps)
    }
}

struct Layer {
    qkv: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    inter: Dense,
    out: Dense,
    out_norm: Norm,
}

/// The BERT encoder (embeddings + layers; no pooler) on the CPU.
pub(crate) struct CpuBert {
    word: Vec<f32>,
    position: Vec<f32>,
    max_positions: usize,
    token_type0: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    intermediate: usize,
    act: HiddenAct,
}

impl CpuBert {
    /// Loads the weights (with or without a `bert.` prefix).
    pub(crate) fn load(vb: VarBuilder, c: &Config) -> Result<CpuBert> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = c.hidden_size;
        if c.num_attention_heads == 0 || !h.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!(
                "hidden_size {h} is not a multiple of num_attention_heads {}",
                c.num_attention_heads
            );
        }
        let e = vb.pp("embeddings");
        let word = vec1(e.get((c.vocab_size, h), "word_embeddings.weight")?)?;
        let position = vec1(e.get((c.max_position_embeddings, h), "position_embeddings.weight")?)?;
        let token_type0 = vec1(e.get((c.type_vocab_size, h), "token_type_embeddings.weight")?.get(0)?)?;
        let emb_norm = Norm::load(&e.pp("LayerNorm"), h, c.layer_norm_eps)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let qkv = [a.pp("self.query"), a.pp("self.key"), a.pp("self.value")];
            layers.push(Layer {
                qkv: Dense::fused(&qkv, h, h)?,
                attn_out: Dense::load(&a.pp("output.dense"), h, h)?,
                attn_norm: Norm::load(&a.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
                inter: Dense::load(&l.pp("intermediate.dense"), h, c.intermediate_size)?,
                out: Dense::load(&l.pp("output.dense"), c.intermediate_size, h)?,
                out_norm: Norm::load(&l.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
            });
        }
        Ok(CpuBert {
            word,
            position,
            max_positions: c.max_position_embeddings,
            token_type0,
            emb_norm,
            layers,
            heads: c.num_attention_heads,
            hidden: h,
            intermediate: c.intermediate_size,
            act: c.hidden_act,
        })
    }

    /// The last hidden states of every token of `seqs`, packed: sequence
    /// `i`'s rows follow sequence `i - 1`'s, `hidden` values per row. Token
    /// type ids are all 0.
    pub(crate) fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        self.forward_seeing(seqs, &mut |_, _| {})
    }

    /// Turns the linear layers to int8 ([`Precision::Int8`]), smoothing
    /// their inputs' outlier channels as seen on the calibration sequences
    /// `calib` (see `Dense::quantize`).
    pub(crate) fn quantize(&mut self, calib: &[&[u32]]) -> Result<()> {
        let mut ranges: Vec<ChannelRanges> = self.linear_inputs().into_iter().map(ChannelRanges::new).collect();
        self.observe(calib, &mut ranges)?;
        let amax: Vec<Vec<f32>> = ranges.iter().map(|r| r.max().to_vec()).collect();
        self.quantize_with(&amax);
        Ok(())
    }

    /// Each linear layer's input width, in the order of
    /// [`CpuBert::quantize_with`]'s ranges.
    pub(crate) fn linear_inputs(&self) -> Vec<usize> {
        self.layers
            .iter()
            .flat_map(|l| [l.qkv.inp, l.attn_out.inp, l.inter.inp, l.out.inp])
            .collect()
    }

    /// Records each linear layer's input on `seqs` into `ranges` (one per
    /// layer, see [`CpuBert::linear_inputs`]), running the f32 model.
    pub(crate) fn observe(&self, seqs: &[&[u32]], ranges: &mut [ChannelRanges]) -> Result<()> {
        self.forward_seeing(seqs, &mut |i, x| {
            if let Some(r) = ranges.get_mut(i) {
                for row in x {
                    r.observe(row);
                }
            }
        })
        .map(|_| ())
    }

    /// Turns the linear layers to int8 with each layer's input ranges
    /// (`4·i + j` for the `j`th linear layer of encoder layer `i`; a missing
    /// or empty one: no smoothing).
    pub(crate) fn quantize_with(&mut self, ranges: &[Vec<f32>]) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (j, d) in [&mut layer.qkv, &mut layer.attn_out, &mut layer.inter, &mut layer.out]
                .into_iter()
                .enumerate()
            {
                let zeros = vec![0f32; d.inp];
                d.quantize(ranges.get(i * 4 + j).filter(|a| a.len() == d.inp).unwrap_or(&zeros));
            }
        }
    }

    /// [`CpuBert::forward`], showing `see` each linear layer's input (layer
    /// `4·i + j` for the `j`th linear layer of encoder layer `i`) as rows.
    fn forward_seeing(
        &self,
        seqs: &[&[u32]],
        see: &mut dyn FnMut(usize, std::slice::ChunksExact<f32>),
    ) -> Result<Vec<f32>> {
        let h = self.hidden;
        let vocab = self.word.len() / h;
        let mut offsets = Vec::with_capacity(seqs.len() + 1);
        offsets.push(0usize);
        for s in seqs {
            if s.len() > self.max_positions {
                candle_core::bail!(
                    "sequence of {} tokens exceeds max_position_embeddings {}",
                    s.len(),
                    self.max_positions
                );
            }
            if let Some(&bad) = s.iter().find(|&&id| id as usize >= vocab) {
                candle_core::bail!("token id {bad} is outside the vocabulary of {vocab}");
            }
            offsets.push(offsets.last().unwrap() + s.len());
        }
        let t = *offsets.last().unwrap();
        if t == 0 {
            return Ok(Vec::new());
        }
        // Embeddings: word + position + token type 0, then layer norm.
        let mut x = vec![0f32; t * h];
        let mut row = 0;
        for s in seqs {
            for (p, &id) in s.iter().enumerate() {
                let dst = &mut x[row * h..(row + 1) * h];
                let w = &self.word[id as usize * h..(id as usize + 1) * h];
                let pe = &self.position[p * h..(p + 1) * h];
                for (((d, a), b), c) in dst.iter_mut().zip(w).zip(pe).zip(&self.token_type0) {
                    *d = a + b + c;
                }
                row += 1;
            }
        }
        self.emb_norm.apply(&mut x);

        let nh = self.heads;
        let dh = h / nh;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut qkv = vec![0f32; t * 3 * h];
        let mut ctx = vec![0f32; t * h];
        let mut inter = vec![0f32; t * self.intermediate];
        let tasks: Vec<(usize, usize)> = (0..seqs.len())
            .filter(|&s| offsets[s + 1] > offsets[s])
            .flat_map(|s| (0..nh).map(move |j| (s, j)))
            .collect();
        for (li, layer) in self.layers.iter().enumerate() {
            see(li * 4, x.chunks_exact(h));
            layer.qkv.forward_into(&x, t, &mut qkv, false);
            let ctx_ptr = SendPtr(ctx.as_mut_ptr());
            let qkv_ref = &qkv;
            let offsets_ref = &offsets;
            tasks
                .par_iter()
                .for_each_init(Vec::new, |scores: &mut Vec<f32>, &(s, j)| {
                    let (start, len) = (offsets_ref[s], offsets_ref[s + 1] - offsets_ref[s]);
                    let rows = &qkv_ref[start * 3 * h..(start + len) * 3 * h];
                    scores.clear();
                    scores.resize(len * len, 0.0);
                    let q = Mat {
                        data: &rows[j * dh..],
                        row_stride: 3 * h,
                        col_stride: 1,
                    };
                    let k = Mat {
                        data: &rows[h + j * dh..],
                        row_stride: 3 * h,
                        col_stride: 1,
                    };
                    let v = Mat {
                        data: &rows[2 * h + j * dh..],
                        row_stride: 3 * h,
                        col_stride: 1,
                    };
                    matmul(len, dh, len, q, k.t(), scores, len, false, scale, Threads::One);
                    softmax_rows(scores, len);
                    // SAFETY: this task alone writes columns j*dh..(j+1)*dh of
                    // rows start..start+len of `ctx` (tasks are distinct (s, j)),
                    // and `ctx` outlives the parallel loop.
                    unsafe {
                        matmul_ptr(
                            len,
                            len,
                            dh,
                            Mat::rows(scores, len),
                            v,
                            ctx_ptr.get().add(start * h + j * dh),
                            h,
                            false,
                            1.0,
                            Threads::One,
                        )
                    };
                });
            see(li * 4 + 1, ctx.chunks_exact(h));
            layer.attn_out.forward_into(&ctx, t, &mut x, true);
            layer.attn_norm.apply(&mut x);
            see(li * 4 + 2, x.chunks_exact(h));
            layer.inter.forward_into(&x, t, &mut inter, false);
            match self.act {
                HiddenAct::Gelu => gelu_in_place(&mut inter),
                HiddenAct::GeluApproximate => {
                    let c = (2.0f32 / std::f32::consts::PI).sqrt();
                    inter
                        .par_iter_mut()
                        .for_each(|v| *v = 0.5 * *v * (1.0 + (c * (*v + 0.044715 * *v * *v * *v)).tanh()));
                }
                HiddenAct::Relu => inter.par_iter_mut().for_each(|v| *v = v.max(0.0)),
            }
            see(li * 4 + 3, inter.chunks_exact(self.intermediate));
            layer.out.forward_into(&inter, t, &mut x, true);
            layer.out_norm.apply(&mut x);
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_transformers::models::bert::BertModel;

    /// Same hidden states as candle-transformers' (padded, masked) `BertModel`
    /// on a small random BERT, for sequences of different lengths in one batch.
    #[test]
    fn packed_forward_matches_the_padded_one() {
        let cfg = Config {
            vocab_size: 50,
            hidden_size: 24,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 40,
            hidden_act: HiddenAct::Gelu,
            max_position_embeddings: 32,
            ..Config::default()
        };
        let dev = Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        // Create every variable (zeros), give them random values, then load
        // both models from them (loading copies the weights).
        BertModel::load(vb.clone(), &cfg).unwrap();
        for var in vm.all_vars() {
            let noise = Tensor::randn(0f32, 0.5, var.shape(), &dev).unwrap();
            var.set(&noise).unwrap();
        }
        let padded = BertModel::load(vb.clone(), &cfg).unwrap();
        let packed = CpuBert::load(vb.clone(), &cfg).unwrap();
        let mut int8 = CpuBert::load(vb, &cfg).unwrap();
        let seqs: Vec<Vec<u32>> = vec![
            vec![1, 5, 9, 13, 2],
            vec![1, 7, 2],
            vec![1, 2],
            vec![1, 40, 41, 42, 43, 44, 2],
        ];
        let l = 7;
        let mut ids = vec![0u32; seqs.len() * l];
        let mut mask = vec![0u32; seqs.len() * l];
        for (r, s) in seqs.iter().enumerate() {
            ids[r * l..r * l + s.len()].copy_from_slice(s);
            mask[r * l..r * l + s.len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (seqs.len(), l), &dev).unwrap();
        let mask = Tensor::from_vec(mask, (seqs.len(), l), &dev).unwrap();
        let want = padded
            .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let got = packed.forward(&refs).unwrap();
        let h = 24;
        let mut row = 0;
        for (r, s) in seqs.iter().enumerate() {
            for p in 0..s.len() {
                for c in 0..h {
                    let (a, b) = (want[(r * l + p) * h + c], got[row * h + c]);
                    assert!((a - b).abs() < 1e-4, "seq {r} token {p} dim {c}: {a} vs {b}");
                }
                row += 1;
            }
        }
        assert_eq!(got.len(), row * h);
        // The int8 layers give nearly the same hidden states.
        int8.quantize(&[&[1, 3, 5, 7, 9, 2], &[1, 30, 31, 2]]).unwrap();
        let q = int8.forward(&refs).unwrap();
        assert_eq!(q.len(), got.len());
        for (r, (a, b)) in got.chunks(h).zip(q.chunks(h)).enumerate() {
            let c = crate::cosine(a, b);
            assert!(c > 0.99, "int8 row {r}: cosine {c}");
        }
        assert!(packed.forward(&[&[1, 99]]).is_err(), "out-of-vocabulary id accepted");
    }
}
