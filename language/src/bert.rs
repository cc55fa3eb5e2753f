//! The padded BERT encoder forward pass on candle tensors (batch × length
//! with an attention mask), with Hugging Face weight names. It is the
//! reference the packed CPU forward in `cpu` is tested against (built in
//! tests only); it computes what candle-transformers' `BertModel` and
//! Hugging Face transformers compute.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};

/// A linear layer with its weight stored transposed (`in × out`,
/// contiguous), so the product needs no transposition at run time.
struct Dense {
    wt: Tensor,
    b: Tensor,
}

impl Dense {
    fn load(vb: &VarBuilder, inp: usize, out: usize) -> Result<Dense> {
        let w = vb.get((out, inp), "weight")?;
        let b = vb.get(out, "bias")?;
        Ok(Dense {
            wt: w.t()?.contiguous()?,
            b,
        })
    }

    /// Several linear layers on the same input as one (weights side by side).
    fn fused(parts: &[Dense]) -> Result<Dense> {
        let wts: Vec<&Tensor> = parts.iter().map(|d| &d.wt).collect();
        let bs: Vec<&Tensor> = parts.iter().map(|d| &d.b).collect();
        Ok(Dense {
            wt: Tensor::cat(&wts, 1)?.contiguous()?,
            b: Tensor::cat(&bs, 0)?,
        })
    }

    /// `x`: `(n, in)` → `(n, out)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.wt)?.broadcast_add(&self.b)
    }
}

struct Norm {
    w: Tensor,
    b: Tensor,
    eps: f32,
}

impl Norm {
    fn load(vb: &VarBuilder, h: usize, eps: f64) -> Result<Norm> {
        let (w, b) = match (vb.get(h, "weight"), vb.get(h, "bias")) {
            (Ok(w), Ok(b)) => (w, b),
            // Old TF-converted checkpoints name them gamma/beta.
            _ => (vb.get(h, "gamma")?, vb.get(h, "beta")?),
        };
        Ok(Norm { w, b, eps: eps as f32 })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.w, &self.b, self.eps)
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

/// The BERT encoder (embeddings + layers; no pooler).
pub(crate) struct Bert {
    word: Tensor,
    position: Tensor,
    token_type0: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    act: HiddenAct,
}

impl Bert {
    /// Loads the weights (with or without a `bert.` prefix).
    pub(crate) fn load(vb: VarBuilder, c: &Config) -> Result<Bert> {
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
        let word = e.get((c.vocab_size, h), "word_embeddings.weight")?;
        let position = e.get((c.max_position_embeddings, h), "position_embeddings.weight")?;
        let token_type0 = e.get((c.type_vocab_size, h), "token_type_embeddings.weight")?.get(0)?;
        let emb_norm = Norm::load(&e.pp("LayerNorm"), h, c.layer_norm_eps)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let q = Dense::load(&a.pp("self.query"), h, h)?;
            let k = Dense::load(&a.pp("self.key"), h, h)?;
            let v = Dense::load(&a.pp("self.value"), h, h)?;
            layers.push(Layer {
                qkv: Dense::fused(&[q, k, v])?,
                attn_out: Dense::load(&a.pp("output.dense"), h, h)?,
                attn_norm: Norm::load(&a.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
                inter: Dense::load(&l.pp("intermediate.dense"), h, c.intermediate_size)?,
                out: Dense::load(&l.pp("output.dense"), c.intermediate_size, h)?,
                out_norm: Norm::load(&l.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
            });
        }
        Ok(Bert {
            word,
            position,
            token_type0,
            emb_norm,
            layers,
            heads: c.num_attention_heads,
            hidden: h,
            act: c.hidden_act,
        })
    }

    /// `ids`, `mask`: `(b, l)` u32 (mask 1 for real tokens). Returns the last
    /// hidden states `(b, l, hidden)`; token type ids are all 0.
    pub(crate) fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let h = self.hidden;
        let n = b * l;
        if l > self.position.dim(0)? {
            candle_core::bail!("sequence of {l} tokens exceeds max_position_embeddings");
        }
        // Embeddings.
        let words = self.word.index_select(&ids.flatten_all()?, 0)?.reshape((b, l, h))?;
        let pos = self.position.narrow(0, 0, l)?;
        let x = words.broadcast_add(&pos)?.broadcast_add(&self.token_type0)?;
        let mut x = self.emb_norm.forward(&x.reshape((n, h))?)?;
        // Additive mask: 0 for real tokens, f32::MIN for padding (as transformers).
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * (-(f32::MIN as f64)))?.reshape((b, 1, 1, l))?;
        let nh = self.heads;
        let dh = h / nh;
        let scale = 1.0 / (dh as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?.reshape((b, l, 3, nh, dh))?;
            let q = (qkv.narrow(2, 0, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()? * scale)?;
            let k = qkv.narrow(2, 1, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?;
            let v = qkv.narrow(2, 2, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((n, h))?;
            let a = layer.attn_out.forward(&ctx)?;
            x = layer.attn_norm.forward(&(a + &x)?)?;
            let i = layer.inter.forward(&x)?;
            let i = match self.act {
                HiddenAct::Gelu => i.gelu_erf()?,
                HiddenAct::GeluApproximate => i.gelu()?,
                HiddenAct::Relu => i.relu()?,
            };
            let o = layer.out.forward(&i)?;
            x = layer.out_norm.forward(&(o + &x)?)?;
        }
        x.reshape((b, l, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A/B against candle-transformers' BertModel: same outputs, and timing.
    #[test]
    #[ignore]
    fn same_as_candle_bert_and_timing() {
        let dir = std::path::PathBuf::from(std::env::var("HOME").unwrap())
            .join(".local/share/kino/models/sentence-transformers/all-MiniLM-L6-v2");
        let cfg: Config = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        let data = std::fs::read(dir.join("model.safetensors")).unwrap();
        let vb = VarBuilder::from_buffered_safetensors(data, DType::F32, &Device::Cpu).unwrap();
        let mine = Bert::load(vb.clone(), &cfg).unwrap();
        let theirs = candle_transformers::models::bert::BertModel::load(vb, &cfg).unwrap();
        for &(b, l) in &[(32usize, 16usize), (32, 40), (32, 120)] {
            let ids: Vec<u32> = (0..b * l).map(|i| (1000 + (i * 7919) % 20000) as u32).collect();
            let mut mask = vec![1u32; b * l];
            for r in 0..b {
                for t in l - r % 5..l {
                    mask[r * l + t] = 0;
                }
            }
            let ids = Tensor::from_vec(ids, (b, l), &Device::Cpu).unwrap();
            let mask = Tensor::from_vec(mask, (b, l), &Device::Cpu).unwrap();
            let tt = ids.zeros_like().unwrap();
            let a = mine.forward(&ids, &mask).unwrap();
            let c = theirs.forward(&ids, &tt, Some(&mask)).unwrap();
            let diff: f32 = (a - &c)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            let (mut tm, mut tc) = (0f64, 0f64);
            for _ in 0..3 {
                let t = std::time::Instant::now();
                mine.forward(&ids, &mask).unwrap();
                tm += t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                theirs.forward(&ids, &tt, Some(&mask)).unwrap();
                tc += t.elapsed().as_secs_f64();
            }
            println!(
                "b {b} l {l}: max diff {diff:.2e}; mine {:.1} ms, candle {:.1} ms",
                tm * 333.3,
                tc * 333.3
            );
            assert!(diff < 1e-3);
        }
    }
}
