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
//! projection (the product writes it so) and `Oᵀ` goes transposed into the
//! output projection, so nothing is transposed inside the kernel. (An earlier
//! kernel with keys in the lanes spent a fifth of its time transposing.)

use candle_core::{Result, Tensor};
use kino_kernels::{exp_f32, gelu_erf_f32, SendPtr, MIN_CHUNK};
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn bias_rows_avx512(chunk: &mut [f32], bias: &[f32], gelu: bool) {
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
    let (avx2, avx512) = (kino_kernels::fma(), kino_kernels::avx512());
    dst.par_chunks_mut(rows * n).for_each(|chunk| {
        #[cfg(target_arch = "x86_64")]
        if avx512 {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked above).
            unsafe { bias_rows_avx512(chunk, bias, gelu) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            unsafe { bias_rows_avx2(chunk, bias, gelu) };
            return;
        }
        bias_rows::<false>(chunk, bias, gelu);
    });
}

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
/// * the output `o_t`: `dim × ldo`, like `q_t`.
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
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Vf;
    use std::arch::x86_64::*;

    /// 16 lanes (AVX-512F). Only used inside functions compiled for it.
    #[derive(Clone, Copy)]
    pub(super) struct Z(__m512);
    /// 8 lanes (AVX + FMA). Only used inside functions compiled for it.
    #[derive(Clone, Copy)]
    pub(super) struct Y(__m256);

    // SAFETY (all methods): callers run on CPUs with the instruction set
    // (checked before dispatch) and pass pointers valid for the lanes.
    impl Vf for Z {
        const L: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { Z(_mm512_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { Z(_mm512_loadu_ps(p)) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn fma_s(self, a: f32, b: Self) -> Self {
            unsafe { Z(_mm512_fmadd_ps(_mm512_set1_ps(a), b.0, self.0)) }
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            unsafe { Z(_mm512_add_ps(self.0, b.0)) }
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            unsafe { Z(_mm512_mul_ps(self.0, b.0)) }
        }
    }

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

/// Columns `d0 .. d0 + DN` of one block's output: `out[d][l] = inv[l] ·
/// Σ_j v[j][d] st[j][l]`, with `v[j]` at `values[j * ldv ..]`; row `d` goes
/// to `valid` floats at `dst(d)`.
///
/// # Safety
/// `V`'s instruction set must be available; `dst(d)` must be valid for
/// writes of `valid ≤ V::L` floats.
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
    dst: impl Fn(usize) -> *mut f32,
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
            let o = a.mul(inv);
            if valid == l {
                o.store(dst(d0 + dd));
            } else {
                let mut tmp = [0f32; 16];
                o.store(tmp.as_mut_ptr());
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst(d0 + dd), valid);
            }
        }
    }
}

impl AttentionT<'_> {
    /// Window `w`, head `h`, queries `i0 .. i0 + valid` (`valid ≤ L`): writes
    /// their `hd` output columns into `out` (`dim × ldo`). `st` holds `n × L`.
    ///
    /// # Safety
    /// `out` must be valid for writes of those elements, which no other
    /// thread touches meanwhile.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const F: bool, const L: usize, V: Vf>(
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
        let np = bias_pad(n);
        let bw = if self.bias_t.len() == self.heads * n * np {
            0
        } else {
            w % self.windows_per_image
        };
        let bias = &self.bias_t[(bw * self.heads + h) * n * np..][..n * np];
        let q = &self.q_t[h * hd * self.ldq + w * n + i0..];
        let kv = &self.kv[w * n * 2 * dim..][..n * 2 * dim];
        debug_assert_eq!(V::L, L);
        let st = &mut st[..n * L];
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
        let mut mx = [f32::NEG_INFINITY; L];
        for row in st.chunks_exact(L) {
            for l in 0..L {
                mx[l] = mx[l].max(row[l]);
            }
        }
        let mut sum = [0f32; L];
        for row in st.chunks_exact_mut(L) {
            let row: &mut [f32; L] = row.try_into().expect("L lanes");
            for l in 0..L {
                row[l] = exp_f32::<F>(row[l] - mx[l]);
            }
            for l in 0..L {
                sum[l] += row[l];
            }
        }
        let mut inv = [0f32; L];
        for l in 0..L {
            inv[l] = 1.0 / sum[l];
        }
        // Oᵀ = Vᵀ Pᵀ, D head columns at a time, then one by one.
        let full = hd / D * D;
        let values = &kv[dim + h * hd..];
        // SAFETY: the caller owns the `valid` elements at each of these rows.
        let dst = |d: usize| unsafe { out.get().add((h * hd + d) * ldo + w * n + i0) };
        // SAFETY (both loops): V's instruction set and `dst` are the caller's promises.
        let inv = unsafe { V::load(inv.as_ptr()) };
        for d0 in (0..full).step_by(D) {
            unsafe { weighted::<V, D>(st, values, 2 * dim, d0, n, inv, valid, dst) };
        }
        for d0 in full..hd {
            unsafe { weighted::<V, 1>(st, values, 2 * dim, d0, n, inv, valid, dst) };
        }
    }

    /// Window `w`, head `h`, all queries, with `L`-lane blocks (`V`), the
    /// last one with `L2` lanes (`V2`) when that is enough.
    ///
    /// # Safety
    /// As [`Self::block`].
    #[inline(always)]
    unsafe fn head<const F: bool, const L: usize, const L2: usize, V: Vf, V2: Vf>(
        &self,
        w: usize,
        h: usize,
        st: &mut Vec<f32>,
        out: SendPtr,
        ldo: usize,
    ) {
        st.resize(self.n * L, 0.0);
        let mut i0 = 0;
        while i0 < self.n {
            let valid = (self.n - i0).min(L);
            // SAFETY: forwarded from the caller.
            unsafe {
                if valid <= L2 {
                    self.block::<F, L2, V2>(w, h, i0, valid, st, out, ldo)
                } else {
                    self.block::<F, L, V>(w, h, i0, valid, st, out, ldo)
                }
            }
            i0 += valid;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn head_avx512(&self, w: usize, h: usize, st: &mut Vec<f32>, out: SendPtr, ldo: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.head::<true, 16, 8, x86::Z, x86::Y>(w, h, st, out, ldo) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn head_avx2(&self, w: usize, h: usize, st: &mut Vec<f32>, out: SendPtr, ldo: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.head::<true, 8, 8, x86::Y, x86::Y>(w, h, st, out, ldo) }
    }

    /// Runs every window and head into `o_t` (`dim × ldo`), on all threads,
    /// with the instruction sets given (each only if the CPU has it).
    fn run_with(&self, o_t: &mut [f32], ldo: usize, avx2: bool, avx512: bool) {
        let (n, heads, hd) = (self.n, self.heads, self.hd);
        let dim = heads * hd;
        let np = bias_pad(n);
        let windows = self.kv.len() / (n * 2 * dim);
        assert!(
            n > 0
                && hd > 0
                && self.kv.len() == windows * n * 2 * dim
                && ldo >= windows * n
                && o_t.len() >= (dim - 1) * ldo + windows * n
                && self.ldq >= windows * n
                && self.q_t.len() >= (dim - 1) * self.ldq + windows * n + 16
                && (self.bias_t.len() == heads * n * np
                    || self.bias_t.len() == self.windows_per_image * heads * n * np),
            "window attention: bad sizes"
        );
        let (avx2, avx512) = (avx2 && kino_kernels::fma(), avx512 && kino_kernels::avx512());
        let out = SendPtr(o_t.as_mut_ptr());
        (0..windows * heads)
            .into_par_iter()
            .for_each_init(Vec::new, |st, task| {
                let (w, h) = (task / heads, task % heads);
                // SAFETY: task (w, h) alone writes columns w*n.. of rows h*hd.. of o_t,
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
                    self.head::<false, 8, 8, [f32; 8], [f32; 8]>(w, h, st, out, ldo)
                }
            });
    }
}

/// Window attention on the CPU (see [`AttentionT`] for the layouts), into
/// `o_t` (`dim × ldo`), on all threads of the current rayon pool.
///
/// # Panics
/// If the sizes do not fit together.
pub(crate) fn window_attention_t(a: &AttentionT, o_t: &mut [f32], ldo: usize) {
    a.run_with(o_t, ldo, true, true)
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
    /// AVX-512), matches candle's matmul + softmax, for tiny and Swin-T
    /// shapes, one bias or one per window, and odd sizes (tails of every
    /// register block).
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
            for nb in [1, nw] {
                let bias = Tensor::randn(0f32, 1.0, (nb, heads, n, n), &dev).unwrap();
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
                    let ldo = rows + 3;
                    let mut o_t = vec![0f32; dim * ldo];
                    a.run_with(&mut o_t, ldo, avx2, avx512);
                    let mut got = vec![0f32; rows * dim];
                    for r in 0..rows {
                        for c in 0..dim {
                            got[r * dim + c] = o_t[c * ldo + r];
                        }
                    }
                    let d = max_diff(&want, &got);
                    assert!(
                        d < 1e-5,
                        "n {n} heads {heads} hd {hd} bias windows {nb}: avx2 {avx2} avx512 {avx512} differ by {d}"
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
            let want = gelu_erf_f32::<false>(y);
            assert!((gelu[i] - want).abs() < 1e-6, "gelu({y}) = {}, want {want}", gelu[i]);
        }
    }
}
