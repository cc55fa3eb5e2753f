//! Kernels of the Swin forward pass.
//!
//! * [`window_attention_t`]: window attention on the CPU, on plain buffers,
//!   on all threads (used by the CPU forward pass in `swin/cpu.rs`);
//! * [`bias_rows_in_place`]: bias add (+ exact GELU) on all threads;
//! * [`window_attention`]: the same attention with candle's ops, on any
//!   device (the GPU path, and the CPU kernel's test reference).
//!
//! The CPU attention kernel works with the *queries* in the vector lanes.
//! For one window and head it computes the transposed scores `Sᵀ = K·Qᵀ + Bᵀ`
//! (`n × L` for a block of `L` queries): each lane is one query, each row one
//! key, so every step is a multiply-add of a broadcast key element with a
//! vector of `Qᵀ`; the softmax over the keys runs down the rows (vertical max
//! and sum, no horizontal reductions); and `Oᵀ = Vᵀ·Pᵀ` is again a broadcast
//! value element times a row of `Pᵀ`. `Qᵀ` comes transposed out of the `q`
//! projection (the product writes it so). The output `O` is row-major, as the
//! output projection reads it: the AVX-512 kernel computes `O = P·V` with the
//! head's columns in the lanes (32 = two full vectors, where the 49 queries
//! of a Swin window fill 49 of 64 lanes), the others scatter their `Oᵀ`
//! blocks. (An earlier kernel with keys in the lanes spent a fifth of its
//! time transposing; one with queries in the lanes for `O` too ran the
//! Swin-T attention at about a third of the speed of this one.)

use candle_core::{Result, Tensor};
use kino_kernels::{exp_f32, SendPtr};
use rayon::prelude::*;

pub(crate) use kino_kernels::bias_rows_in_place;

/// Buffers and shape of one window-attention call (see the module docs).
///
/// With `rows = windows * n` and `dim = heads * hd`:
/// * `q_t`: `dim × ldq` (`ldq ≥ rows`), `q_t[c * ldq + r]` is query row `r`'s
///   column `c` (already scaled by `hd^-0.5`); at least `L` readable
///   elements past the last row's end;
/// * `kv`: `rows × 2·dim`, keys then values of each row;
/// * `bias_t`: `(1 or windows_per_image) × heads × n × np`, the relative
///   position bias plus mask, transposed (`[.., key, query]`), queries padded
///   with zeros to `np` (a multiple of 16);
/// * the output `o`: `rows × ldo` (`ldo ≥ dim`), row-major like `kv`.
pub(crate) struct AttentionT<'a> {
    /// Transposed queries.
    pub q_t: &'a [f32],
    /// Row stride of `q_t`.
    pub ldq: usize,
    /// Keys and values.
    pub kv: &'a [f32],
    /// Transposed bias.
    pub bias_t: &'a [f32],
    /// Windows per image (bias windows repeat per image).
    pub windows_per_image: usize,
    /// Tokens per window.
    pub n: usize,
    /// Heads.
    pub heads: usize,
    /// Width of a head.
    pub hd: usize,
}

/// Padded query count of a bias row (see [`AttentionT`]).
pub(crate) fn bias_pad(n: usize) -> usize {
    n.div_ceil(16) * 16
}

/// Softmax terms `exp(s - max)` with `s - max` below this are taken as 0.
/// They are below `e⁻⁴⁰ ≈ 4·10⁻¹⁸` of the row's largest term, 10 orders of
/// magnitude under what an f32 sum of at least 1 resolves, so the result is
/// the same; kept, the masked pairs of shifted windows (bias −100) produce
/// subnormal numbers, which Intel cores handle through slow microcode
/// assists: measured on a Xeon (Sapphire Rapids class), the kernel ran 2–3×
/// slower with the masks than without.
const EXP_CUT: f32 = -40.0;

/// Keys per register block of the score step.
const J: usize = 8;
/// Head columns per register block of the value step.
const D: usize = 8;

/// A vector of `L` f32 lanes for the kernel's inner loops: AVX-512 and AVX2
/// registers through their intrinsics (the compiler's own vectorisation of
/// these loops was unreliable: gathers and spills), plain arrays elsewhere.
trait Vf: Copy {
    /// Lanes.
    const L: usize;
    /// All zeros.
    unsafe fn zero() -> Self;
    /// Reads `L` floats at `p`.
    unsafe fn load(p: *const f32) -> Self;
    /// Writes the lanes to `p`.
    unsafe fn store(self, p: *mut f32);
    /// `self + a · b`, `a` broadcast.
    unsafe fn fma_s(self, a: f32, b: Self) -> Self;
    /// `self + b`.
    unsafe fn add(self, b: Self) -> Self;
    /// `self · b`.
    unsafe fn mul(self, b: Self) -> Self;
    /// `x` in every lane.
    unsafe fn splat(x: f32) -> Self;
    /// Lane-wise maximum.
    unsafe fn max(self, b: Self) -> Self;
    /// `self / b`.
    unsafe fn div(self, b: Self) -> Self;
    /// `exp(self - m)` as `kino_kernels::exp_f32` computes it, 0 where
    /// `self - m` is below [`EXP_CUT`].
    unsafe fn exp_below(self, m: Self) -> Self;
}

impl Vf for [f32; 8] {
    const L: usize = 8;
    unsafe fn zero() -> Self {
        [0.0; 8]
    }
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller vouches for 8 readable floats.
        unsafe { std::ptr::read_unaligned(p as *const [f32; 8]) }
    }
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller vouches for 8 writable floats.
        unsafe { std::ptr::write_unaligned(p as *mut [f32; 8], self) }
    }
    unsafe fn fma_s(self, a: f32, b: Self) -> Self {
        std::array::from_fn(|l| self[l] + a * b[l])
    }
    unsafe fn add(self, b: Self) -> Self {
        std::array::from_fn(|l| self[l] + b[l])
    }
    unsafe fn mul(self, b: Self) -> Self {
        std::array::from_fn(|l| self[l] * b[l])
    }
    unsafe fn splat(x: f32) -> Self {
        [x; 8]
    }
    unsafe fn max(self, b: Self) -> Self {
        std::array::from_fn(|l| self[l].max(b[l]))
    }
    unsafe fn div(self, b: Self) -> Self {
        std::array::from_fn(|l| self[l] / b[l])
    }
    unsafe fn exp_below(self, m: Self) -> Self {
        std::array::from_fn(|l| {
            let x = self[l] - m[l];
            if x >= EXP_CUT {
                exp_f32::<false>(x)
            } else {
                0.0
            }
        })
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Vf, EXP_CUT};
    use kino_kernels::{EXP_LN2_HI, EXP_LN2_LO, EXP_MAX, EXP_MIN, EXP_POLY};
    use std::arch::x86_64::*;

    /// 8 lanes (AVX + FMA). Only used inside functions compiled for it.
    #[derive(Clone, Copy)]
    pub(super) struct Y(__m256);

    // SAFETY (all methods): callers run on CPUs with the instruction set
    // (checked before dispatch) and pass pointers valid for the lanes.
    impl Vf for Y {
        const L: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { Y(_mm256_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { Y(_mm256_loadu_ps(p)) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn fma_s(self, a: f32, b: Self) -> Self {
            unsafe { Y(_mm256_fmadd_ps(_mm256_set1_ps(a), b.0, self.0)) }
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            unsafe { Y(_mm256_add_ps(self.0, b.0)) }
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            unsafe { Y(_mm256_mul_ps(self.0, b.0)) }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            unsafe { Y(_mm256_set1_ps(x)) }
        }
        #[inline(always)]
        unsafe fn max(self, b: Self) -> Self {
            unsafe { Y(_mm256_max_ps(self.0, b.0)) }
        }
        #[inline(always)]
        unsafe fn div(self, b: Self) -> Self {
            unsafe { Y(_mm256_div_ps(self.0, b.0)) }
        }
        /// `exp_f32::<true>`'s steps on 8 lanes (the compiler turned its
        /// float-to-integer conversion into one scalar instruction per lane).
        #[inline(always)]
        unsafe fn exp_below(self, m: Self) -> Self {
            unsafe {
                let s = _mm256_set1_ps;
                let x0 = _mm256_sub_ps(self.0, m.0);
                let x = _mm256_min_ps(_mm256_max_ps(x0, s(EXP_MIN)), s(EXP_MAX));
                let n = _mm256_floor_ps(_mm256_add_ps(_mm256_mul_ps(x, s(std::f32::consts::LOG2_E)), s(0.5)));
                let r = _mm256_fmadd_ps(n, s(-EXP_LN2_HI), x);
                let r = _mm256_fmadd_ps(n, s(-EXP_LN2_LO), r);
                let mut p = s(EXP_POLY[0]);
                for c in &EXP_POLY[1..] {
                    p = _mm256_fmadd_ps(p, r, s(*c));
                }
                let e = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(r, r), p, r), s(1.0));
                let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
                let y = _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
                let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(x0, s(EXP_CUT));
                Y(_mm256_and_ps(y, keep))
            }
        }
    }
}

/// Rows `j0 .. j0 + JN` of the transposed scores of one block of `V::L`
/// queries: `st[j][l] = Σ_d k[j][d] q_t[d][l] + bias[j][i0 + l]`, with
/// `k[j]` at `kv[j * ldk + col ..][..hd]` and `q_t[d]` at `q[d * ldq ..]`.
///
/// # Safety
/// `V`'s instruction set must be available.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn scores<V: Vf, const JN: usize>(
    q: &[f32],
    ldq: usize,
    kv: &[f32],
    j0: usize,
    col: usize,
    hd: usize,
    ldk: usize,
    bias: &[f32],
    np: usize,
    i0: usize,
    st: &mut [f32],
) {
    let l = V::L;
    // The JN key rows are `ldk` apart: one bounds check for the whole block.
    let keys = &kv[j0 * ldk + col..][..(JN - 1) * ldk + hd];
    let q = &q[..(hd - 1) * ldq + l];
    let st = &mut st[..(j0 + JN) * l];
    // SAFETY: every access below lies in the slices bounded above; the
    // instruction set is the caller's promise.
    unsafe {
        let mut acc = [V::zero(); JN];
        for d in 0..hd {
            let qv = V::load(q.as_ptr().add(d * ldq));
            for (jj, a) in acc.iter_mut().enumerate() {
                *a = a.fma_s(*keys.get_unchecked(jj * ldk + d), qv);
            }
        }
        for (jj, a) in acc.iter().enumerate() {
            let j = j0 + jj;
            let b = V::load(bias[j * np + i0..][..l].as_ptr());
            a.add(b).store(st.as_mut_ptr().add(j * l));
        }
    }
}

/// Columns `d0 .. d0 + DN` of one block's output: `out[l][d] = inv[l] ·
/// Σ_j v[j][d] st[j][l]`, with `v[j]` at `values[j * ldv ..]`; element
/// `(l, d)` of the `valid` queries goes to `dst(l, d)`.
///
/// # Safety
/// `V`'s instruction set must be available; `dst(l, d)` must be valid for
/// a write for every `l < valid ≤ V::L`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn weighted<V: Vf, const DN: usize>(
    st: &[f32],
    values: &[f32],
    ldv: usize,
    d0: usize,
    n: usize,
    inv: V,
    valid: usize,
    dst: impl Fn(usize, usize) -> *mut f32,
) {
    let l = V::L;
    let values = &values[d0..][..(n - 1) * ldv + DN];
    let st = &st[..n * l];
    // SAFETY: as `scores`; `dst` is the caller's promise.
    unsafe {
        let mut acc = [V::zero(); DN];
        for j in 0..n {
            let p = V::load(st.as_ptr().add(j * l));
            for (dd, a) in acc.iter_mut().enumerate() {
                *a = a.fma_s(*values.get_unchecked(j * ldv + dd), p);
            }
        }
        for (dd, a) in acc.iter().enumerate() {
            let mut tmp = [0f32; 16];
            a.mul(inv).store(tmp.as_mut_ptr());
            for (lane, v) in tmp[..valid].iter().enumerate() {
                *dst(lane, d0 + dd) = *v;
            }
        }
    }
}

impl AttentionT<'_> {
    /// The `n × np` transposed bias of window `w`, head `h` (one bias for
    /// every window, or one per window of an image).
    fn bias_of(&self, w: usize, h: usize) -> &[f32] {
        let np = bias_pad(self.n);
        let bw = if self.bias_t.len() == self.heads * self.n * np {
            0
        } else {
            w % self.windows_per_image
        };
        &self.bias_t[(bw * self.heads + h) * self.n * np..][..self.n * np]
    }

    /// Window `w`, head `h`, queries `i0 .. i0 + valid` (`valid ≤ V::L`):
    /// writes their `hd` output columns into `out` (`rows × ldo`). `st` holds
    /// `n × V::L`.
    ///
    /// # Safety
    /// `out` must be valid for writes of those elements, which no other
    /// thread touches meanwhile.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<V: Vf>(
        &self,
        w: usize,
        h: usize,
        i0: usize,
        valid: usize,
        st: &mut [f32],
        out: SendPtr,
        ldo: usize,
    ) {
        let (n, hd, dim) = (self.n, self.hd, self.heads * self.hd);
        let (np, l) = (bias_pad(n), V::L);
        let bias = self.bias_of(w, h);
        let q = &self.q_t[h * hd * self.ldq + w * n + i0..];
        let kv = &self.kv[w * n * 2 * dim..][..n * 2 * dim];
        let st = &mut st[..n * l];
        // Scores, transposed: st[j] = k_j · Qᵀ + bias, J keys at a time, then one by one.
        let full = n / J * J;
        // SAFETY (both loops): V's instruction set is the caller's promise.
        for j0 in (0..full).step_by(J) {
            unsafe { scores::<V, J>(q, self.ldq, kv, j0, h * hd, hd, 2 * dim, bias, np, i0, st) };
        }
        for j0 in full..n {
            unsafe { scores::<V, 1>(q, self.ldq, kv, j0, h * hd, hd, 2 * dim, bias, np, i0, st) };
        }
        // Softmax down the rows (over the keys), unnormalised; 1/sum at the end.
        // SAFETY (this block): `st` holds `n × l` floats; V's instruction set
        // is the caller's promise.
        let inv = unsafe {
            let p = st.as_mut_ptr();
            let mut mx = V::splat(f32::NEG_INFINITY);
            for j in 0..n {
                mx = mx.max(V::load(p.add(j * l)));
            }
            let mut sum = V::zero();
            for j in 0..n {
                let e = V::load(p.add(j * l)).exp_below(mx);
                e.store(p.add(j * l));
                sum = sum.add(e);
            }
            V::splat(1.0).div(sum)
        };
        // Oᵀ = Vᵀ Pᵀ, D head columns at a time, then one by one.
        let full = hd / D * D;
        let values = &kv[dim + h * hd..];
        // SAFETY: the caller owns the `valid` elements at each of these rows.
        let dst = |l: usize, d: usize| unsafe { out.get().add((w * n + i0 + l) * ldo + h * hd + d) };
        // SAFETY (both loops): V's instruction set and `dst` are the caller's promises.
        for d0 in (0..full).step_by(D) {
            unsafe { weighted::<V, D>(st, values, 2 * dim, d0, n, inv, valid, dst) };
        }
        for d0 in full..hd {
            unsafe { weighted::<V, 1>(st, values, 2 * dim, d0, n, inv, valid, dst) };
        }
    }

    /// Window `w`, head `h`, all queries, in blocks of `V::L`.
    ///
    /// # Safety
    /// As [`Self::block`].
    #[inline(always)]
    unsafe fn head<V: Vf>(&self, w: usize, h: usize, st: &mut Vec<f32>, out: SendPtr, ldo: usize) {
        st.resize(self.n * V::L, 0.0);
        for i0 in (0..self.n).step_by(V::L) {
            let valid = (self.n - i0).min(V::L);
            // SAFETY: forwarded from the caller.
            unsafe { self.block::<V>(w, h, i0, valid, st, out, ldo) }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn head_avx512(&self, w: usize, h: usize, st: &mut Vec<f32>, out: SendPtr, ldo: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { z512::head(self, w, h, st, out, ldo) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn head_avx2(&self, w: usize, h: usize, st: &mut Vec<f32>, out: SendPtr, ldo: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.head::<x86::Y>(w, h, st, out, ldo) }
    }

    /// Runs every window and head into `o` (`rows × ldo`), on all threads,
    /// with the instruction sets given (each only if the CPU has it).
    fn run_with(&self, o: &mut [f32], ldo: usize, avx2: bool, avx512: bool) {
        let (n, heads, hd) = (self.n, self.heads, self.hd);
        let dim = heads * hd;
        let np = bias_pad(n);
        let windows = self.kv.len() / (n * 2 * dim);
        assert!(
            n > 0
                && hd > 0
                && self.kv.len() == windows * n * 2 * dim
                && ldo >= dim
                && o.len() >= (windows * n - 1) * ldo + dim
                && self.ldq >= windows * n
                && self.q_t.len() >= (dim - 1) * self.ldq + windows * n + 16
                && (self.bias_t.len() == heads * n * np
                    || self.bias_t.len() == self.windows_per_image * heads * n * np),
            "window attention: bad sizes"
        );
        let (avx2, avx512) = (avx2 && kino_kernels::fma(), avx512 && kino_kernels::avx512());
        let out = SendPtr(o.as_mut_ptr());
        (0..windows * heads)
            .into_par_iter()
            .for_each_init(Vec::new, |st, task| {
                let (w, h) = (task / heads, task % heads);
                // SAFETY: task (w, h) alone writes columns h*hd.. of rows w*n.. of o,
                // in bounds (checked above); the CPU features were checked.
                unsafe {
                    #[cfg(target_arch = "x86_64")]
                    if avx512 {
                        return self.head_avx512(w, h, st, out, ldo);
                    }
                    #[cfg(target_arch = "x86_64")]
                    if avx2 {
                        return self.head_avx2(w, h, st, out, ldo);
                    }
                    let _ = (avx2, avx512);
                    self.head::<[f32; 8]>(w, h, st, out, ldo)
                }
            });
    }
}

/// The AVX-512 kernel (see its module documentation).
#[cfg(target_arch = "x86_64")]
mod z512;

/// Window attention on the CPU (see [`AttentionT`] for the layouts), into
/// `o` (`rows × ldo`, row `r`'s head `h` at columns `h·hd ..`), on all
/// threads of the current rayon pool.
///
/// # Panics
/// If the sizes do not fit together.
pub(crate) fn window_attention_t(a: &AttentionT, o: &mut [f32], ldo: usize) {
    a.run_with(o, ldo, true, true)
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
    use candle_core::Device;

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
    }

    /// The CPU kernel, on every code path the CPU allows (generic, AVX2,
    /// AVX-512), matches candle's matmul + softmax, for tiny, Swin-T and
    /// window-12 (144 queries: several chunks) shapes, one bias or one per
    /// window, with and without shifted-window masks (−100: the cut-off
    /// softmax terms), and odd sizes (tails of every register block and
    /// masked lanes).
    #[test]
    fn cpu_window_attention_matches_candle_on_every_path() {
        let dev = Device::Cpu;
        for (b, nw, n, heads, hd) in [
            (2usize, 3usize, 9usize, 2usize, 4usize),
            (1, 2, 49, 3, 32),
            (2, 1, 25, 2, 40),
            (1, 2, 17, 1, 11),
            (1, 1, 144, 2, 32),
            (1, 2, 81, 1, 20),
        ] {
            let dim = heads * hd;
            let rows = b * nw * n;
            let qkv = Tensor::randn(0f32, 1.0, (rows, 3 * dim), &dev).unwrap();
            let host: Vec<f32> = qkv.flatten_all().unwrap().to_vec1().unwrap();
            // Qᵀ with a ragged stride, and the keys and values.
            let ldq = rows + 5;
            let mut q_t = vec![f32::NAN; dim * ldq + 16];
            let mut kv = vec![0f32; rows * 2 * dim];
            for r in 0..rows {
                for c in 0..dim {
                    q_t[c * ldq + r] = host[r * 3 * dim + c];
                }
                kv[r * 2 * dim..][..2 * dim].copy_from_slice(&host[r * 3 * dim + dim..][..2 * dim]);
            }
            for (nb, masked) in [(1, false), (nw, false), (nw, true)] {
                let mut bias = Tensor::randn(0f32, 1.0, (nb, heads, n, n), &dev).unwrap();
                if masked {
                    // Shifted windows' masks: −100 on pairs from different regions.
                    let m: Vec<f32> = (0..nb * heads * n * n)
                        .map(|i| if (i % n) % 3 == (i / n) % 2 { -100.0 } else { 0.0 })
                        .collect();
                    bias = (bias + Tensor::from_vec(m, (nb, heads, n, n), &dev).unwrap()).unwrap();
                }
                let want: Vec<f32> = window_attention(&qkv, &bias, nw, n, heads, hd)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let bh: Vec<f32> = bias.flatten_all().unwrap().to_vec1().unwrap();
                let np = bias_pad(n);
                let mut bias_t = vec![0f32; nb * heads * n * np];
                for g in 0..nb * heads {
                    for i in 0..n {
                        for j in 0..n {
                            bias_t[(g * n + j) * np + i] = bh[(g * n + i) * n + j];
                        }
                    }
                }
                let a = AttentionT {
                    q_t: &q_t,
                    ldq,
                    kv: &kv,
                    bias_t: &bias_t,
                    windows_per_image: nw,
                    n,
                    heads,
                    hd,
                };
                for (avx2, avx512) in [(false, false), (true, false), (true, true)] {
                    let ldo = dim + 3;
                    let mut o = vec![f32::NAN; rows * ldo];
                    a.run_with(&mut o, ldo, avx2, avx512);
                    let mut got = vec![0f32; rows * dim];
                    for r in 0..rows {
                        got[r * dim..][..dim].copy_from_slice(&o[r * ldo..][..dim]);
                        assert!(o[r * ldo + dim..][..3].iter().all(|v| v.is_nan()), "wrote past the row");
                    }
                    let d = max_diff(&want, &got);
                    assert!(
                        d < 1e-5,
                        "n {n} heads {heads} hd {hd} bias windows {nb} masked {masked}: avx2 {avx2} avx512 {avx512} differ by {d}"
                    );
                }
            }
        }
    }

    /// Bias + GELU rows match the scalar definition (`gelu_erf_f32`, itself
    /// checked against the exact erf in `kino-kernels`), on whichever path
    /// (AVX-512, AVX2, generic) this CPU takes.
    #[test]
    fn bias_rows_match_their_definition() {
        let x: Vec<f32> = (0..300 * 70).map(|i| ((i * 37 % 101) as f32 - 50.0) / 12.0).collect();
        let b: Vec<f32> = (0..70).map(|i| (i as f32 - 35.0) / 20.0).collect();
        let mut plain = x.clone();
        bias_rows_in_place(&mut plain, &b, false);
        let mut gelu = x.clone();
        bias_rows_in_place(&mut gelu, &b, true);
        for (i, v) in x.iter().enumerate() {
            let y = v + b[i % 70];
            assert_eq!(plain[i], y);
            let want = kino_kernels::gelu_erf_f32::<false>(y);
            assert!((gelu[i] - want).abs() < 1e-6, "gelu({y}) = {}, want {want}", gelu[i]);
        }
    }
}
