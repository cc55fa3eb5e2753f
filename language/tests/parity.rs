//! Parity with sentence-transformers: the committed reference vectors
//! (`tests/fixtures/minilm_reference.json`, written by
//! `scripts/fixtures/text_reference.py`) must be reproduced with cosine
//! similarity ≥ 0.9999.

mod common;

use kino_language::cosine;
use serde_json::Value;

fn reference() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/minilm_reference.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn matches_sentence_transformers_on_the_reference_sentences() {
    let enc = common::encoder();
    let r = reference();
    assert_eq!(enc.dim(), r["dim"].as_u64().unwrap() as usize);
    assert_eq!(enc.max_seq_length(), r["max_seq_length"].as_u64().unwrap() as usize);
    let rows = r["sentences"].as_array().unwrap();
    let texts: Vec<&str> = rows.iter().map(|s| s["text"].as_str().unwrap()).collect();
    // At least one sentence must be longer than the model's limit, so that
    // truncation is tested.
    assert!(rows
        .iter()
        .any(|s| s["tokens_untruncated"].as_u64().unwrap() as usize > enc.max_seq_length()));
    let got = enc.encode(&texts).unwrap();
    let mut worst = (1.0f32, "");
    for (row, v) in rows.iter().zip(&got) {
        let want: Vec<f32> = row["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let c = cosine(v, &want);
        let max_abs = v.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!(
            "cos {c:.7}  max|Δ| {max_abs:.2e}  {:?}",
            row["text"].as_str().unwrap().chars().take(50).collect::<String>()
        );
        if c < worst.0 {
            worst = (c, row["text"].as_str().unwrap());
        }
    }
    println!(
        "worst cosine {:.7} for {:?}",
        worst.0,
        worst.1.chars().take(60).collect::<String>()
    );
    assert!(worst.0 >= 0.9999, "worst cosine {} < 0.9999 for {:?}", worst.0, worst.1);
}

#[test]
fn one_at_a_time_equals_batched() {
    // Padding inside a batch must not change a sentence's vector.
    let enc = common::encoder();
    let r = reference();
    let texts: Vec<&str> = r["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let batched = enc.encode(&texts).unwrap();
    for (t, b) in texts.iter().zip(&batched) {
        let single = enc.encode_one(t).unwrap();
        let c = cosine(&single, b);
        assert!(c > 0.99999, "{t:?}: alone vs in a batch cosine {c}");
    }
}
