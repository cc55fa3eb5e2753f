//! `kino embed-image` (the vision crate).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use kino_vision::{load_image, Swin, VisionError};

use crate::config::Config;
use crate::error::usage;

/// Images per forward pass.
const BATCH: usize = 8;

/// Maps a vision error to exit code 2 (bad input: a bad image, model
/// directory or config) or 1 (a failure while computing).
fn classify(err: VisionError) -> anyhow::Error {
    match err {
        VisionError::Tensor(_) => anyhow::Error::new(err),
        other => usage(other.to_string()),
    }
}

/// `kino embed-image [--model DIR] IMAGE... [--top N] [--json]`: the Swin
/// pooled embedding and top labels of each image. With `--json`, one
/// `{"path","embedding":[…],"labels":[[name,p],…]}` per line.
pub fn embed_image(config: &Config, model: Option<&Path>, images: &[PathBuf], top: usize, json: bool) -> Result<()> {
    let dir = model
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config.models.join(&config.vision_model));
    if !kino_vision::is_model_dir(&dir) {
        return Err(usage(format!(
            "{}: no vision model here (need config.json and model.safetensors of a Hugging Face Swin checkpoint)",
            dir.display()
        )));
    }
    let mut swin = Swin::load(&dir, &kino_vision::Device::Cpu).map_err(classify)?;
    swin.set_top_k(top);
    // Decode every image first so that a bad file fails the command before any output.
    let mut decoded = Vec::with_capacity(images.len());
    for path in images {
        decoded.push(load_image(path).map_err(classify)?.to_rgb8());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (paths, chunk) in images.chunks(BATCH).zip(decoded.chunks(BATCH)) {
        let feats = swin.embed(chunk).map_err(classify)?;
        for (path, f) in paths.iter().zip(feats) {
            if json {
                let line = serde_json::json!({
                    "path": path.display().to_string(),
                    "embedding": f.pooled,
                    "labels": f.labels,
                });
                writeln!(out, "{line}")?;
            } else {
                let labels: Vec<String> = f.labels.iter().map(|(n, p)| format!("{n} ({p:.3})")).collect();
                writeln!(
                    out,
                    "{}: {} dims; {}",
                    path.display(),
                    f.pooled.len(),
                    labels.join(", ")
                )?;
            }
        }
    }
    Ok(())
}
