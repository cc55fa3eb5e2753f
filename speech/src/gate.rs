//! The energy gate: finds where sound that may be speech starts, so that
//! silent or steady-noise stretches never reach Whisper.
//!
//! The audio is cut into 20 ms frames and each frame's level taken in dBFS.
//! A frame is *loud* when it is above an absolute floor (−55 dBFS: quieter
//! than any usable recording of a voice) and at least 12 dB above the
//! stretch's background, its 10th-percentile level. Speech rises and falls
//! by far more than 12 dB between syllables and pauses; digital silence,
//! hum and steady noise (of any level) do not. A stretch with fewer than
//! 100 ms of loud frames holds no speech.
//!
//! Whisper's own no-speech probability still judges what passes the gate;
//! the gate only spares it the stretches that plainly hold nothing.

/// Samples per gate frame (20 ms at 16 kHz).
pub const FRAME: usize = 320;
/// No frame quieter than this (dBFS) counts as loud.
const ABSOLUTE_FLOOR_DB: f64 = -55.0;
/// A loud frame stands this far (dB) above the stretch's background.
const ABOVE_BACKGROUND_DB: f64 = 12.0;
/// Loud frames that make the start of speech (100 ms) …
const MIN_LOUD_FRAMES: usize = 5;
/// … within this many frames (300 ms).
const ONSET_SPAN: usize = 15;

/// Level of each whole 20 ms frame of `samples`, in dBFS.
pub fn frame_levels(samples: &[f32]) -> Vec<f64> {
    samples
        .chunks_exact(FRAME)
        .map(|f| {
            let power: f64 = f
                .iter()
                .map(|&x| if x.is_finite() { (x as f64) * (x as f64) } else { 0.0 })
                .sum::<f64>()
                / FRAME as f64;
            10.0 * (power + 1e-12).log10()
        })
        .collect()
}

/// Where in `samples` (16 kHz mono) the first loud frame starts, in samples;
/// `None` when the stretch holds no speech by the rule of this module.
pub fn first_loud(samples: &[f32]) -> Option<usize> {
    let levels = frame_levels(samples);
    if levels.is_empty() {
        return None;
    }
    let mut sorted = levels.clone();
    sorted.sort_by(f64::total_cmp);
    let background = sorted[sorted.len() / 10];
    let threshold = ABSOLUTE_FLOOR_DB.max(background + ABOVE_BACKGROUND_DB);
    let loud: Vec<bool> = levels.iter().map(|&l| l > threshold).collect();
    // Speech starts where loud frames come in a run: at least
    // MIN_LOUD_FRAMES of the ONSET_SPAN frames from there. A lone loud frame
    // (a click, or the last syllable of speech before the stretch) is not
    // where speech starts.
    (0..loud.len())
        .find(|&i| {
            loud[i] && loud[i..(i + ONSET_SPAN).min(loud.len())].iter().filter(|&&l| l).count() >= MIN_LOUD_FRAMES
        })
        .map(|i| i * FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic white noise at `dbfs` (RMS).
    fn noise(n: usize, dbfs: f64, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let amp = 10f64.powf(dbfs / 20.0) * 3f64.sqrt(); // uniform: RMS = amp / √3
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
                (u * amp) as f32
            })
            .collect()
    }

    fn tone(n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.07).sin() * amp).collect()
    }

    #[test]
    fn silence_and_steady_noise_hold_no_speech() {
        assert_eq!(first_loud(&[]), None);
        assert_eq!(first_loud(&vec![0.0; 16_000 * 30]), None);
        assert_eq!(first_loud(&noise(16_000 * 30, -40.0, 1)), None);
        assert_eq!(first_loud(&noise(16_000 * 30, -20.0, 2)), None);
        // A click (one loud frame) is not speech either.
        let mut x = vec![0.0; 16_000 * 5];
        x[8000..8000 + FRAME].copy_from_slice(&tone(FRAME, 0.5));
        assert_eq!(first_loud(&x), None);
    }

    #[test]
    fn a_voice_over_noise_is_found_where_it_starts() {
        let mut x = noise(16_000 * 30, -40.0, 3);
        // Half a second of "syllables" at 20 s: −9 dBFS bursts with gaps.
        for k in 0..5 {
            let at = 20 * 16_000 + k * 1600;
            for (i, v) in tone(800, 0.5).into_iter().enumerate() {
                x[at + i] += v;
            }
        }
        let at = first_loud(&x).expect("speech found");
        assert!((at as i64 - 20 * 16_000).unsigned_abs() <= FRAME as u64, "{at}");
    }

    #[test]
    fn a_lone_loud_frame_before_speech_is_not_where_it_starts() {
        // The last syllable of earlier speech at the very start, then 10 s
        // of silence, then speech.
        let mut x = vec![0.0; 16_000 * 20];
        x[..FRAME].copy_from_slice(&tone(FRAME, 0.5));
        for k in 0..5 {
            let at = 10 * 16_000 + k * 1600;
            x[at..at + 800].copy_from_slice(&tone(800, 0.5));
        }
        let at = first_loud(&x).expect("speech found");
        assert!((at as i64 - 10 * 16_000).unsigned_abs() <= FRAME as u64, "{at}");
    }

    #[test]
    fn levels_are_in_dbfs() {
        let l = frame_levels(&noise(FRAME * 10, -40.0, 4));
        assert!(l.iter().all(|&d| (d + 40.0).abs() < 1.0), "{l:?}");
        assert_eq!(frame_levels(&[0.5; FRAME - 1]).len(), 0);
    }
}
