//! Whisper in Rust against faster-whisper on the same weights and the same
//! samples: `speech/tests/fixtures/whisper_*.{wav,json}`, written by
//! `scripts/fixtures/whisper_reference.py` (greedy, temperature 0, no
//! fallback, no VAD, float32). Needs the real model (`kino models fetch
//! speech`).

use std::path::Path;
use std::time::Instant;

mod common;

use kino_speech::Whisper;

fn load() -> Whisper {
    let dir = common::models_dir().join("Systran/faster-whisper-base");
    assert!(
        dir.join("model.bin").is_file(),
        "{} is missing: install the speech model with `kino models fetch speech`",
        dir.display()
    );
    Whisper::load(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// A 16-bit PCM mono WAV file as f32 samples (value / 32768) and its rate.
fn read_wav(path: &Path) -> (Vec<f32>, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(&bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE", "not a WAV file");
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let (mut pos, mut rate, mut samples) = (12, 0, None);
    while pos + 8 <= bytes.len() {
        let (id, len) = (&bytes[pos..pos + 4], u32_at(pos + 4) as usize);
        let body = pos + 8;
        if id == b"fmt " {
            assert_eq!(u16_at(body), 1, "PCM");
            assert_eq!(u16_at(body + 2), 1, "mono");
            rate = u32_at(body + 4);
            assert_eq!(u16_at(body + 14), 16, "16-bit");
        } else if id == b"data" {
            let data = &bytes[body..(body + len).min(bytes.len())];
            samples = Some(
                data.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
                    .collect(),
            );
        }
        pos = body + len + (len & 1);
    }
    (samples.expect("a data chunk"), rate)
}

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
