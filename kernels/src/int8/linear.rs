//! An int8 linear layer with SmoothQuant smoothing, and the per-channel
//! activation ranges its calibration is made from.
//!
//! Transformer activations have a few *outlier channels*, tens of times
//! larger than the rest, in every token. Quantized per row, they would take
//! most of the row's 255 steps and leave the other channels a handful.
//! SmoothQuant (Xiao et al., 2023) moves part of that range into the
//! weights: channel `l`'s input is divided by `s_l = √(range_l / max|W[l, ·]|)`
//! (α = ½) and row `l` of the weights multiplied by it, which leaves the
//! product unchanged and balances the two quantization errors. The ranges
//! come from calibration data: [`ChannelRanges`] records each input channel's
//! |x| in a histogram and gives a percentile (an outlier token or two does
//! not set the range, as it would with the maximum).

use rayon::prelude::*;

use super::{int8_matmul, QuantizedRows, QuantizedWeights};

/// Histogram bins per octave of |x|.
const BINS_PER_OCTAVE: usize = 8;
/// The smallest |x| with its own bins: 2⁻²⁴ (below it, bin 0).
const LOWEST_EXP: i32 = -24;
/// Octaves covered (2⁻²⁴ ..= 2¹⁶; above, the last bin).
const OCTAVES: usize = 40;
/// Bins per channel: one for (nearly) zero, then `OCTAVES · BINS_PER_OCTAVE`.
const BINS: usize = 1 + OCTAVES * BINS_PER_OCTAVE;

/// The bin of `|v|`: its binary exponent and top three mantissa bits.
#[inline(always)]
fn bin_of(v: f32) -> usize {
    let bits = v.to_bits() & 0x7fff_ffff;
    // Exponent and 3 mantissa bits as one number: 8 bins per octave.
    let e = (bits >> 20) as i32 - ((127 + LOWEST_EXP) << 3);
    if e < 0 {
        0
    } else {
        (e as usize + 1).min(BINS - 1)
    }
}

/// The upper edge of bin `b` (the largest |x| it holds).
fn bin_top(b: usize) -> f32 {
    if b == 0 {
        return 2f32.powi(LOWEST_EXP);
    }
    let i = (b - 1) as i32;
    let octave = LOWEST_EXP + i / BINS_PER_OCTAVE as i32;
    let step = (i % BINS_PER_OCTAVE as i32 + 1) as f32 / BINS_PER_OCTAVE as f32;
    2f32.powi(octave) * (1.0 + step)
}

/// Each input channel's |x| over the rows seen, as a histogram (40 octaves
/// of 8 bins) and the exact maximum.
#[derive(Clone, Debug)]
pub struct ChannelRanges {
    channels: usize,
    rows: u64,
    counts: Vec<u32>,
    max: Vec<f32>,
}

impl ChannelRanges {
    /// Nothing seen yet, for rows of `channels` values.
    pub fn new(channels: usize) -> ChannelRanges {
        ChannelRanges {
            channels,
            rows: 0,
            counts: vec![0; channels * BINS],
            max: vec![0.0; channels],
        }
    }

    /// Channels per row.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Rows seen.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Records `x`, rows of [`ChannelRanges::channels`] values (a partial
    /// last row is ignored). NaNs count as the largest values.
    pub fn observe(&mut self, x: &[f32]) {
        let c = self.channels;
        if c == 0 {
            return;
        }
        for row in x.chunks_exact(c) {
            for (l, &v) in row.iter().enumerate() {
                let a = if v.is_nan() { f32::MAX } else { v.abs() };
                self.counts[l * BINS + bin_of(a)] += 1;
                if a > self.max[l] {
                    self.max[l] = a;
                }
            }
            self.rows += 1;
        }
    }

    /// Adds what `other` saw (same channels).
    ///
    /// # Panics
    /// If the channel counts differ.
    pub fn merge(&mut self, other: &ChannelRanges) {
        assert_eq!(self.channels, other.channels, "merging ranges of different widths");
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        for (a, b) in self.max.iter_mut().zip(&other.max) {
            *a = a.max(*b);
        }
        self.rows += other.rows;
    }

    /// Each channel's largest |x|.
    pub fn max(&self) -> &[f32] {
        &self.max
    }

    /// Each channel's `p`-quantile of |x| (`p` in `0..=1`, e.g. 0.9999),
    /// to within one bin (1/8 of an octave, rounded up) and never above the
    /// maximum; 0 for a channel that saw nothing.
    pub fn percentile(&self, p: f64) -> Vec<f32> {
        let want = ((self.rows as f64) * p.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        (0..self.channels)
            .map(|l| {
                if self.rows == 0 {
                    return 0.0;
                }
                let mut seen = 0u64;
                for (b, &n) in self.counts[l * BINS..][..BINS].iter().enumerate() {
                    seen += n as u64;
                    if seen >= want {
                        return bin_top(b).min(self.max[l]);
                    }
                }
                self.max[l]
            })
            .collect()
    }
}

/// A linear layer `y = x·W (+ bias)` in int8: `W` quantized per output
/// column after smoothing (see the [module docs](self)), `x` quantized per
/// row at run time. Input channels set apart as outliers
/// ([`Int8Linear::quantize_split`]) are left out of the int8 product and
/// added in f32 (as in LLM.int8()).
#[derive(Clone, Debug)]
pub struct Int8Linear {
    q: QuantizedWeights,
    /// Per input channel, `1 / s_l` (the input is multiplied by it); 0 for
    /// an outlier channel.
    smooth: Vec<f32>,
    /// The outlier input channels, computed in f32.
    outliers: Vec<u32>,
    /// Their weights, `outliers.len() × out`, row-major.
    outlier_w: Vec<f32>,
}

/// An [`Int8Linear`]'s stored form.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Parts {
    /// The int8 weights, row-major `inp × out` (0 on outlier rows).
    pub q: Vec<i8>,
    /// Per output column, the weights' scale.
    pub scales: Vec<f32>,
    /// Per input channel, the smoothing factor the input is multiplied by.
    pub smooth: Vec<f32>,
    /// The outlier input channels, computed in f32.
    pub outliers: Vec<u32>,
    /// Their f32 weights, `outliers.len() × out`, row-major.
    pub outlier_w: Vec<f32>,
}

impl Int8Linear {
    /// Quantizes `w` (row-major `inp × out`, the layer's weights
    /// transposed) after smoothing with the input channels' calibrated
    /// ranges `range` (`inp` values; a channel with range 0 is left as it is).
    ///
    /// # Panics
    /// If the lengths disagree.
    pub fn quantize(w: &[f32], inp: usize, out: usize, range: &[f32]) -> Int8Linear {
        Self::quantize_split(w, inp, out, range, &[])
    }

    /// [`Int8Linear::quantize`] with the input channels `outliers` left out
    /// of the int8 product and computed in f32.
    ///
    /// # Panics
    /// If the lengths disagree or an outlier channel is out of range.
    pub fn quantize_split(w: &[f32], inp: usize, out: usize, range: &[f32], outliers: &[u32]) -> Int8Linear {
        assert_eq!(w.len(), inp * out, "weights: {} values for {inp}x{out}", w.len());
        assert_eq!(range.len(), inp, "ranges: {} for {inp} input channels", range.len());
        let mut w = w.to_vec();
        let mut smooth = vec![1f32; inp];
        let mut outlier_w = Vec::with_capacity(outliers.len() * out);
        for &l in outliers {
            let row = &mut w[l as usize * out..][..out];
            outlier_w.extend_from_slice(row);
            row.fill(0.0);
            smooth[l as usize] = 0.0;
        }
        for (l, row) in w.chunks_exact_mut(out.max(1)).enumerate() {
            if smooth[l] == 0.0 {
                continue;
            }
            let wmax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            if wmax > 0.0 && range[l] > 0.0 {
                let s = (range[l].max(1e-5) / wmax).sqrt().clamp(1e-3, 1e3);
                row.iter_mut().for_each(|v| *v *= s);
                smooth[l] = 1.0 / s;
            }
        }
        Int8Linear {
            q: QuantizedWeights::quantize(&w, inp, out),
            smooth,
            outliers: outliers.to_vec(),
            outlier_w,
        }
    }

    /// The input channels whose range is over `factor` times the median
    /// channel's, largest first, at most `max` of them: the outliers
    /// [`Int8Linear::quantize_split`] computes in f32.
    pub fn outlier_channels(range: &[f32], factor: f32, max: usize) -> Vec<u32> {
        let mut sorted = range.to_vec();
        sorted.sort_by(f32::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        if median <= 0.0 {
            return Vec::new();
        }
        let mut out: Vec<u32> = (0..range.len() as u32)
            .filter(|&l| range[l as usize] > factor * median)
            .collect();
        out.sort_by(|a, b| range[*b as usize].total_cmp(&range[*a as usize]));
        out.truncate(max);
        out.sort_unstable();
        out
    }

    /// A layer from its stored parts: the int8 weights (row-major `inp ×
    /// out`), the per-column scales and the per-input smoothing factors, as
    /// [`Int8Linear::parts`] gives them.
    ///
    /// # Errors
    /// If the lengths disagree or a value is out of range (the parts are
    /// read from a file).
    pub fn from_parts(p: &Int8Parts, inp: usize, out: usize) -> Result<Int8Linear, String> {
        let Int8Parts {
            q,
            scales,
            smooth,
            outliers,
            outlier_w,
        } = p;
        if outliers.iter().any(|l| *l as usize >= inp) || outlier_w.len() != outliers.len() * out {
            return Err(format!(
                "int8 layer {inp}x{out}: {} outlier channels with {} weights",
                outliers.len(),
                outlier_w.len()
            ));
        }
        if q.len() != inp * out || scales.len() != out || smooth.len() != inp {
            return Err(format!(
                "int8 layer {inp}x{out}: {} weights, {} scales, {} smoothing factors",
                q.len(),
                scales.len(),
                smooth.len()
            ));
        }
        if q.contains(&i8::MIN) {
            return Err("int8 weights hold -128 (the scheme uses -127..=127)".into());
        }
        if scales.iter().chain(smooth).chain(outlier_w).any(|v| !v.is_finite()) {
            return Err("int8 layer: a value is not finite".into());
        }
        if scales.iter().chain(smooth).any(|v| *v < 0.0) {
            return Err("int8 layer: a scale or smoothing factor is negative".into());
        }
        Ok(Int8Linear {
            q: QuantizedWeights::from_parts(q, scales, inp, out),
            smooth: smooth.to_vec(),
            outliers: outliers.clone(),
            outlier_w: outlier_w.clone(),
        })
    }

    /// The stored form ([`Int8Linear::from_parts`] reads it back).
    pub fn parts(&self) -> Int8Parts {
        let (k, n) = (self.q.k(), self.q.n());
        let mut q = Vec::with_capacity(k * n);
        for i in 0..k {
            for j in 0..n {
                q.push(self.q.get(i, j));
            }
        }
        Int8Parts {
            q,
            scales: self.q.scales().to_vec(),
            smooth: self.smooth.clone(),
            outliers: self.outliers.clone(),
            outlier_w: self.outlier_w.clone(),
        }
    }

    /// The input channels computed in f32.
    pub fn outliers(&self) -> &[u32] {
        &self.outliers
    }

    /// Inputs.
    pub fn inp(&self) -> usize {
        self.q.k()
    }

    /// Outputs.
    pub fn out(&self) -> usize {
        self.q.n()
    }

    /// `dst = (dst + bias) + x·W` (`accumulate`) or `dst = bias + x·W`, for
    /// `x` of `rows` rows, `dst` of row stride `ldd`, on all threads.
    ///
    /// # Panics
    /// If the shapes disagree.
    pub fn forward(&self, x: &[f32], rows: usize, bias: Option<&[f32]>, dst: &mut [f32], ldd: usize, accumulate: bool) {
        thread_local! {
            /// The quantized input, reused across calls (no page faults).
            static ROWS: std::cell::RefCell<QuantizedRows> = Default::default();
        }
        let inp = self.inp();
        ROWS.with_borrow_mut(|a| {
            a.quantize_scaled_into(&x[..rows * inp], rows, inp, Some(&self.smooth));
            int8_matmul(a, &self.q, bias, dst, ldd, accumulate);
        });
        if self.outliers.is_empty() || rows == 0 {
            return;
        }
        // The outlier channels' share, in f32 (the same order of operations
        // on every CPU: no fused multiply-add).
        let out = self.out();
        dst[..(rows - 1) * ldd + out]
            .par_chunks_mut(ldd)
            .enumerate()
            .for_each(|(r, row)| {
                for (k, &l) in self.outliers.iter().enumerate() {
                    let v = x[r * inp + l as usize];
                    if v != 0.0 {
                        for (d, w) in row[..out].iter_mut().zip(&self.outlier_w[k * out..][..out]) {
                            *d += v * w;
                        }
                    }
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_ordered_and_their_tops_bound_them() {
        let mut last = 0;
        for i in 0..4000 {
            let v = 1e-9f32 * 1.01f32.powi(i);
            let b = bin_of(v);
            assert!(b >= last, "{v}: bin {b} after {last}");
            if b > 0 && b < BINS - 1 {
                assert!(v <= bin_top(b) * (1.0 + 1e-6), "{v} above its bin's top {}", bin_top(b));
                assert!(v > bin_top(b - 1) * (1.0 - 1e-6), "{v} not above the bin below's top");
            }
            last = b;
        }
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(-3.0), bin_of(3.0));
        assert_eq!(bin_of(f32::MAX), BINS - 1);
    }

    #[test]
    fn a_percentile_ignores_a_few_outliers_and_the_maximum_does_not() {
        let mut r = ChannelRanges::new(2);
        for i in 0..10_000 {
            // Channel 0: |x| up to 1, one row of 500; channel 1: up to 40.
            let a = (i % 100) as f32 / 100.0;
            let big = if i == 77 { 500.0 } else { a };
            r.observe(&[big, -40.0 * a]);
        }
        assert_eq!(r.rows(), 10_000);
        assert_eq!(r.max(), &[500.0, 39.6]);
        let p = r.percentile(0.999);
        assert!((0.99..=1.1).contains(&p[0]), "{p:?}");
        assert!((39.6 * 0.99..=39.6).contains(&p[1]), "{p:?}");
        let mut twice = r.clone();
        twice.merge(&r);
        assert_eq!(twice.rows(), 20_000);
        assert_eq!(twice.percentile(0.999), p);
    }

    #[test]
    fn smoothing_keeps_an_outlier_channel_from_swamping_the_rest() {
        // 64 inputs, channel 5 a hundred times larger than the others.
        let (inp, out, rows) = (64, 32, 48);
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let w: Vec<f32> = (0..inp * out).map(|_| rnd()).collect();
        let x: Vec<f32> = (0..rows * inp)
            .map(|i| if i % inp == 5 { 100.0 * (1.0 + rnd()) } else { rnd() })
            .collect();
        let mut exact = vec![0f32; rows * out];
        for r in 0..rows {
            for j in 0..out {
                exact[r * out + j] = (0..inp).map(|l| x[r * inp + l] * w[l * out + j]).sum();
            }
        }
        let err = |layer: &Int8Linear| {
            let mut y = vec![0f32; rows * out];
            layer.forward(&x, rows, None, &mut y, out, false);
            let e: f32 = y.iter().zip(&exact).map(|(a, b)| (a - b).powi(2)).sum();
            (e / exact.iter().map(|v| v * v).sum::<f32>()).sqrt()
        };
        let mut ranges = ChannelRanges::new(inp);
        ranges.observe(&x);
        let smoothed = Int8Linear::quantize(&w, inp, out, &ranges.percentile(0.9999));
        let plain = Int8Linear::quantize(&w, inp, out, &vec![0.0; inp]);
        let (es, ep) = (err(&smoothed), err(&plain));
        assert!(es < 0.02, "smoothed: relative error {es}");
        assert!(es * 2.0 < ep, "smoothing helps: {es} against {ep}");

        // The outlier channel computed in f32 instead: better still.
        let found = Int8Linear::outlier_channels(&ranges.percentile(0.9999), 8.0, 4);
        assert_eq!(found, [5]);
        let split = Int8Linear::quantize_split(&w, inp, out, &ranges.percentile(0.9999), &found);
        let esp = err(&split);
        assert!(esp < es, "split: {esp} against smoothed {es}");

        // Stored and read back: the same outputs.
        for layer in [&smoothed, &split] {
            let p = layer.parts();
            let back = Int8Linear::from_parts(&p, inp, out).unwrap();
            assert_eq!(err(&back), err(layer));
            let mut short = p.clone();
            short.q.pop();
            assert!(Int8Linear::from_parts(&short, inp, out).is_err());
        }
    }
}
