//! Behaviour of the encoder on odd input, long text and bad model
//! directories, with the real default model.

mod common;

use std::time::Instant;

use kino_language::{cosine, LanguageError, SentenceEncoder, DEFAULT_STRIDE, DEFAULT_WINDOW, WINDOW_BATCH};

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn paragraph(n_words: usize) -> String {
    let words = [
        "the",
        "camera",
        "follows",
        "a",
        "cyclist",
        "through",
        "narrow",
        "streets",
        "while",
        "rain",
        "falls",
        "on",
        "old",
        "stone",
        "houses",
        "and",
        "children",
        "laugh",
        "under",
        "umbrellas",
        "near",
        "market",
        "stalls.",
    ];
    (0..n_words)
        .map(|i| words[(i * 7 + i / 5) % words.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn metadata_of_the_default_model() {
    let enc = common::encoder();
    assert_eq!(enc.dim(), 384);
    assert_eq!(enc.max_seq_length(), 256);
    assert!(enc.normalizes());
    assert!(enc.pooling().mean && !enc.pooling().cls);
    let v = enc.version();
    assert!(v.starts_with("all-MiniLM-L6-v2@"), "{v}");
    assert_eq!(v.len(), "all-MiniLM-L6-v2@".len() + 12);
    assert_eq!(enc.checksum().len(), 64);
    assert!(enc.checksum().starts_with(&v[v.len() - 12..]));
}

#[test]
fn empty_whitespace_and_control_characters_give_the_empty_vector() {
    let enc = common::encoder();
    let out = enc
        .encode(&["", "   ", "\t\n\r", "\u{0}\u{7}\u{1b}", "\u{feff}"])
        .unwrap();
    let empty = &out[0];
    assert_eq!(empty.len(), 384);
    assert!(empty.iter().all(|x| x.is_finite()));
    assert!((norm(empty) - 1.0).abs() < 1e-5);
    for v in &out[1..] {
        assert!(cosine(v, empty) > 0.99999, "{}", cosine(v, empty));
    }
    // ... and it is not the vector of real text.
    let real = enc.encode_one("a dog").unwrap();
    assert!(cosine(&real, empty) < 0.9);
}

#[test]
fn similar_sentences_are_closer_than_unrelated_ones() {
    let enc = common::encoder();
    let v = enc
        .encode(&[
            "A man is playing guitar.",
            "Someone plays a guitar.",
            "The stock market fell today.",
        ])
        .unwrap();
    let near = cosine(&v[0], &v[1]);
    let far = cosine(&v[0], &v[2]);
    assert!(near > 0.6 && far < 0.3 && near > far + 0.4, "near {near}, far {far}");
    for x in &v {
        assert!((norm(x) - 1.0).abs() < 1e-5);
    }
}

#[test]
fn empty_input_list_gives_no_vectors() {
    assert!(common::encoder().encode(&[]).unwrap().is_empty());
}

#[test]
fn a_one_megabyte_text_is_truncated_quickly() {
    let enc = common::encoder();
    let big = paragraph(200_000);
    assert!(big.len() > 1_000_000);
    let t = Instant::now();
    let v = enc.encode_one(&big).unwrap();
    let took = t.elapsed();
    // The model sees only the first 256 tokens: same as a 5 KB prefix.
    let head = enc.encode_one(&big[..big[..5_000].rfind(' ').unwrap()]).unwrap();
    assert!(cosine(&v, &head) > 0.99999);
    assert!(took.as_secs_f32() < 10.0, "1 MB took {took:?}");
    // One word of 1 MB without spaces: bounded, finite.
    let blob = "x".repeat(1 << 20);
    let v = enc.encode_one(&blob).unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
}

#[test]
fn long_text_short_enough_for_one_window_equals_encode() {
    let enc = common::encoder();
    let text = "A short cue about a red bicycle.";
    let long = enc.encode_long(text, DEFAULT_WINDOW, DEFAULT_STRIDE).unwrap();
    assert_eq!(long.windows.len(), 1);
    assert!(!long.truncated);
    assert_eq!(long.windows[0].text, text);
    let direct = enc.encode_one(text).unwrap();
    assert!(cosine(&long.windows[0].embedding, &direct) > 0.99999);
    assert!(cosine(&long.pooled, &direct) > 0.99999);
    // Empty text: one empty window with the vector of "".
    let empty = enc.encode_long("", DEFAULT_WINDOW, DEFAULT_STRIDE).unwrap();
    assert_eq!(empty.windows.len(), 1);
    assert_eq!(empty.total_tokens, 0);
    assert!(cosine(&empty.pooled, &enc.encode_one("").unwrap()) > 0.99999);
}

#[test]
fn a_3000_word_transcript_is_covered_by_overlapping_windows() {
    let enc = common::encoder();
    let text = paragraph(3_000);
    let long = enc.encode_long(&text, DEFAULT_WINDOW, DEFAULT_STRIDE).unwrap();
    assert!(!long.truncated);
    let n = long.total_tokens;
    assert!(n >= 3_000, "{n} tokens");
    // Windows tile the tokens: start at 0, step by the stride, end at n.
    assert_eq!(long.windows[0].start_token, 0);
    assert_eq!(long.windows.last().unwrap().end_token, n);
    for (i, w) in long.windows.iter().enumerate() {
        assert_eq!(w.start_token, i * DEFAULT_STRIDE);
        assert!(w.end_token - w.start_token <= DEFAULT_WINDOW);
        assert_eq!(&text[w.start_byte..w.end_byte], w.text);
        assert!((norm(&w.embedding) - 1.0).abs() < 1e-5);
    }
    assert_eq!(long.windows.len(), (n - DEFAULT_WINDOW).div_ceil(DEFAULT_STRIDE) + 1);
    // A window's vector is the vector of its text encoded alone.
    let w = &long.windows[3];
    let alone = enc.encode_one(&w.text).unwrap();
    assert!(
        cosine(&alone, &w.embedding) > 0.9999,
        "{}",
        cosine(&alone, &w.embedding)
    );
    assert!((norm(&long.pooled) - 1.0).abs() < 1e-5);
}

#[test]
fn a_text_of_hundreds_of_windows_is_covered_whole() {
    let enc = common::encoder();
    // Window 16, stride 8: far more windows than one batch.
    let mut text = paragraph(5_000);
    text.push_str(" In the end the violinist's cat slept on the warm piano.");
    let long = enc.encode_long(&text, 16, 8).unwrap();
    assert!(!long.truncated);
    assert!(
        long.windows.len() > 600 && long.windows.len() > 8 * WINDOW_BATCH,
        "{}",
        long.windows.len()
    );
    assert_eq!(long.windows.last().unwrap().end_token, long.total_tokens);
    // The fact at the very end is in the last window, which matches it best.
    let q = enc.encode_one("a cat sleeping on a piano").unwrap();
    let best = (0..long.windows.len())
        .max_by(|&a, &b| cosine(&q, &long.windows[a].embedding).total_cmp(&cosine(&q, &long.windows[b].embedding)))
        .unwrap();
    assert_eq!(
        best,
        long.windows.len() - 1,
        "best window {best} of {}",
        long.windows.len()
    );
    // Batched windows equal windows encoded alone.
    let w = &long.windows[long.windows.len() - 1];
    assert!(cosine(&enc.encode_one(&w.text).unwrap(), &w.embedding) > 0.9999);
}

#[test]
fn encode_whole_equals_encode_for_short_texts_and_pools_windows_for_long_ones() {
    let enc = common::encoder();
    let short = ["A red bicycle.", "Two cats on a wall, sleeping in the sun."];
    let a = enc.encode_whole(&short).unwrap();
    let b = enc.encode(&short).unwrap();
    assert_eq!(a, b, "bit for bit");
    // About 1,000 tokens: four times the model's input of 256.
    let long_text = paragraph(920);
    let whole = enc.encode_whole(&[short[0], &long_text]).unwrap();
    assert_eq!(whole[0], b[0]);
    let long = enc.encode_long(&long_text, DEFAULT_WINDOW, DEFAULT_STRIDE).unwrap();
    assert!(
        (950..1_050).contains(&long.total_tokens),
        "{} tokens",
        long.total_tokens
    );
    assert_eq!(whole[1], long.pooled, "the pooled windows, bit for bit");
    let cut = enc.encode_one(&long_text).unwrap();
    assert!(cosine(&whole[1], &cut) < 0.999, "not the truncated vector");
}

#[test]
fn bad_window_arguments_are_errors() {
    let enc = common::encoder();
    for (w, s) in [(0, 1), (10, 0), (10, 11), (255, 100)] {
        let e = enc.encode_long("some text", w, s).unwrap_err();
        assert!(matches!(e, LanguageError::Argument(_)), "{w},{s}: {e}");
        assert!(e.is_bad_input());
    }
    // 254 = 256 minus [CLS] and [SEP] is the largest window.
    assert!(enc.encode_long("some text", 254, 254).is_ok());
}

#[test]
fn loading_a_bad_directory_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    // Not a directory.
    let e = SentenceEncoder::load(&tmp.path().join("nope")).err().unwrap();
    assert!(e.is_bad_input() && e.to_string().contains("nope"), "{e}");
    // Empty directory: config.json is missing.
    let e = SentenceEncoder::load(tmp.path()).err().unwrap();
    assert!(e.to_string().contains("config.json") && e.is_bad_input(), "{e}");
    // Broken config.json.
    std::fs::write(tmp.path().join("config.json"), "{not json").unwrap();
    let e = SentenceEncoder::load(tmp.path()).err().unwrap();
    assert!(
        e.to_string().contains("config.json") && e.to_string().contains("JSON"),
        "{e}"
    );
    // Non-BERT model type.
    std::fs::write(tmp.path().join("config.json"), r#"{"model_type":"gpt2"}"#).unwrap();
    let e = SentenceEncoder::load(tmp.path()).err().unwrap();
    assert!(e.to_string().contains("gpt2"), "{e}");
    // Real config and tokenizer but truncated weights.
    let src = common::model_dir();
    for f in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    let e = SentenceEncoder::load(tmp.path()).err().unwrap();
    assert!(e.to_string().contains("model.safetensors"), "{e}");
    std::fs::write(tmp.path().join("model.safetensors"), b"garbage").unwrap();
    let e = SentenceEncoder::load(tmp.path()).err().unwrap();
    assert!(e.to_string().contains("model.safetensors"), "{e}");
    // A bad tokenizer.
    std::fs::write(tmp.path().join("tokenizer.json"), b"{}").unwrap();
    let e = SentenceEncoder::load(tmp.path()).err().unwrap();
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
}

#[test]
fn the_encoder_is_shared_across_threads() {
    let enc = common::encoder();
    let want = enc.encode_one("threads share one model").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let enc = enc.clone();
            std::thread::spawn(move || enc.encode_one("threads share one model").unwrap())
        })
        .collect();
    for h in handles {
        assert!(cosine(&h.join().unwrap(), &want) > 0.99999);
    }
}
