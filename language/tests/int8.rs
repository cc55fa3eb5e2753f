//! The int8 encoder ([`Precision::Int8`]) against the f32 one on the real
//! model: cosine ≥ 0.995 for every one of a few hundred varied sentences.

mod common;

use kino_language::{cosine, Precision, SentenceEncoder};

/// Varied sentences: combinations of subjects, actions, objects and places,
/// plus odd inputs (empty, punctuation, numbers, other languages, long).
fn sentences() -> Vec<String> {
    let subjects = [
        "A man",
        "The old woman",
        "Two children",
        "A black cat",
        "The pilot",
        "Our neighbour's dog",
        "A group of tourists",
        "The robot",
    ];
    let actions = [
        "is slicing",
        "drops",
        "paints",
        "carefully inspects",
        "runs away from",
        "laughs at",
    ];
    let objects = [
        "a loaf of bread",
        "the red car",
        "an ancient map",
        "a broken guitar",
        "the evening news",
    ];
    let places = [
        "in the kitchen.",
        "on a crowded beach at sunset",
        "during the storm!",
        "inside the spaceship?",
    ];
    let mut out = Vec::new();
    let mut i = 0usize;
    for s in subjects {
        for a in actions {
            for o in objects {
                // One place per combination, rotating, keeps the count modest.
                let p = places[i % places.len()];
                i += 1;
                out.push(format!("{s} {a} {o} {p}"));
            }
        }
    }
    for extra in [
        "",
        "   ",
        "?!",
        "ok",
        "42",
        "3.14159 × 2 = 6.28318",
        "un chat sur un canapé",
        "Der Hund schläft unter dem Tisch.",
        "東京の夜景はとてもきれいです",
        "Ceci n'est pas une pipe.",
        "SELECT * FROM users WHERE id = 7;",
        "https://example.com/watch?v=abc123",
        "BREAKING: MARKETS FALL 5% AS RATES RISE",
        "lol 😂😂 that was sooo funny",
        "[MUSIC PLAYING]",
        "- Where are you going?\n- Home.",
        "The mitochondria is the powerhouse of the cell, and ATP synthase drives the production of adenosine \
         triphosphate from ADP and inorganic phosphate using a proton gradient across the inner membrane.",
    ] {
        out.push(extra.to_string());
    }
    let long: Vec<String> = (0..120).map(|w| format!("word{}", w % 17)).collect();
    out.push(long.join(" "));
    out.push("the quick brown fox jumps over the lazy dog ".repeat(40));
    out
}

#[test]
fn int8_vectors_are_close_to_the_f32_ones() {
    let f32_enc = common::encoder();
    let dir = common::model_dir();
    let q = SentenceEncoder::load_with(&dir, Precision::Int8).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert_eq!(q.precision(), Precision::Int8);
    assert_eq!(q.version(), format!("{}+int8", f32_enc.version()));
    assert_eq!(f32_enc.precision(), Precision::F32);
    assert_eq!(q.dim(), f32_enc.dim());

    let texts = sentences();
    assert!(texts.len() >= 200, "only {} sentences", texts.len());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want = f32_enc.encode(&refs).unwrap();
    let got = q.encode(&refs).unwrap();
    // Deterministic: the same input gives the same vectors, also one by one.
    assert_eq!(q.encode(&refs[..5]).unwrap(), got[..5].to_vec());
    let cos: Vec<f32> = want.iter().zip(&got).map(|(a, b)| cosine(a, b)).collect();
    let (worst, at) = cos
        .iter()
        .enumerate()
        .fold((1f32, 0), |(m, at), (i, &c)| if c < m { (c, i) } else { (m, at) });
    let mean = cos.iter().map(|&c| c as f64).sum::<f64>() / cos.len() as f64;
    println!(
        "int8 vs f32 over {} sentences: min cosine {worst:.5} ({:?}), mean {mean:.5}",
        cos.len(),
        texts[at].chars().take(60).collect::<String>()
    );
    for (c, t) in cos.iter().zip(&texts) {
        assert!(*c >= 0.995, "cosine {c:.5} < 0.995 for {t:?}");
    }
}

/// The model's files linked one by one into a folder of its own (a stored
/// calibration is written beside them, never into the shared copy).
fn linked_copy(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if std::fs::metadata(e.path()).unwrap().is_dir() {
            linked_copy(&e.path(), &dst.join(e.file_name()));
        } else if !e.file_name().to_string_lossy().starts_with("model.int8") {
            std::os::unix::fs::symlink(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_stored_calibration_is_used_at_load_and_only_for_its_weights() {
    use kino_language::TextCalibration;
    let f32_enc = common::encoder();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("all-MiniLM-L6-v2");
    linked_copy(&common::model_dir(), &dir);
    let texts = sentences();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Calibrated on half the sentences; checked on all.
    let cal = f32_enc.calibrate(&refs[..120], 0.9999).unwrap();
    assert_eq!(cal.sentences(), 120);
    let meta = std::collections::HashMap::from([("f32_version".to_string(), f32_enc.version())]);
    cal.save(&dir, &meta).unwrap();
    let stored = TextCalibration::load(&dir).unwrap().unwrap();
    assert_eq!(stored.ranges(), cal.ranges());
    assert_eq!(stored.id(), cal.id());

    let q = SentenceEncoder::load_with(&dir, Precision::Int8).unwrap();
    assert_eq!(q.version(), format!("{}+int8:{}", f32_enc.version(), cal.id()));
    let direct = SentenceEncoder::load(&dir).unwrap().quantized(&cal).unwrap();
    let (got, same) = (q.encode(&refs).unwrap(), direct.encode(&refs).unwrap());
    assert_eq!(got, same, "loaded from the file, the same vectors");
    let want = f32_enc.encode(&refs).unwrap();
    let worst = want.iter().zip(&got).map(|(a, b)| cosine(a, b)).fold(1f32, f32::min);
    println!(
        "stored calibration on 120 sentences: min cosine {worst:.5} over {}",
        refs.len()
    );
    assert!(worst >= 0.995, "{worst}");

    // Recorded for other weights: set aside (fixed sentences instead).
    let other = std::collections::HashMap::from([("f32_version".to_string(), "all-MiniLM-L6-v2@000000000000".into())]);
    cal.save(&dir, &other).unwrap();
    let q = SentenceEncoder::load_with(&dir, Precision::Int8).unwrap();
    assert_eq!(q.version(), format!("{}+int8", f32_enc.version()));
    // A damaged file is an error naming it.
    std::fs::write(dir.join(TextCalibration::FILE), b"garbage").unwrap();
    let err = SentenceEncoder::load_with(&dir, Precision::Int8)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.int8.safetensors") && err.contains("kino models quantize"),
        "{err}"
    );
    // f32 never reads it.
    assert_eq!(SentenceEncoder::load(&dir).unwrap().version(), f32_enc.version());
}
