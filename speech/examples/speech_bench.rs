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

mod common;
use common::read_wav;

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
    if std::env::var("KINO_BENCH_PRECISION").as_deref() == Ok("int8") {
        whisper.quantize_encoder();
    }
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
