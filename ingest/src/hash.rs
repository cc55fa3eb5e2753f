//! Content hashing: blake3 over the whole file, streamed in 1 MiB reads.

use std::io::Read;
use std::path::Path;

use crate::IngestError;

/// The blake3 hash of the file's bytes, as 64 lowercase hex digits.
///
/// Memory stays at one 1 MiB buffer whatever the file size. Two files with the same
/// content have the same hash wherever they live, so a moved or renamed video is
/// recognised as the same content.
pub fn content_hash(path: &Path) -> Result<String, IngestError> {
    let mut file = std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
    if file.metadata().map_err(|e| IngestError::io(path, e))?.is_dir() {
        return Err(IngestError::Io {
            path: path.to_owned(),
            source: std::io::Error::other("is a directory"),
        });
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IngestError::io(path, e)),
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}
