//! Transcription of audio that arrives in pieces, in memory bounded by one
//! window (30 s of samples), whatever the length of the audio.
//!
//! Windows are decoded and advanced exactly as [`Whisper::transcribe`]
//! advances them; each window's features are computed from the samples the
//! stream still holds (see [`crate::mel::log_spectrum`]: equal frame for
//! frame to the whole file's), except that the clamp at (maximum − 8) uses
//! the maximum of the audio seen so far rather than of the whole file (it
//! only touches values 80 dB below the loudest sound).
//!
//! With the energy gate on ([`StreamOptions::gate`], see [`crate::gate`]), a
//! window that holds no loud sound is skipped without running the model, and
//! a window whose sound starts more than a second in starts half a second
//! before it instead: silence costs next to nothing.

use super::decode::{detect_language, Session};
use super::{Result, Segment, Transcript, Whisper, N_FRAMES};
use crate::gate;
use crate::mel::{log_spectrum, normalize, HOP_LENGTH, N_FFT, SAMPLE_RATE};

/// How a [`Stream`] transcribes.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    /// The language (a Whisper code: `en`, `de`, …); `None` detects it on
    /// the first window that is decoded.
    pub language: Option<String>,
    /// Skip what the energy gate finds silent (see [`crate::gate`]).
    pub gate: bool,
}

/// What a stream did, for progress and cost reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Samples received.
    pub samples: u64,
    /// Windows the model decoded.
    pub windows: u64,
    /// Milliseconds of audio the energy gate skipped.
    pub gated_ms: u64,
}

/// A transcription in progress: [`push`](Stream::push) samples as they are
/// decoded, take the segments each call finishes, and [`finish`](Stream::finish)
/// at the end of the audio.
pub struct Stream<'w> {
    w: &'w mut Whisper,
    opts: StreamOptions,
    /// Samples from `buf_start` on.
    buf: Vec<f32>,
    buf_start: usize,
    /// Samples received.
    total: usize,
    /// Start of the next window, in feature frames.
    seek: usize,
    session: Option<Session>,
    /// Largest log-mel value so far.
    max_log: f64,
    stats: StreamStats,
    /// `finish` was called.
    ended: bool,
}

impl std::fmt::Debug for Stream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("opts", &self.opts)
            .field("seek", &self.seek)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<'w> Stream<'w> {
    pub(crate) fn new(w: &'w mut Whisper, opts: StreamOptions) -> Stream<'w> {
        Stream {
            w,
            opts,
            buf: Vec::new(),
            buf_start: 0,
            total: 0,
            seek: 0,
            session: None,
            max_log: f64::NEG_INFINITY,
            stats: StreamStats::default(),
            ended: false,
        }
    }

    /// The language: given, or detected once a window was decoded.
    pub fn language(&self) -> Option<&str> {
        self.session
            .as_ref()
            .map(|s| s.language.as_str())
            .or(self.opts.language.as_deref())
    }

    /// What the stream did so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Where transcription has got to, in milliseconds of audio.
    pub fn position_ms(&self) -> u64 {
        (self.seek * HOP_LENGTH * 1000 / SAMPLE_RATE) as u64
    }

    /// Adds 16 kHz mono samples; returns the segments of the windows they
    /// completed.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<Segment>> {
        self.buf.extend_from_slice(samples);
        self.total += samples.len();
        self.stats.samples += samples.len() as u64;
        self.run(false)
    }

    /// Ends the audio: decodes what is left and returns the language and the
    /// last segments. The language is empty when nothing was decoded and
    /// none was given. Push nothing after it; a second call returns no
    /// more segments.
    pub fn finish(&mut self) -> Result<Transcript> {
        let segments = if self.ended { Vec::new() } else { self.run(true)? };
        self.ended = true;
        Ok(match &self.session {
            Some(s) => Transcript {
                language: s.language.clone(),
                language_probability: s.language_probability,
                segments,
            },
            None => Transcript {
                language: self.opts.language.clone().unwrap_or_default(),
                language_probability: if self.opts.language.is_some() { 1.0 } else { 0.0 },
                segments,
            },
        })
    }

    /// Decodes every window the samples held allow (all of them at the end).
    fn run(&mut self, end: bool) -> Result<Vec<Segment>> {
        let content = self.total / HOP_LENGTH;
        // The whole signal as the reference pads it: 160 zeros appended.
        let signal_len = if end {
            self.buf.resize(self.buf.len() + HOP_LENGTH, 0.0);
            self.total + HOP_LENGTH
        } else {
            self.total
        };
        let mut out = Vec::new();
        loop {
            let size = if end {
                if self.seek >= content {
                    break;
                }
                N_FRAMES.min(content - self.seek)
            } else {
                // A full window and the half FFT its last frame reads.
                if (self.seek + N_FRAMES) * HOP_LENGTH + N_FFT / 2 > self.total {
                    break;
                }
                N_FRAMES
            };
            if self.opts.gate {
                let from = self.seek * HOP_LENGTH - self.buf_start;
                let to = ((self.seek + size) * HOP_LENGTH).min(self.total) - self.buf_start;
                match gate::first_loud(&self.buf[from..to]) {
                    None => {
                        self.skip(size);
                        continue;
                    }
                    // Start the window half a second before the sound.
                    Some(at) if at > SAMPLE_RATE => {
                        self.skip((at - SAMPLE_RATE / 2) / HOP_LENGTH);
                        continue;
                    }
                    Some(_) => {}
                }
            }
            let features = self.features(self.seek, size, signal_len);
            let audio = self.w.encode(&features, size, 0, size)?;
            if self.session.is_none() {
                let (language, p) = match &self.opts.language {
                    Some(l) => (l.clone(), 1.0),
                    // English-only models have nothing to detect.
                    None if !self.w.is_multilingual() => ("en".to_string(), 1.0),
                    // The reference detects on the first 3000 frames of the
                    // padded features: one more than the window when the
                    // audio is shorter than 30 s.
                    None if end && self.seek == 0 && size < N_FRAMES => {
                        let n = size + 1;
                        let f = self.features(0, n, signal_len);
                        let first = self.w.encode(&f, n, 0, n)?;
                        detect_language(self.w, &first)?
                    }
                    None => detect_language(self.w, &audio)?,
                };
                self.session = Some(Session::new(self.w, language, p)?);
            }
            let session = self.session.as_mut().expect("set above");
            let (segments, next) = session.window(self.w, &audio, self.seek, size)?;
            self.stats.windows += 1;
            out.extend(segments);
            self.advance_to(next.max(self.seek + 1));
        }
        Ok(out)
    }

    /// Skips `frames` feature frames that the gate found silent.
    fn skip(&mut self, frames: usize) {
        let frames = frames.max(1);
        self.stats.gated_ms += (frames * HOP_LENGTH * 1000 / SAMPLE_RATE) as u64;
        self.advance_to(self.seek + frames);
    }

    /// Moves the next window to `seek` and drops the samples no frame from
    /// there on reads.
    fn advance_to(&mut self, seek: usize) {
        self.seek = seek;
        let keep_from = (seek * HOP_LENGTH).saturating_sub(N_FFT / 2).min(self.total);
        if keep_from > self.buf_start {
            self.buf.drain(..(keep_from - self.buf_start).min(self.buf.len()));
            self.buf_start = keep_from;
        }
    }

    /// Normalised features of `n` frames from `first` (mel-major).
    fn features(&mut self, first: usize, n: usize, signal_len: usize) -> Vec<f32> {
        let raw = log_spectrum(&self.buf, self.buf_start, signal_len, first, n, self.w.n_mels());
        let max = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        self.max_log = self.max_log.max(max);
        normalize(&raw, self.max_log)
    }
}
