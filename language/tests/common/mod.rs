//! Helpers shared by the language crate's integration tests.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use kino_language::SentenceEncoder;

/// The test model directory: `$KINO_TEST_TEXT_MODEL`, else the default
/// location. Panics with a clear message (the test fails, it does not skip)
/// when the model is absent.
pub fn model_dir() -> PathBuf {
    let dir = std::env::var_os("KINO_TEST_TEXT_MODEL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".local/share/kino/models/sentence-transformers/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file() && dir.join("tokenizer.json").is_file(),
        "the text model is missing at {} (set KINO_TEST_TEXT_MODEL, or run scripts/setup to fetch it)",
        dir.display()
    );
    dir
}

/// One encoder shared by all tests of a test binary.
pub fn encoder() -> Arc<SentenceEncoder> {
    static ENC: OnceLock<Arc<SentenceEncoder>> = OnceLock::new();
    ENC.get_or_init(|| {
        let dir = model_dir();
        Arc::new(SentenceEncoder::load(&dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display())))
    })
    .clone()
}
