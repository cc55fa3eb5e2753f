//! Whisper's log-mel front end, as faster-whisper's `FeatureExtractor`
//! computes it (checked against it by `tests/mel_reference.rs`).
//!
//! 16 kHz mono samples; a centred STFT (`n_fft` 400, hop 160, reflect padding
//! of 200 at both ends) with a periodic Hann window; the power spectrum of
//! each frame (201 bins) through mel filters built from the formula (Slaney's
//! mel scale and area normalisation, librosa's `mel(sr=16000, n_fft=400)`);
//! `log10(max(x, 1e-10))`, clamped from below at the overall maximum − 8, then
//! `(x + 4) / 4`. The last STFT frame is dropped, as the reference does.
//!
//! The reference computes in float32; this computes the FFT, the power and the
//! filter sums in f64 from the same f32 inputs (window and filters rounded to
//! f32 as the reference rounds them), so it sits closer to the exact values
//! than the reference does (the reference's own rounding is about 1e-5).

use std::f64::consts::PI;

use realfft::RealFftPlanner;

/// Sample rate the features expect, in Hz.
pub const SAMPLE_RATE: usize = 16_000;
/// FFT size (25 ms).
pub const N_FFT: usize = 400;
/// Hop between frames (10 ms): one feature frame per 160 samples.
pub const HOP_LENGTH: usize = 160;
/// Frequency bins of one frame's power spectrum (`N_FFT / 2 + 1`).
pub const N_FREQS: usize = N_FFT / 2 + 1;

/// Hz → mel on Slaney's scale: linear below 1 kHz, logarithmic above.
fn hz_to_mel(hz: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

/// Mel → Hz on Slaney's scale (the inverse of [`hz_to_mel`]).
fn mel_to_hz(mel: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}

/// The mel filter bank for 16 kHz audio and a 400-point FFT: `n_mels` rows of
/// [`N_FREQS`] weights, row-major (`[n_mels, 201]`), triangles evenly spaced
/// on Slaney's mel scale from 0 Hz to 8 kHz, each scaled by 2 / its width in
/// Hz (Slaney normalisation). Equal to librosa's `mel(sr=16000, n_fft=400,
/// n_mels=n_mels)` and to faster-whisper's filters. `n_mels = 0` gives an
/// empty bank.
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    mel_filters_f64(n_mels).into_iter().map(|w| w as f32).collect()
}

fn mel_filters_f64(n_mels: usize) -> Vec<f64> {
    if n_mels == 0 {
        return Vec::new();
    }
    // n_mels + 2 band edges evenly spaced in mel (as numpy's linspace: the
    // last point is the end itself), converted to Hz.
    let max_mel = hz_to_mel(SAMPLE_RATE as f64 / 2.0);
    let step = max_mel / (n_mels + 1) as f64;
    let freqs: Vec<f64> = (0..n_mels + 2)
        .map(|i| if i == n_mels + 1 { max_mel } else { i as f64 * step })
        .map(mel_to_hz)
        .collect();
    let mut weights = vec![0.0; n_mels * N_FREQS];
    for (m, row) in weights.chunks_exact_mut(N_FREQS).enumerate() {
        let (lo, mid, hi) = (freqs[m], freqs[m + 1], freqs[m + 2]);
        let enorm = 2.0 / (hi - lo);
        for (k, w) in row.iter_mut().enumerate() {
            let f = k as f64 * SAMPLE_RATE as f64 / N_FFT as f64;
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            *w = lower.min(upper).max(0.0) * enorm;
        }
    }
    weights
}

/// Index into a signal of length `n` of position `i` (may lie outside
/// `0..n`) under reflect padding (the edge sample is not repeated), repeated
/// as numpy's `pad(mode="reflect")` repeats it when the padding is longer
/// than the signal. `n` must be at least 1.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let j = i.rem_euclid(period);
    (if j >= n as isize { period - j } else { j }) as usize
}

/// Whisper's log-mel spectrogram of `samples` (16 kHz mono): returns the
/// number of frames and `n_mels × n_frames` values, mel-major (row `m` holds
/// bin `m` of every frame, the layout Whisper's encoder takes).
///
/// `n_frames` is `samples.len() / 160` (the centred STFT has one more frame;
/// the reference drops it). Fewer than 160 samples give no frames. The clamp
/// at (maximum − 8) uses the maximum over all of `samples`, as the reference
/// does over whatever it is given; faster-whisper's `transcribe` gives it the
/// whole file with 160 zero samples appended. Equal to faster-whisper's
/// `FeatureExtractor(feature_size=n_mels)(samples, padding=0)`. Non-finite
/// samples (never produced by a decoder) are taken as 0.
pub fn log_mel(samples: &[f32], n_mels: usize) -> (usize, Vec<f32>) {
    let n_frames = samples.len() / HOP_LENGTH;
    if n_frames == 0 || n_mels == 0 {
        return (n_frames, Vec::new());
    }
    let raw = log_spectrum(samples, 0, samples.len(), 0, n_frames, n_mels);
    let max = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (n_frames, normalize(&raw, max))
}

/// `log10` mel energies (before the clamp and scaling of [`log_mel`]) of the
/// frames `first .. first + n_frames` of a signal of `total` samples of which
/// `samples` holds those from index `offset` on: `n_mels × n_frames` values,
/// mel-major. Frame `t` is centred on sample `t × 160`; beyond the signal's
/// ends the signal is reflected, as [`log_mel`] reflects it. `samples` must
/// hold every sample the frames read (200 either side of their centres, after
/// reflection); a sample it lacks is taken as 0.
///
/// This is how a stream computes one window's features from the samples it
/// still holds: equal, frame for frame, to [`log_mel`] over the whole signal.
pub fn log_spectrum(
    samples: &[f32],
    offset: usize,
    total: usize,
    first: usize,
    n_frames: usize,
    n_mels: usize,
) -> Vec<f64> {
    if n_frames == 0 || n_mels == 0 || total == 0 {
        return Vec::new();
    }
    // The reference rounds the window and the filters to f32.
    let window: Vec<f64> = (0..N_FFT)
        .map(|i| (0.5 - 0.5 * (2.0 * PI * i as f64 / N_FFT as f64).cos()) as f32 as f64)
        .collect();
    let filters: Vec<f64> = mel_filters(n_mels).into_iter().map(f64::from).collect();
    // Each triangle's nonzero bins, to skip the zeros.
    let spans: Vec<(usize, usize)> = filters
        .chunks_exact(N_FREQS)
        .map(|row| {
            let start = row.iter().position(|&w| w != 0.0).unwrap_or(0);
            let end = row.iter().rposition(|&w| w != 0.0).map_or(start, |e| e + 1);
            (start, end)
        })
        .collect();
    let sample = |i: isize| -> f64 {
        let g = reflect(i, total);
        match g.checked_sub(offset).and_then(|j| samples.get(j)) {
            Some(x) if x.is_finite() => *x as f64,
            _ => 0.0,
        }
    };

    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
    let mut frame = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut power = vec![0.0f64; N_FREQS];
    let mut out = vec![0.0f64; n_mels * n_frames];
    let pad = (N_FFT / 2) as isize;
    for t in 0..n_frames {
        let start = ((first + t) * HOP_LENGTH) as isize - pad;
        for (j, (x, w)) in frame.iter_mut().zip(&window).enumerate() {
            *x = sample(start + j as isize) * w;
        }
        // Lengths are the planner's own, so this cannot fail.
        if fft
            .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
            .is_err()
        {
            unreachable!("realfft buffers made by the plan itself");
        }
        for (p, c) in power.iter_mut().zip(&spectrum) {
            *p = c.re * c.re + c.im * c.im;
        }
        for (m, &(s, e)) in spans.iter().enumerate() {
            let row = &filters[m * N_FREQS + s..m * N_FREQS + e];
            let energy: f64 = row.iter().zip(&power[s..e]).map(|(w, p)| w * p).sum();
            out[m * n_frames + t] = energy.max(1e-10).log10();
        }
    }
    out
}

/// Whisper's scaling of [`log_spectrum`] values: clamped from below at
/// `max − 8` (`max`: the largest value over the audio), then `(x + 4) / 4`.
pub fn normalize(raw: &[f64], max: f64) -> Vec<f32> {
    let floor = max - 8.0;
    raw.iter().map(|&x| ((x.max(floor) + 4.0) / 4.0) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_empty_inputs_give_no_frames() {
        assert_eq!(log_mel(&[], 80), (0, vec![]));
        assert_eq!(log_mel(&[0.5; 159], 80), (0, vec![]));
        assert_eq!(log_mel(&[0.5; 320], 0), (2, vec![]));
        let (n, v) = log_mel(&[0.25; 160], 80);
        assert_eq!((n, v.len()), (1, 80));
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn silence_is_flat_at_the_floor() {
        let (n, v) = log_mel(&[0.0; 16_000], 80);
        assert_eq!((n, v.len()), (100, 8000));
        // log10(1e-10) = -10 everywhere; (-10 + 4) / 4.
        assert!(v.iter().all(|&x| x == -1.5), "{:?}", &v[..4]);
    }

    #[test]
    fn non_finite_samples_do_not_poison_the_output() {
        let mut x: Vec<f32> = (0..3200).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        x[100] = f32::NAN;
        x[2000] = f32::INFINITY;
        let (_, v) = log_mel(&x, 80);
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn values_stay_within_eight_decades_of_the_peak() {
        let x: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.3).sin() * 0.5).collect();
        let (_, v) = log_mel(&x, 80);
        let max = v.iter().copied().fold(f32::MIN, f32::max);
        let min = v.iter().copied().fold(f32::MAX, f32::min);
        assert!(max - min <= 2.0 + 1e-6, "{min} {max}");
    }

    #[test]
    fn filters_are_triangles_of_unit_area_in_mel() {
        assert!(mel_filters(0).is_empty());
        let f = mel_filters(80);
        assert_eq!(f.len(), 80 * N_FREQS);
        assert!(f.iter().all(|&w| w >= 0.0));
        // Every band has some weight, and none reaches past 8 kHz (bin 200).
        for row in f.chunks_exact(N_FREQS) {
            assert!(row.iter().any(|&w| w > 0.0));
            assert_eq!(row[N_FREQS - 1], 0.0);
        }
        assert!((hz_to_mel(mel_to_hz(30.0)) - 30.0).abs() < 1e-12);
        assert!((hz_to_mel(8000.0) - 45.245640471924965).abs() < 1e-12);
    }

    #[test]
    fn a_window_of_frames_equals_the_same_frames_of_the_whole() {
        let x: Vec<f32> = (0..16_000)
            .map(|i| ((i as f32 * 0.013).sin() * (i as f32 * 0.0007).cos()) * 0.4)
            .collect();
        let whole = log_spectrum(&x, 0, x.len(), 0, 100, 80);
        // Frames 40..70 from only the samples they read, and the last frames
        // (reflected at the end) from a tail.
        let part = log_spectrum(&x[40 * 160 - 200..70 * 160 + 200], 40 * 160 - 200, x.len(), 40, 30, 80);
        let tail = log_spectrum(&x[90 * 160 - 200..], 90 * 160 - 200, x.len(), 90, 10, 80);
        for m in 0..80 {
            assert_eq!(&part[m * 30..m * 30 + 30], &whole[m * 100 + 40..m * 100 + 70]);
            assert_eq!(&tail[m * 10..m * 10 + 10], &whole[m * 100 + 90..m * 100 + 100]);
        }
    }

    #[test]
    fn reflect_matches_numpy() {
        // np.pad([1, 2, 3], (5, 5), mode="reflect") = [2 1 2 3 2 | 1 2 3 | 2 1 2 3 2].
        let idx: Vec<usize> = (-5..8).map(|i| reflect(i, 3)).collect();
        assert_eq!(idx, [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]);
        assert_eq!(reflect(-2, 1), 0);
    }
}
