//! Helpers shared by kino-ocr's integration tests.
#![allow(dead_code)] // each test binary uses a part

use std::path::PathBuf;

use kino_ocr::Ocr;

/// `$KINO_MODELS`, else `$KINO_HOME/models`, else
/// `$XDG_DATA_HOME/kino/models`, else `~/.local/share/kino/models`: where
/// kino installs models.
pub fn models_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = var("KINO_MODELS") {
        return d;
    }
    if let Some(h) = var("KINO_HOME") {
        return h.join("models");
    }
    if let Some(x) = var("XDG_DATA_HOME") {
        return x.join("kino/models");
    }
    var("HOME").unwrap_or_default().join(".local/share/kino/models")
}

/// The installed ONNX Runtime library (`$ORT_DYLIB_PATH` overrides it in
/// `init_runtime`).
pub fn runtime_lib() -> PathBuf {
    models_dir().join("onnxruntime/1.32.0/libonnxruntime.so")
}

/// The installed PP-OCR models' folder.
pub fn ocr_dir() -> PathBuf {
    models_dir().join("rapidocr/PP-OCRv6")
}

/// ONNX Runtime initialised (fails, not skips, when absent).
pub fn init() {
    let env_lib = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty());
    let lib = runtime_lib();
    assert!(
        env_lib.is_some() || lib.is_file(),
        "{} is missing: install it with `kino models fetch ocr onnxruntime`",
        lib.display()
    );
    kino_ocr::init_runtime(&lib).unwrap_or_else(|e| panic!("{e}"));
}

/// The OCR models loaded (fails, not skips, when absent).
pub fn load() -> Ocr {
    init();
    let dir = ocr_dir();
    for f in [kino_ocr::DET_MODEL, kino_ocr::REC_MODEL, kino_ocr::CLS_MODEL] {
        assert!(
            dir.join(f).is_file(),
            "{} is missing: install the OCR models with `kino models fetch ocr onnxruntime`",
            dir.join(f).display()
        );
    }
    Ocr::load(&dir, 2).unwrap_or_else(|e| panic!("{e}"))
}

/// The fixtures folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
