//! The x86-64 micro-kernels of [`super`]: each computes one tile of up to
//! `TILE_ROWS × TILE_COLS` int32 accumulators over the whole inner
//! dimension, with wrapping (never saturating) int32 additions, so that all
//! give the portable kernel's exact sums. The VNNI kernels compute only the
//! tile's first `R` rows, so a last, partial row tile costs its own rows,
//! not six.
//!
//! Shared contract (`# Safety` of every function here): the CPU has the
//! function's target features; `a` holds `TILE_ROWS` rows of `lda` bytes
//! (`lda ≥ 4 · groups`); `b` holds the tile's 4 panels, `panel_stride ≥
//! 64 · groups` bytes apart.

use std::arch::x86_64::*;

use super::{Acc, QuantizedRows, QuantizedWeights, PANEL, TILE_PANELS, TILE_ROWS};

/// Four activation bytes `a[r][4g..4g+4]` as one i32.
#[inline(always)]
unsafe fn a4(a: *const u8, lda: usize, r: usize, g: usize) -> i32 {
    // SAFETY: within row r (see the module's contract).
    unsafe { (a.add(r * lda + g * 4) as *const i32).read_unaligned() }
}

/// AVX-512 VNNI: `R` rows × 4 panels (24 zmm accumulators at `R` = 6),
/// one `vpdpbusd` per (row, panel) and group of 4 inner indices. Writes
/// the accumulators' first `R` rows.
///
/// # Safety
/// See the module's contract; `R ≤ TILE_ROWS`.
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) unsafe fn tile_avx512_vnni<const R: usize>(
    a: *const u8,
    lda: usize,
    b: *const i8,
    panel_stride: usize,
    groups: usize,
    acc: &mut Acc,
) {
    let mut c = [[_mm512_setzero_si512(); TILE_PANELS]; R];
    for g in 0..groups {
        // SAFETY: within the panels (see the module's contract).
        let bv: [__m512i; TILE_PANELS] =
            std::array::from_fn(|p| unsafe { _mm512_loadu_si512(b.add(p * panel_stride + g * 64) as *const _) });
        for (r, c) in c.iter_mut().enumerate() {
            // SAFETY: see the module's contract.
            let av = _mm512_set1_epi32(unsafe { a4(a, lda, r, g) });
            for p in 0..TILE_PANELS {
                c[p] = _mm512_dpbusd_epi32(c[p], av, bv[p]);
            }
        }
    }
    for (acc, c) in acc.iter_mut().zip(&c) {
        for p in 0..TILE_PANELS {
            // SAFETY: 16 i32 inside the row of TILE_COLS.
            unsafe { _mm512_storeu_si512(acc[p * PANEL..].as_mut_ptr() as *mut _, c[p]) };
        }
    }
}

/// AVX-VNNI: per panel, `R` rows × 2 ymm accumulators (columns 0-7,
/// 8-15). Writes the accumulators' first `R` rows.
///
/// # Safety
/// See the module's contract; `R ≤ TILE_ROWS`.
#[target_feature(enable = "avx2,avxvnni")]
pub(super) unsafe fn tile_avx_vnni<const R: usize>(
    a: *const u8,
    lda: usize,
    b: *const i8,
    panel_stride: usize,
    groups: usize,
    acc: &mut Acc,
) {
    for p in 0..TILE_PANELS {
        let mut c = [[_mm256_setzero_si256(); 2]; R];
        for g in 0..groups {
            // SAFETY: within panel p (see the module's contract).
            let (b0, b1) = unsafe {
                let bp = b.add(p * panel_stride + g * 64);
                (
                    _mm256_loadu_si256(bp as *const __m256i),
                    _mm256_loadu_si256(bp.add(32) as *const __m256i),
                )
            };
            for (r, c) in c.iter_mut().enumerate() {
                // SAFETY: see the module's contract.
                let av = _mm256_set1_epi32(unsafe { a4(a, lda, r, g) });
                c[0] = _mm256_dpbusd_avx_epi32(c[0], av, b0);
                c[1] = _mm256_dpbusd_avx_epi32(c[1], av, b1);
            }
        }
        for (acc, c) in acc.iter_mut().zip(&c) {
            // SAFETY: 2 × 8 i32 inside the row of TILE_COLS.
            unsafe {
                _mm256_storeu_si256(acc[p * PANEL..].as_mut_ptr() as *mut __m256i, c[0]);
                _mm256_storeu_si256(acc[p * PANEL + 8..].as_mut_ptr() as *mut __m256i, c[1]);
            }
        }
    }
}

/// Calls the const-generic kernel `$kernel::<R>` with `R = $rows` (1 to
/// `TILE_ROWS`; anything else runs a full tile).
macro_rules! with_rows {
    ($rows:expr, $kernel:ident($($arg:expr),*)) => {
        match $rows {
            1 => $kernel::<1>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            3 => $kernel::<3>($($arg),*),
            4 => $kernel::<4>($($arg),*),
            5 => $kernel::<5>($($arg),*),
            _ => $kernel::<TILE_ROWS>($($arg),*),
        }
    };
}

/// [`tile_avx512_vnni`] for the tile's first `rows` rows (1 to
/// `TILE_ROWS`).
///
/// # Safety
/// As [`tile_avx512_vnni`].
pub(super) unsafe fn tile_avx512_vnni_rows(
    rows: usize,
    a: *const u8,
    lda: usize,
    b: *const i8,
    panel_stride: usize,
    groups: usize,
    acc: &mut Acc,
) {
    // SAFETY: the caller vouches for the contract; every `R` ≤ TILE_ROWS.
    unsafe { with_rows!(rows, tile_avx512_vnni(a, lda, b, panel_stride, groups, acc)) }
}

/// [`tile_avx_vnni`] for the tile's first `rows` rows (1 to `TILE_ROWS`).
///
/// # Safety
/// As [`tile_avx_vnni`].
pub(super) unsafe fn tile_avx_vnni_rows(
    rows: usize,
    a: *const u8,
    lda: usize,
    b: *const i8,
    panel_stride: usize,
    groups: usize,
    acc: &mut Acc,
) {
    // SAFETY: the caller vouches for the contract; every `R` ≤ TILE_ROWS.
    unsafe { with_rows!(rows, tile_avx_vnni(a, lda, b, panel_stride, groups, acc)) }
}

/// AVX2 without VNNI: bytes widened to i16 and multiplied with `vpmaddwd`
/// (each i32 lane gets `a·q + a'·q'`, at most 64 770 in magnitude: exact),
/// never `vpmaddubsw` (which saturates at i16). Per panel and pair of rows,
/// 2 × 4 ymm accumulators; lanes `2t`, `2t + 1` of accumulator `q` hold two
/// partial sums of column `4q + t`, added at the end.
///
/// # Safety
/// See the module's contract.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn tile_avx2(
    a: *const u8,
    lda: usize,
    b: *const i8,
    panel_stride: usize,
    groups: usize,
    acc: &mut Acc,
) {
    for p in 0..TILE_PANELS {
        for r0 in (0..TILE_ROWS).step_by(2) {
            let mut c = [[_mm256_setzero_si256(); 4]; 2];
            for g in 0..groups {
                // SAFETY: within panel p (see the module's contract).
                let bq: [__m256i; 4] = std::array::from_fn(|q| unsafe {
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(
                        b.add(p * panel_stride + g * 64 + q * 16) as *const __m128i
                    ))
                });
                for (dr, c) in c.iter_mut().enumerate() {
                    // SAFETY: see the module's contract.
                    let av = _mm256_cvtepu8_epi16(_mm_set1_epi32(unsafe { a4(a, lda, r0 + dr, g) }));
                    for q in 0..4 {
                        c[q] = _mm256_add_epi32(c[q], _mm256_madd_epi16(av, bq[q]));
                    }
                }
            }
            for (dr, c) in c.iter().enumerate() {
                for (q, c) in c.iter().enumerate() {
                    let mut lanes = [0i32; 8];
                    // SAFETY: 8 i32.
                    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, *c) };
                    for t in 0..4 {
                        acc[r0 + dr][p * PANEL + q * 4 + t] = lanes[2 * t].wrapping_add(lanes[2 * t + 1]);
                    }
                }
            }
        }
    }
}

/// [`super::quantize_rows`] compiled for AVX2 (same results).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn quantize_rows_avx2(
    data: &mut [u8],
    scales: &mut [f32],
    zeros: &mut [i32],
    x: &[f32],
    k: usize,
    col_scale: Option<&[f32]>,
) {
    super::quantize_rows(data, scales, zeros, x, k, col_scale)
}

/// [`super::quantize_rows`] compiled for AVX-512 (same results).
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn quantize_rows_avx512(
    data: &mut [u8],
    scales: &mut [f32],
    zeros: &mut [i32],
    x: &[f32],
    k: usize,
    col_scale: Option<&[f32]>,
) {
    super::quantize_rows(data, scales, zeros, x, k, col_scale)
}

/// [`super::epilogue`] compiled for AVX2 (same results).
///
/// # Safety
/// As `epilogue`, and the CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn epilogue_avx2(
    acc: &Acc,
    a: &QuantizedRows,
    b: &QuantizedWeights,
    bias: Option<&[f32]>,
    i0: usize,
    j0: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: the caller vouches for `c`.
    unsafe { super::epilogue(acc, a, b, bias, i0, j0, c, ldc, accumulate) }
}

/// [`super::epilogue`] compiled for AVX-512 (same results).
///
/// # Safety
/// As `epilogue`, and the CPU must have AVX-512F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn epilogue_avx512(
    acc: &Acc,
    a: &QuantizedRows,
    b: &QuantizedWeights,
    bias: Option<&[f32]>,
    i0: usize,
    j0: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: the caller vouches for `c`.
    unsafe { super::epilogue(acc, a, b, bias, i0, j0, c, ldc, accumulate) }
}
