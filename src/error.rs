//! Exit-code classification: bad usage or bad input is exit 2, anything else exit 1.

use std::fmt;

/// An error caused by the user's input (a bad flag value, a bad file, a bad
/// URL). `main` exits with code 2 for it.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Builds an `anyhow::Error` that exits with code 2.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The exit code for an error: 2 when any cause is a [`UsageError`] or a
/// store URL error, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return 2;
        }
        if let Some(kino_store::StoreError::BadUrl { .. }) = cause.downcast_ref::<kino_store::StoreError>() {
            return 2;
        }
    }
    1
}
