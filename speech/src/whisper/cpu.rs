//! The building blocks of the encoder and decoder on plain f32 slices
//! (row-major), without candle's per-op tensors and allocations: linear
//! layers (the `gemm` crate through kino-kernels for many rows, a
//! memory-bound matrix-vector kernel for a few), layer norm, bias + exact
//! GELU, and scaled dot-product attention run per head (and per block of
//! query rows) on rayon's threads.

use candle_nn::VarBuilder;
use kino_kernels::{Int8Linear, Mat, SendPtr, Threads, MIN_CHUNK};
use rayon::prelude::*;

use crate::whisper::Result;

/// Rows up to which a linear layer runs as matrix-vector products (one pass
/// over the weights per row) rather than through `gemm`.
const SMALL_M: usize = 4;

/// A tensor of the model as f32 values (row-major).
pub(crate) fn values(vb: &VarBuilder, shape: &[usize], name: &str) -> Result<Vec<f32>> {
    Ok(vb.get(shape, name)?.flatten_all()?.to_vec1::<f32>()?)
}

/// A layer norm's weight and bias (eps 1e-5, as Whisper's).
pub(crate) struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Norm {
    pub(crate) fn load(vb: VarBuilder, d: usize) -> Result<Norm> {
        Ok(Norm {
            w: values(&vb, &[d], "weight")?,
            b: values(&vb, &[d], "bias")?,
        })
    }

    /// `out = layer_norm(x)`, row by row.
    pub(crate) fn apply(&self, x: &[f32], out: &mut [f32]) {
        out.copy_from_slice(x);
        kino_kernels::layer_norm_in_place(out, &self.w, &self.b, 1e-5);
    }

    /// Layer norm in place.
    pub(crate) fn apply_in_place(&self, x: &mut [f32]) {
        kino_kernels::layer_norm_in_place(x, &self.w, &self.b, 1e-5);
    }
}

/// A linear layer: weight `n_out × n_in` (row-major, as stored) and bias
/// (zeros where the layer has none).
pub(crate) struct Linear {
    pub(crate) w: Vec<f32>,
    /// The weight as IEEE half floats instead of `w` (then empty), where
    /// every value is one exactly (the CTranslate2 weights are stored in
    /// fp16): products read half the bytes and compute the same f32 values.
    w16: Vec<u16>,
    pub(crate) b: Vec<f32>,
    pub(crate) n_in: usize,
    pub(crate) n_out: usize,
    /// The int8 form, used for products of more than a few rows.
    q: Option<Int8Linear>,
}

impl Linear {
    pub(crate) fn load(vb: VarBuilder, n_in: usize, n_out: usize, bias: bool) -> Result<Linear> {
        let b = if bias {
            values(&vb, &[n_out], "bias")?
        } else {
            vec![0.0; n_out]
        };
        Ok(Linear {
            w: values(&vb, &[n_out, n_in], "weight")?,
            w16: Vec::new(),
            b,
            n_in,
            n_out,
            q: None,
        })
    }

    /// This layer with its weight kept in half floats when that is exact
    /// (see [`to_f16`]): for layers mostly run on one row at a time.
    pub(crate) fn half(mut self) -> Linear {
        if let Some(w16) = to_f16(&self.w) {
            self.w16 = w16;
            self.w = Vec::new();
        }
        self
    }

    /// The layers' outputs side by side: their weights stacked along rows.
    pub(crate) fn fuse(parts: Vec<Linear>) -> Linear {
        let n_in = parts[0].n_in;
        let mut out = Linear {
            w: Vec::new(),
            w16: Vec::new(),
            b: Vec::new(),
            n_in,
            n_out: 0,
            q: None,
        };
        for p in parts {
            assert_eq!(p.n_in, n_in, "fused layers differ in input size");
            assert!(p.w16.is_empty(), "fuse before `half`");
            out.w.extend_from_slice(&p.w);
            out.b.extend_from_slice(&p.b);
            out.n_out += p.n_out;
        }
        out
    }

    /// Adds the int8 form of the weights, used for products of more than a
    /// few rows: input channels with `range` over 6× the median channel's
    /// computed in f32, the others smoothed by `range` (see
    /// `kino_kernels::Int8Linear`; zeros: neither).
    pub(crate) fn quantize(&mut self, range: &[f32]) {
        let (k, n) = (self.n_in, self.n_out);
        let w = if self.w16.is_empty() {
            self.w.clone()
        } else {
            from_f16(&self.w16)
        };
        let mut wt = vec![0f32; k * n];
        for (o, row) in w.chunks_exact(k).enumerate() {
            for (i, v) in row.iter().enumerate() {
                wt[i * n + o] = *v;
            }
        }
        let outliers = Int8Linear::outlier_channels(range, 6.0, k.div_ceil(32).max(4));
        self.q = Some(Int8Linear::quantize_split(&wt, k, n, range, &outliers));
    }

    /// `y = x·wᵀ + b` (then the exact GELU when `gelu`) for the `m` rows of
    /// `x`, or `y += x·wᵀ + b` when `accumulate` (no GELU then); `y` is
    /// `m × n_out`.
    pub(crate) fn apply(&self, x: &[f32], m: usize, y: &mut [f32], accumulate: bool, gelu: bool) {
        debug_assert!(!(accumulate && gelu));
        let (k, n) = (self.n_in, self.n_out);
        assert!(x.len() >= m * k && y.len() >= m * n, "linear: bad shapes");
        let y = &mut y[..m * n];
        let w = if self.w16.is_empty() {
            Weights::F32(&self.w)
        } else {
            Weights::F16(&self.w16)
        };
        if m <= SMALL_M {
            for (xi, yi) in x.chunks_exact(k).zip(y.chunks_exact_mut(n)).take(m) {
                matvec(xi, w, &self.b, yi, accumulate, gelu);
            }
            return;
        }
        if let Some(q) = &self.q {
            q.forward(x, m, None, y, n, accumulate);
            bias_rows_in_place(y, &self.b, gelu);
            return;
        }
        let wide;
        let w = match w {
            Weights::F32(w) => w,
            Weights::F16(w16) => {
                wide = from_f16(w16);
                &wide[..]
            }
        };
        kino_kernels::matmul(
            m,
            k,
            n,
            Mat::rows(x, k),
            Mat::rows(w, k).t(),
            y,
            n,
            accumulate,
            1.0,
            Threads::All,
        );
        bias_rows_in_place(y, &self.b, gelu);
    }
}

/// A weight matrix in f32 or in half floats (raw bits).
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// IEEE half floats.
    F16(&'a [u16]),
}

impl Weights<'_> {
    fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::F16(w) => w.len(),
        }
    }
}

/// `w` in half floats, if every value is one exactly.
pub(crate) fn to_f16(w: &[f32]) -> Option<Vec<u16>> {
    w.iter()
        .map(|&v| {
            let h = half::f16::from_f32(v);
            (h.to_f32().to_bits() == v.to_bits()).then_some(h.to_bits())
        })
        .collect()
}

/// Half floats (raw bits) to f32, on all threads.
pub(crate) fn from_f16(w: &[u16]) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    out.par_chunks_mut(MIN_CHUNK)
        .zip(w.par_chunks(MIN_CHUNK))
        .for_each(|(o, w)| {
            #[cfg(target_arch = "x86_64")]
            if kino_kernels::avx512() {
                // SAFETY: the CPU has AVX-512F (checked by `avx512`).
                unsafe { from_f16_avx512(w, o) };
                return;
            }
            for (o, &h) in o.iter_mut().zip(w) {
                *o = half::f16::from_bits(h).to_f32();
            }
        });
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn from_f16_avx512(w: &[u16], o: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = w.len().min(o.len());
    let full = n / 16 * 16;
    for i in (0..full).step_by(16) {
        _mm512_storeu_ps(o.as_mut_ptr().add(i), load_w::<true>(w.as_ptr().cast(), i));
    }
    for (o, &h) in o[full..n].iter_mut().zip(&w[full..n]) {
        *o = half::f16::from_bits(h).to_f32();
    }
}

/// `y[j] (+)= x·w[j] + b[j]` over the rows `w[j]` of `w` (then GELU when
/// `gelu`), on all threads: the decoder's one-token products, bound by the
/// speed at which the weights stream from memory.
pub(crate) fn matvec(x: &[f32], w: Weights, b: &[f32], y: &mut [f32], accumulate: bool, gelu: bool) {
    let k = x.len();
    let n = y.len();
    assert!(w.len() == n * k && b.len() == n, "matvec: bad shapes");
    // Enough rows per task to stream ~64 KiB of weights.
    let rows = (16 * 1024 / k).max(1);
    #[cfg(target_arch = "x86_64")]
    let avx512 = kino_kernels::avx512();
    y.par_chunks_mut(rows).enumerate().for_each(|(c, yc)| {
        let j0 = c * rows;
        let (r, bc) = (j0 * k..(j0 + yc.len()) * k, &b[j0..j0 + yc.len()]);
        match w {
            Weights::F32(w) => {
                #[cfg(target_arch = "x86_64")]
                if avx512 {
                    // SAFETY: the CPU has AVX-512F (checked by `avx512`).
                    unsafe { matvec_avx512::<false>(x, w[r].as_ptr().cast(), bc, yc, accumulate, gelu) };
                    return;
                }
                matvec_generic(x, |i| w[r.start + i], bc, yc, accumulate, gelu);
            }
            Weights::F16(w) => {
                #[cfg(target_arch = "x86_64")]
                if avx512 {
                    // SAFETY: as above; `w[r]` holds `yc.len()` rows of `k`.
                    unsafe { matvec_avx512::<true>(x, w[r].as_ptr().cast(), bc, yc, accumulate, gelu) };
                    return;
                }
                let f = |i| half::f16::from_bits(w[r.start + i]).to_f32();
                matvec_generic(x, f, bc, yc, accumulate, gelu);
            }
        }
    });
}

fn matvec_generic(x: &[f32], w: impl Fn(usize) -> f32, b: &[f32], y: &mut [f32], accumulate: bool, gelu: bool) {
    let k = x.len();
    for (j, (yj, bj)) in y.iter_mut().zip(b).enumerate() {
        let mut acc = [0f32; 16];
        for c in 0..k / 16 {
            for l in 0..16 {
                acc[l] += x[c * 16 + l] * w(j * k + c * 16 + l);
            }
        }
        let mut s: f32 = acc.iter().sum();
        for (i, xi) in x.iter().enumerate().skip(k / 16 * 16) {
            s += xi * w(j * k + i);
        }
        let v = s + bj;
        *yj = if accumulate {
            *yj + v
        } else if gelu {
            kino_kernels::gelu_erf_f32::<false>(v)
        } else {
            v
        };
    }
}

/// 16 weights at `p` (element offset `i`) as f32: half floats when `HALF`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load_w<const HALF: bool>(p: *const u8, i: usize) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    if HALF {
        _mm512_cvtph_ps(_mm256_loadu_si256(p.cast::<u16>().add(i).cast()))
    } else {
        _mm512_loadu_ps(p.cast::<f32>().add(i))
    }
}

/// The rows of `y.len()` weights of `x.len()` values at `w` (f32, or half
/// floats when `HALF`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn matvec_avx512<const HALF: bool>(
    x: &[f32],
    w: *const u8,
    b: &[f32],
    y: &mut [f32],
    accumulate: bool,
    gelu: bool,
) {
    use std::arch::x86_64::*;
    let k = x.len();
    let k64 = k / 64 * 64;
    let k16 = k / 16 * 16;
    let xp = x.as_ptr();
    let scalar = |j: usize, i: usize| -> f32 {
        if HALF {
            half::f16::from_bits(*w.cast::<u16>().add(j * k + i)).to_f32()
        } else {
            *w.cast::<f32>().add(j * k + i)
        }
    };
    for (j, yj) in y.iter_mut().enumerate() {
        let o = j * k;
        let (mut a0, mut a1, mut a2, mut a3) = (
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
            _mm512_setzero_ps(),
        );
        let mut i = 0;
        while i < k64 {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(xp.add(i)), load_w::<HALF>(w, o + i), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(xp.add(i + 16)), load_w::<HALF>(w, o + i + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(xp.add(i + 32)), load_w::<HALF>(w, o + i + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(xp.add(i + 48)), load_w::<HALF>(w, o + i + 48), a3);
            i += 64;
        }
        while i < k16 {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(xp.add(i)), load_w::<HALF>(w, o + i), a0);
            i += 16;
        }
        let mut s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        while i < k {
            s += *xp.add(i) * scalar(j, i);
            i += 1;
        }
        let v = s + b[j];
        *yj = if accumulate {
            *yj + v
        } else if gelu {
            kino_kernels::gelu_erf_f32::<true>(v)
        } else {
            v
        };
    }
}

pub(crate) use kino_kernels::bias_rows_in_place;

/// Query rows per attention task: a block's scores (`ROWS × keys`) stay in
/// the core's L2 cache between the two products.
const ROWS: usize = 64;

/// Scaled dot-product attention of `n` queries over `m` keys, `heads` heads
/// of `dh` values: `q` row `i`, head `h` at `q[i * ldq + h * dh..][..dh]`;
/// `kt(h)` the head's keys transposed (`dh × m`), `v(h)` its values
/// (`m × dh`); `valid(i)` how many keys query `i` sees (the first ones: a
/// causal mask), `m` for all. Writes head `h` of query `i` to
/// `out[i * ldo + h * dh..][..dh]`. Heads and blocks of query rows run on
/// all threads, each product on one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention<'a>(
    n: usize,
    m: usize,
    heads: usize,
    dh: usize,
    q: &[f32],
    ldq: usize,
    kt: impl Fn(usize) -> Mat<'a> + Sync,
    v: impl Fn(usize) -> Mat<'a> + Sync,
    valid: impl Fn(usize) -> usize + Sync,
    out: &mut [f32],
    ldo: usize,
) {
    if n == 0 {
        return;
    }
    assert!(
        (n - 1) * ldo + heads * dh <= out.len() && heads * dh <= ldo,
        "attention: output too small"
    );
    if n <= SMALL_M {
        attention_few(n, m, heads, dh, q, ldq, &kt, &v, &valid, out, ldo);
        return;
    }
    let scale = (dh as f32).powf(-0.5);
    let blocks = n.div_ceil(ROWS);
    let dst = SendPtr(out.as_mut_ptr());
    (0..heads * blocks)
        .into_par_iter()
        .for_each_init(Vec::new, |s: &mut Vec<f32>, t| {
            let (h, b) = (t / blocks, t % blocks);
            let r0 = b * ROWS;
            let rows = ROWS.min(n - r0);
            s.resize(rows * m, 0.0);
            let qm = Mat {
                data: &q[r0 * ldq + h * dh..],
                row_stride: ldq,
                col_stride: 1,
            };
            kino_kernels::matmul(rows, dh, m, qm, kt(h), s, m, false, scale, Threads::One);
            for (i, row) in s.chunks_exact_mut(m).enumerate() {
                let len = valid(r0 + i).min(m);
                softmax_rows(&mut row[..len], len);
                row[len..].fill(0.0);
            }
            // SAFETY: this task alone writes rows r0..r0 + rows, columns
            // h * dh..(h + 1) * dh of `out` (bounds checked above).
            unsafe {
                kino_kernels::matmul_ptr(
                    rows,
                    m,
                    dh,
                    Mat::rows(s, m),
                    v(h),
                    dst.get().add(r0 * ldo + h * dh),
                    ldo,
                    false,
                    1.0,
                    Threads::One,
                )
            };
        });
}

/// [`attention`] for a few queries (decoding steps): one query and head per
/// task, its scores (`m` values) in L1, the keys and values streamed once.
#[allow(clippy::too_many_arguments)]
fn attention_few<'a>(
    n: usize,
    m: usize,
    heads: usize,
    dh: usize,
    q: &[f32],
    ldq: usize,
    kt: &(impl Fn(usize) -> Mat<'a> + Sync),
    v: &(impl Fn(usize) -> Mat<'a> + Sync),
    valid: &(impl Fn(usize) -> usize + Sync),
    out: &mut [f32],
    ldo: usize,
) {
    let scale = (dh as f32).powf(-0.5);
    let dst = SendPtr(out.as_mut_ptr());
    (0..n * heads)
        .into_par_iter()
        .for_each_init(Vec::new, |s: &mut Vec<f32>, t| {
            let (i, h) = (t / heads, t % heads);
            let len = valid(i).min(m);
            s.resize(m.max(1), 0.0);
            let qs: Vec<f32> = q[i * ldq + h * dh..][..dh].iter().map(|&x| x * scale).collect();
            let (k, vm) = (kt(h), v(h));
            // The last element each view is read at, checked once here.
            if len > 0 {
                let last_k = (dh - 1) * k.row_stride + (len - 1) * k.col_stride;
                let last_v = (len - 1) * vm.row_stride + (dh - 1) * vm.col_stride;
                assert!(
                    last_k < k.data.len() && last_v < vm.data.len(),
                    "attention: views out of bounds"
                );
            }
            let mut o = [0f32; 256];
            let o = &mut o[..dh];
            #[cfg(target_arch = "x86_64")]
            if kino_kernels::avx512() && dh.is_multiple_of(16) && dh <= 256 && vm.col_stride == 1 {
                // SAFETY: AVX-512F is there (checked by `avx512`); the views
                // hold the elements read (checked above); `s` holds `len`.
                unsafe {
                    scores_avx512(&qs, k, len, s);
                    softmax_avx512(&mut s[..len]);
                    weighted_avx512(&s[..len], vm, o);
                }
                // SAFETY: this task alone writes query i's head h.
                unsafe { std::ptr::copy_nonoverlapping(o.as_ptr(), dst.get().add(i * ldo + h * dh), dh) };
                return;
            }
            for (j, sj) in s[..len].iter_mut().enumerate() {
                *sj = (0..dh)
                    .map(|c| qs[c] * k.data[c * k.row_stride + j * k.col_stride])
                    .sum();
            }
            if len > 0 {
                kino_kernels::softmax_rows(&mut s[..len], len);
            }
            for (j, &p) in s[..len].iter().enumerate() {
                for (c, oc) in o.iter_mut().enumerate() {
                    *oc += p * vm.data[j * vm.row_stride + c * vm.col_stride];
                }
            }
            // SAFETY: this task alone writes query i's head h.
            unsafe { std::ptr::copy_nonoverlapping(o.as_ptr(), dst.get().add(i * ldo + h * dh), dh) };
        });
}

/// `s[j] = q·k_j` for `j < len`, the keys given transposed (`kt`, `dh × m`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scores_avx512(q: &[f32], kt: Mat, len: usize, s: &mut [f32]) {
    use std::arch::x86_64::*;
    let dh = q.len();
    let kp = kt.data.as_ptr();
    let sp = s.as_mut_ptr();
    if kt.col_stride == 1 {
        // Keys' dimensions in rows: s += q[c] · row c, four rows per pass
        // over `s` (in L1), so that four streams are read at a time.
        let rs = kt.row_stride;
        let full = len / 16 * 16;
        let tail: __mmask16 = ((1u32 << (len - full)) - 1) as __mmask16;
        let mut c = 0;
        while c < dh {
            let four = c + 4 <= dh;
            let (r0, r1, r2, r3) = (
                kp.add(c * rs),
                kp.add((c + 1).min(dh - 1) * rs),
                kp.add((c + 2).min(dh - 1) * rs),
                kp.add((c + 3).min(dh - 1) * rs),
            );
            let q0 = _mm512_set1_ps(q[c]);
            let (q1, q2, q3) = if four {
                (
                    _mm512_set1_ps(q[c + 1]),
                    _mm512_set1_ps(q[c + 2]),
                    _mm512_set1_ps(q[c + 3]),
                )
            } else {
                (_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps())
            };
            for j in (0..len).step_by(16) {
                let mask = if j < full { 0xffff } else { tail };
                let mut acc = if c == 0 {
                    _mm512_setzero_ps()
                } else {
                    _mm512_maskz_loadu_ps(mask, sp.add(j))
                };
                acc = _mm512_fmadd_ps(q0, _mm512_maskz_loadu_ps(mask, r0.add(j)), acc);
                if four {
                    acc = _mm512_fmadd_ps(q1, _mm512_maskz_loadu_ps(mask, r1.add(j)), acc);
                    acc = _mm512_fmadd_ps(q2, _mm512_maskz_loadu_ps(mask, r2.add(j)), acc);
                    acc = _mm512_fmadd_ps(q3, _mm512_maskz_loadu_ps(mask, r3.add(j)), acc);
                }
                _mm512_mask_storeu_ps(sp.add(j), mask, acc);
            }
            c += if four { 4 } else { 1 };
        }
    } else {
        // Keys in rows (`kt` is a transposed row-major view): a dot product each.
        let cs = kt.col_stride;
        let rs = kt.row_stride;
        for j in 0..len {
            let mut acc = _mm512_setzero_ps();
            let kj = kp.add(j * cs);
            if rs == 1 {
                for c in (0..dh).step_by(16) {
                    acc = _mm512_fmadd_ps(_mm512_loadu_ps(q.as_ptr().add(c)), _mm512_loadu_ps(kj.add(c)), acc);
                }
                *sp.add(j) = _mm512_reduce_add_ps(acc);
            } else {
                *sp.add(j) = (0..dh).map(|c| q[c] * *kj.add(c * rs)).sum();
            }
        }
    }
}

/// `o = Σ_j s[j] · v_j` over the rows of `v` (`len × dh`, columns contiguous).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // lanes l and 4 + l side by side
unsafe fn weighted_avx512(s: &[f32], v: Mat, o: &mut [f32]) {
    use std::arch::x86_64::*;
    let dh = o.len();
    let vp = v.data.as_ptr();
    let rs = v.row_stride;
    if dh == 64 {
        // One pass over the rows, all 64 columns in registers.
        let mut acc = [_mm512_setzero_ps(); 8];
        let mut j = 0;
        while j + 2 <= s.len() {
            let (p0, p1) = (_mm512_set1_ps(s[j]), _mm512_set1_ps(s[j + 1]));
            let (v0, v1) = (vp.add(j * rs), vp.add((j + 1) * rs));
            for l in 0..4 {
                acc[l] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0.add(16 * l)), acc[l]);
                acc[4 + l] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1.add(16 * l)), acc[4 + l]);
            }
            j += 2;
        }
        if j < s.len() {
            let (p0, v0) = (_mm512_set1_ps(s[j]), vp.add(j * rs));
            for l in 0..4 {
                acc[l] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0.add(16 * l)), acc[l]);
            }
        }
        for l in 0..4 {
            _mm512_storeu_ps(o.as_mut_ptr().add(16 * l), _mm512_add_ps(acc[l], acc[4 + l]));
        }
        return;
    }
    for c in (0..dh).step_by(16) {
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut j = 0;
        while j + 2 <= s.len() {
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(s[j]), _mm512_loadu_ps(vp.add(j * rs + c)), a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(s[j + 1]), _mm512_loadu_ps(vp.add((j + 1) * rs + c)), a1);
            j += 2;
        }
        if j < s.len() {
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(s[j]), _mm512_loadu_ps(vp.add(j * rs + c)), a0);
        }
        _mm512_storeu_ps(o.as_mut_ptr().add(c), _mm512_add_ps(a0, a1));
    }
}

/// `exp` on 16 lanes: [`kino_kernels::exp_f32`]'s steps (the same
/// constants), the power of two applied with `scalef`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use kino_kernels::{EXP_LN2_HI, EXP_LN2_LO, EXP_MAX, EXP_MIN, EXP_POLY};
    use std::arch::x86_64::*;
    let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(EXP_MIN)), _mm512_set1_ps(EXP_MAX));
    let t = _mm512_fmadd_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E), _mm512_set1_ps(0.5));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(t);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_POLY[0]);
    for c in &EXP_POLY[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
    }
    let e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(r, r), p, r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(e, n)
}

/// Softmax of `s` in place on 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_avx512(s: &mut [f32]) {
    use std::arch::x86_64::*;
    let len = s.len();
    if len == 0 {
        return;
    }
    let p = s.as_mut_ptr();
    let full = len / 16 * 16;
    let tail: __mmask16 = ((1u32 << (len - full)) - 1) as __mmask16;
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut mx = ninf;
    for j in (0..len).step_by(16) {
        let mask = if j < full { 0xffff } else { tail };
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, mask, p.add(j)));
    }
    let mx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    let mut sum = _mm512_setzero_ps();
    for j in (0..len).step_by(16) {
        let mask = if j < full { 0xffff } else { tail };
        let e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, p.add(j)), mx));
        sum = _mm512_mask_add_ps(sum, mask, sum, e);
        _mm512_mask_storeu_ps(p.add(j), mask, e);
    }
    let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
    for j in (0..len).step_by(16) {
        let mask = if j < full { 0xffff } else { tail };
        _mm512_mask_storeu_ps(
            p.add(j),
            mask,
            _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, p.add(j)), inv),
        );
    }
}

/// Softmax over each row of `n` values of `x`, in place, on the calling
/// thread (AVX-512 when the CPU has it, else kino-kernels' version).
pub(crate) fn softmax_rows(x: &mut [f32], n: usize) {
    if n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if kino_kernels::avx512() {
        for row in x.chunks_exact_mut(n) {
            // SAFETY: the CPU has AVX-512F (checked by `avx512`).
            unsafe { softmax_avx512(row) };
        }
        return;
    }
    kino_kernels::softmax_rows(x, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Attention in f64, keys and values `m × d` row-major, queries `n × d`.
    fn naive(n: usize, m: usize, heads: usize, q: &[f32], k: &[f32], v: &[f32], causal: Option<usize>) -> Vec<f64> {
        let d = q.len() / n;
        let dh = d / heads;
        let mut out = vec![0f64; n * d];
        for i in 0..n {
            let len = causal.map_or(m, |offset| offset + i + 1);
            for h in 0..heads {
                let s: Vec<f64> = (0..len)
                    .map(|j| {
                        (0..dh)
                            .map(|c| q[i * d + h * dh + c] as f64 * k[j * d + h * dh + c] as f64)
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::MIN, f64::max);
                let total: f64 = s.iter().map(|x| (x - max).exp()).sum();
                for (j, x) in s.iter().enumerate() {
                    let p = (x - max).exp() / total;
                    for c in 0..dh {
                        out[i * d + h * dh + c] += p * v[j * d + h * dh + c] as f64;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn attention_matches_the_definition_for_one_and_many_queries() {
        let (heads, dh, m) = (4, 64, 150);
        let d = heads * dh;
        let k = lcg(m * d, 1);
        let v = lcg(m * d, 2);
        // Keys transposed per head, as the decoder's cross-attention holds them.
        let mut kt = vec![0f32; d * m];
        for j in 0..m {
            for c in 0..d {
                kt[c * m + j] = k[j * d + c];
            }
        }
        for n in [1, 3, 70, 150] {
            let q: Vec<f32> = lcg(n * d, 3 + n as u64).iter().map(|x| x * 4.0).collect();
            for causal in [None, Some(m - n)] {
                let want = naive(n, m, heads, &q, &k, &v, causal);
                let valid = |i: usize| causal.map_or(m, |offset| offset + i + 1);
                let rows_k = |h: usize| {
                    Mat {
                        data: &k[h * dh..],
                        row_stride: d,
                        col_stride: 1,
                    }
                    .t()
                };
                let transposed_k = |h: usize| Mat::rows(&kt[h * dh * m..(h + 1) * dh * m], m);
                let vm = |h: usize| Mat {
                    data: &v[h * dh..],
                    row_stride: d,
                    col_stride: 1,
                };
                let mut a = vec![0f32; n * d];
                let mut b = vec![0f32; n * d];
                attention(n, m, heads, dh, &q, d, rows_k, vm, valid, &mut a, d);
                attention(n, m, heads, dh, &q, d, transposed_k, vm, valid, &mut b, d);
                for (idx, w) in want.iter().enumerate() {
                    assert!((a[idx] as f64 - w).abs() < 1e-4, "n {n} {causal:?}: {} vs {w}", a[idx]);
                    assert!(
                        (b[idx] as f64 - w).abs() < 1e-4,
                        "n {n} {causal:?} (kᵀ): {} vs {w}",
                        b[idx]
                    );
                }
            }
        }
    }

    #[test]
    fn half_float_weights_give_the_same_products() {
        let (k, n) = (200, 70);
        // Values that are half floats exactly, as the model's.
        let w: Vec<f32> = lcg(k * n, 5).iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
        let w16 = to_f16(&w).expect("exact half floats");
        assert_eq!(from_f16(&w16), w);
        assert!(to_f16(&[0.1f32]).is_none(), "0.1 is no half float");
        let x = lcg(k, 6);
        let b = lcg(n, 7);
        for (acc, gelu) in [(false, false), (false, true), (true, false)] {
            let mut y32 = vec![0.5f32; n];
            let mut y16 = y32.clone();
            matvec(&x, Weights::F32(&w), &b, &mut y32, acc, gelu);
            matvec(&x, Weights::F16(&w16), &b, &mut y16, acc, gelu);
            assert_eq!(y32, y16, "acc {acc}, gelu {gelu}");
            for j in 0..n {
                let dot: f64 = (0..k).map(|i| x[i] as f64 * w[j * k + i] as f64).sum::<f64>() + b[j] as f64;
                let want = if acc {
                    0.5 + dot
                } else if gelu {
                    kino_kernels::gelu_erf_f32::<false>(dot as f32) as f64
                } else {
                    dot
                };
                assert!((y32[j] as f64 - want).abs() < 1e-4, "{} vs {want}", y32[j]);
            }
        }
        // Many rows: widened, then one product.
        let mut lin = Linear {
            w: w.clone(),
            w16: Vec::new(),
            b: b.clone(),
            n_in: k,
            n_out: n,
            q: None,
        };
        let xs = lcg(9 * k, 8);
        let mut full = vec![0f32; 9 * n];
        lin.apply(&xs, 9, &mut full, false, false);
        lin = lin.half();
        assert!(lin.w.is_empty() && !lin.w16.is_empty());
        let mut half = vec![0f32; 9 * n];
        lin.apply(&xs, 9, &mut half, false, false);
        assert_eq!(full, half);
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        for n in [1, 15, 16, 17, 1500] {
            let mut x: Vec<f32> = lcg(3 * n, n as u64).iter().map(|v| v * 20.0).collect();
            let orig = x.clone();
            softmax_rows(&mut x, n);
            for (row, o) in x.chunks(n).zip(orig.chunks(n)) {
                let max = o.iter().cloned().fold(f32::MIN, f32::max) as f64;
                let total: f64 = o.iter().map(|&v| (v as f64 - max).exp()).sum();
                for (p, v) in row.iter().zip(o) {
                    let want = (*v as f64 - max).exp() / total;
                    assert!((*p as f64 - want).abs() < 1e-6, "{p} vs {want}");
                }
            }
        }
    }
}
