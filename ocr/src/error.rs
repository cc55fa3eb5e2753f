//! What can go wrong, in words that name the file and say what to do.

use std::path::PathBuf;

/// An OCR failure. Every message names the file at fault and the remedy.
#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    /// The ONNX Runtime library is missing, is not a shared library, or is too old.
    #[error(
        "ONNX Runtime could not be loaded from {}: {reason}; install it with \
         `kino models fetch onnxruntime` (or point ORT_DYLIB_PATH at libonnxruntime 1.31 or newer)",
        path.display()
    )]
    Runtime {
        /// The library file tried.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// A model was asked for before [`crate::init_runtime`] succeeded.
    #[error("ONNX Runtime is not initialised: call kino_ocr::init_runtime with the library's path first")]
    NotInitialised,
    /// A model file is absent.
    #[error("{} is missing: install the OCR models with `kino models fetch ocr onnxruntime`", path.display())]
    MissingModel {
        /// The model file expected.
        path: PathBuf,
    },
    /// A model file exists but ONNX Runtime cannot load it.
    #[error(
        "{} could not be loaded ({reason}): the file is damaged or not an ONNX model; \
         reinstall it with `kino models fetch ocr`",
        path.display()
    )]
    Model {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's reason.
        reason: String,
    },
    /// The recogniser has no `character` list in its metadata.
    #[error(
        "{} has no `character` list in its metadata: it is not a PP-OCR recogniser for rapidocr; \
         reinstall it with `kino models fetch ocr`",
        path.display()
    )]
    MissingCharacters {
        /// The recogniser's file.
        path: PathBuf,
    },
    /// Running a model failed.
    #[error("text {stage} failed in ONNX Runtime: {reason}")]
    Inference {
        /// `detection`, `orientation` or `recognition`.
        stage: &'static str,
        /// ONNX Runtime's reason.
        reason: String,
    },
}
