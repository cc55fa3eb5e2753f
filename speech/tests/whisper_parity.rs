//! Whisper in Rust against faster-whisper on the same weights and the same
//! samples: `speech/tests/fixtures/whisper_*.{wav,json}`, written by
//! `scripts/fixtures/whisper_reference.py` (greedy, temperature 0, no
//! fallback, no VAD, float32). Needs the real model (`kino models fetch
//! speech`).

use std::path::Path;
use std::time::Instant;

mod common;

use common::{load, read_wav};

fn parity(name: &str) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (samples, rate) = read_wav(&fixtures.join(format!("whisper_{name}.wav")));
    assert_eq!(rate, 16_000);
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join(format!("whisper_{name}.json"))).unwrap()).unwrap();

    let mut whisper = load();
    let t0 = Instant::now();
    let transcript = whisper.transcribe(&samples, None).unwrap();
    let elapsed = t0.elapsed().as_secs_f64();
    let duration = samples.len() as f64 / 16_000.0;
    println!(
        "{name}: {duration:.1} s of audio in {elapsed:.1} s: real-time factor {:.2} ({:.2}× real time); language {} ({:.3})",
        elapsed / duration,
        duration / elapsed,
        transcript.language,
        transcript.language_probability
    );
    for s in &transcript.segments {
        println!("  [{:>6} → {:>6} ms] {}", s.start_ms, s.end_ms, s.text);
    }

    // Where the reference's two best tokens are within 1e-3, either choice
    // is right: report those places; elsewhere the tokens must be the same.
    let ties = reference["near_ties"].as_array().unwrap();
    println!(
        "  reference: smallest gap between the two best tokens {:.4}; near ties (< 1e-3): {ties:?}",
        reference["smallest_top2_gap"].as_f64().unwrap_or(f64::NAN)
    );
    assert_eq!(transcript.language, reference["language"].as_str().unwrap());
    let expected = reference["segments"].as_array().unwrap();
    let mut worst = 0f64;
    for (i, (got, want)) in transcript.segments.iter().zip(expected).enumerate() {
        let text = want["text"].as_str().unwrap();
        assert_eq!(got.text.trim(), text.trim(), "segment {i}'s text");
        let (start, end) = (want["start"].as_f64().unwrap(), want["end"].as_f64().unwrap());
        let ds = (got.start_ms as f64 / 1000.0 - start).abs();
        let de = (got.end_ms as f64 / 1000.0 - end).abs();
        worst = worst.max(ds).max(de);
        assert!(ds <= 0.2 && de <= 0.2, "segment {i}: {got:?} against {start}..{end}");
        let tokens: Vec<u32> = want["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        if got.tokens != tokens {
            println!(
                "  segment {i}: same text, other tokens: {:?} against {tokens:?}",
                got.tokens
            );
        }
    }
    assert_eq!(transcript.segments.len(), expected.len(), "segment count");
    println!("  worst time difference {worst:.3} s");
}

#[test]
fn short_english_clip_matches_faster_whisper() {
    parity("short_en");
}

#[test]
fn long_english_clip_crossing_windows_matches_faster_whisper() {
    parity("long_en");
}

#[test]
fn german_clip_is_detected_and_matches_faster_whisper() {
    parity("short_de");
}

#[test]
fn empty_tiny_and_silent_audio_and_unknown_languages() {
    let mut whisper = load();
    for n in [0, 100, 1_600, 16_000 * 5] {
        let t = whisper.transcribe(&vec![0.0; n], Some("en")).unwrap();
        println!("{n} zero samples: {:?}", t.segments);
        assert!(t.segments.is_empty(), "{n} zero samples: {:?}", t.segments);
    }
    let t = whisper.transcribe(&[], None).unwrap();
    assert!(t.segments.is_empty());
    let e = whisper.transcribe(&[0.0; 16_000], Some("xx")).unwrap_err().to_string();
    assert!(e.contains("\"xx\""), "{e}");
}
