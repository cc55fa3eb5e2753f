//! Greedy decoding with timestamps over 30-second windows, as faster-whisper
//! 1.2 (`WhisperModel.generate_segments`) drives CTranslate2 4.x
//! (`WhisperReplica::generate`, greedy search) with `beam_size=1`,
//! temperature 0 and no fallback, `condition_on_previous_text=True`, no VAD,
//! no word timestamps.
//!
//! Per window: the prompt is `<|startofprev|>` + the last 223 tokens of the
//! earlier segments (when there are any), then `<|startoftranscript|>`, the
//! language and `<|transcribe|>` (an English-only model, `*.en`, takes
//! `<|startoftranscript|>` alone: it has no language or task tokens to
//! condition on, and its language is `en` without detection). Each step masks the logits: the
//! `suppress_ids` of `config.json` always, `suppress_ids_begin` at the first
//! step, and the timestamp rules (no `<|notimestamps|>`; the first token is a
//! timestamp of at most 1.00 s; timestamps come in pairs and never decrease;
//! a timestamp is forced when the timestamps' total probability beats every
//! text token). The no-speech probability is `<|nospeech|>`'s softmax at the
//! `<|startoftranscript|>` position, before any mask. A window whose
//! no-speech probability is above 0.6 while its average log-probability is
//! at most −1 is skipped. Segments are cut at consecutive timestamp pairs;
//! the next window starts at the last timestamp, or after the whole window
//! when it ends with a single timestamp or has no pair.

use super::{Result, Whisper, WhisperError, N_FRAMES};
use crate::mel::{log_mel, HOP_LENGTH};

/// Seconds per timestamp token.
const TIME_PRECISION: f64 = 0.02;
/// Feature frames per timestamp step (the encoder halves the frame rate).
const INPUT_STRIDE: usize = 2;
/// Seconds per feature frame.
const TIME_PER_FRAME: f64 = HOP_LENGTH as f64 / 16_000.0;
/// The decoder's context (`max_length` of faster-whisper).
const MAX_LENGTH: usize = 448;
/// The first timestamp may be at most this index (1.00 s).
const MAX_INITIAL_TIMESTAMP_INDEX: u32 = 50;
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const LOG_PROB_THRESHOLD: f32 = -1.0;

/// One timed piece of text.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start, in milliseconds from the start of the audio.
    pub start_ms: u64,
    /// End, in milliseconds.
    pub end_ms: u64,
    /// The text, as decoded (usually with a leading space).
    pub text: String,
    /// The tokens, timestamps included.
    pub tokens: Vec<u32>,
    /// Average log-probability of the window's tokens.
    pub avg_logprob: f32,
    /// Probability of no speech in the window.
    pub no_speech_prob: f32,
}

/// The transcript of some audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The language code (`en`, `de`, …), given or detected.
    pub language: String,
    /// The detected language's probability among languages (1 when given).
    pub language_probability: f32,
    /// The segments, in time order.
    pub segments: Vec<Segment>,
}

/// The tokens of one decoded window.
struct Generated {
    tokens: Vec<u32>,
    sum_logprob: f64,
    no_speech_prob: f32,
}

pub(crate) fn transcribe(w: &mut Whisper, samples: &[f32], language: Option<&str>) -> Result<Transcript> {
    // faster-whisper appends 160 zero samples, then drops the last frame.
    let mut padded = Vec::with_capacity(samples.len() + HOP_LENGTH);
    padded.extend_from_slice(samples);
    padded.resize(samples.len() + HOP_LENGTH, 0.0);
    let (n_frames, features) = log_mel(&padded, w.n_mels());
    let content_frames = n_frames.saturating_sub(1);

    // Language detection reads the first 3000 frames of the features (one
    // frame more than the first window when the audio is shorter than 30 s);
    // when they are the first window, its encoding is kept for it.
    let mut first_window = None;
    let (language, language_probability) = match language {
        Some(code) => (code.to_string(), 1.0),
        None if !w.specials().multilingual => ("en".to_string(), 1.0),
        None if n_frames == 0 => ("en".to_string(), 0.0),
        None => {
            let audio = w.encode(&features, n_frames, 0, n_frames.min(N_FRAMES))?;
            let detected = detect_language(w, &audio)?;
            if content_frames >= N_FRAMES {
                first_window = Some(audio);
            }
            detected
        }
    };
    let mut session = Session::new(w, language, language_probability)?;
    let mut segments = Vec::new();
    let mut seek = 0usize;
    while seek < content_frames {
        let segment_size = N_FRAMES.min(content_frames - seek);
        let audio = match first_window.take() {
            Some(audio) if seek == 0 => audio,
            _ => w.encode(&features, n_frames, seek, segment_size)?,
        };
        let (found, next) = session.window(w, &audio, seek, segment_size)?;
        segments.extend(found);
        seek = next;
    }
    Ok(session.into_transcript(segments))
}

/// Decoding state carried from one 30-second window to the next: the
/// language and the tokens of the earlier segments (the prompt of the next
/// window).
pub(crate) struct Session {
    pub(crate) language: String,
    pub(crate) language_probability: f32,
    /// `<|startoftranscript|>`, then (multilingual models only) the
    /// language and `<|transcribe|>`.
    sot_sequence: Vec<u32>,
    /// The last tokens of the earlier segments (at most what a prompt takes).
    previous: Vec<u32>,
}

impl Session {
    pub(crate) fn new(w: &Whisper, language: String, language_probability: f32) -> Result<Session> {
        let specials = w.specials();
        let language_token = specials
            .languages
            .iter()
            .find(|(_, code)| *code == language)
            .map(|(id, _)| *id)
            .ok_or_else(|| WhisperError::Language(language.clone()))?;
        // As faster-whisper's tokenizer: an English-only model has neither
        // language nor task in its start sequence.
        let sot_sequence = if specials.multilingual {
            vec![specials.sot, language_token, specials.transcribe]
        } else {
            vec![specials.sot]
        };
        Ok(Session {
            sot_sequence,
            language,
            language_probability,
            previous: Vec::new(),
        })
    }

    /// Decodes the window of `segment_size` feature frames at `seek` (its
    /// encoder output `audio`): its segments, and where the next window
    /// starts.
    pub(crate) fn window(
        &mut self,
        w: &mut Whisper,
        audio: &candle_core::Tensor,
        seek: usize,
        segment_size: usize,
    ) -> Result<(Vec<Segment>, usize)> {
        let specials = w.specials().clone();
        let time_offset = seek as f64 * TIME_PER_FRAME;
        let segment_duration = segment_size as f64 * TIME_PER_FRAME;
        let keep = MAX_LENGTH / 2 - 1;
        let mut prompt = Vec::new();
        if !self.previous.is_empty() {
            prompt.push(specials.sot_prev);
            prompt.extend_from_slice(&self.previous[self.previous.len().saturating_sub(keep)..]);
        }
        prompt.extend_from_slice(&self.sot_sequence);

        let g = generate(w, audio, &prompt)?;
        let avg_logprob = (g.sum_logprob / (g.tokens.len() + 1) as f64) as f32;
        if g.no_speech_prob > NO_SPEECH_THRESHOLD && avg_logprob <= LOG_PROB_THRESHOLD {
            return Ok((Vec::new(), seek + segment_size));
        }
        let (pieces, next_seek) = split_by_timestamps(
            &g.tokens,
            specials.timestamp_begin,
            seek,
            time_offset,
            segment_size,
            segment_duration,
        );
        let mut segments = Vec::new();
        for (start, end, tokens) in pieces {
            let text = w.text(&tokens);
            if start == end || text.trim().is_empty() {
                continue;
            }
            self.previous.extend_from_slice(&tokens);
            segments.push(Segment {
                start_ms: seconds_to_ms(start),
                end_ms: seconds_to_ms(end),
                text,
                tokens,
                avg_logprob,
                no_speech_prob: g.no_speech_prob,
            });
        }
        if self.previous.len() > keep {
            self.previous.drain(..self.previous.len() - keep);
        }
        Ok((segments, next_seek))
    }

    pub(crate) fn into_transcript(self, segments: Vec<Segment>) -> Transcript {
        Transcript {
            language: self.language,
            language_probability: self.language_probability,
            segments,
        }
    }
}

fn seconds_to_ms(s: f64) -> u64 {
    (s * 1000.0).round().max(0.0) as u64
}

/// The most likely language token after `<|startoftranscript|>`, and its
/// probability (softmax over the language tokens' logits). An English-only
/// model is `en` with probability 1, as faster-whisper has it, without
/// running the decoder.
pub(crate) fn detect_language(w: &mut Whisper, audio: &candle_core::Tensor) -> Result<(String, f32)> {
    let specials = w.specials().clone();
    if !specials.multilingual {
        return Ok(("en".to_string(), 1.0));
    }
    let decoder = w.decoder();
    let mut state = decoder.start(audio)?;
    let hidden = decoder.forward(&[specials.sot], &mut state)?;
    let logits = decoder.logits(&hidden, 0)?;
    let max = specials
        .languages
        .iter()
        .map(|(id, _)| logits[*id as usize])
        .fold(f32::NEG_INFINITY, f32::max);
    let total: f64 = specials
        .languages
        .iter()
        .map(|(id, _)| ((logits[*id as usize] - max) as f64).exp())
        .sum();
    let best = specials
        .languages
        .iter()
        .max_by(|a, b| logits[a.0 as usize].total_cmp(&logits[b.0 as usize]))
        .ok_or_else(|| WhisperError::Model("config.json lists no languages".into()))?;
    let p = ((logits[best.0 as usize] - max) as f64).exp() / total;
    Ok((best.1.clone(), p as f32))
}

/// Greedy decoding of one window after `prompt`.
fn generate(w: &mut Whisper, audio: &candle_core::Tensor, prompt: &[u32]) -> Result<Generated> {
    let s = w.specials().clone();
    let sot_index = prompt.iter().position(|&t| t == s.sot).unwrap_or(0);
    let start_step = prompt.len() - 1;
    let max_new = (MAX_LENGTH / 2).min(MAX_LENGTH - start_step);
    let decoder = w.decoder();
    let mut state = decoder.start(audio)?;
    let mut tokens = Vec::new();
    let mut sum_logprob = 0f64;
    let mut no_speech_prob = 0f32;
    let mut next = prompt.to_vec();
    for step in 0..max_new {
        let hidden = decoder.forward(&next, &mut state)?;
        let mut logits = decoder.logits(&hidden, next.len() - 1)?;
        if step == 0 {
            let at_sot = if sot_index + 1 == next.len() {
                None
            } else {
                Some(decoder.logits(&hidden, sot_index)?)
            };
            no_speech_prob = softmax_at(at_sot.as_deref().unwrap_or(&logits[..]), s.no_speech as usize);
        }
        apply_rules(&mut logits, &tokens, &s);
        let log_probs = log_softmax(&logits);
        let (best, lp) =
            log_probs.iter().enumerate().fold(
                (0usize, f64::NEG_INFINITY),
                |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
            );
        sum_logprob += lp;
        let token = best as u32;
        if token == s.eot {
            break;
        }
        tokens.push(token);
        next = vec![token];
    }
    Ok(Generated {
        tokens,
        sum_logprob,
        no_speech_prob,
    })
}

fn softmax_at(logits: &[f32], i: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let total: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    ((logits[i] as f64 - max).exp() / total) as f32
}

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let total: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let lse = max + total.ln();
    logits.iter().map(|&x| x as f64 - lse).collect()
}

/// Masks `logits` for the next token after the sampled `tokens`: suppressed
/// tokens, then CTranslate2's timestamp rules.
fn apply_rules(logits: &mut [f32], tokens: &[u32], s: &super::Specials) {
    let vocab = logits.len();
    let mask = |logits: &mut [f32], range: std::ops::Range<usize>| {
        for x in &mut logits[range.start.min(vocab)..range.end.min(vocab)] {
            *x = f32::NEG_INFINITY;
        }
    };
    for &id in &s.suppress {
        mask(logits, id as usize..id as usize + 1);
    }
    let step = tokens.len();
    if step == 0 {
        for &id in &s.suppress_begin {
            mask(logits, id as usize..id as usize + 1);
        }
    }
    let tsb = s.timestamp_begin as usize;
    let eot = s.eot as usize;
    mask(logits, s.no_timestamps as usize..s.no_timestamps as usize + 1);
    let mut check = false;
    if step == 0 {
        mask(logits, 0..tsb);
        mask(logits, tsb + MAX_INITIAL_TIMESTAMP_INDEX as usize + 1..vocab);
    } else {
        let last = tokens[step - 1] as usize;
        if last >= tsb {
            let penultimate = if step >= 2 { tokens[step - 2] as usize } else { last };
            if penultimate >= tsb {
                mask(logits, tsb..vocab);
            } else {
                mask(logits, 0..eot);
                mask(logits, tsb..last);
                check = true;
            }
        } else {
            check = true;
            if let Some(&t) = tokens.iter().rev().find(|&&t| t as usize >= tsb) {
                mask(logits, tsb..t as usize + 1);
            }
        }
    }
    if check {
        let lp = log_softmax(logits);
        let max_text = lp[..tsb].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ts = &lp[tsb..];
        let m = ts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ts_lse = if m.is_finite() {
            m + ts.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
        } else {
            f64::NEG_INFINITY
        };
        if ts_lse > max_text {
            mask(logits, 0..tsb);
        }
    }
}

/// A timed piece of a window: start and end in seconds, tokens.
type Piece = (f64, f64, Vec<u32>);

/// A window's tokens cut into timed pieces `(start s, end s, tokens)`, and
/// where the next window starts (in feature frames).
fn split_by_timestamps(
    tokens: &[u32],
    tsb: u32,
    seek: usize,
    time_offset: f64,
    segment_size: usize,
    segment_duration: f64,
) -> (Vec<Piece>, usize) {
    let is_ts = |t: u32| t >= tsb;
    let n = tokens.len();
    let single_timestamp_ending = n >= 2 && !is_ts(tokens[n - 2]) && is_ts(tokens[n - 1]);
    let mut slices: Vec<usize> = (1..n).filter(|&i| is_ts(tokens[i]) && is_ts(tokens[i - 1])).collect();
    let mut pieces = Vec::new();
    if slices.is_empty() {
        let mut duration = segment_duration;
        if let Some(&last) = tokens.iter().rev().find(|&&t| is_ts(t)) {
            if last != tsb {
                duration = (last - tsb) as f64 * TIME_PRECISION;
            }
        }
        pieces.push((time_offset, time_offset + duration, tokens.to_vec()));
        return (pieces, seek + segment_size);
    }
    if single_timestamp_ending {
        slices.push(n);
    }
    let mut last_slice = 0;
    for &current in &slices {
        let piece = &tokens[last_slice..current];
        let start = time_offset + (piece[0] - tsb) as f64 * TIME_PRECISION;
        let end = time_offset + (piece[piece.len() - 1] - tsb) as f64 * TIME_PRECISION;
        pieces.push((start, end, piece.to_vec()));
        last_slice = current;
    }
    let next = if single_timestamp_ending {
        seek + segment_size
    } else {
        seek + (tokens[last_slice - 1] - tsb) as usize * INPUT_STRIDE
    };
    (pieces, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSB: u32 = 50364;

    #[test]
    fn pieces_are_cut_at_timestamp_pairs_and_the_next_window_starts_at_the_last_one() {
        let t = |i: u32| TSB + i;
        // <0.00> a <1.00><1.00> b <2.00> c   (unfinished last piece)
        let tokens = [t(0), 1, t(50), t(50), 2, t(100), 3];
        let (pieces, next) = split_by_timestamps(&tokens, TSB, 0, 0.0, 3000, 30.0);
        assert_eq!(pieces.len(), 1);
        assert_eq!((pieces[0].0, pieces[0].1), (0.0, 1.0));
        assert_eq!(next, 100);
        // Ending in a single timestamp: the whole window is consumed.
        let tokens = [t(0), 1, t(50), t(50), 2, t(100)];
        let (pieces, next) = split_by_timestamps(&tokens, TSB, 3000, 30.0, 1200, 12.0);
        assert_eq!(pieces.len(), 2);
        assert_eq!((pieces[1].0, pieces[1].1), (31.0, 32.0));
        assert_eq!(next, 4200);
        // No pair: one piece up to the last timestamp.
        let tokens = [t(0), 1, 2, t(70)];
        let (pieces, next) = split_by_timestamps(&tokens[..3], TSB, 0, 0.0, 500, 5.0);
        assert_eq!((pieces[0].0, pieces[0].1), (0.0, 5.0));
        assert_eq!(next, 500);
    }
}
