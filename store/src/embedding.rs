//! Compact embedding storage: little-endian `f32` bytes.

use crate::{Result, StoreError};

/// Encodes a vector as little-endian `f32` bytes.
pub fn encode_f32(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Decodes little-endian `f32` bytes; the length must be a multiple of 4
/// and, when `dim` is given, equal to `dim * 4`.
pub fn decode_f32(bytes: &[u8], dim: Option<usize>) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) || dim.map(|d| d * 4 != bytes.len()).unwrap_or(false) {
        return Err(StoreError::Corrupt(format!(
            "embedding of {} bytes does not hold {} f32 values",
            bytes.len(),
            dim.map(|d| d.to_string()).unwrap_or_else(|| "whole".into())
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_length_check() {
        let v = vec![1.0f32, -2.5, f32::MIN_POSITIVE, 3.25e8];
        let b = encode_f32(&v);
        assert_eq!(b.len(), 16);
        assert_eq!(decode_f32(&b, Some(4)).unwrap(), v);
        assert!(decode_f32(&b, Some(3)).is_err());
        assert!(decode_f32(&b[..15], None).is_err());
    }
}
