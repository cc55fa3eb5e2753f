//! `kino models fetch | list | verify | import` (the models crate) and `quantize`.

use anyhow::{Context, Result};
use kino_models::hub::Hub;
use kino_models::{FetchOutcome, Manifest, ModelError, ModelSpec, Reporter};
use kino_store::ModelRecord;
use serde_json::json;

use crate::cli::ModelsAction;
use crate::config::Config;
use crate::error::usage;

/// Runs one `kino models` command.
pub fn run(config: &Config, action: ModelsAction, quiet: bool) -> Result<()> {
    match action {
        ModelsAction::Fetch { names } => fetch(config, &names, quiet),
        ModelsAction::List { json } => list(config, json),
        ModelsAction::Verify { names } => verify(config, &names),
        ModelsAction::Quantize {
            calibrate,
            percentile,
            json,
        } => super::quantize::quantize(config, calibrate, percentile, json, quiet),
        ModelsAction::Import { name, path } => {
            let spec = select(config, std::slice::from_ref(&name))?.remove(0);
            let m = kino_models::import(&spec, &path, &config.model_options()).map_err(classify)?;
            out!(
                "{}: {} installed from {} ({} files, {})",
                spec.alias,
                spec.name,
                path.display(),
                m.files.len(),
                megabytes(m.size())
            );
            record(config, &[(&spec, &m)]);
            Ok(())
        }
    }
}

/// Exit 2 for bad input (an unknown name, a bad file to import), 1 else.
fn classify(e: ModelError) -> anyhow::Error {
    if e.is_bad_input() {
        usage(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
}

/// The models named: defaults or fallbacks (`speech-tiny.en`); all the
/// defaults when none is named.
fn select(config: &Config, names: &[String]) -> Result<Vec<ModelSpec>> {
    let all = config.model_specs();
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|n| kino_models::catalog::find(&all, n).ok_or_else(|| classify(ModelError::UnknownModel(n.clone()))))
        .collect()
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Records installed models in the store's models table, opening the store
/// once (a warning when it cannot be reached: the files are what counts).
fn record(config: &Config, installed: &[(&ModelSpec, &Manifest)]) {
    if installed.is_empty() {
        return;
    }
    let recs: Vec<ModelRecord> = installed
        .iter()
        .map(|(spec, m)| {
            let checksum = m.file(&spec.main_file).map(|f| f.sha256.clone()).unwrap_or_default();
            ModelRecord {
                name: spec.name.clone(),
                kind: spec.kind.as_str().into(),
                version: format!("{}@{}", spec.name, &checksum[..checksum.len().min(12)]),
                checksum,
                source: format!("{} ({})", m.source, m.revision),
                path: config.models.join(&spec.name).display().to_string(),
                updated_ms: 0,
            }
        })
        .collect();
    let result = super::runtime().and_then(|rt| {
        rt.block_on(async {
            let store = kino_store::Store::open(&config.db).await?;
            let mut r = Ok(());
            for rec in &recs {
                r = r.and(store.upsert_model(rec).await);
            }
            store.close().await;
            r.map_err(anyhow::Error::from)
        })
    });
    if let Err(e) = result {
        tracing::warn!("models not recorded in the store: {e:#}");
    }
}

/// `kino models fetch [NAME...]`: installs what is missing; exits 1 when a
/// model could not be installed, after installing what it could.
fn fetch(config: &Config, names: &[String], quiet: bool) -> Result<()> {
    let mut specs = select(config, names)?;
    let opts = config.model_options();
    let hub = Hub::from_env();
    let reporter = Reporter::new(quiet);
    let mut missing: Vec<&'static str> = Vec::new();
    let mut installed: Vec<(ModelSpec, FetchOutcome)> = Vec::new();
    let mut i = 0;
    while i < specs.len() {
        let spec = specs[i].clone();
        i += 1;
        match kino_models::fetch(&spec, &opts, &hub, &reporter) {
            Ok(outcome) => {
                let m = outcome.manifest();
                let what = match outcome {
                    FetchOutcome::Present(_) => "present",
                    FetchOutcome::Installed(_) => "installed",
                };
                if !quiet {
                    out!(
                        "{}: {} {what} ({}, {} files, {}) at {}",
                        spec.alias,
                        spec.name,
                        m.source,
                        m.files.len(),
                        megabytes(m.size()),
                        opts.dir(&spec).display()
                    );
                }
                installed.push((spec, outcome));
            }
            Err(e) => {
                say!(
                    "kino: {}: {} not installed: {e}\n  {}",
                    spec.alias,
                    spec.name,
                    kino_models::install::by_hand_hint(&spec, &opts)
                );
                missing.push(spec.alias);
                // A model with a fallback (speech: tiny.en): try that next.
                for f in kino_models::catalog::fallbacks() {
                    if f.fallback_for == Some(spec.alias) && !specs.iter().any(|s| s.alias == f.alias) {
                        say!("kino: {}: trying the fallback {} ({})", spec.alias, f.alias, f.name);
                        specs.push(f);
                    }
                }
            }
        }
    }
    // A missing model whose fallback is in place counts as replaced.
    missing.retain(|alias| !installed.iter().any(|(s, _)| s.fallback_for == Some(*alias)));
    let manifests: Vec<(&ModelSpec, &Manifest)> = installed.iter().map(|(s, o)| (s, o.manifest())).collect();
    record(config, &manifests);
    if !missing.is_empty() {
        anyhow::bail!(
            "{} of {} models not installed ({}); the rest are in place",
            missing.len(),
            specs.len(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// `kino models list [--json]`.
fn list(config: &Config, json_out: bool) -> Result<()> {
    let opts = config.model_options();
    let rows: Vec<serde_json::Value> = config
        .model_specs()
        .iter()
        .map(|spec| {
            let st = kino_models::status(spec, &opts);
            let m = st.manifest.as_ref();
            json!({
                "name": spec.name,
                "alias": spec.alias,
                "kind": spec.kind.as_str(),
                "present": st.present,
                "path": st.dir.display().to_string(),
                "source": m.map(|m| m.source.clone()).unwrap_or_else(|| spec.source.describe()),
                "revision": m.map(|m| m.revision.clone()),
                "size_bytes": m.map(|m| m.size()),
                "sha256": m.and_then(|m| m.file(&spec.main_file)).map(|f| f.sha256.clone()),
                "files_ok": st.problems.as_ref().map(|p| p.is_empty() && st.present),
                "problems": st.problems.clone().unwrap_or_default(),
            })
        })
        .collect();
    if json_out {
        out!(
            "{}",
            json!({ "models_dir": config.models.display().to_string(), "models": rows })
        );
        return Ok(());
    }
    out!("models in {}", config.models.display());
    for r in &rows {
        let state = match (r["present"].as_bool(), r["files_ok"].as_bool()) {
            (Some(true), Some(true)) => "present".to_string(),
            (Some(true), None) => "present (no manifest: `kino models fetch` adds one)".to_string(),
            (Some(true), Some(false)) | (Some(false), Some(_)) => {
                format!("CHANGED: {}", r["problems"])
            }
            _ => "missing (`kino models fetch`)".to_string(),
        };
        let size = r["size_bytes"].as_u64().map(megabytes).unwrap_or_else(|| "-".into());
        out!(
            "  {:<12} {:<42} {:<9} {}  source: {}",
            r["alias"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or(""),
            size,
            state,
            r["source"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}

/// `kino models verify [NAME...]`: re-hashes every file; exits 1 when a
/// file no longer matches or a named model is missing.
fn verify(config: &Config, names: &[String]) -> Result<()> {
    let opts = config.model_options();
    let mut bad = 0;
    for spec in select(config, names)? {
        let st = kino_models::status(&spec, &opts);
        let Some(m) = st.manifest else {
            if st.present {
                out!(
                    "{}: no manifest to verify against (run `kino models fetch` to add one)",
                    spec.alias
                );
            } else {
                out!("{}: missing", spec.alias);
                if !names.is_empty() {
                    bad += 1;
                }
            }
            continue;
        };
        let mismatches = m
            .verify(&st.dir)
            .with_context(|| format!("verifying {}", st.dir.display()))?;
        if mismatches.is_empty() {
            out!("{}: ok ({} files, {})", spec.alias, m.files.len(), megabytes(m.size()));
        } else {
            bad += 1;
            for x in mismatches {
                out!("{}: {}: {}", spec.alias, st.dir.join(&x.path).display(), x.what);
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} models do not match their manifests: `kino models fetch` installs them again");
    }
    Ok(())
}
