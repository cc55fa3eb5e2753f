//! Helpers shared by the speech crate's integration tests.
#![allow(dead_code)] // each test binary uses a part

use std::path::{Path, PathBuf};

use kino_speech::Whisper;

/// `$KINO_MODELS`, else `$KINO_HOME/models`, else
/// `$XDG_DATA_HOME/kino/models`, else `~/.local/share/kino/models`: where
/// kino installs models.
pub fn models_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = var("KINO_MODELS") {
        return d;
    }
    if let Some(h) = var("KINO_HOME") {
        return h.join("models");
    }
    if let Some(x) = var("XDG_DATA_HOME") {
        return x.join("kino/models");
    }
    var("HOME").unwrap_or_default().join(".local/share/kino/models")
}

/// The default speech model, loaded (fails, not skips, when absent).
pub fn load() -> Whisper {
    let dir = models_dir().join("Systran/faster-whisper-base");
    assert!(
        dir.join("model.bin").is_file(),
        "{} is missing: install the speech model with `kino models fetch speech`",
        dir.display()
    );
    Whisper::load(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// A 16-bit PCM mono WAV file as f32 samples (value / 32768) and its rate.
pub fn read_wav(path: &Path) -> (Vec<f32>, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(&bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE", "not a WAV file");
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let (mut pos, mut rate, mut samples) = (12, 0, None);
    while pos + 8 <= bytes.len() {
        let (id, len) = (&bytes[pos..pos + 4], u32_at(pos + 4) as usize);
        let body = pos + 8;
        if id == b"fmt " {
            assert_eq!(u16_at(body), 1, "PCM");
            assert_eq!(u16_at(body + 2), 1, "mono");
            rate = u32_at(body + 4);
            assert_eq!(u16_at(body + 14), 16, "16-bit");
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
    (samples.expect("a data chunk"), rate)
}
