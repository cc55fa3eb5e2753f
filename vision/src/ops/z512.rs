//! The AVX-512 kernel. For one window and head, in chunks of up to 64
//! queries (`QV` vectors of 16):
//! * scores `Sᵀ = K·Qᵀ + Bᵀ` with the queries in the lanes, in register
//!   tiles of `J` keys × `QV` vectors (`Qᵀ` rows are loaded once per tile and
//!   head column, the key elements broadcast);
//! * the softmax down the rows (over the keys), vertical as in the generic
//!   kernel, with `exp` on whole vectors;
//! * `O = P·V` with the *head columns* in the lanes: tiles of `R` queries ×
//!   32 columns, a broadcast element of `Pᵀ` times a row of `V`, so no lane
//!   is wasted on the padding of the 49 queries of a Swin window, and each
//!   query's output row is written straight into row-major `o`.

use super::{bias_pad, AttentionT, SendPtr, EXP_CUT};
use kino_kernels::{EXP_LN2_HI, EXP_LN2_LO, EXP_MAX, EXP_MIN, EXP_POLY};
use std::arch::x86_64::*;

/// Keys per score tile.
const J: usize = 6;
/// Queries per output tile (7 × 7 = 49, a Swin window).
const R: usize = 7;
/// Queries per chunk: 4 vectors.
const CHUNK: usize = 64;

/// The first `valid` lanes of 16.
#[inline(always)]
fn mask(valid: usize) -> __mmask16 {
    if valid >= 16 {
        0xffff
    } else {
        ((1u32 << valid) - 1) as __mmask16
    }
}

/// `kino_kernels::exp_f32::<true>` on 16 lanes (same steps, same
/// constants; `scalef` multiplies by `2ⁿ` as the scalar code's exponent
/// bits do).
#[inline(always)]
unsafe fn exp16(x: __m512) -> __m512 {
    unsafe {
        let s = _mm512_set1_ps;
        let x = _mm512_min_ps(_mm512_max_ps(x, s(EXP_MIN)), s(EXP_MAX));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_add_ps(
            _mm512_mul_ps(x, s(std::f32::consts::LOG2_E)),
            s(0.5),
        ));
        let r = _mm512_fmadd_ps(n, s(-EXP_LN2_HI), x);
        let r = _mm512_fmadd_ps(n, s(-EXP_LN2_LO), r);
        let mut p = s(EXP_POLY[0]);
        for c in &EXP_POLY[1..] {
            p = _mm512_fmadd_ps(p, r, s(*c));
        }
        let e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(r, r), p, r), s(1.0));
        _mm512_scalef_ps(e, n)
    }
}

/// `N` vectors from `row`, the last one masked to `last` (zeros in the
/// other lanes, nothing read there).
///
/// # Safety
/// AVX-512F; the unmasked lanes readable.
#[inline(always)]
unsafe fn load<const N: usize>(row: *const f32, last: __mmask16) -> [__m512; N] {
    // SAFETY: the caller's promise.
    std::array::from_fn(|v| unsafe {
        if v + 1 == N {
            _mm512_maskz_loadu_ps(last, row.add(16 * v))
        } else {
            _mm512_loadu_ps(row.add(16 * v))
        }
    })
}

/// Score rows `0 .. JN` of one tile: `st[j][16v + l] = Σ_d k[j][d]
/// qᵀ[d][16v + l] + bias[j][16v + l]`, keys `ldk` apart from `keys`, `Qᵀ`
/// rows `ldq` apart from `q`.
///
/// # Safety
/// AVX-512F; every pointer valid for what it names.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn scores<const QV: usize, const JN: usize>(
    q: *const f32,
    ldq: usize,
    keys: *const f32,
    ldk: usize,
    hd: usize,
    bias: *const f32,
    np: usize,
    st: *mut f32,
) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); QV]; JN];
        for d in 0..hd {
            let qv = load::<QV>(q.add(d * ldq), 0xffff);
            for (jj, a) in acc.iter_mut().enumerate() {
                let k = _mm512_set1_ps(*keys.add(jj * ldk + d));
                for (x, y) in a.iter_mut().zip(&qv) {
                    *x = _mm512_fmadd_ps(k, *y, *x);
                }
            }
        }
        for (jj, a) in acc.iter().enumerate() {
            for (v, x) in a.iter().enumerate() {
                let b = _mm512_loadu_ps(bias.add(jj * np + 16 * v));
                _mm512_storeu_ps(st.add(jj * QV * 16 + 16 * v), _mm512_add_ps(*x, b));
            }
        }
    }
}

/// Output rows `0 .. RN` (queries `r0 ..` of the chunk), `HV` vectors of
/// head columns from `c0`: `out[r][c] = inv[r] · Σ_j pᵀ[j][r] v[j][c]`,
/// `st` rows `sw` apart, value rows `ldv` apart from `values`, output
/// rows `ldo` apart from `out`; the last vector masked to `last`.
///
/// # Safety
/// AVX-512F; every pointer valid for what it names.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn weighted<const RN: usize, const HV: usize>(
    st: *const f32,
    sw: usize,
    n: usize,
    values: *const f32,
    ldv: usize,
    last: __mmask16,
    inv: *const f32,
    out: *mut f32,
    ldo: usize,
) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); HV]; RN];
        for j in 0..n {
            let vv = load::<HV>(values.add(j * ldv), last);
            let p = st.add(j * sw);
            for (r, a) in acc.iter_mut().enumerate() {
                let pr = _mm512_set1_ps(*p.add(r));
                for (x, y) in a.iter_mut().zip(&vv) {
                    *x = _mm512_fmadd_ps(pr, *y, *x);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let s = _mm512_set1_ps(*inv.add(r));
            let dst = out.add(r * ldo);
            for (v, x) in a.iter().enumerate() {
                let o = _mm512_mul_ps(*x, s);
                if v + 1 == HV {
                    _mm512_mask_storeu_ps(dst.add(16 * v), last, o);
                } else {
                    _mm512_storeu_ps(dst.add(16 * v), o);
                }
            }
        }
    }
}

/// One chunk of `cq ≤ 16·QV` queries from `i0`.
///
/// # Safety
/// AVX-512F; as [`head`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn chunk<const QV: usize>(
    a: &AttentionT,
    w: usize,
    h: usize,
    i0: usize,
    cq: usize,
    st: &mut [f32],
    out: SendPtr,
    ldo: usize,
) {
    let (n, hd, dim) = (a.n, a.hd, a.heads * a.hd);
    let np = bias_pad(n);
    let sw = QV * 16;
    let (scores_buf, rest) = st.split_at_mut(n * sw);
    let (inv, qpack) = rest.split_at_mut(sw);
    let qpack = &mut qpack[..hd * sw];
    // SAFETY: the sizes were checked by `run_with`: Qᵀ rows hold this
    // window's queries (the last vector masked to them), `kv` its keys
    // and values, the bias `n × np` floats with `np ≥ 16·QV`
    // from `i0` on, `out` the window's rows; `st` was sized by `head`.
    unsafe {
        let kv = a.kv.as_ptr().add(w * n * 2 * dim);
        let keys = kv.add(h * hd);
        let bias = a.bias_of(w, h).as_ptr().add(i0);
        let qlast = mask(cq - 16 * (QV - 1));
        // This chunk's Qᵀ, packed (`hd × sw`, padding zeroed): the score
        // tiles read it once each, from a few lines of L1 instead of
        // `hd` rows a whole batch apart.
        let src = a.q_t.as_ptr().add(h * hd * a.ldq + w * n + i0);
        let q = qpack.as_mut_ptr();
        for d in 0..hd {
            for (v, x) in load::<QV>(src.add(d * a.ldq), qlast).iter().enumerate() {
                _mm512_storeu_ps(q.add(d * sw + 16 * v), *x);
            }
        }
        let q = q as *const f32;
        let s = scores_buf.as_mut_ptr();
        let mut j = 0;
        while j + J <= n {
            scores::<QV, J>(
                q,
                sw,
                keys.add(j * 2 * dim),
                2 * dim,
                hd,
                bias.add(j * np),
                np,
                s.add(j * sw),
            );
            j += J;
        }
        while j < n {
            scores::<QV, 1>(
                q,
                sw,
                keys.add(j * 2 * dim),
                2 * dim,
                hd,
                bias.add(j * np),
                np,
                s.add(j * sw),
            );
            j += 1;
        }
        // Softmax down the rows, unnormalised; 1/sum per query into `inv`.
        let mut mx = [_mm512_set1_ps(f32::NEG_INFINITY); QV];
        for j in 0..n {
            for (v, m) in mx.iter_mut().enumerate() {
                *m = _mm512_max_ps(*m, _mm512_loadu_ps(s.add(j * sw + 16 * v)));
            }
        }
        let mut sum = [_mm512_setzero_ps(); QV];
        for j in 0..n {
            for v in 0..QV {
                let p = s.add(j * sw + 16 * v);
                let x = _mm512_sub_ps(_mm512_loadu_ps(p), mx[v]);
                let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(EXP_CUT));
                let e = _mm512_maskz_mov_ps(keep, exp16(x));
                _mm512_storeu_ps(p, e);
                sum[v] = _mm512_add_ps(sum[v], e);
            }
        }
        for (v, x) in sum.iter().enumerate() {
            _mm512_storeu_ps(inv.as_mut_ptr().add(16 * v), _mm512_div_ps(_mm512_set1_ps(1.0), *x));
        }
        // O = P·V, R queries × up to 32 head columns at a time.
        let values = kv.add(dim + h * hd);
        let inv = inv.as_ptr();
        let mut c0 = 0;
        while c0 < hd {
            let cw = (hd - c0).min(32);
            let hv = cw.div_ceil(16);
            let clast = mask(cw - 16 * (hv - 1));
            let mut r = 0;
            while r < cq {
                let o = out.get().add((w * n + i0 + r) * ldo + h * hd + c0);
                let (v, p, iv) = (values.add(c0), s.add(r) as *const f32, inv.add(r));
                let take = if cq - r >= R { R } else { 1 };
                match (take, hv) {
                    (R, 2) => weighted::<R, 2>(p, sw, n, v, 2 * dim, clast, iv, o, ldo),
                    (R, _) => weighted::<R, 1>(p, sw, n, v, 2 * dim, clast, iv, o, ldo),
                    (_, 2) => weighted::<1, 2>(p, sw, n, v, 2 * dim, clast, iv, o, ldo),
                    _ => weighted::<1, 1>(p, sw, n, v, 2 * dim, clast, iv, o, ldo),
                }
                r += take;
            }
            c0 += cw;
        }
    }
}

/// Window `w`, head `h`, all queries, into rows `w·n ..` of `out`.
///
/// # Safety
/// AVX-512F; `out` valid for this window's rows and head's columns, which
/// no other thread touches meanwhile; sizes as checked by `run_with`.
#[inline(always)]
pub(super) unsafe fn head(a: &AttentionT, w: usize, h: usize, st: &mut Vec<f32>, out: SendPtr, ldo: usize) {
    st.resize(a.n * CHUNK + CHUNK + a.hd * CHUNK, 0.0);
    let mut i0 = 0;
    while i0 < a.n {
        let cq = (a.n - i0).min(CHUNK);
        // SAFETY: forwarded from the caller.
        unsafe {
            match cq.div_ceil(16) {
                1 => chunk::<1>(a, w, h, i0, cq, st, out, ldo),
                2 => chunk::<2>(a, w, h, i0, cq, st, out, ldo),
                3 => chunk::<3>(a, w, h, i0, cq, st, out, ldo),
                _ => chunk::<4>(a, w, h, i0, cq, st, out, ldo),
            }
        }
        i0 += cq;
    }
}
