//! The versions of the trained fusion weights, under `<models>/fusion`:
//!
//! ```text
//! fusion/
//!   v1/fusion.safetensors   the weights (kino_fusion::FusionModel::save)
//!   v1/report.json          what `kino train` measured when it made them
//!   v2/…
//!   current                 the version in use ("v2"); absent: the default (identity) weights
//!   history                 adopted versions, oldest first (`kino train --rollback` steps back along it)
//!   train-checkpoint.*      a training run's last checkpoint (resumed after a kill)
//!   last-run.json           what the last run trained on (a run with nothing new stops early)
//! ```
//!
//! `current` is replaced atomically (written beside, then renamed): every
//! process sees the old version or the new one. `kino serve` watches it and
//! swaps the new weights in; videos fused with other weights are then stale.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kino_fusion::{FusionConfig, FusionModel};

/// The weights file of version `name`.
pub fn weights_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name).join("fusion.safetensors")
}

/// The file naming the version in use.
pub fn current_file(dir: &Path) -> PathBuf {
    dir.join("current")
}

/// The version in use (`None`: the default weights).
pub fn current(dir: &Path) -> Option<String> {
    std::fs::read_to_string(current_file(dir))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Loads the version in use for `config`: `Ok(None)` without one.
pub fn load_current(dir: &Path, config: FusionConfig) -> Result<Option<(String, FusionModel)>> {
    let Some(name) = current(dir) else {
        return Ok(None);
    };
    let path = weights_path(dir, &name);
    let model = FusionModel::load(&path, config).with_context(|| format!("loading fusion weights {name}"))?;
    Ok(Some((name, model)))
}

/// Adopted versions, oldest first.
pub fn history(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("history"))
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The next free version name (`v1`, `v2`, …).
pub fn next_version(dir: &Path) -> String {
    let taken = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix('v')?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    format!("v{}", taken + 1)
}

/// Installs `model` as a new version with its `report` and makes it the one
/// in use; returns its name.
pub fn install(dir: &Path, model: &FusionModel, report: &serde_json::Value) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = next_version(dir);
    let vdir = dir.join(&name);
    std::fs::create_dir_all(&vdir).with_context(|| format!("creating {}", vdir.display()))?;
    model.save(&weights_path(dir, &name))?;
    write_atomic(&vdir.join("report.json"), &serde_json::to_string_pretty(report)?)?;
    let mut h = history(dir);
    h.push(name.clone());
    write_atomic(&dir.join("history"), &(h.join("\n") + "\n"))?;
    write_atomic(&current_file(dir), &format!("{name}\n"))?;
    Ok(name)
}

/// Steps back to the version adopted before the one in use (the default
/// weights when there is none); returns `(from, to)` (`None` = default), or
/// `None` when the default weights are already in use.
pub fn rollback(dir: &Path) -> Result<Option<(String, Option<String>)>> {
    let Some(now) = current(dir) else {
        return Ok(None);
    };
    let mut h = history(dir);
    while h.last().is_some_and(|l| *l != now) {
        h.pop();
    }
    h.pop();
    write_atomic(&dir.join("history"), &(h.join("\n") + "\n"))?;
    let to = h.last().cloned();
    match &to {
        Some(v) => write_atomic(&current_file(dir), &format!("{v}\n"))?,
        None => std::fs::remove_file(current_file(dir))
            .with_context(|| format!("removing {}", current_file(dir).display()))?,
    }
    Ok(Some((now, to)))
}

/// The report `kino train` wrote for version `name`.
pub fn report(dir: &Path, name: &str) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join(name).join("report.json")).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_installed_and_rolled_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(current(d), None);
        let base = FusionModel::identity(8, 4, 2).unwrap();
        let one = base.with_pool_projection(&[0.5; 32], &[0.0; 8], 1.0, 1.0).unwrap();
        let two = base.with_pool_projection(&[0.25; 32], &[0.0; 8], 1.0, 0.5).unwrap();
        let v1 = install(d, &one, &serde_json::json!({"recall_at_1": 0.5})).unwrap();
        let v2 = install(d, &two, &serde_json::json!({"recall_at_1": 0.6})).unwrap();
        assert_eq!((v1.as_str(), v2.as_str()), ("v1", "v2"));
        assert_eq!(current(d).as_deref(), Some("v2"));
        let (name, loaded) = load_current(d, base.config()).unwrap().unwrap();
        assert_eq!(name, "v2");
        assert_eq!(
            loaded.version(),
            two.version(),
            "a saved model loads under the same version"
        );
        assert_eq!(report(d, "v1").unwrap()["recall_at_1"], 0.5);
        assert_eq!(rollback(d).unwrap(), Some(("v2".into(), Some("v1".into()))));
        assert_eq!(current(d).as_deref(), Some("v1"));
        assert_eq!(rollback(d).unwrap(), Some(("v1".into(), None)));
        assert_eq!(current(d), None);
        assert_eq!(rollback(d).unwrap(), None);
        assert_eq!(next_version(d), "v3", "names are never reused");
    }
}
