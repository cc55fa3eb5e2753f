//! CPU kernels shared by kino's model crates (`kino-vision`,
//! `kino-language`): the element-wise functions the models need in f32
//! (erf, exact GELU, exp) as fast polynomial approximations that LLVM can
//! vectorise, row-wise layer norm and softmax, and f32 matrix products on
//! plain slices through the `gemm` crate, and int8 products with the same
//! results on every CPU ([`int8`]).
//!
//! Every function that loops over many elements has a generic version and is
//! run through an AVX2+FMA copy when the CPU has those (checked once at run
//! time, see [`fma`]); results agree to rounding.

use rayon::prelude::*;

pub mod int8;

pub use int8::{int8_matmul, ChannelRanges, Int8Linear, Int8Parts, Int8Path, QuantizedRows, QuantizedWeights};

/// Cosine similarity of two vectors, accumulated in f64 (0 when either is
/// all zeros): how the int8 models are compared with f32.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += (*x as f64) * (*y as f64);
        aa += (*x as f64) * (*x as f64);
        bb += (*y as f64) * (*y as f64);
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (ab / (aa.sqrt() * bb.sqrt())) as f32
}

/// Elements handled per rayon task in element-wise passes (keeps tasks large
/// enough to amortise scheduling).
pub const MIN_CHUNK: usize = 16 * 1024;

/// `a * b + c`, fused when the caller is compiled with FMA (`FMA = true`),
/// plain otherwise (a software `fmaf` call would be slow).
#[inline(always)]
pub fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// erf for f32 without `exp`: Eigen's / XLA's rational approximation on
/// [-4, 4] (|error| < 2e-6 against the exact function; see the unit test).
#[inline(always)]
pub fn erf_f32<const F: bool>(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = madd::<F>(x2, -2.726_142_3e-10, 2.770_681_4e-8);
    p = madd::<F>(x2, p, -2.101_024e-6);
    p = madd::<F>(x2, p, -5.692_506_4e-5);
    p = madd::<F>(x2, p, -7.349_906_3e-4);
    p = madd::<F>(x2, p, -2.954_600_1e-3);
    p = madd::<F>(x2, p, -1.609_603_3e-2);
    let mut q = madd::<F>(x2, -1.456_607_2e-5, -2.133_740_6e-4);
    q = madd::<F>(x2, q, -1.682_827e-3);
    q = madd::<F>(x2, q, -7.373_329_3e-3);
    q = madd::<F>(x2, q, -1.426_474e-2);
    x * p / q
}

/// Exact (erf) GELU in f32, as PyTorch's `gelu(approximate="none")`.
#[inline(always)]
pub fn gelu_erf_f32<const F: bool>(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32::<F>(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Fast `exp` for f32 (Cephes-style: range reduction by ln 2, degree-6
/// polynomial, exponent bits), relative error about 2e-7 on the range a
/// softmax uses; inputs below -87 give the smallest normal float instead of a
/// denormal.
#[inline(always)]
pub fn exp_f32<const F: bool>(x: f32) -> f32 {
    let x = x.clamp(EXP_MIN, EXP_MAX);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = madd::<F>(n, -EXP_LN2_HI, x);
    let r = madd::<F>(n, -EXP_LN2_LO, r);
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = madd::<F>(p, r, *c);
    }
    let e = madd::<F>(r * r, p, r) + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// [`exp_f32`]'s input range.
pub const EXP_MIN: f32 = -87.0;
/// See [`EXP_MIN`].
pub const EXP_MAX: f32 = 88.0;
/// ln 2 in two parts for [`exp_f32`]'s range reduction (`hi + lo`).
pub const EXP_LN2_HI: f32 = 0.693_359_4;
/// See [`EXP_LN2_HI`].
pub const EXP_LN2_LO: f32 = -2.121_944_4e-4;
/// [`exp_f32`]'s polynomial, highest degree first (Horner), for the vector
/// versions of the same steps.
pub const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    5e-1,
];

/// Whether this CPU has AVX2 and FMA (checked once; always false off x86-64).
pub fn fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX-512F besides AVX2 and FMA (checked once; always
/// false off x86-64). `KINO_NO_AVX512=1` turns it off (for comparisons).
pub fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            fma() && std::arch::is_x86_feature_detected!("avx512f") && std::env::var_os("KINO_NO_AVX512").is_none()
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `$name`, an AVX2+FMA-compiled copy of the generic function
/// `$generic::<true>` with the given arguments, for callers that checked
/// [`fma`] first.
macro_rules! dispatch {
    ($name:ident, ($($arg:ident: $ty:ty),*), $generic:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name($($arg: $ty),*) {
            $generic::<true>($($arg),*)
        }
    };
}

#[inline(always)]
fn gelu_slice<const F: bool>(x: &mut [f32]) {
    for v in x {
        *v = gelu_erf_f32::<F>(*v);
    }
}
dispatch!(gelu_slice_fma, (x: &mut [f32]), gelu_slice);

/// `x = gelu_erf(x)` in place, on all threads of the current rayon pool.
pub fn gelu_in_place(x: &mut [f32]) {
    let f = fma();
    x.par_chunks_mut(MIN_CHUNK).for_each(|c| {
        #[cfg(target_arch = "x86_64")]
        if f {
            // SAFETY: the CPU has AVX2 and FMA (checked by `fma`).
            unsafe { gelu_slice_fma(c) };
            return;
        }
        gelu_slice::<false>(c)
    });
}

/// `Σ f(v)` over `v` in 16 independent partial sums (a plain `sum` is one
/// serial chain of additions, which the compiler may not reorder).
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let chunks = v.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..L {
            acc[l] += f(c[l]);
        }
    }
    let mut s = 0.0;
    for half in [8, 4, 2, 1] {
        for l in 0..half {
            acc[l] += acc[l + half];
        }
    }
    s += acc[0];
    for &x in rest {
        s += f(x);
    }
    s
}

#[inline(always)]
fn layer_norm_rows_generic<const F: bool>(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let h = w.len();
    for row in x.chunks_exact_mut(h) {
        // Two passes (mean, then variance of the centred values) as PyTorch.
        let mean = lane_sum(row, |v| v) / h as f32;
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(w).zip(b) {
            *v = madd::<F>((*v - mean) * inv, *w, *b);
        }
    }
}
dispatch!(layer_norm_rows_fma, (x: &mut [f32], w: &[f32], b: &[f32], eps: f32), layer_norm_rows_generic);

/// Layer norm over each row of `x` (rows of `w.len()` values, row-major), in
/// place: `(x - mean) / sqrt(var + eps) * w + b`, on all threads.
///
/// # Panics
/// If `x.len()` is not a multiple of `w.len()` or `w` and `b` differ in length.
pub fn layer_norm_in_place(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let h = w.len();
    assert!(
        h > 0 && b.len() == h && x.len().is_multiple_of(h),
        "layer norm: bad shapes"
    );
    let rows = (MIN_CHUNK / h).max(1);
    let f = fma();
    x.par_chunks_mut(rows * h).for_each(|c| {
        #[cfg(target_arch = "x86_64")]
        if f {
            // SAFETY: the CPU has AVX2 and FMA (checked by `fma`).
            unsafe { layer_norm_rows_fma(c, w, b, eps) };
            return;
        }
        layer_norm_rows_generic::<false>(c, w, b, eps)
    });
}

/// [`layer_norm_in_place`] on the calling thread (for callers that
/// parallelise over larger units, such as gathered rows).
///
/// # Panics
/// If `x.len()` is not a multiple of `w.len()` or `w` and `b` differ in length.
pub fn layer_norm_rows(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let h = w.len();
    assert!(
        h > 0 && b.len() == h && x.len().is_multiple_of(h),
        "layer norm: bad shapes"
    );
    #[cfg(target_arch = "x86_64")]
    if fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked by `fma`).
        unsafe { layer_norm_rows_fma(x, w, b, eps) };
        return;
    }
    layer_norm_rows_generic::<false>(x, w, b, eps)
}

#[inline(always)]
fn softmax_rows_generic<const F: bool>(x: &mut [f32], n: usize) {
    for row in x.chunks_exact_mut(n) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = exp_f32::<F>(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}
dispatch!(softmax_rows_fma, (x: &mut [f32], n: usize), softmax_rows_generic);

/// Softmax over each row of `n` values of `x`, in place, on the calling
/// thread (callers parallelise over larger units, such as attention heads).
pub fn softmax_rows(x: &mut [f32], n: usize) {
    #[cfg(target_arch = "x86_64")]
    if fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked by `fma`).
        unsafe { softmax_rows_fma(x, n) };
        return;
    }
    softmax_rows_generic::<false>(x, n)
}

/// Parts a threaded product is cut into per pool thread. The `gemm` crate
/// gives each part a fixed share of the work, so with one part per thread a
/// thread slowed by anything else on its core (the video decoder beside the
/// model, another process) makes the others wait at the end of every
/// product; with eight, rayon's work stealing evens it out. Measured on a
/// 2-core VM: idle core time during Swin-T down from 1.5-2.4 to 0.7-1.0
/// core-s per 80 images, end-to-end ingest idle from 3.6-4.2 to 2.6-2.9
/// core-s (docs/PERFORMANCE.md). A one-thread pool runs products unsplit.
const GEMM_TASKS_PER_THREAD: usize = 8;

/// How a matrix product may use threads.
#[derive(Clone, Copy, Debug)]
pub enum Threads {
    /// On the calling thread only.
    One,
    /// On the current rayon pool.
    All,
}

/// A raw pointer to f32s that may cross threads, for handing disjoint
/// regions of one buffer to rayon tasks (each task writes only its own).
#[derive(Clone, Copy, Debug)]
pub struct SendPtr(pub *mut f32);
// SAFETY: the pointer is only a value; whoever dereferences it vouches (in an
// `unsafe` block) that the threads touch disjoint elements.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `SendPtr`).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

/// A row-major f32 matrix view for [`matmul`]: element `(i, j)` is at
/// `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// Distance between rows.
    pub row_stride: usize,
    /// Distance between columns.
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A contiguous row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of this view.
    pub fn t(self) -> Mat<'a> {
        Mat {
            data: self.data,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows == 0 || cols == 0 {
            return;
        }
        let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
        assert!(last < self.data.len(), "{what}: {rows}x{cols} view out of bounds");
    }
}

/// `c = scale * a·b` (or `c += scale * a·b` when `accumulate`), with `a`
/// `m × k`, `b` `k × n` and `c` `m × n` (row stride `ldc`, columns
/// contiguous). Bounds are checked; the product runs in the `gemm` crate
/// (AVX-512 / AVX2 kernels chosen at run time).
///
/// # Panics
/// If a view does not hold its matrix.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    scale: f32,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * ldc + n <= c.len() && n <= ldc,
        "dst: {m}x{n} view out of bounds"
    );
    // SAFETY: `c` is exclusively borrowed and holds the destination (checked above).
    unsafe { matmul_ptr(m, k, n, a, b, c.as_mut_ptr(), ldc, accumulate, scale, threads) }
}

/// [`matmul`] into a destination given by pointer, for callers whose threads
/// write disjoint parts (such as column blocks) of one buffer.
///
/// # Safety
/// `c` must be valid for reads and writes of the `m × n` matrix with row
/// stride `ldc`, and no other thread may touch those elements meanwhile.
///
/// # Panics
/// If `a` or `b` does not hold its matrix.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_ptr(
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    scale: f32,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    a.check(m, k, "lhs");
    b.check(k, n, "rhs");
    let par = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => match rayon::current_num_threads() {
            1 => gemm::Parallelism::None,
            n => gemm::Parallelism::Rayon(n * GEMM_TASKS_PER_THREAD),
        },
    };
    // SAFETY: `a` and `b` were bounds-checked; the caller vouches for `c`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        )
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
pub fn bias_rows_in_place(dst: &mut [f32], bias: &[f32], gelu: bool) {
    let n = bias.len();
    assert!(
        n > 0 && dst.len().is_multiple_of(n),
        "bias of {n} does not divide {}",
        dst.len()
    );
    let rows = (MIN_CHUNK / n).max(1);
    #[cfg(target_arch = "x86_64")]
    let (avx2, avx512) = (fma(), avx512());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn erf64(x: f64) -> f64 {
        if x.abs() < 2.5 {
            // Maclaurin series.
            let mut sum = x;
            let mut term = x;
            let x2 = x * x;
            for n in 1..200 {
                term *= -x2 / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc continued fraction.
            let ax = x.abs();
            let mut f = 0.0;
            for k in (1..120).rev() {
                f = (k as f64 / 2.0) / (ax + f);
            }
            let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f);
            (1.0 - erfc) * x.signum()
        }
    }

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f64;
        for i in -870000..=0 {
            let x = (i as f64 / 10000.0) as f32;
            let want = (x as f64).exp();
            let rel = ((exp_f32::<false>(x) as f64) - want).abs() / want;
            worst = worst.max(rel);
        }
        assert!(worst < 1e-6, "exp max relative error {worst}");
    }

    #[test]
    fn fast_erf_is_accurate() {
        let mut worst = 0f64;
        for i in -60000..=60000 {
            let x = i as f64 / 10000.0;
            let d = (erf_f32::<false>(x as f32) as f64 - erf64(x)).abs();
            worst = worst.max(d);
        }
        assert!(worst < 2e-6, "erf max error {worst}");
    }

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn gelu_layer_norm_and_softmax_match_their_definitions() {
        let x = lcg(3000, 1);
        let mut g = x.clone();
        gelu_in_place(&mut g);
        for (a, b) in x.iter().zip(&g) {
            let want = 0.5 * *a as f64 * (1.0 + erf64(*a as f64 / 2f64.sqrt()));
            assert!((want - *b as f64).abs() < 1e-5, "gelu({a}) = {b}, want {want}");
        }
        let (h, w, b) = (30, lcg(30, 2), lcg(30, 3));
        let mut y = x.clone();
        layer_norm_in_place(&mut y, &w, &b, 1e-12);
        for (row, out) in x.chunks(h).zip(y.chunks(h)) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / h as f64;
            for j in 0..h {
                let want = (row[j] as f64 - mean) / (var + 1e-12).sqrt() * w[j] as f64 + b[j] as f64;
                assert!((want - out[j] as f64).abs() < 1e-4, "layer norm {} vs {want}", out[j]);
            }
        }
        let mut z = x.clone();
        layer_norm_rows(&mut z, &w, &b, 1e-12);
        assert_eq!(y, z, "layer_norm_rows differs from layer_norm_in_place");
        let mut s = x.clone();
        softmax_rows(&mut s, 50);
        for (row, out) in x.chunks(50).zip(s.chunks(50)) {
            let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            for j in 0..50 {
                let want = (row[j] as f64 - max).exp() / sum;
                assert!((want - out[j] as f64).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn matmul_matches_the_naive_product_for_every_stride() {
        let (m, k, n) = (37, 29, 41);
        let a = lcg(m * k, 4);
        let b = lcg(k * n, 5);
        let mut want = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
            }
        }
        // b stored transposed, as weights are.
        let mut bt = vec![0f32; k * n];
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        for threads in [Threads::One, Threads::All] {
            for (bm, label) in [(Mat::rows(&b, n), "plain"), (Mat::rows(&bt, k).t(), "transposed")] {
                let ldc = n + 3;
                let mut c = vec![1f32; m * ldc];
                matmul(m, k, n, Mat::rows(&a, k), bm, &mut c, ldc, true, 0.5, threads);
                for i in 0..m {
                    for j in 0..n {
                        let w = 1.0 + 0.5 * want[i * n + j];
                        assert!((c[i * ldc + j] as f64 - w).abs() < 1e-4, "{label}: ({i},{j})");
                    }
                    assert_eq!(c[i * ldc + n], 1.0, "{label}: wrote past the row");
                }
            }
        }
    }
}
