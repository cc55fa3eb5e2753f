//! Fused, multi-threaded CPU kernels for the element-wise steps of the model
//! (candle runs element-wise ops on one thread): bias add, bias add + GELU,
//! residual add, all in place on a freshly computed tensor. Other devices use
//! candle's generic ops.

use candle_core::{bail, CpuStorage, InplaceOp2, Layout, Result, Tensor};
use kino_kernels::{exp_f32, gelu_erf_f32, madd, MIN_CHUNK};
use rayon::prelude::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// dst += bias (bias broadcast over rows).
    Bias,
    /// dst = gelu(dst + bias).
    BiasGelu,
    /// dst += src (same shape).
    Add,
}

struct Fused(Kind);

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what}: f32 expected")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: contiguous tensor expected"),
    }
}

impl InplaceOp2 for Fused {
    fn name(&self) -> &'static str {
        "kino-fused-elementwise"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let src = slice(s2, l2, "source")?;
        let Some((a, b)) = l1.contiguous_offsets() else {
            bail!("destination: contiguous tensor expected")
        };
        let CpuStorage::F32(dst) = s1 else {
            bail!("destination: f32 expected")
        };
        let dst = &mut dst[a..b];
        match self.0 {
            Kind::Add => {
                if src.len() != dst.len() {
                    bail!("add: {} vs {} elements", dst.len(), src.len());
                }
                dst.par_chunks_mut(MIN_CHUNK)
                    .zip(src.par_chunks(MIN_CHUNK))
                    .for_each(|(d, s)| {
                        for (d, s) in d.iter_mut().zip(s) {
                            *d += s;
                        }
                    });
            }
            Kind::Bias | Kind::BiasGelu => {
                let n = src.len();
                if n == 0 || dst.len() % n != 0 {
                    bail!("bias of {n} does not divide {} elements", dst.len());
                }
                let rows = (MIN_CHUNK / n).max(1);
                let gelu = self.0 == Kind::BiasGelu;
                #[cfg(target_arch = "x86_64")]
                let avx2 = kino_kernels::fma();
                dst.par_chunks_mut(rows * n).for_each(|chunk| {
                    #[cfg(target_arch = "x86_64")]
                    if avx2 {
                        // SAFETY: the CPU supports AVX2 and FMA (checked above).
                        unsafe { bias_rows_avx2(chunk, src, gelu) };
                        return;
                    }
                    bias_rows::<false>(chunk, src, gelu);
                });
            }
        }
        Ok(())
    }
}

#[inline(always)]
fn bias_rows<const F: bool>(chunk: &mut [f32], bias: &[f32], gelu: bool) {
    for row in chunk.chunks_exact_mut(bias.len()) {
        if gelu {
            for (d, b) in row.iter_mut().zip(bias) {
                *d = gelu_erf_f32::<F>(*d + b);
            }
        } else {
            for (d, b) in row.iter_mut().zip(bias) {
                *d += b;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bias_rows_avx2(chunk: &mut [f32], bias: &[f32], gelu: bool) {
    bias_rows::<true>(chunk, bias, gelu)
}

fn fast(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.is_contiguous()
}

/// `x + bias` (bias over the last dim). Consumes `x`, which must not be shared.
pub fn add_bias(x: Tensor, bias: &Tensor) -> Result<Tensor> {
    if fast(&x) && fast(bias) {
        x.inplace_op2(bias, &Fused(Kind::Bias))?;
        Ok(x)
    } else {
        x.broadcast_add(bias)
    }
}

/// `gelu_erf(x + bias)`. Consumes `x`, which must not be shared.
pub fn add_bias_gelu(x: Tensor, bias: &Tensor) -> Result<Tensor> {
    if fast(&x) && fast(bias) {
        x.inplace_op2(bias, &Fused(Kind::BiasGelu))?;
        Ok(x)
    } else {
        x.broadcast_add(bias)?.gelu_erf()
    }
}

/// `x + y` (same shape). Consumes `y`, which must not be shared, and writes into it.
pub fn add_into(x: &Tensor, y: Tensor) -> Result<Tensor> {
    if fast(x) && fast(&y) && x.dims() == y.dims() {
        y.inplace_op2(x, &Fused(Kind::Add))?;
        Ok(y)
    } else {
        x + y
    }
}

/// Window attention, fused: for every window and head, `softmax(q kᵀ + bias) v`.
struct WindowAttention {
    windows_per_image: usize,
    tokens: usize,
    heads: usize,
    head_dim: usize,
}

impl WindowAttention {
    /// One window: `qkv` is its `(tokens, 3*dim)` rows, `out` its `(tokens, dim)` rows,
    /// `bias` its `(heads, tokens, tokens)` block. Works on groups of `R` query
    /// rows times `L` lanes, accumulated in registers (independent FMA chains).
    #[inline(always)]
    fn window<const F: bool, const L: usize>(
        &self,
        qkv: &[f32],
        bias: &[f32],
        out: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        const R: usize = 4;
        let (n, hd, heads) = (self.tokens, self.head_dim, self.heads);
        let dim = heads * hd;
        let np = n.div_ceil(L) * L;
        scratch.clear();
        scratch.resize(hd * np + 2 * R * np + R * hd, 0.0);
        let (kt, rest) = scratch.split_at_mut(hd * np);
        let (s, rest) = rest.split_at_mut(R * np);
        let (pt, qb) = rest.split_at_mut(R * np);
        let vrow = |j: usize, h: usize| 3 * dim * j + 2 * dim + h * hd;
        for h in 0..heads {
            // kᵀ of this head: (hd, np), zero-padded columns.
            for j in 0..n {
                let k = &qkv[j * 3 * dim + dim + h * hd..][..hd];
                for (d, &kv) in k.iter().enumerate() {
                    kt[d * np + j] = kv;
                }
            }
            for i0 in (0..n).step_by(R) {
                let rows = R.min(n - i0);
                for r in 0..R {
                    let dst = &mut qb[r * hd..][..hd];
                    if r < rows {
                        dst.copy_from_slice(&qkv[(i0 + r) * 3 * dim + h * hd..][..hd]);
                    } else {
                        dst.fill(0.0);
                    }
                }
                // Scores: q kᵀ for R rows.
                for jb in (0..np).step_by(L) {
                    let mut acc = [[0f32; L]; R];
                    for d in 0..hd {
                        let kr: &[f32; L] = kt[d * np + jb..][..L].try_into().expect("L lanes");
                        for r in 0..R {
                            let qv = qb[r * hd + d];
                            for l in 0..L {
                                acc[r][l] = madd::<F>(qv, kr[l], acc[r][l]);
                            }
                        }
                    }
                    for r in 0..R {
                        s[r * np + jb..][..L].copy_from_slice(&acc[r]);
                    }
                }
                // Bias and softmax (unnormalised; 1/sum applied at the end),
                // stored transposed in `pt` (n x R) for the next step.
                let mut inv = [0f32; R];
                for r in 0..R {
                    if r >= rows {
                        for j in 0..n {
                            pt[j * R + r] = 0.0;
                        }
                        continue;
                    }
                    let row = &mut s[r * np..][..np];
                    let brow = &bias[(h * n + i0 + r) * n..][..n];
                    for (sj, &bj) in row.iter_mut().zip(brow) {
                        *sj += bj;
                    }
                    for sj in row[n..].iter_mut() {
                        *sj = f32::NEG_INFINITY;
                    }
                    let mut mx = [f32::NEG_INFINITY; L];
                    for c in row.chunks_exact(L) {
                        for l in 0..L {
                            mx[l] = mx[l].max(c[l]);
                        }
                    }
                    let m = mx.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    for sj in row.iter_mut() {
                        *sj = exp_f32::<F>(*sj - m);
                    }
                    let mut sm = [0f32; L];
                    for c in row[..n].chunks(L) {
                        for (l, &v) in c.iter().enumerate() {
                            sm[l] += v;
                        }
                    }
                    inv[r] = 1.0 / sm.iter().sum::<f32>();
                    for j in 0..n {
                        pt[j * R + r] = row[j];
                    }
                }
                // probs · v for R rows.
                let mut db = 0;
                while db + L <= hd {
                    let mut acc = [[0f32; L]; R];
                    for j in 0..n {
                        let v: &[f32; L] = qkv[vrow(j, h) + db..][..L].try_into().expect("L lanes");
                        let pj: &[f32; R] = pt[j * R..][..R].try_into().expect("R rows");
                        for r in 0..R {
                            let p = pj[r];
                            for l in 0..L {
                                acc[r][l] = madd::<F>(p, v[l], acc[r][l]);
                            }
                        }
                    }
                    for r in 0..rows {
                        let o = &mut out[(i0 + r) * dim + h * hd + db..][..L];
                        for l in 0..L {
                            o[l] = acc[r][l] * inv[r];
                        }
                    }
                    db += L;
                }
                for d in db..hd {
                    for r in 0..rows {
                        let mut acc = 0.0;
                        for j in 0..n {
                            acc = madd::<F>(pt[j * R + r], qkv[vrow(j, h) + d], acc);
                        }
                        out[(i0 + r) * dim + h * hd + d] = acc * inv[r];
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn window_avx2(&self, qkv: &[f32], bias: &[f32], out: &mut [f32], scratch: &mut Vec<f32>) {
        self.window::<true, 8>(qkv, bias, out, scratch)
    }

    /// 16 lanes: half the loads and broadcasts per multiply-add of the
    /// 8-lane version (zero-padded score columns cost less than that).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn window_avx512(&self, qkv: &[f32], bias: &[f32], out: &mut [f32], scratch: &mut Vec<f32>) {
        self.window::<true, 16>(qkv, bias, out, scratch)
    }

    fn run(&self, qkv: &[f32], bias: &[f32], out: &mut [f32]) {
        self.run_with(qkv, bias, out, kino_kernels::fma(), kino_kernels::avx512())
    }

    /// [`Self::run`] with the instruction sets to use given (each only if the
    /// CPU has it).
    fn run_with(&self, qkv: &[f32], bias: &[f32], out: &mut [f32], avx2: bool, avx512: bool) {
        let (avx2, avx512) = (avx2 && kino_kernels::fma(), avx512 && kino_kernels::avx512());
        let (n, dim) = (self.tokens, self.heads * self.head_dim);
        let per_bias = self.heads * n * n;
        let bias_windows = bias.len() / per_bias;
        out.par_chunks_mut(n * dim)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (w, o)| {
                let b = if bias_windows == 1 {
                    0
                } else {
                    w % self.windows_per_image
                };
                let bias = &bias[b * per_bias..][..per_bias];
                let qkv = &qkv[w * n * 3 * dim..][..n * 3 * dim];
                #[cfg(target_arch = "x86_64")]
                if avx512 {
                    // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked above).
                    unsafe { self.window_avx512(qkv, bias, o, scratch) };
                    return;
                }
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: the CPU supports AVX2 and FMA (checked above).
                    unsafe { self.window_avx2(qkv, bias, o, scratch) };
                    return;
                }
                let _ = (avx2, avx512);
                self.window::<false, 8>(qkv, bias, o, scratch);
            });
    }
}

impl candle_core::CustomOp2 for WindowAttention {
    fn name(&self) -> &'static str {
        "kino-window-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, candle_core::Shape)> {
        let qkv = slice(s1, l1, "qkv")?;
        let bias = slice(s2, l2, "attention bias")?;
        let (n, dim) = (self.tokens, self.heads * self.head_dim);
        if qkv.len() % (n * 3 * dim) != 0 || bias.len() % (self.heads * n * n) != 0 {
            bail!("window attention: bad sizes");
        }
        let windows = qkv.len() / (n * 3 * dim);
        let mut out = vec![0f32; windows * n * dim];
        self.run(qkv, bias, &mut out);
        Ok((CpuStorage::F32(out), (windows * n, dim).into()))
    }
}

/// Window attention on `qkv` = `(windows * tokens, 3 * dim)` (queries already
/// scaled) with `bias` = `(1 or windows_per_image, heads, tokens, tokens)`;
/// returns `(windows * tokens, dim)`. Uses the fused kernel on the CPU and
/// candle's matmul and softmax elsewhere.
pub fn window_attention(
    qkv: &Tensor,
    bias: &Tensor,
    windows_per_image: usize,
    tokens: usize,
    heads: usize,
    head_dim: usize,
) -> Result<Tensor> {
    if fast(qkv) && fast(bias) {
        return qkv.apply_op2_no_bwd(
            bias,
            &WindowAttention {
                windows_per_image,
                tokens,
                heads,
                head_dim,
            },
        );
    }
    window_attention_generic(qkv, bias, windows_per_image, tokens, heads, head_dim)
}

/// [`window_attention`] with candle's generic ops (any device).
pub fn window_attention_generic(
    qkv: &Tensor,
    bias: &Tensor,
    windows_per_image: usize,
    tokens: usize,
    heads: usize,
    head_dim: usize,
) -> Result<Tensor> {
    let dim = heads * head_dim;
    let rows = qkv.dim(0)?;
    let bw = rows / tokens;
    let b = bw / windows_per_image;
    let qkv = qkv
        .reshape((bw, tokens, 3, heads, head_dim))?
        .permute((2, 0, 3, 1, 4))?;
    let q = qkv.get(0)?.contiguous()?;
    let kt = qkv.get(1)?.transpose(2, 3)?.contiguous()?;
    let v = qkv.get(2)?.contiguous()?;
    let scores = q.matmul(&kt)?.reshape((b, windows_per_image, heads, tokens, tokens))?;
    let nb = bias.dim(0)?;
    let scores = scores.broadcast_add(&bias.reshape((1, nb, heads, tokens, tokens))?)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores.reshape((bw, heads, tokens, tokens))?)?;
    probs
        .matmul(&v)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((bw * tokens, dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code path (generic, AVX2, AVX-512, as the CPU allows) gives the
    /// same result, on a tiny shape and on Swin-T's (49 tokens, head dim 32).
    #[test]
    fn window_attention_paths_agree() {
        for (nw, n, heads, hd) in [(3usize, 9usize, 2usize, 4usize), (2, 49, 3, 32), (1, 25, 2, 40)] {
            let op = WindowAttention {
                windows_per_image: nw,
                tokens: n,
                heads,
                head_dim: hd,
            };
            let dev = candle_core::Device::Cpu;
            let qkv: Vec<f32> = Tensor::randn(0f32, 1.0, nw * n * 3 * heads * hd, &dev)
                .unwrap()
                .to_vec1()
                .unwrap();
            let bias: Vec<f32> = Tensor::randn(0f32, 1.0, nw * heads * n * n, &dev)
                .unwrap()
                .to_vec1()
                .unwrap();
            let mut want = vec![0f32; nw * n * heads * hd];
            op.run_with(&qkv, &bias, &mut want, false, false);
            for (avx2, avx512) in [(true, false), (true, true)] {
                let mut got = vec![0f32; want.len()];
                op.run_with(&qkv, &bias, &mut got, avx2, avx512);
                let d = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(d < 1e-5, "n {n} hd {hd}: avx2 {avx2} avx512 {avx512} differ by {d}");
            }
        }
    }

    #[test]
    fn fused_window_attention_matches_matmul_softmax() {
        let dev = candle_core::Device::Cpu;
        let (b, nw, n, heads, hd) = (2, 3, 9, 2, 4);
        let qkv = Tensor::randn(0f32, 1.0, (b * nw * n, 3 * heads * hd), &dev).unwrap();
        for nb in [1, nw] {
            let bias = Tensor::randn(0f32, 1.0, (nb, heads, n, n), &dev).unwrap();
            let fused = window_attention(&qkv, &bias, nw, n, heads, hd).unwrap();
            let generic = window_attention_generic(&qkv, &bias, nw, n, heads, hd).unwrap();
            let d: f32 = (fused - generic)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(d < 1e-5, "fused attention differs by {d} (bias windows {nb})");
        }
    }

    #[test]
    fn fused_ops_match_generic_ones() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (300, 70), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 70, &dev).unwrap();
        let want = x.broadcast_add(&b).unwrap().gelu_erf().unwrap();
        let got = add_bias_gelu(x.copy().unwrap(), &b).unwrap();
        let d: f32 = (want - &got)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-5, "bias+gelu differs by {d}");
        let want = x.broadcast_add(&b).unwrap();
        let got = add_bias(x.copy().unwrap(), &b).unwrap();
        let d: f32 = (want - &got)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0);
        let y = Tensor::randn(0f32, 1.0, (300, 70), &dev).unwrap();
        let want = (&x + &y).unwrap();
        let got = add_into(&x, y.copy().unwrap()).unwrap();
        let d: f32 = (want - &got)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0);
    }
}
