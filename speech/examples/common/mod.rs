//! What the speech examples share.

use std::path::Path;

/// A 16-bit PCM mono WAV file as f32 samples (value / 32768) and its rate.
pub fn read_wav(path: &Path) -> Result<(Vec<f32>, u32), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(format!("{}: not a WAV file", path.display()));
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let (mut pos, mut rate, mut samples) = (12, 0, None);
    while pos + 8 <= bytes.len() {
        let (id, len) = (&bytes[pos..pos + 4], u32_at(pos + 4) as usize);
        let body = pos + 8;
        if id == b"fmt " {
            if u16_at(body) != 1 || u16_at(body + 2) != 1 || u16_at(body + 14) != 16 {
                return Err(format!("{}: not 16-bit PCM mono", path.display()));
            }
            rate = u32_at(body + 4);
        } else if id == b"data" {
            let data = &bytes[body..(body + len).min(bytes.len())];
            samples = Some(
                data.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
                    .collect(),
            );
        }
        pos = body + len + (len & 1);
    }
    Ok((
        samples.ok_or_else(|| format!("{}: no data chunk", path.display()))?,
        rate,
    ))
}
