//! `kino embed-text` (the language crate).

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use kino_language::{LanguageError, SentenceEncoder};

use crate::config::Config;
use crate::error::usage;

/// Maps a language error to exit code 2 (bad model directory, bad argument)
/// or 1 (a runtime failure).
fn classify(err: LanguageError) -> anyhow::Error {
    if err.is_bad_input() {
        usage(err.to_string())
    } else {
        anyhow::Error::new(err)
    }
}

/// Loads the text model at `dir` at `precision`, with a clear error when it
/// is absent.
pub fn load_text_model(dir: &Path, precision: kino_language::Precision) -> Result<SentenceEncoder> {
    if !dir.is_dir() {
        return Err(usage(format!(
            "{}: no text model here (run `kino models fetch`, or pass --model DIR)",
            dir.display()
        )));
    }
    SentenceEncoder::load_with(dir, precision).map_err(classify)
}

/// One line of `kino embed-text --json` (fields in this order).
#[derive(serde::Serialize)]
struct EmbeddingLine<'a> {
    text: &'a str,
    embedding: &'a [f32],
}

/// `kino embed-text [--model DIR] TEXT... [--json]`: sentence embeddings.
/// With `--json`, one `{"text","embedding":[…]}` per line; otherwise one
/// line per text with its dimension, norm and first values.
pub fn embed_text(config: &Config, model: Option<&Path>, texts: &[String], json: bool) -> Result<()> {
    let dir = model.map(Path::to_path_buf).unwrap_or_else(|| config.text_model_dir());
    let enc = load_text_model(&dir, config.precision.text())?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = enc.encode(&refs).map_err(classify)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (text, v) in texts.iter().zip(vectors) {
        if json {
            let line = serde_json::to_string(&EmbeddingLine { text, embedding: &v })?;
            writeln!(out, "{line}")?;
        } else {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let head: Vec<String> = v.iter().take(4).map(|x| format!("{x:.4}")).collect();
            writeln!(
                out,
                "{text:?}: {} dims, norm {norm:.3}, [{}, …]",
                v.len(),
                head.join(", ")
            )?;
        }
    }
    tracing::debug!(model = %enc.version(), n = texts.len(), "embedded texts");
    Ok(())
}
