//! Transcription as a stream: the same transcript as the reference when fed
//! in odd-sized pieces, silence and steady noise skipped by the energy gate
//! without running the model, and memory that does not grow with the
//! audio's length. Needs the real model (`kino models fetch speech`).

use std::path::Path;

mod common;

use common::{load, read_wav};
use kino_speech::{Segment, StreamOptions};

fn fixture(name: &str) -> (Vec<f32>, serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (samples, rate) = read_wav(&dir.join(format!("whisper_{name}.wav")));
    assert_eq!(rate, 16_000);
    let reference = serde_json::from_slice(&std::fs::read(dir.join(format!("whisper_{name}.json"))).unwrap()).unwrap();
    (samples, reference)
}

/// Deterministic white noise at `dbfs` RMS.
fn noise(n: usize, dbfs: f64, seed: &mut u64) -> Vec<f32> {
    let amp = 10f64.powf(dbfs / 20.0) * 3f64.sqrt();
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0) * amp) as f32
        })
        .collect()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_stream_fed_in_odd_pieces_gives_the_references_transcript() {
    // Three windows; the second and third start where the one before ended
    // on a timestamp.
    let (samples, reference) = fixture("long_en");
    let mut whisper = load();
    let mut stream = whisper.stream(StreamOptions::default());
    let mut segments: Vec<Segment> = Vec::new();
    for piece in samples.chunks(7_777) {
        segments.extend(stream.push(piece).unwrap());
    }
    let transcript = stream.finish().unwrap();
    let stats = stream.stats();
    segments.extend(transcript.segments);
    assert_eq!(transcript.language, "en");
    assert_eq!(stats.samples as usize, samples.len());
    assert_eq!(stats.gated_ms, 0, "the gate is off");
    let expected = reference["segments"].as_array().unwrap();
    assert_eq!(segments.len(), expected.len(), "{segments:#?}");
    for (i, (got, want)) in segments.iter().zip(expected).enumerate() {
        assert_eq!(got.text.trim(), want["text"].as_str().unwrap().trim(), "segment {i}");
        let start = want["start"].as_f64().unwrap();
        assert!(
            (got.start_ms as f64 / 1000.0 - start).abs() <= 0.2,
            "segment {i}: {got:?}"
        );
    }
}

#[test]
fn silence_and_noise_never_reach_the_model_and_speech_after_them_is_found() {
    let mut whisper = load();
    let mut seed = 7u64;
    for (what, samples) in [
        ("ten minutes of silence", vec![0.0f32; 16_000 * 600]),
        ("ten minutes of -40 dBFS noise", noise(16_000 * 600, -40.0, &mut seed)),
    ] {
        let mut stream = whisper.stream(StreamOptions {
            language: None,
            gate: true,
        });
        let mut segments = Vec::new();
        for piece in samples.chunks(160_000) {
            segments.extend(stream.push(piece).unwrap());
        }
        segments.extend(stream.finish().unwrap().segments);
        let stats = stream.stats();
        assert_eq!(stats.windows, 0, "{what}: the model ran");
        assert!(segments.is_empty(), "{what}: {segments:?}");
        assert!(stats.gated_ms >= 599_000, "{what}: {stats:?}");
    }

    // A minute of noise, then the short clip: one window, placed right.
    let (clip, reference) = fixture("short_en");
    let mut audio = noise(16_000 * 60, -50.0, &mut seed);
    let at = audio.len();
    audio.extend(clip.iter().zip(noise(clip.len(), -50.0, &mut seed)).map(|(a, b)| a + b));
    let mut stream = whisper.stream(StreamOptions {
        language: Some("en".into()),
        gate: true,
    });
    let mut segments = stream.push(&audio).unwrap();
    segments.extend(stream.finish().unwrap().segments);
    let stats = stream.stats();
    assert!(stats.gated_ms >= 55_000, "{stats:?}");
    let text: String = segments.iter().map(|s| s.text.as_str()).collect();
    let want: String = reference["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.get("text").and_then(|t| t.as_str()).unwrap_or(""))
        .collect();
    let words = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
            .collect()
    };
    let (got, want) = (words(&text), words(&want));
    // Word edit distance: the noise may change a word or two.
    let mut row: Vec<usize> = (0..=got.len()).collect();
    for (i, w) in want.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, g) in got.iter().enumerate() {
            let next = (prev + usize::from(w != g)).min(row[j] + 1).min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    let errors = row[got.len()];
    assert!(
        errors * 5 <= want.len(),
        "{errors} word errors: {got:?} against {want:?}"
    );
    let first = reference["segments"][0]["start"].as_f64().unwrap() * 1000.0;
    let start = segments[0].start_ms as f64;
    let truth = at as f64 / 16.0 + first;
    assert!(
        (start - truth).abs() <= 1000.0,
        "first cue at {start} ms, spoken at {truth} ms"
    );
}

#[test]
fn two_hours_stream_through_in_bounded_memory() {
    let mut whisper = load();
    let mut stream = whisper.stream(StreamOptions {
        language: Some("en".into()),
        gate: true,
    });
    let mut seed = 11u64;
    let piece = noise(16_000 * 10, -40.0, &mut seed);
    let mut peak = 0;
    let mut before = 0;
    for i in 0..720 {
        assert!(stream.push(&piece).unwrap().is_empty());
        if i == 30 {
            before = rss_kib();
        }
        if i > 30 && i % 30 == 0 {
            peak = peak.max(rss_kib());
        }
    }
    assert!(stream.finish().unwrap().segments.is_empty());
    let stats = stream.stats();
    assert_eq!(stats.samples, 16_000 * 7_200);
    assert!(
        peak < before + 32 * 1024,
        "memory grew from {before} KiB to {peak} KiB over two hours of audio"
    );
}
