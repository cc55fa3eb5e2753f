//! Helpers shared by the speech crate's integration tests.

use std::path::PathBuf;

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
