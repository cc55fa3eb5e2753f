//! `kino probe`, `kino frames`, `kino subtitles` (the ingest crate).

use std::path::Path;

use anyhow::Result;

use crate::cli::SampleMode;
use crate::error::not_implemented;

/// `kino probe FILE`.
pub fn probe(_file: &Path, _json: bool) -> Result<()> {
    Err(not_implemented("probe (decoding, issue 3)"))
}

/// `kino frames FILE --fps F --out DIR`.
pub fn frames(_file: &Path, _fps: f64, _sample: SampleMode, _out: &Path, _json: bool) -> Result<()> {
    Err(not_implemented("frames (decoding, issue 3)"))
}

/// `kino subtitles FILE`.
pub fn subtitles(_file: &Path, _json: bool) -> Result<()> {
    Err(not_implemented("subtitles (subtitle parsing, issue 3)"))
}
