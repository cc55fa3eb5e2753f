//! The speech stage: a file's audio → Whisper → timed cues with
//! `source = "speech"`.
//!
//! In: the file's path, the speech model ([`Speech`]), the language (the
//! video's override, else detected). Out: [`Heard`], cues on the file's
//! timeline plus warnings. The audio is decoded ([`AudioDecoder`], mono
//! 16 kHz chunks) on the job's thread and pushed into a Whisper
//! [`Stream`](kino_speech::Stream) with the energy gate on, so memory holds
//! one 30-second window whatever the length of the file, and silence costs
//! next to nothing. A gap in the audio's timestamps is filled with silence
//! (which the gate skips), so cue times stay on the file's timeline.
//!
//! Nothing here fails a job: no audio stream means no speech cues; an
//! unreadable audio stream, or one that stops part-way, is a warning and the
//! cues heard until then are kept.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use kino_ingest::{AudioDecoder, AudioOptions, Cue};
use kino_speech::{Segment, StreamOptions, StreamStats};

use super::IndexError;
use crate::engines::Speech;

/// The source of the cues this stage makes.
pub(crate) const SOURCE: &str = "speech";

/// Samples per second of the audio Whisper takes.
const RATE: i64 = 16_000;
/// Silence is pushed in pieces of this many samples (30 s) to fill gaps.
const GAP_PIECE: usize = 30 * RATE as usize;

/// What the speech stage heard in one file.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    /// The speech cues, in time order.
    pub cues: Vec<Cue>,
    /// The language (given or detected); `None` when nothing was decoded.
    pub language: Option<String>,
    /// Problems that did not stop indexing.
    pub warnings: Vec<String>,
    /// Whether the file has an audio stream that could be opened.
    pub had_audio: bool,
    /// The audio stream could not be opened, or nothing of it decoded.
    pub audio_error: bool,
    /// What the recogniser did.
    pub stats: StreamStats,
}

/// Transcribes `path`'s best audio stream (`gate`: with the energy gate),
/// the model running on `pool` (else on rayon's global pool). `progress` is
/// called with the position reached, in ms.
pub(crate) fn hear(
    speech: &Speech,
    path: &Path,
    language: Option<&str>,
    gate: bool,
    pool: Option<&rayon::ThreadPool>,
    cancel: &AtomicBool,
    progress: &dyn Fn(i64),
) -> Result<Heard, IndexError> {
    let mut heard = Heard::default();
    let opts = AudioOptions {
        chunk_ms: 10_000,
        ..AudioOptions::default()
    };
    let decoder = match AudioDecoder::open(path, &opts) {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(heard),
        Err(e) => {
            heard.audio_error = true;
            heard
                .warnings
                .push(format!("audio stream unreadable, speech not indexed: {e}"));
            return Ok(heard);
        }
    };
    heard.had_audio = true;
    let mut whisper = speech.whisper.lock().unwrap_or_else(|p| p.into_inner());
    let language = match language {
        Some(l) if !whisper.knows_language(l) => {
            heard.warnings.push(format!(
                "language {l:?} set for this file is not one the speech model knows: detected instead"
            ));
            None
        }
        other => other.map(str::to_string),
    };
    let mut stream = whisper.stream(StreamOptions { language, gate });
    // Stream time 0 is the first chunk's start on the file's timeline.
    let mut origin: Option<i64> = None;
    let mut pushed: i64 = 0; // samples
    let mut segments: Vec<Segment> = Vec::new();
    let mut failed = false;
    for chunk in decoder {
        if cancel.load(Ordering::Relaxed) {
            return Err(IndexError::Cancelled);
        }
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) if pushed == 0 => {
                heard.audio_error = true;
                heard
                    .warnings
                    .push(format!("audio stream unreadable, speech not indexed: {e}"));
                break;
            }
            Err(e) => {
                let at = origin.unwrap_or(0) + pushed * 1000 / RATE;
                heard.warnings.push(format!(
                    "audio stream stopped at {:.1} s, speech indexed up to there: {e}",
                    at as f64 / 1000.0
                ));
                break;
            }
        };
        let t0 = *origin.get_or_insert(chunk.start_ms);
        // A gap in the audio's timestamps: silence up to where this chunk plays.
        let mut gap = ((chunk.start_ms - t0) * RATE / 1000 - pushed).max(0) as usize;
        let mut result = Ok(());
        while gap > 0 && result.is_ok() {
            let n = gap.min(GAP_PIECE);
            result = on(pool, || stream.push(&vec![0.0; n])).map(|s| segments.extend(s));
            pushed += n as i64;
            gap -= n;
        }
        let result = result.and_then(|_| on(pool, || stream.push(&chunk.samples)).map(|s| segments.extend(s)));
        pushed += chunk.samples.len() as i64;
        if let Err(e) = result {
            heard.warnings.push(format!(
                "speech recognition failed, speech indexed up to {} s: {e}",
                stream.position_ms() / 1000
            ));
            failed = true;
            break;
        }
        progress(t0 + stream.position_ms() as i64);
    }
    let language = if failed {
        stream.language().map(str::to_string)
    } else {
        match on(pool, || stream.finish()) {
            Ok(t) => {
                segments.extend(t.segments);
                Some(t.language).filter(|l| !l.is_empty())
            }
            Err(e) => {
                heard
                    .warnings
                    .push(format!("speech recognition failed at the end of the audio: {e}"));
                None
            }
        }
    };
    heard.stats = stream.stats();
    let origin = origin.unwrap_or(0);
    heard.cues = segments
        .into_iter()
        .filter_map(|s| {
            let text = s.text.trim().to_string();
            if text.is_empty() {
                return None;
            }
            let start_ms = origin + s.start_ms as i64;
            Some(Cue {
                start_ms,
                end_ms: (origin + s.end_ms as i64).max(start_ms + 1),
                text,
                source: SOURCE.into(),
                origin: SOURCE.into(),
                language: language.clone(),
            })
        })
        .collect();
    heard.language = language;
    Ok(heard)
}

/// Runs `f` on `pool` when there is one.
fn on<R: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> R + Send) -> R {
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// Whether the subtitle cues cover the file (at least half of its duration):
/// then `speech = "auto"` does not transcribe it.
pub(crate) fn subtitles_cover(cues: &[Cue], duration_ms: i64) -> bool {
    if cues.is_empty() || duration_ms <= 0 {
        return false;
    }
    let first = cues.iter().map(|c| c.start_ms).min().unwrap_or(0);
    let last = cues.iter().map(|c| c.end_ms).max().unwrap_or(0);
    (last - first) * 2 >= duration_ms
}

/// Drops the speech cues that overlap a subtitle cue (subtitles win where
/// both cover the same speech).
pub(crate) fn drop_covered(speech: Vec<Cue>, subtitles: &[Cue]) -> Vec<Cue> {
    speech
        .into_iter()
        .filter(|s| !subtitles.iter().any(|c| c.start_ms < s.end_ms && s.start_ms < c.end_ms))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(start_ms: i64, end_ms: i64, source: &str) -> Cue {
        Cue {
            start_ms,
            end_ms,
            text: "x".into(),
            source: source.into(),
            origin: String::new(),
            language: None,
        }
    }

    #[test]
    fn subtitles_cover_a_file_when_they_span_half_of_it() {
        assert!(!subtitles_cover(&[], 60_000));
        assert!(!subtitles_cover(&[cue(0, 10_000, "subtitle")], 60_000));
        assert!(subtitles_cover(
            &[cue(1_000, 5_000, "subtitle"), cue(28_000, 31_000, "subtitle")],
            60_000
        ));
    }

    #[test]
    fn speech_under_a_subtitle_is_dropped() {
        let subs = [cue(10_000, 12_000, "subtitle")];
        let kept = drop_covered(
            vec![
                cue(0, 9_000, "speech"),
                cue(11_000, 13_000, "speech"),
                cue(12_000, 14_000, "speech"),
            ],
            &subs,
        );
        let times: Vec<_> = kept.iter().map(|c| (c.start_ms, c.end_ms)).collect();
        assert_eq!(times, [(0, 9_000), (12_000, 14_000)]);
    }
}
