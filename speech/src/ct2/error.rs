//! Errors of the `model.bin` reader: each names the file and the problem.

use std::fmt;
use std::path::PathBuf;

use super::{DType, MAX_BINARY_VERSION};

/// What can go wrong reading a `model.bin`; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    /// The file could not be opened, inspected or mapped.
    #[error("{}: cannot read the CTranslate2 model: {source}", .path.display())]
    Io {
        /// The model file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file ends before a field or a variable's data.
    #[error(
        "{}: truncated CTranslate2 model: {what} needs {needed} bytes at offset {offset}, the file has {len}",
        .path.display()
    )]
    Truncated {
        /// The model file.
        path: PathBuf,
        /// The field being read.
        what: String,
        /// Where it starts.
        offset: usize,
        /// How many bytes it needs.
        needed: usize,
        /// The file's length.
        len: usize,
    },
    /// The binary version is not one this reader knows.
    #[error(
        "{}: unsupported CTranslate2 binary version {version} (this reader knows 1 to {MAX_BINARY_VERSION})",
        .path.display()
    )]
    Version {
        /// The model file.
        path: PathBuf,
        /// The version found in the header.
        version: u32,
    },
    /// A variable's dtype id (or, before version 4, its item size) is unknown.
    #[error("{}: variable {name:?} has an unknown data type ({what})", .path.display())]
    DType {
        /// The model file.
        path: PathBuf,
        /// The variable.
        name: String,
        /// What was found, e.g. `type id 9`.
        what: String,
    },
    /// A variable's byte count does not match its shape and dtype.
    #[error(
        "{}: variable {name:?} of shape {shape:?} and type {dtype} needs {expected} bytes, the file says {actual}",
        .path.display()
    )]
    Size {
        /// The model file.
        path: PathBuf,
        /// The variable.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Its dtype.
        dtype: DType,
        /// Bytes the shape and dtype need (`None` when that overflows).
        expected: ByteCount,
        /// Bytes recorded in the file.
        actual: usize,
    },
    /// A name or the spec name is not UTF-8.
    #[error("{}: {what} at offset {offset} is not valid UTF-8", .path.display())]
    Utf8 {
        /// The model file.
        path: PathBuf,
        /// The field.
        what: String,
        /// Where it starts.
        offset: usize,
    },
    /// Two variables (or a variable and an alias) share a name.
    #[error("{}: the name {name:?} is defined twice", .path.display())]
    Duplicate {
        /// The model file.
        path: PathBuf,
        /// The name.
        name: String,
    },
    /// An alias names a target that is neither a variable nor an earlier alias.
    #[error("{}: alias {alias:?} points to {target:?}, which is not a variable", .path.display())]
    DanglingAlias {
        /// The model file.
        path: PathBuf,
        /// The alias.
        alias: String,
        /// Its target.
        target: String,
    },
    /// Bytes remain after the last field.
    #[error("{}: {extra} unexpected bytes after the end of the CTranslate2 model", .path.display())]
    Trailing {
        /// The model file.
        path: PathBuf,
        /// How many.
        extra: usize,
    },
    /// No variable or alias has this name.
    #[error("{}: no variable {name:?} in the CTranslate2 model", .path.display())]
    Missing {
        /// The model file.
        path: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// A quantized tensor has no usable `<name>_scale`.
    #[error("{}: variable {name:?} ({dtype}, shape {shape:?}) cannot be dequantized: {problem}", .path.display())]
    Scale {
        /// The model file.
        path: PathBuf,
        /// The quantized variable.
        name: String,
        /// Its dtype.
        dtype: DType,
        /// Its shape.
        shape: Vec<usize>,
        /// What is wrong with the scale.
        problem: String,
    },
}

/// A byte count that may have overflowed (shown as "more than usize::MAX").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCount(pub Option<usize>);

impl fmt::Display for ByteCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "more than {}", usize::MAX),
        }
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Ct2Error>;
