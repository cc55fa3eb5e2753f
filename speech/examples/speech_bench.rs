//! Times kino's Whisper on one WAV file, for `scripts/bench speech`.
//!
//! ```text
//! speech_bench MODEL_DIR CLIP.wav [LANGUAGE] [REPEATS]
//! ```
//!
//! `CLIP.wav`: 16-bit PCM, mono, 16 kHz. Loads the model, warms up on the
//! first 5 seconds, then transcribes the whole clip `REPEATS` times (one
//! by default) and prints one JSON object: audio seconds, the best wall time, audio
//! seconds per second, the threads (`RAYON_NUM_THREADS`) and the transcript.

use std::path::Path;
use std::time::Instant;

/// A 16-bit PCM mono WAV file as f32 samples (value / 32768) and its rate.
fn read_wav(path: &Path) -> Result<(Vec<f32>, u32), String> {
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: speech_bench MODEL_DIR CLIP.wav [LANGUAGE] [REPEATS]".into());
    }
    let language = args
        .get(3)
        .map(String::as_str)
        .filter(|l| !l.is_empty() && *l != "auto");
    let repeats: usize = args.get(4).map(|r| r.parse()).transpose()?.unwrap_or(1).max(1);
    let (samples, rate) = read_wav(Path::new(&args[2]))?;
    if rate != 16_000 {
        return Err(format!("{}: {rate} Hz, want 16000", args[2]).into());
    }
    let t = Instant::now();
    let mut whisper = kino_speech::Whisper::load(&args[1])?;
    let load_s = t.elapsed().as_secs_f64();
    whisper.transcribe(&samples[..samples.len().min(5 * 16_000)], language)?;

    let mut best = f64::INFINITY;
    let mut transcript = None;
    for _ in 0..repeats {
        let t = Instant::now();
        let out = whisper.transcribe(&samples, language)?;
        best = best.min(t.elapsed().as_secs_f64());
        transcript = Some(out);
    }
    let transcript = transcript.expect("at least one run");
    let audio_s = samples.len() as f64 / 16_000.0;
    let text: String = transcript.segments.iter().map(|s| s.text.as_str()).collect();
    let threads = rayon::current_num_threads();
    println!(
        "{}",
        serde_json::json!({
            "audio_s": audio_s,
            "wall_s": (best * 1000.0).round() / 1000.0,
            "audio_s_per_s": (audio_s / best * 100.0).round() / 100.0,
            "load_s": (load_s * 1000.0).round() / 1000.0,
            "threads": threads,
            "language": transcript.language,
            "segments": transcript.segments.len(),
            "text": text.trim(),
        })
    );
    Ok(())
}
