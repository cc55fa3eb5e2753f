//! What silence and steady noise cost the speech stage, for `scripts/bench
//! speech`: a stream with the energy gate on (as the pipeline runs it) over
//! ten minutes of talk (the clip repeated), of digital silence and of
//! −40 dBFS white noise.
//!
//! ```text
//! speech_cost MODEL_DIR CLIP.wav
//! ```
//!
//! Prints one JSON object: seconds, windows decoded and segments for each,
//! and the silence and noise times as fractions of the talk's.

use std::time::Instant;

use kino_speech::{StreamOptions, Whisper};

mod common;
use common::read_wav;

const TEN_MINUTES: usize = 16_000 * 600;

/// Streams `samples` in 10-second pieces; returns (seconds, windows, segments).
fn run(whisper: &mut Whisper, samples: &[f32]) -> Result<(f64, u64, usize), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let mut stream = whisper.stream(StreamOptions {
        language: Some("en".into()),
        gate: true,
    });
    let mut n = 0;
    for piece in samples.chunks(160_000) {
        n += stream.push(piece)?.len();
    }
    n += stream.finish()?.segments.len();
    Ok((t.elapsed().as_secs_f64(), stream.stats().windows, n))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: speech_cost MODEL_DIR CLIP.wav".into());
    }
    let (clip, rate) = read_wav(std::path::Path::new(&args[2]))?;
    if rate != 16_000 {
        return Err(format!("{}: {rate} Hz, want 16000", args[2]).into());
    }
    let talk: Vec<f32> = clip.iter().copied().cycle().take(TEN_MINUTES).collect();
    let silence = vec![0.0f32; TEN_MINUTES];
    let mut seed = 20261202u64;
    let amp = 10f64.powf(-40.0 / 20.0) * 3f64.sqrt();
    let noise: Vec<f32> = (0..TEN_MINUTES)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0) * amp) as f32
        })
        .collect();
    let mut whisper = Whisper::load(&args[1])?;
    let (talk_s, talk_w, talk_n) = run(&mut whisper, &talk)?;
    let (silence_s, silence_w, silence_n) = run(&mut whisper, &silence)?;
    let (noise_s, noise_w, noise_n) = run(&mut whisper, &noise)?;
    println!(
        "{}",
        serde_json::json!({
            "talk": {"seconds": talk_s, "windows": talk_w, "segments": talk_n},
            "silence": {"seconds": silence_s, "windows": silence_w, "segments": silence_n},
            "noise": {"seconds": noise_s, "windows": noise_w, "segments": noise_n},
            "silence_fraction": silence_s / talk_s,
            "noise_fraction": noise_s / talk_s,
        })
    );
    Ok(())
}
