//! Whisper base with its audio encoder in int8 against the same model in
//! f32 (whose parity with faster-whisper `whisper_parity.rs` checks): on
//! the parity clips together (one word is 2.7 points of the short clip
//! alone), the word error rate against what was spoken stays within one
//! point of f32's. Needs the real model (`kino models fetch
//! speech`).

use std::path::Path;
use std::time::Instant;

mod common;

use common::{load, read_wav};

/// Lowercase words without punctuation (digits and letters kept).
fn words(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word error rate of `hyp` against `reference`: edit distance over words
/// (substitutions, insertions, deletions) divided by the reference's words.
fn wer(reference: &str, hyp: &str) -> f64 {
    let (r, h) = (words(reference), words(hyp));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

#[test]
fn wer_counts_word_edits() {
    assert_eq!(wer("the quick brown fox", "The quick, brown fox."), 0.0);
    assert_eq!(wer("the quick brown fox", "the quick fox"), 0.25);
    assert_eq!(wer("a b", "a x b y"), 1.0);
}

#[test]
fn int8_encoder_keeps_the_word_error_rate_within_a_point() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut f32_model = load();
    let mut int8_model = load();
    int8_model.quantize_encoder();
    assert!(int8_model.is_int8() && !f32_model.is_int8());
    let (mut spoken_words, mut f32_errors, mut int8_errors) = (0f64, 0f64, 0f64);
    for name in ["short_en", "long_en", "short_de"] {
        let (samples, _) = read_wav(&fixtures.join(format!("whisper_{name}.wav")));
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixtures.join(format!("whisper_{name}.json"))).unwrap()).unwrap();
        let spoken = reference["spoken"].as_str().unwrap();
        let text = |w: &mut kino_speech::Whisper| {
            let t = Instant::now();
            let tr = w.transcribe(&samples, None).unwrap();
            let s: Vec<String> = tr.segments.iter().map(|s| s.text.trim().to_string()).collect();
            (s.join(" "), tr.language, t.elapsed().as_secs_f64())
        };
        let (f, f_lang, f_secs) = text(&mut f32_model);
        let (q, q_lang, q_secs) = text(&mut int8_model);
        let (wf, wq) = (wer(spoken, &f), wer(spoken, &q));
        let n = words(spoken).len() as f64;
        println!(
            "{name}: WER f32 {:.2} % ({f_secs:.1} s), int8 {:.2} % ({q_secs:.1} s)",
            wf * 100.0,
            wq * 100.0
        );
        println!("  f32:  {f}\n  int8: {q}");
        assert_eq!(q_lang, f_lang, "{name}: the language detected");
        spoken_words += n;
        f32_errors += wf * n;
        int8_errors += wq * n;
    }
    let (wf, wq) = (f32_errors / spoken_words, int8_errors / spoken_words);
    println!(
        "all clips ({spoken_words} words): WER f32 {:.2} %, int8 {:.2} %",
        wf * 100.0,
        wq * 100.0
    );
    assert!(wq <= wf + 0.01, "int8 WER {wq} against f32 {wf}");
}
