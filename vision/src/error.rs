//! Errors of the vision crate: each names the file (when there is one) and the problem.

use std::path::PathBuf;

/// Everything that can go wrong while loading a Swin checkpoint, reading an
/// image or running the model.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `config.json` or `preprocessor_config.json` is malformed or asks for
    /// something this implementation does not support.
    #[error("{path}: bad config: {msg}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The weights file is malformed or lacks a tensor the config implies.
    #[error("{path}: bad weights: {msg}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong (names the tensor).
        msg: String,
    },
    /// An image file could not be decoded (unknown format, truncated, corrupt).
    #[error("{path}: cannot decode image: {msg}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        msg: String,
    },
    /// An image is larger than the decompression-bomb limit.
    #[error("{path}: image is {width}x{height} pixels, over the limit of {limit} pixels (decompression bomb guard)")]
    TooLarge {
        /// The image file.
        path: PathBuf,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// The pixel limit.
        limit: u64,
    },
    /// An input the model cannot take (an empty image, a size the config
    /// cannot handle, images of different sizes in one batch).
    #[error("bad input: {0}")]
    Input(String),
    /// A tensor operation failed at run time.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, VisionError>;
