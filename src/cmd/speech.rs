//! `kino transcribe`: the speech stage of the pipeline on one file.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use anyhow::Result;

use crate::config::{Config, SpeechMode};
use crate::engines::{load_speech, speech_for, Speech};
use crate::error::usage;
use crate::pipeline::speech::{hear, Heard};

/// `kino transcribe FILE [--language L] [--model DIR] [--no-gate] [--json | --srt]`.
#[allow(clippy::too_many_arguments)]
pub fn transcribe(
    config: &Config,
    file: &Path,
    language: Option<&str>,
    model: Option<&Path>,
    gate: bool,
    json: bool,
    srt: bool,
    quiet: bool,
) -> Result<()> {
    if !file.exists() {
        return Err(usage(format!("{}: no such file", file.display())));
    }
    let speech = match model {
        Some(dir) => {
            let (whisper, version) =
                load_speech(dir, &dir.display().to_string(), config.precision)?.map_err(anyhow::Error::msg)?;
            Speech {
                whisper: Mutex::new(whisper),
                mode: config.speech,
                version,
            }
        }
        // The configured model (or its fallback), whatever `speech` says
        // for the pipeline: this command was asked to transcribe.
        None => {
            let mut config = config.clone();
            config.speech = SpeechMode::Always;
            speech_for(&config)?.map_err(anyhow::Error::msg)?
        }
    };
    if let Some(l) = language {
        let whisper = speech.whisper.lock().unwrap_or_else(|p| p.into_inner());
        if !whisper.knows_language(l) {
            return Err(usage(format!(
                "--language {l:?}: not a language of this model (one of: {})",
                whisper.languages().join(", ")
            )));
        }
    }
    let duration_ms = kino_ingest::probe(file).map(|i| i.duration_ms).unwrap_or(0);
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(duration_ms.max(1) as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("transcribing {bar:30} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    };
    let progress = |ms: i64| {
        bar.set_position(ms.max(0) as u64);
        bar.set_message(format!("{} / {}", clock(ms), clock(duration_ms)));
    };
    let cancel = AtomicBool::new(false);
    let heard = hear(&speech, file, language, gate, None, &cancel, &progress).map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_and_clear();
    let Heard {
        cues,
        language,
        warnings,
        had_audio,
        audio_error,
        ..
    } = heard;
    if !had_audio || audio_error {
        return Err(usage(match warnings.first() {
            Some(w) => format!("{}: {w}", file.display()),
            None => format!("{}: no audio stream: nothing to transcribe", file.display()),
        }));
    }
    for w in &warnings {
        say!("warning: {}: {w}", file.display());
    }
    if json {
        let cues: Vec<_> = cues
            .iter()
            .map(|c| {
                serde_json::json!({
                    "start_ms": c.start_ms,
                    "end_ms": c.end_ms,
                    "text": c.text,
                    "source": c.source,
                })
            })
            .collect();
        out!(
            "{}",
            serde_json::to_string(&serde_json::json!({
                "language": language,
                "cues": cues,
                "warnings": warnings,
            }))?
        );
    } else if srt {
        for (i, c) in cues.iter().enumerate() {
            out!("{}", i + 1);
            out!("{} --> {}", srt_time(c.start_ms), srt_time(c.end_ms));
            out!("{}", c.text);
            out!("");
        }
    } else {
        if let Some(l) = &language {
            say!("language: {l}");
        }
        for c in &cues {
            out!("{} --> {}  {}", clock(c.start_ms), clock(c.end_ms), c.text);
        }
    }
    Ok(())
}

/// `H:MM:SS.mmm`.
fn clock(ms: i64) -> String {
    let (h, m, sec, milli) = hms(ms);
    format!("{h}:{m:02}:{sec:02}.{milli:03}")
}

/// SRT's `HH:MM:SS,mmm`.
fn srt_time(ms: i64) -> String {
    let (h, m, sec, milli) = hms(ms);
    format!("{h:02}:{m:02}:{sec:02},{milli:03}")
}

/// Hours, minutes, seconds and milliseconds of `ms` (negative: 0).
fn hms(ms: i64) -> (i64, i64, i64, i64) {
    let ms = ms.max(0);
    (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_for_people_and_for_srt() {
        assert_eq!(clock(3_723_456), "1:02:03.456");
        assert_eq!(srt_time(3_723_456), "01:02:03,456");
        assert_eq!(srt_time(-5), "00:00:00,000");
    }
}
