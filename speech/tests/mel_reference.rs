//! Log-mel features against faster-whisper's `FeatureExtractor`: the fixtures
//! under `tests/fixtures/` come from `scripts/fixtures/speech_reference.py`
//! (its `mel_reference.json` records the versions and the signal's formula).

use std::path::PathBuf;

use kino_speech::mel::{log_mel, mel_filters, N_FREQS};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A little-endian f32 fixture file.
fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(bytes.len() % 4, 0, "{name}");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn meta() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("mel_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn shape(meta: &serde_json::Value, key: &str) -> Vec<usize> {
    meta[key]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The test signal of the fixture script, same formula, same order of
/// operations (f64, rounded to f32).
fn signal() -> Vec<f32> {
    use std::f64::consts::PI;
    let mut s: u64 = 42;
    (0..48_000)
        .map(|i| {
            let t = i as f64 / 16_000.0;
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (s >> 32) as f64 / 4294967296.0;
            let x = 0.3 * (2.0 * PI * 440.0 * t).sin()
                + 0.2 * (2.0 * PI * 1234.5 * t + 0.5).sin()
                + 0.1 * (2.0 * PI * 3000.0 * t).sin()
                + 0.15 * (2.0 * PI * (100.0 * t + 1300.0 * t * t)).sin()
                + 0.01 * (u - 0.5);
            if (1.0..1.5).contains(&t) {
                0.0
            } else {
                x as f32
            }
        })
        .collect()
}

#[test]
fn the_test_signal_is_the_scripts() {
    let m = meta();
    println!(
        "reference: faster-whisper {}, numpy {}",
        m["faster_whisper"], m["numpy"]
    );
    let ours = signal();
    let theirs = read_f32("signal.f32");
    let d = max_abs_diff(&ours, &theirs);
    println!("signal: max abs difference {d:e}");
    assert!(d <= 1e-6, "the Rust and Python test signals differ by {d}");
}

#[test]
fn filters_match_the_reference() {
    let m = meta();
    for n_mels in [80, 128] {
        let key = format!("mel_filters_{n_mels}");
        assert_eq!(shape(&m, &key), [n_mels, N_FREQS]);
        let theirs = read_f32(&format!("{key}.f32"));
        let d = max_abs_diff(&mel_filters(n_mels), &theirs);
        println!("mel filters {n_mels}: max abs difference {d:e}");
        assert!(d <= 1e-6, "filters {n_mels}: {d}");
    }
}

#[test]
fn log_mel_matches_the_reference() {
    let m = meta();
    let x = signal();
    let (frames, ours) = log_mel(&x, 80);
    assert_eq!([80, frames], shape(&m, "log_mel_80")[..]);
    assert_eq!(frames, 300);
    let theirs = read_f32("log_mel_80.f32");
    let d = max_abs_diff(&ours, &theirs);
    let worst = ours
        .iter()
        .zip(&theirs)
        .enumerate()
        .max_by(|a, b| (a.1 .0 - a.1 .1).abs().total_cmp(&(b.1 .0 - b.1 .1).abs()))
        .map(|(i, _)| (i / frames, i % frames))
        .unwrap();
    println!(
        "log-mel 80 x {frames}: max abs difference {d:e} at (mel, frame) {worst:?}; the reference's own f32 rounding: {}",
        m["reference_f32_vs_f64_max_abs"]
    );
    assert!(d <= 1e-4, "log-mel differs from the reference by {d}");

    // Shorter than the reflect padding (numpy reflects more than once).
    let (frames, ours) = log_mel(&x[..170], 80);
    assert_eq!([80, frames], shape(&m, "log_mel_80_short")[..]);
    let d = max_abs_diff(&ours, &read_f32("log_mel_80_short.f32"));
    println!("log-mel of 170 samples: max abs difference {d:e}");
    assert!(d <= 1e-4, "short log-mel differs from the reference by {d}");
}
