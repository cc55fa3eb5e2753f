//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in fusion.
#[derive(Debug, thiserror::Error)]
pub enum FusionError {
    /// A configuration value is out of range.
    #[error("invalid fusion configuration: {0}")]
    Config(String),
    /// The segment has nothing to fuse: no cue, and no visual token (no
    /// label, and raw grids are gated off or absent). Not a fault of the
    /// data: such a segment is simply not searchable by meaning.
    #[error("a segment with neither cue embeddings nor visual tokens cannot be fused")]
    NothingToFuse,
    /// Frames or cues were pushed to the streaming builder out of time order.
    #[error("{what} at {at_ms} ms arrived after one at {previous_ms} ms: the segment builder needs time order")]
    OutOfOrder {
        /// `frame` or `cue`.
        what: &'static str,
        /// The time of the offending item.
        at_ms: i64,
        /// The time of the item before it.
        previous_ms: i64,
    },
    /// Data pushed after [`crate::SegmentBuilder::finish`] or after the stream was declared done.
    #[error("{0} pushed after its stream was declared finished")]
    Finished(&'static str),
    /// Vectors of different widths were combined.
    #[error("dimension mismatch in {context}: expected {expected}, got {got}")]
    Dimension {
        /// What was being combined.
        context: String,
        /// The width expected.
        expected: usize,
        /// The width found.
        got: usize,
    },
    /// A weights file could not be read or does not fit the configuration.
    #[error("fusion weights {path}: {message}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A kept-features file is unreadable or malformed.
    #[error("features file {path}: {message}")]
    Features {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Training cannot go on (too little data, a bad checkpoint, …).
    #[error("training: {0}")]
    Train(String),
    /// The text embedder failed.
    #[error("text embedder failed: {0}")]
    Embedder(#[source] anyhow::Error),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}
