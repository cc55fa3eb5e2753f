//! int8 linear layers on the CPU: `y = x·W` with `W` quantized once (int8)
//! and `x` quantized per row at run time (uint8), the product accumulated
//! exactly in int32 and dequantized to f32.
//!
//! # Quantization scheme
//!
//! - **Weights** (`k × n`, row-major, the layer's `in × out`): symmetric, per
//!   output column `j`: `scale_w[j] = max_i |W[i, j]| / 127`,
//!   `q[i, j] = round(W[i, j] / scale_w[j])` in `-127..=127` (never -128).
//!   Each column's sum `Σ_i q[i, j]` is kept for the zero-point correction.
//! - **Activations** (`m × k`): asymmetric uint8, per row (per token), chosen
//!   at run time: the range `[lo, hi]` (`lo = min(0, min x)`, `hi = max(0,
//!   max x)`, so 0 is exact) is cut in 255 steps, `scale_x = (hi - lo) / 255`,
//!   zero point `z = round(-lo / scale_x)`, `a = round(clamp(x / scale_x + z,
//!   0, 255))`, computed in f32 as `x · (1 / scale_x) + z` and rounded half to
//!   even (by adding 1.5 · 2²³). An all-zero row gets `scale_x = 1`, `z = 0`.
//! - **Output**: `acc[i, j] = Σ_l a[i, l] · q[l, j]` in int32, then
//!   `y[i, j] = (acc[i, j] - z[i] · colsum[j]) as f32 · (scale_x[i] · scale_w[j])`,
//!   added to the bias and to the destination's content when asked
//!   (`dst = (dst + bias) + y`, in that order).
//!
//! # Exactness across CPUs
//!
//! The products are computed by one of several paths chosen at run time
//! ([`Int8Path`]): AVX-512 VNNI (`vpdpbusd` on 512 bits), AVX-VNNI (the same
//! on 256 bits), AVX2 (bytes widened to i16, `vpmaddwd`) and portable scalar
//! code. They give **bit-identical** int32 accumulators: every path computes
//! the same integer sum with wrapping (non-saturating) int32 additions, and
//! the true sum always fits in an i32 (`|a · q| ≤ 255 · 127`, and `k ≤`
//! [`MAX_K`]), so the order of the additions cannot matter. (The AVX2 path
//! does not use `vpmaddubsw`, which saturates at i16; `vpmaddwd` on widened
//! values adds two products of at most 32 385 into an i32, exactly.) The
//! quantization of activations and the f32 epilogue are the same scalar
//! expressions on every path (element-wise IEEE operations, no fused
//! multiply-add), so the f32 outputs are identical too.
//!
//! # Layout
//!
//! `k` is padded to a multiple of 4 and `n` to a multiple of [`TILE_COLS`]
//! with zeros. The weights are stored in panels of 16 columns; within a panel,
//! for each group of 4 rows `l..l+4`, the 16 columns' 4 bytes follow one
//! another (`[col 0: q[l..l+4]], [col 1: …] …`, 64 bytes), which is what one
//! `vpdpbusd` consumes against a broadcast group of 4 activation bytes.
//! Activation rows are padded to a multiple of [`TILE_ROWS`] with zero rows.

use rayon::prelude::*;

mod linear;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use linear::{ChannelRanges, Int8Linear, Int8Parts};

/// Rows of the output computed by one micro-kernel call.
pub const TILE_ROWS: usize = 6;
/// Columns of the output computed by one micro-kernel call (4 panels of 16).
pub const TILE_COLS: usize = 64;
/// Columns per packed weight panel.
const PANEL: usize = 16;
/// Panels per tile.
const TILE_PANELS: usize = TILE_COLS / PANEL;
/// Row tiles per rayon task.
const TASK_ROW_TILES: usize = 8;
/// Column tiles per rayon task.
const TASK_COL_TILES: usize = 2;
/// Largest inner dimension supported: with it the exact int32 sum cannot
/// overflow (`255 · 127 · 65536 < 2³¹`).
pub const MAX_K: usize = 65536;

/// One micro-kernel's accumulators: `TILE_ROWS × TILE_COLS` int32.
pub(crate) type Acc = [[i32; TILE_COLS]; TILE_ROWS];

fn round_up(v: usize, m: usize) -> usize {
    v.div_ceil(m) * m
}

/// Where element `(i, j)` of a `k × n` matrix (`k` padded to `kp`) lies in
/// the packed panels (see the [module docs](self)).
#[inline]
fn packed_index(kp: usize, i: usize, j: usize) -> usize {
    (j / PANEL) * kp * PANEL + ((i / 4) * PANEL + j % PANEL) * 4 + i % 4
}

/// A weight matrix quantized to int8 per output column and packed for the
/// kernels (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct QuantizedWeights {
    k: usize,
    n: usize,
    kp: usize,
    np: usize,
    data: Vec<i8>,
    scales: Vec<f32>,
    col_sums: Vec<i32>,
}

impl QuantizedWeights {
    /// Quantizes `w`, a row-major `k × n` matrix (`in × out`: column `j`
    /// holds output `j`'s weights).
    ///
    /// # Panics
    /// If `w.len() != k * n` or `k > MAX_K`.
    pub fn quantize(w: &[f32], k: usize, n: usize) -> QuantizedWeights {
        assert_eq!(w.len(), k * n, "weights: {} values for {k}x{n}", w.len());
        let scales: Vec<f32> = (0..n)
            .map(|j| (0..k).map(|i| w[i * n + j].abs()).fold(0f32, f32::max) / 127.0)
            .collect();
        let q: Vec<i8> = w
            .iter()
            .enumerate()
            .map(|(idx, &v)| {
                let scale = scales[idx % n.max(1)];
                if scale > 0.0 {
                    (v / scale).round().clamp(-127.0, 127.0) as i8
                } else {
                    0
                }
            })
            .collect();
        QuantizedWeights::from_parts(&q, &scales, k, n)
    }

    /// Weights already quantized: `q` row-major `k × n` in `-127..=127`
    /// with column `j`'s scale `scales[j]`, packed for the kernels.
    ///
    /// # Panics
    /// If the lengths disagree or `k > MAX_K`.
    pub fn from_parts(q: &[i8], scales: &[f32], k: usize, n: usize) -> QuantizedWeights {
        assert_eq!(q.len(), k * n, "int8 weights: {} values for {k}x{n}", q.len());
        assert_eq!(scales.len(), n, "int8 weights: {} scales for {n} columns", scales.len());
        assert!(k <= MAX_K, "int8 matmul: k = {k} exceeds {MAX_K}");
        let kp = round_up(k.max(1), 4);
        let np = round_up(n.max(1), TILE_COLS);
        let mut data = vec![0i8; kp * np];
        let mut col_sums = vec![0i32; n];
        for i in 0..k {
            for j in 0..n {
                let v = q[i * n + j];
                col_sums[j] += v as i32;
                data[packed_index(kp, i, j)] = v;
            }
        }
        QuantizedWeights {
            k,
            n,
            kp,
            np,
            data,
            scales: scales.to_vec(),
            col_sums,
        }
    }

    /// Rows (the inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns (outputs).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Column `j`'s scale (`max |w| / 127`).
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The quantized value of element `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> i8 {
        assert!(i < self.k && j < self.n, "({i}, {j}) outside {}x{}", self.k, self.n);
        self.data[packed_index(self.kp, i, j)]
    }

    /// The weights as they are used: `q · scale`, row-major `k × n`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.k * self.n];
        for i in 0..self.k {
            for j in 0..self.n {
                out[i * self.n + j] = self.get(i, j) as f32 * self.scales[j];
            }
        }
        out
    }
}

/// Activations quantized to uint8 per row, with a scale and zero point per
/// row (see the [module docs](self)). Reusable across calls through
/// [`QuantizedRows::quantize_into`].
#[derive(Clone, Debug, Default)]
pub struct QuantizedRows {
    m: usize,
    k: usize,
    kp: usize,
    data: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

/// `(min(0, min v), max(0, max v))` over `v` in 16 independent lanes (so
/// that it vectorises; min and max do not depend on the order).
#[inline(always)]
fn range(v: &[f32]) -> (f32, f32) {
    const L: usize = 16;
    let (mut lo, mut hi) = ([0f32; L], [0f32; L]);
    let chunks = v.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        // Compare-and-select (`vminps`/`vmaxps`), not `f32::min` (whose NaN
        // rule costs extra instructions); NaNs are not expected here.
        for l in 0..L {
            lo[l] = if c[l] < lo[l] { c[l] } else { lo[l] };
            hi[l] = if c[l] > hi[l] { c[l] } else { hi[l] };
        }
    }
    let lo = rest.iter().chain(&lo).fold(0f32, |m, &v| m.min(v));
    let hi = rest.iter().chain(&hi).fold(0f32, |m, &v| m.max(v));
    (lo, hi)
}

/// Adding it to an f32 in `0..=255` rounds it to an integer (ties to even,
/// the IEEE default), which is then the low byte of the sum's bits.
const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³

/// `round(v · inv + z)` clamped to `0..=255`, rounding half to even; plain
/// f32 operations and bit masks, so that it vectorises.
#[inline(always)]
fn quantize_value(v: f32, inv: f32, z: f32) -> u8 {
    ((v * inv + z).clamp(0.0, 255.0) + MAGIC).to_bits() as u8
}

/// Quantizes one row (`x · col_scale` when given; `tmp` is scratch space)
/// into `out` (`kp` bytes); returns `(scale, zero point)`.
#[inline(always)]
fn quantize_row(x: &[f32], col_scale: Option<&[f32]>, tmp: &mut Vec<f32>, out: &mut [u8]) -> (f32, i32) {
    let x = match col_scale {
        Some(c) => {
            tmp.clear();
            tmp.extend(x.iter().zip(c).map(|(x, c)| x * c));
            &tmp[..]
        }
        None => x,
    };
    let (lo, hi) = range(x);
    let scale = (hi - lo) / 255.0;
    if scale.is_nan() || scale <= 0.0 || scale.is_infinite() {
        out.fill(0);
        return (1.0, 0);
    }
    let inv = 1.0 / scale;
    let z = quantize_value(-lo, inv, 0.0);
    let zf = z as f32;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = quantize_value(v, inv, zf);
    }
    out[x.len()..].fill(0);
    (scale, z as i32)
}

/// [`quantize_row`] over rows of `k` values (`data` has rows of `kp`).
/// Compiled also with AVX2 / AVX-512 enabled (in `x86`): the operations are
/// element-wise f32 ones, so every copy gives the same bytes.
#[inline(always)]
pub(crate) fn quantize_rows(
    data: &mut [u8],
    scales: &mut [f32],
    zeros: &mut [i32],
    x: &[f32],
    k: usize,
    col_scale: Option<&[f32]>,
) {
    let kp = data.len() / scales.len().max(1);
    let mut tmp = Vec::new();
    for (((out, s), z), x) in data.chunks_exact_mut(kp).zip(scales).zip(zeros).zip(x.chunks_exact(k)) {
        (*s, *z) = quantize_row(x, col_scale, &mut tmp, out);
    }
}

impl QuantizedRows {
    /// Quantizes `x`, a row-major `m × k` matrix.
    ///
    /// # Panics
    /// If `x.len() != m * k` or `k > MAX_K`.
    pub fn quantize(x: &[f32], m: usize, k: usize) -> QuantizedRows {
        let mut q = QuantizedRows::default();
        q.quantize_into(x, m, k);
        q
    }

    /// [`QuantizedRows::quantize`] into this value's buffers, on all threads
    /// of the current rayon pool.
    ///
    /// # Panics
    /// If `x.len() != m * k` or `k > MAX_K`.
    pub fn quantize_into(&mut self, x: &[f32], m: usize, k: usize) {
        self.quantize_scaled_into(x, m, k, None)
    }

    /// [`QuantizedRows::quantize_into`] of `x` with column `l` multiplied by
    /// `col_scale[l]` first (the inverse of factors folded into the weights,
    /// as in SmoothQuant; correctly rounded f32 multiplications, the
    /// same on every CPU).
    ///
    /// # Panics
    /// If `x.len() != m * k`, `col_scale` is not `k` long or `k > MAX_K`.
    pub fn quantize_scaled_into(&mut self, x: &[f32], m: usize, k: usize, col_scale: Option<&[f32]>) {
        assert_eq!(x.len(), m * k, "activations: {} values for {m}x{k}", x.len());
        if let Some(c) = col_scale {
            assert_eq!(c.len(), k, "column scales: {} for {k} columns", c.len());
        }
        assert!(k <= MAX_K, "int8 matmul: k = {k} exceeds {MAX_K}");
        let kp = round_up(k.max(1), 4);
        let mp = round_up(m, TILE_ROWS);
        self.m = m;
        self.k = k;
        self.kp = kp;
        // Rows 0..m are written in full below (padding columns zeroed);
        // only the padding rows need zeros, not a pass over the whole buffer.
        self.data.resize(mp * kp, 0);
        self.data[m * kp..].fill(0);
        self.scales.clear();
        self.scales.resize(m, 0.0);
        self.zeros.clear();
        self.zeros.resize(m, 0);
        if k == 0 {
            self.data.fill(0);
            self.scales.fill(1.0);
            return;
        }
        let rows = (crate::MIN_CHUNK / k).max(1);
        self.data[..m * kp]
            .par_chunks_mut(rows * kp)
            .zip(self.scales.par_chunks_mut(rows))
            .zip(self.zeros.par_chunks_mut(rows))
            .zip(x.par_chunks(rows * k))
            .for_each(|(((data, scales), zeros), x)| {
                #[cfg(target_arch = "x86_64")]
                if crate::avx512() {
                    // SAFETY: the CPU has AVX-512F, AVX2 and FMA (checked by `avx512`).
                    return unsafe { x86::quantize_rows_avx512(data, scales, zeros, x, k, col_scale) };
                } else if crate::fma() {
                    // SAFETY: the CPU has AVX2 and FMA (checked by `fma`).
                    return unsafe { x86::quantize_rows_avx2(data, scales, zeros, x, k, col_scale) };
                }
                quantize_rows(data, scales, zeros, x, k, col_scale)
            });
    }

    /// Rows.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Columns (the inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Row `i`'s scale and zero point.
    pub fn params(&self, i: usize) -> (f32, i32) {
        (self.scales[i], self.zeros[i])
    }

    /// The quantized value of element `(i, l)`.
    pub fn get(&self, i: usize, l: usize) -> u8 {
        assert!(i < self.m && l < self.k, "({i}, {l}) outside {}x{}", self.m, self.k);
        self.data[i * self.kp + l]
    }

    /// The rows as they are used: `(a - z) · scale`, row-major `m × k`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.m * self.k];
        for i in 0..self.m {
            for l in 0..self.k {
                out[i * self.k + l] = (self.get(i, l) as i32 - self.zeros[i]) as f32 * self.scales[i];
            }
        }
        out
    }
}

/// A way of computing the int8 products. All give identical results (see the
/// [module docs](self)); they differ in speed only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Path {
    /// Portable code (the reference).
    Scalar,
    /// AVX2: bytes widened to i16, `vpmaddwd`.
    Avx2,
    /// AVX-VNNI: `vpdpbusd` on 256-bit registers.
    AvxVnni,
    /// AVX-512 VNNI: `vpdpbusd` on 512-bit registers.
    Avx512Vnni,
}

impl Int8Path {
    /// Whether this CPU can run the path (AVX-512 also needs [`crate::avx512`],
    /// so `KINO_NO_AVX512=1` turns it off).
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Int8Path::Scalar => true,
                Int8Path::Avx2 => has!("avx2") && has!("fma"),
                Int8Path::AvxVnni => has!("avx2") && has!("fma") && has!("avxvnni"),
                Int8Path::Avx512Vnni => crate::avx512() && has!("avx512vnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Int8Path::Scalar
        }
    }

    /// Every path this CPU can run, slowest first.
    pub fn all_available() -> Vec<Int8Path> {
        [
            Int8Path::Scalar,
            Int8Path::Avx2,
            Int8Path::AvxVnni,
            Int8Path::Avx512Vnni,
        ]
        .into_iter()
        .filter(|p| p.available())
        .collect()
    }

    /// The fastest path this CPU can run (checked once).
    pub fn best() -> Int8Path {
        static BEST: std::sync::OnceLock<Int8Path> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| *Int8Path::all_available().last().unwrap())
    }
}

/// The portable micro-kernel: `acc = a[6 rows] · b[4 panels]`.
///
/// # Safety
/// `a` must hold `TILE_ROWS` rows of `lda` bytes (`lda ≥ 4 · groups`), `b` the
/// tile's 4 panels of `panel_stride ≥ 64 · groups` bytes each.
unsafe fn tile_scalar(a: *const u8, lda: usize, b: *const i8, panel_stride: usize, groups: usize, acc: &mut Acc) {
    *acc = [[0; TILE_COLS]; TILE_ROWS];
    for p in 0..TILE_PANELS {
        for g in 0..groups {
            // SAFETY: within the panel (see the function's contract).
            let bg = unsafe { std::slice::from_raw_parts(b.add(p * panel_stride + g * 64), 64) };
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: within row r (see the function's contract).
                let ag = unsafe { std::slice::from_raw_parts(a.add(r * lda + g * 4), 4) };
                for c in 0..PANEL {
                    let mut s = 0i32;
                    for u in 0..4 {
                        s += ag[u] as i32 * bg[c * 4 + u] as i32;
                    }
                    acc[p * PANEL + c] = acc[p * PANEL + c].wrapping_add(s);
                }
            }
        }
    }
}

/// Writes one tile's results: `dst = (dst + bias) + (acc - z·colsum)·(sx·sw)`
/// for the tile's valid rows and columns (shared by every path).
///
/// # Safety
/// `c` must be valid for the tile's valid elements with row stride `ldc`,
/// touched by no other thread meanwhile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn epilogue(
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
    let rows = (a.m - i0).min(TILE_ROWS);
    let cols = (b.n - j0).min(TILE_COLS);
    let sums = &b.col_sums[j0..j0 + cols];
    let sw = &b.scales[j0..j0 + cols];
    for (r, acc) in acc.iter().enumerate().take(rows) {
        let (sx, z) = (a.scales[i0 + r], a.zeros[i0 + r]);
        // SAFETY: the caller vouches for the tile's elements.
        let dst = unsafe { std::slice::from_raw_parts_mut(c.add((i0 + r) * ldc + j0), cols) };
        let y = |jj: usize| acc[jj].wrapping_sub(z.wrapping_mul(sums[jj])) as f32 * (sx * sw[jj]);
        match (bias, accumulate) {
            (Some(bias), true) => {
                let bias = &bias[j0..j0 + cols];
                for (jj, d) in dst.iter_mut().enumerate() {
                    *d = (*d + bias[jj]) + y(jj);
                }
            }
            (Some(bias), false) => {
                let bias = &bias[j0..j0 + cols];
                for (jj, d) in dst.iter_mut().enumerate() {
                    *d = (0.0 + bias[jj]) + y(jj);
                }
            }
            (None, true) => dst.iter_mut().enumerate().for_each(|(jj, d)| *d += y(jj)),
            (None, false) => dst.iter_mut().enumerate().for_each(|(jj, d)| *d = 0.0 + y(jj)),
        }
    }
}

/// `c = (c + bias) + a·b` (`accumulate`) or `c = bias + a·b`, dequantized
/// (see the [module docs](self)), with `c` row-major `a.m() × b.n()` of row
/// stride `ldc`, on all threads of the current rayon pool through the
/// fastest path ([`Int8Path::best`]).
///
/// # Panics
/// If the shapes disagree, `bias` is not `b.n()` long or `c` is too short.
pub fn int8_matmul(
    a: &QuantizedRows,
    b: &QuantizedWeights,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    int8_matmul_on(Int8Path::best(), a, b, bias, c, ldc, accumulate)
}

/// [`int8_matmul`] through a given path (for tests and comparisons).
///
/// # Panics
/// As [`int8_matmul`], and if the CPU cannot run `path`.
pub fn int8_matmul_on(
    path: Int8Path,
    a: &QuantizedRows,
    b: &QuantizedWeights,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    assert!(path.available(), "int8 path {path:?} is not available on this CPU");
    assert_eq!(a.k, b.k, "int8 matmul: inner dimensions {} and {} differ", a.k, b.k);
    let (m, n) = (a.m, b.n);
    if let Some(bias) = bias {
        assert_eq!(bias.len(), n, "bias of {} for {n} columns", bias.len());
    }
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        n <= ldc && (m - 1) * ldc + n <= c.len(),
        "dst: {m}x{n} view out of bounds"
    );
    debug_assert_eq!(a.kp, b.kp);
    let row_tiles = m.div_ceil(TILE_ROWS);
    let col_tiles = b.np / TILE_COLS;
    let task_rows = row_tiles.div_ceil(TASK_ROW_TILES);
    let task_cols = col_tiles.div_ceil(TASK_COL_TILES);
    let groups = a.kp / 4;
    let panel_stride = b.kp * PANEL;
    let dst = crate::SendPtr(c.as_mut_ptr());
    (0..task_rows * task_cols).into_par_iter().for_each(|task| {
        let (tr, tc) = (task / task_cols, task % task_cols);
        let mut acc: Acc = [[0; TILE_COLS]; TILE_ROWS];
        for ct in tc * TASK_COL_TILES..((tc + 1) * TASK_COL_TILES).min(col_tiles) {
            let bp = b.data[ct * TILE_PANELS * panel_stride..].as_ptr();
            for rt in tr * TASK_ROW_TILES..((tr + 1) * TASK_ROW_TILES).min(row_tiles) {
                let ap = a.data[rt * TILE_ROWS * a.kp..].as_ptr();
                // The last row tile may be partial: the VNNI kernels then
                // compute its rows only (the epilogue reads no others).
                let rows = (m - rt * TILE_ROWS).min(TILE_ROWS);
                // SAFETY: `a.data` holds every row tile in full (rows padded to
                // TILE_ROWS) and `b.data` every column tile's 4 panels (columns
                // padded to TILE_COLS); the path is available (checked above).
                unsafe {
                    match path {
                        Int8Path::Scalar => tile_scalar(ap, a.kp, bp, panel_stride, groups, &mut acc),
                        #[cfg(target_arch = "x86_64")]
                        Int8Path::Avx2 => x86::tile_avx2(ap, a.kp, bp, panel_stride, groups, &mut acc),
                        #[cfg(target_arch = "x86_64")]
                        Int8Path::AvxVnni => {
                            x86::tile_avx_vnni_rows(rows, ap, a.kp, bp, panel_stride, groups, &mut acc)
                        }
                        #[cfg(target_arch = "x86_64")]
                        Int8Path::Avx512Vnni => {
                            x86::tile_avx512_vnni_rows(rows, ap, a.kp, bp, panel_stride, groups, &mut acc)
                        }
                        #[cfg(not(target_arch = "x86_64"))]
                        _ => unreachable!("checked by available()"),
                    }
                }
                let (i0, j0) = (rt * TILE_ROWS, ct * TILE_COLS);
                // SAFETY: tasks cover disjoint tiles of `c`, which holds the
                // m × n matrix (checked above) and outlives the loop; the
                // vector copies of the epilogue run on CPUs with their features
                // (an AVX path implies them, see `Int8Path::available`).
                unsafe {
                    match path {
                        #[cfg(target_arch = "x86_64")]
                        Int8Path::Avx512Vnni => {
                            x86::epilogue_avx512(&acc, a, b, bias, i0, j0, dst.get(), ldc, accumulate)
                        }
                        #[cfg(target_arch = "x86_64")]
                        Int8Path::Avx2 | Int8Path::AvxVnni => {
                            x86::epilogue_avx2(&acc, a, b, bias, i0, j0, dst.get(), ldc, accumulate)
                        }
                        _ => epilogue(&acc, a, b, bias, i0, j0, dst.get(), ldc, accumulate),
                    }
                };
            }
        }
    });
}

#[cfg(test)]
mod tests;
