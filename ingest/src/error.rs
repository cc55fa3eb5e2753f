//! The error type of the ingest crate: every variant names the file and the problem.

use std::path::PathBuf;

/// What went wrong while probing, decoding, reading subtitles, hashing or watching.
///
/// Every variant carries the path of the file concerned, so that the message
/// alone tells a user which file is bad and why.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// The file exists but may not be read.
    #[error("{}: permission denied", path.display())]
    PermissionDenied {
        /// The file.
        path: PathBuf,
    },
    /// The file has zero bytes.
    #[error("{}: empty file (0 bytes)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// FFmpeg does not recognise the file as media.
    #[error("{}: not a media file FFmpeg can read ({detail})", path.display())]
    NotMedia {
        /// The file.
        path: PathBuf,
        /// FFmpeg's reason.
        detail: String,
    },
    /// The file has no video stream (for example an audio-only file).
    #[error("{}: no video stream{}", path.display(), if *audio_only { " (audio only)" } else { "" })]
    NoVideo {
        /// The file.
        path: PathBuf,
        /// True when the file has an audio stream.
        audio_only: bool,
    },
    /// The video's dimensions are zero or beyond what kino decodes.
    #[error("{}: absurd video dimensions {width}x{height} (limit {max_side} px per side)", path.display())]
    AbsurdDimensions {
        /// The file.
        path: PathBuf,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The largest side accepted.
        max_side: u32,
    },
    /// The file is truncated or its data is corrupt so that nothing (more) could be decoded.
    #[error("{}: truncated or corrupt media: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was seen.
        detail: String,
    },
    /// Decoding took more time or frames than its budget allows.
    #[error("{}: decode budget exceeded: {detail}", path.display())]
    BudgetExceeded {
        /// The file.
        path: PathBuf,
        /// Which budget, and how much was used.
        detail: String,
    },
    /// The options given are not usable (for example `fps <= 0`).
    #[error("{}: invalid options: {detail}", path.display())]
    InvalidOptions {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A subtitle file could not be read at all.
    #[error("{}: unreadable subtitles: {detail}", path.display())]
    Subtitle {
        /// The subtitle file (or the video holding the stream).
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// An FFmpeg call failed in a way not covered above.
    #[error("{}: {context}: {source}", path.display())]
    Ffmpeg {
        /// The file.
        path: PathBuf,
        /// What kino was doing.
        context: &'static str,
        /// FFmpeg's error.
        source: ffmpeg_next::Error,
    },
    /// An I/O error other than not-found or permission denied.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The folder watcher failed.
    #[error("{}: watcher: {detail}", path.display())]
    Watch {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl IngestError {
    /// Classifies an I/O error on `path` (not found, permission denied, other).
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        let path = path.into();
        match err.kind() {
            std::io::ErrorKind::NotFound => IngestError::NotFound { path },
            std::io::ErrorKind::PermissionDenied => IngestError::PermissionDenied { path },
            _ => IngestError::Io { path, source: err },
        }
    }

    /// True when the error is caused by the input (a bad file or bad options)
    /// rather than by the machine; the CLI exits 2 for these.
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            IngestError::Io { .. } | IngestError::Watch { .. } | IngestError::Ffmpeg { .. }
        )
    }

    /// The file this error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            IngestError::NotFound { path }
            | IngestError::PermissionDenied { path }
            | IngestError::Empty { path }
            | IngestError::NotMedia { path, .. }
            | IngestError::NoVideo { path, .. }
            | IngestError::AbsurdDimensions { path, .. }
            | IngestError::Corrupt { path, .. }
            | IngestError::BudgetExceeded { path, .. }
            | IngestError::InvalidOptions { path, .. }
            | IngestError::Subtitle { path, .. }
            | IngestError::Ffmpeg { path, .. }
            | IngestError::Io { path, .. }
            | IngestError::Watch { path, .. } => path,
        }
    }
}
