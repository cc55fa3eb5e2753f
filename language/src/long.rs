//! Long text (a transcript, a whole subtitle track) as sliding windows over
//! tokens.
//!
//! Defaults: windows of [`DEFAULT_WINDOW`] = 128 text tokens moved by
//! [`DEFAULT_STRIDE`] = 96 tokens. all-MiniLM-L6-v2 was trained on inputs of
//! at most 128 tokens, so its vectors are best for passages of that size
//! (~100 words, about 30–40 s of speech), which is also the grain at which a
//! user wants a moment found. Consecutive windows overlap by 32 tokens (a
//! sentence or two), so a phrase cut by one window boundary is whole in the
//! next window.

use serde::Serialize;

use crate::encoder::{cut_text, l2_normalize, SentenceEncoder};
use crate::error::LanguageError;

/// Default window length in text tokens (special tokens not counted): 128.
/// all-MiniLM-L6-v2 was trained on inputs of at most 128 tokens, so its
/// vectors are best for passages of that size (~100 words, 30–40 s of
/// speech), which is also the grain at which a user wants a moment found.
pub const DEFAULT_WINDOW: usize = 128;
/// Default distance between window starts, in tokens: 96, so consecutive
/// windows overlap by 32 tokens (a sentence or two) and a phrase cut by one
/// window boundary is whole in the next window. A 3,000-word transcript
/// (~3,900 tokens) gives about 40 windows.
pub const DEFAULT_STRIDE: usize = 96;
/// Windows are run through the model this many at a time, so memory for the
/// activations stays bounded however long the text: only the token ids and
/// the window vectors grow with it (a 3,000-word transcript is ~40 windows;
/// 64 MiB of text, some 10 million words, about 170,000).
pub const WINDOW_BATCH: usize = 64;
/// Input beyond this many bytes (64 MiB: days of continuous speech) is cut
/// at a whitespace before tokenizing, and [`LongEmbedding::truncated`] says
/// so; anything shorter is covered whole.
pub const MAX_LONG_BYTES: usize = 64 << 20;

/// One window of a long text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowEmbedding {
    /// First text token of the window (index into the text's tokens,
    /// special tokens not counted).
    pub start_token: usize,
    /// One past the last text token of the window.
    pub end_token: usize,
    /// Byte offset in the input text where the window's text starts.
    pub start_byte: usize,
    /// Byte offset in the input text where the window's text ends.
    pub end_byte: usize,
    /// The window's text (a slice of the input).
    pub text: String,
    /// The window's sentence vector (normalised when the model normalises).
    pub embedding: Vec<f32>,
}

/// The result of [`SentenceEncoder::encode_long`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LongEmbedding {
    /// One vector for the whole text: the mean of the window vectors
    /// weighted by their token counts, L2-normalised when the model
    /// normalises.
    pub pooled: Vec<f32>,
    /// Each window, in text order.
    pub windows: Vec<WindowEmbedding>,
    /// How many text tokens the (possibly cut) text has.
    pub total_tokens: usize,
    /// True when the text was longer than [`MAX_LONG_BYTES`], so its end is
    /// not covered.
    pub truncated: bool,
}

impl SentenceEncoder {
    /// Encodes a text of any length with sliding windows of `window` text
    /// tokens whose starts are `stride` tokens apart (see the module docs for
    /// the defaults [`DEFAULT_WINDOW`] and [`DEFAULT_STRIDE`]).
    ///
    /// `window` must be at least 1 and leave room for the special tokens
    /// within `max_seq_length`; `stride` must be between 1 and `window` (a
    /// larger stride would skip text). A text that fits in one window gives
    /// one window whose vector equals [`SentenceEncoder::encode`]'s. An empty
    /// text gives one empty window (the vector of `""`).
    pub fn encode_long(&self, text: &str, window: usize, stride: usize) -> Result<LongEmbedding, LanguageError> {
        let room = self.max_seq_length() - self.prefix.len() - self.suffix.len();
        if window == 0 || window > room {
            return Err(LanguageError::Argument(format!(
                "window {window} must be between 1 and {room} tokens (max_seq_length {} minus special tokens)",
                self.max_seq_length()
            )));
        }
        if stride == 0 || stride > window {
            return Err(LanguageError::Argument(format!(
                "stride {stride} must be between 1 and the window ({window})"
            )));
        }
        let cut = cut_text(text, MAX_LONG_BYTES);
        let truncated = cut.len() < text.len();
        let lowered;
        let source: &str = if self.lowercases() {
            lowered = cut.to_lowercase();
            &lowered
        } else {
            cut
        };
        let enc = self
            .tokenizer_full
            .encode(source, false)
            .map_err(|e| LanguageError::Tokenize(e.to_string()))?;
        let ids = enc.get_ids();
        let offsets = enc.get_offsets();
        let n = ids.len();

        let mut spans = Vec::new();
        let mut start = 0;
        loop {
            let end = (start + window).min(n);
            spans.push((start, end));
            if end >= n {
                break;
            }
            start += stride;
        }
        let mut vecs = Vec::with_capacity(spans.len());
        for batch in spans.chunks(WINDOW_BATCH) {
            let seqs: Vec<Vec<u32>> = batch
                .iter()
                .map(|&(s, e)| {
                    let mut v = Vec::with_capacity(e - s + self.prefix.len() + self.suffix.len());
                    v.extend_from_slice(&self.prefix);
                    v.extend_from_slice(&ids[s..e]);
                    v.extend_from_slice(&self.suffix);
                    v
                })
                .collect();
            vecs.extend(self.encode_ids(&seqs)?);
        }

        let mut pooled = vec![0f64; self.dim()];
        let mut weight_sum = 0f64;
        let mut windows = Vec::with_capacity(spans.len());
        for (&(s, e), v) in spans.iter().zip(vecs) {
            let w = (e - s).max(1) as f64;
            weight_sum += w;
            for (a, x) in pooled.iter_mut().zip(&v) {
                *a += w * *x as f64;
            }
            let (start_byte, end_byte) = if e > s {
                (offsets[s].0, offsets[e - 1].1.max(offsets[s].0))
            } else {
                (0, 0)
            };
            // Offsets index the text the tokenizer saw; lower-casing may
            // change byte lengths, so slice that text and clamp.
            let end_byte = end_byte.min(source.len());
            let start_byte = start_byte.min(end_byte);
            let text = source.get(start_byte..end_byte).unwrap_or_default().to_string();
            windows.push(WindowEmbedding {
                start_token: s,
                end_token: e,
                start_byte,
                end_byte,
                text,
                embedding: v,
            });
        }
        let mut pooled: Vec<f32> = pooled.into_iter().map(|x| (x / weight_sum) as f32).collect();
        if self.normalizes() {
            l2_normalize(&mut pooled);
        }
        Ok(LongEmbedding {
            pooled,
            windows,
            total_tokens: n,
            truncated,
        })
    }

    /// Encodes texts like [`SentenceEncoder::encode`], except that a text
    /// longer than the model's input (`max_seq_length` tokens) is not cut:
    /// it is encoded with [`SentenceEncoder::encode_long`] (default windows)
    /// and gets the pooled vector, so its end counts as much as its start.
    /// Texts that fit give exactly `encode`'s vectors.
    pub fn encode_whole(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, LanguageError> {
        let (mut out, cut) = self.encode_marking_cut(texts)?;
        for (i, text) in texts.iter().enumerate() {
            if cut[i] {
                out[i] = self.encode_long(text.trim(), DEFAULT_WINDOW, DEFAULT_STRIDE)?.pooled;
            }
        }
        Ok(out)
    }
}
