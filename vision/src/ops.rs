//! Kernels of the Swin forward pass.
//!
//! * [`window_attention_into`]: window attention on the CPU, fused, on plain
//!   buffers, on all threads (used by the CPU forward pass in `swin/cpu.rs`);
//! * [`bias_rows_in_place`]: bias add (+ exact GELU) on all threads;
//! * [`window_attention`]: the same attention with candle's ops, on any
//!   device (the GPU path, and the CPU kernel's test reference).

use candle_core::{Result, Tensor};
use kino_kernels::{exp_f32, gelu_erf_f32, madd, MIN_CHUNK};
use rayon::prelude::*;

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

/// `dst += bias` over rows of `bias.len()` values, then the exact (erf) GELU
/// when `gelu`, in place on all threads.
///
/// # Panics
/// If `dst.len()` is not a multiple of `bias.len()`.
pub(crate) fn bias_rows_in_place(dst: &mut [f32], bias: &[f32], gelu: bool) {
    let n = bias.len();
    assert!(
        n > 0 && dst.len().is_multiple_of(n),
        "bias of {n} does not divide {}",
        dst.len()
    );
    let rows = (MIN_CHUNK / n).max(1);
    #[cfg(target_arch = "x86_64")]
    let avx2 = kino_kernels::fma();
    dst.par_chunks_mut(rows * n).for_each(|chunk| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            unsafe { bias_rows_avx2(chunk, bias, gelu) };
            return;
        }
        bias_rows::<false>(chunk, bias, gelu);
    });
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
            // kᵀ of this head: (hd, np), zero-padded columns. Written row by
            // row (contiguous stores, strided loads): the other order, one
            // column at a time, cost a fifth of the whole kernel.
            let k = &qkv[dim + h * hd..];
            for (d, dst) in kt.chunks_exact_mut(np).enumerate() {
                for (j, v) in dst[..n].iter_mut().enumerate() {
                    *v = k[j * 3 * dim + d];
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

/// Window attention on the CPU, fused, into `out` = `(windows * tokens,
/// dim)`: `qkv` is `(windows * tokens, 3 * dim)` (queries already scaled),
/// `bias` `(1 or windows_per_image, heads, tokens, tokens)`. Runs on all
/// threads of the current rayon pool.
///
/// # Panics
/// If the sizes do not fit together.
pub(crate) fn window_attention_into(
    qkv: &[f32],
    bias: &[f32],
    out: &mut [f32],
    windows_per_image: usize,
    tokens: usize,
    heads: usize,
    head_dim: usize,
) {
    let (n, dim) = (tokens, heads * head_dim);
    let windows = out.len() / (n * dim);
    let per_bias = heads * n * n;
    assert!(
        out.len() == windows * n * dim
            && qkv.len() == windows * n * 3 * dim
            && (bias.len() == per_bias || bias.len() == windows_per_image * per_bias),
        "window attention: bad sizes"
    );
    WindowAttention {
        windows_per_image,
        tokens,
        heads,
        head_dim,
    }
    .run(qkv, bias, out)
}

/// Window attention with candle's matmul and softmax, on any device: `qkv` is
/// `(windows * tokens, 3 * dim)` (queries already scaled), `bias` `(1 or
/// windows_per_image, heads, tokens, tokens)`; returns `(windows * tokens, dim)`.
pub fn window_attention(
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
    use candle_core::{Device, Tensor};

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
    }

    fn host(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The CPU kernel, on every code path the CPU allows (generic, AVX2,
    /// AVX-512), matches candle's matmul + softmax, for tiny and Swin-T
    /// shapes (49 tokens, head width 32), one bias or one per window.
    #[test]
    fn cpu_window_attention_matches_candle_on_every_path() {
        let dev = Device::Cpu;
        for (b, nw, n, heads, hd) in [
            (2usize, 3usize, 9usize, 2usize, 4usize),
            (1, 2, 49, 3, 32),
            (2, 1, 25, 2, 40),
            (1, 2, 17, 1, 11),
        ] {
            let dim = heads * hd;
            let qkv = Tensor::randn(0f32, 1.0, (b * nw * n, 3 * dim), &dev).unwrap();
            for nb in [1, nw] {
                let bias = Tensor::randn(0f32, 1.0, (nb, heads, n, n), &dev).unwrap();
                let want = host(&window_attention(&qkv, &bias, nw, n, heads, hd).unwrap());
                let op = WindowAttention {
                    windows_per_image: nw,
                    tokens: n,
                    heads,
                    head_dim: hd,
                };
                for (avx2, avx512) in [(false, false), (true, false), (true, true)] {
                    let mut got = vec![0f32; want.len()];
                    op.run_with(&host(&qkv), &host(&bias), &mut got, avx2, avx512);
                    let d = max_diff(&want, &got);
                    assert!(
                        d < 1e-5,
                        "n {n} heads {heads} hd {hd} bias windows {nb}: avx2 {avx2} avx512 {avx512} differ by {d}"
                    );
                }
                let mut got = vec![0f32; want.len()];
                window_attention_into(&host(&qkv), &host(&bias), &mut got, nw, n, heads, hd);
                assert!(max_diff(&want, &got) < 1e-5);
            }
        }
    }

    #[test]
    fn bias_rows_match_their_definition() {
        let x: Vec<f32> = (0..300 * 70).map(|i| ((i * 37 % 101) as f32 - 50.0) / 12.0).collect();
        let b: Vec<f32> = (0..70).map(|i| (i as f32 - 35.0) / 20.0).collect();
        let mut plain = x.clone();
        bias_rows_in_place(&mut plain, &b, false);
        let mut gelu = x.clone();
        bias_rows_in_place(&mut gelu, &b, true);
        for (i, v) in x.iter().enumerate() {
            assert_eq!(plain[i], v + b[i % 70]);
            let y = (v + b[i % 70]) as f64;
            let want = 0.5 * y * (1.0 + erf(y / std::f64::consts::SQRT_2));
            assert!(
                (gelu[i] as f64 - want).abs() < 1e-5,
                "gelu({y}) = {}, want {want}",
                gelu[i]
            );
        }
    }

    /// erf to double precision: Maclaurin series near 0, continued fraction beyond.
    fn erf(x: f64) -> f64 {
        if x.abs() < 2.5 {
            let (mut sum, mut term) = (x, x);
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let ax = x.abs();
            let mut f = 0.0;
            for k in (1..120).rev() {
                f = (k as f64 / 2.0) / (ax + f);
            }
            (1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f)) * x.signum()
        }
    }
}
