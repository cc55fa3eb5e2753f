//! The language crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model or encoding text.
///
/// Every variant that concerns a file names that file.
#[derive(Debug, thiserror::Error)]
pub enum LanguageError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A required file of the model directory is absent.
    #[error("{path}: missing ({what})")]
    Missing {
        /// The file that should exist.
        path: PathBuf,
        /// What the file is for.
        what: String,
    },
    /// A file exists but its content is not what a sentence-transformers
    /// BERT-family model directory holds.
    #[error("{path}: {msg}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// The weights file could not be turned into the model (a missing tensor,
    /// a wrong shape).
    #[error("{path}: cannot load the weights: {source}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: candle_core::Error,
    },
    /// The tokenizer failed on an input.
    #[error("tokenizer failed: {0}")]
    Tokenize(String),
    /// The forward pass failed.
    #[error("model inference failed: {0}")]
    Inference(#[from] candle_core::Error),
    /// A caller passed an invalid argument (e.g. a zero window).
    #[error("invalid argument: {0}")]
    Argument(String),
}

impl LanguageError {
    /// True when the error is the caller's fault (a bad argument, a bad or
    /// missing model directory) rather than a runtime failure.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            LanguageError::Missing { .. } | LanguageError::Invalid { .. } | LanguageError::Argument(_)
        )
    }
}
