//! `kino embed-text` and `kino models` (the language crate).

use std::path::Path;

use anyhow::Result;

use crate::cli::ModelsAction;
use crate::config::Config;
use crate::error::not_implemented;

/// `kino embed-text`.
pub fn embed_text(_config: &Config, _model: Option<&Path>, _texts: &[String], _json: bool) -> Result<()> {
    Err(not_implemented("embed-text (language branch, issue 4)"))
}

/// `kino models fetch | list`.
pub fn models(_config: &Config, _action: ModelsAction) -> Result<()> {
    Err(not_implemented("models (language branch, issue 4)"))
}
