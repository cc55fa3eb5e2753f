//! `kino embed-image` (the vision crate).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::config::Config;
use crate::error::not_implemented;

/// `kino embed-image`.
pub fn embed_image(_config: &Config, _model: Option<&Path>, _images: &[PathBuf], _top: usize, _json: bool) -> Result<()> {
    Err(not_implemented("embed-image (vision branch, issue 5)"))
}
