//! The whole-video document: a video's whole text (its cues of every
//! source, in time order, de-duplicated) embedded with the text encoder's
//! sliding windows, one pooled vector plus every window with the time span
//! of the cues in it, and an extractive summary (the most central
//! sentences, in time order).
//!
//! In: the video's stored cues. Out: a [`NewDocument`], written with the
//! video's segments (or alone when only the document is stale, see
//! [`Pipeline::refresh_document`]).

use std::collections::HashSet;
use std::time::Instant;

use anyhow::{anyhow, Result};
use kino_language::{SentenceEncoder, DEFAULT_STRIDE, DEFAULT_WINDOW};
use kino_store::{span_of, CueRecord, DocPiece, NewDocument, NewWindow, SummarySentence, Video};

use super::{IndexError, IndexOutcome, Loaded, Pipeline};

/// Bumped when the way a document is assembled or summarised changes (the
/// stage version then changes and every document is rebuilt).
const BUILDER: &str = "doc1";
/// Most sentences in a summary.
const SUMMARY_MAX: usize = 5;
/// Sentences shorter than this many words are not summary candidates.
const SUMMARY_MIN_WORDS: usize = 4;
/// At most this many sentences are embedded to choose a summary (evenly
/// spread over a longer text), so a very long video costs bounded time.
const SUMMARY_CANDIDATES: usize = 2000;
/// A candidate this similar to a sentence already chosen is left out.
const SUMMARY_NEAR_DUPLICATE: f32 = 0.9;

/// The document stage's version for the text encoder `text`.
pub fn version(text: &SentenceEncoder) -> String {
    format!("{}|w{DEFAULT_WINDOW}s{DEFAULT_STRIDE}|{BUILDER}", text.version())
}

/// The source of on-screen text cues.
const SCREEN: &str = "screen";

/// Joins a video's cues into one text, in time order, without repeats:
/// a cue whose text was already taken is left out, and on-screen text that
/// extends the text on screen just before (a slide revealing one more line)
/// adds only what is new. Returns the text and where each taken cue's text
/// begins. Spoken and subtitle text runs on with spaces; on-screen text
/// stands on its own lines.
pub fn assemble(cues: &[CueRecord]) -> (String, Vec<DocPiece>) {
    let mut order: Vec<&CueRecord> = cues.iter().collect();
    order.sort_by_key(|c| (c.start_ms, c.end_ms));
    let mut seen: HashSet<String> = HashSet::new();
    let mut last_screen: Option<String> = None;
    let mut text = String::new();
    let mut pieces = Vec::new();
    for c in order {
        let clean = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
        if clean.is_empty() {
            continue;
        }
        let key = clean.to_lowercase();
        if !seen.insert(key.clone()) {
            continue;
        }
        let screen = c.source == SCREEN;
        let mut piece = clean.as_str();
        if screen {
            if let Some(prev) = last_screen.as_deref() {
                if key.len() > prev.len() && key.starts_with(prev) && clean.is_char_boundary(prev.len()) {
                    piece = clean[prev.len()..].trim_start();
                }
            }
            last_screen = Some(key);
        }
        if piece.is_empty() {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push(if screen { '\n' } else { ' ' });
        }
        pieces.push(DocPiece {
            byte: text.len() as i64,
            start_ms: c.start_ms,
            end_ms: c.end_ms,
        });
        text.push_str(piece);
        if screen {
            text.push('\n');
        }
    }
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
    (text, pieces)
}

/// Byte ranges of the sentences of `text`: ends at `.`, `!`, `?`, `…`
/// followed by whitespace, and at line breaks.
pub fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let next_space = iter.peek().is_none_or(|(_, n)| n.is_whitespace());
        let end = i + c.len_utf8();
        if c == '\n' || (matches!(c, '.' | '!' | '?' | '…') && next_space) {
            push_span(text, &mut out, start, end);
            start = end;
        }
    }
    push_span(text, &mut out, start, text.len());
    out
}

fn push_span(text: &str, out: &mut Vec<(usize, usize)>, start: usize, end: usize) {
    let s = &text[start..end];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if s.trim().chars().filter(|c| c.is_alphanumeric()).count() >= 2 {
        out.push((start + lead, end - trail));
    }
}

/// For a text and its lower-cased form (as a lower-casing tokenizer sees
/// it), the byte offset in the original of each byte offset in the lower
/// case (lower-casing can change a character's length).
fn lower_to_original(text: &str) -> Vec<usize> {
    let mut map = Vec::with_capacity(text.len() + 1);
    for (i, c) in text.char_indices() {
        let n: usize = c.to_lowercase().map(char::len_utf8).sum();
        map.extend(std::iter::repeat_n(i, n));
    }
    map.push(text.len());
    map
}

/// `text[start..end]` without a word cut at its start (a window begins at a
/// token, which can be inside a word): what a window shows a reader.
fn whole_words(text: &str, start: usize, end: usize) -> &str {
    let Some(slice) = text.get(start..end) else { return "" };
    let cut = start > 0 && text[..start].chars().next_back().is_some_and(char::is_alphanumeric);
    let slice = if cut {
        slice.find(char::is_whitespace).map_or(slice, |i| &slice[i..])
    } else {
        slice
    };
    slice.trim_start_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation())
}

/// Builds the document of a video from its cues (`None` when it has no
/// text).
pub fn build(encoder: &SentenceEncoder, cues: &[CueRecord]) -> Result<Option<NewDocument>> {
    let (text, pieces) = assemble(cues);
    if text.is_empty() {
        return Ok(None);
    }
    let long = encoder
        .encode_long(&text, DEFAULT_WINDOW, DEFAULT_STRIDE)
        .map_err(|e| anyhow!(e).context("embedding the video's whole text"))?;
    let map = encoder.lowercases().then(|| lower_to_original(&text));
    let original = |b: usize| match &map {
        Some(m) => m.get(b).copied().unwrap_or(text.len()),
        None => b.min(text.len()),
    };
    let windows: Vec<NewWindow> = long
        .windows
        .into_iter()
        .map(|w| {
            let (s, e) = (original(w.start_byte), original(w.end_byte).max(original(w.start_byte)));
            let (start_ms, end_ms) = span_of(&pieces, text.len(), s, e).unwrap_or((0, 0));
            NewWindow {
                start_ms,
                end_ms,
                start_byte: s as i64,
                end_byte: e as i64,
                text: whole_words(&text, s, e).to_string(),
                vector: w.embedding,
            }
        })
        .collect();
    let summary = summarise(encoder, &text, &pieces, &long.pooled)?;
    Ok(Some(NewDocument {
        version: version(encoder),
        text,
        pieces,
        vector: long.pooled,
        tokens: long.total_tokens as i64,
        truncated: long.truncated,
        windows,
        summary,
    }))
}

/// The most central sentences (closest to the whole text's vector), in
/// time order, leaving out near-repeats.
fn summarise(
    encoder: &SentenceEncoder,
    text: &str,
    pieces: &[DocPiece],
    pooled: &[f32],
) -> Result<Vec<SummarySentence>> {
    let mut spans: Vec<(usize, usize)> = sentence_spans(text)
        .into_iter()
        .filter(|&(s, e)| text[s..e].split_whitespace().count() >= SUMMARY_MIN_WORDS)
        .collect();
    if spans.is_empty() {
        spans = sentence_spans(text);
    }
    if spans.len() > SUMMARY_CANDIDATES {
        let step = spans.len() as f64 / SUMMARY_CANDIDATES as f64;
        spans = (0..SUMMARY_CANDIDATES)
            .map(|i| spans[(i as f64 * step) as usize])
            .collect();
    }
    let texts: Vec<&str> = spans.iter().map(|&(s, e)| &text[s..e]).collect();
    let vecs = encoder
        .encode(&texts)
        .map_err(|e| anyhow!(e).context("embedding sentences for the summary"))?;
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by(|&a, &b| dot(&vecs[b], pooled).total_cmp(&dot(&vecs[a], pooled)).then(a.cmp(&b)));
    let want = if spans.len() < 30 { 3 } else { SUMMARY_MAX };
    let mut chosen: Vec<usize> = Vec::new();
    for i in order {
        if chosen.len() == want {
            break;
        }
        if chosen
            .iter()
            .any(|&j| dot(&vecs[i], &vecs[j]) >= SUMMARY_NEAR_DUPLICATE)
        {
            continue;
        }
        chosen.push(i);
    }
    chosen.sort_unstable();
    Ok(chosen
        .into_iter()
        .map(|i| {
            let (s, e) = spans[i];
            let (start_ms, end_ms) = span_of(pieces, text.len(), s, e).unwrap_or((0, 0));
            SummarySentence {
                start_ms,
                end_ms,
                text: text[s..e].to_string(),
            }
        })
        .collect())
}

impl Pipeline {
    /// The document of a video from its stored cues.
    pub(super) fn document_of(
        &self,
        video_id: i64,
        encoder: &SentenceEncoder,
    ) -> Result<Option<NewDocument>, IndexError> {
        let cues = self
            .rt
            .block_on(self.store.cues(video_id))
            .map_err(|e| IndexError::Transient(anyhow::Error::from(e)))?;
        let t = Instant::now();
        let doc = build(encoder, &cues).map_err(IndexError::Transient)?;
        metrics::histogram!("kino_stage_seconds", "stage" => "document").record(t.elapsed().as_secs_f64());
        Ok(doc)
    }

    /// Rebuilds the document of a video whose index is current except for
    /// it, from its stored cues: nothing is decoded or re-fused.
    pub(super) fn refresh_document(&self, video: &Video, loaded: &Loaded) -> Result<IndexOutcome, IndexError> {
        let doc = self.document_of(video.id, &loaded.engines.text)?;
        let mut versions = kino_store::IndexVersions {
            stages: video.stage_versions.clone(),
        };
        if versions.stages.is_empty() {
            // A row from before stage versions: its model columns were
            // current (that is why only the document is stale).
            versions = loaded.versions.recorded(!video.needs_vision);
        }
        let versions = versions.with(
            crate::staleness::Stage::Document.name(),
            loaded.versions.document.clone(),
        );
        self.rt
            .block_on(self.store.replace_document(video.id, doc.as_ref(), &versions))
            .map_err(|e| IndexError::Transient(anyhow::Error::from(e)))?;
        tracing::info!(
            video = %video.path,
            windows = doc.as_ref().map_or(0, |d| d.windows.len()),
            "document rebuilt from the stored cues (nothing decoded)"
        );
        let segments = self
            .rt
            .block_on(self.store.segment_count_of(video.id))
            .map_err(|e| IndexError::Transient(anyhow::Error::from(e)))?;
        Ok(IndexOutcome {
            segments: segments as usize,
            frames: 0,
            cues: doc.as_ref().map_or(0, |d| d.pieces.len()),
            warnings: video.warnings.clone(),
            needs_vision: !video.stage_versions.contains_key("vision"),
            versions: Box::new(loaded.versions.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(start: i64, end: i64, text: &str, source: &str) -> CueRecord {
        CueRecord {
            start_ms: start,
            end_ms: end,
            text: text.into(),
            source: source.into(),
            language: None,
        }
    }

    #[test]
    fn cues_are_joined_in_time_order_without_repeats() {
        let cues = [
            cue(5000, 6000, "Then   the second.", "subtitle"),
            cue(0, 1000, "First words.", "speech"),
            cue(2000, 3000, "Agenda", "screen"),
            cue(4000, 5000, "Agenda Budget", "screen"),
            cue(7000, 8000, "first words.", "subtitle"),
            cue(9000, 9500, "  ", "speech"),
            cue(10000, 11000, "Agenda", "screen"),
        ];
        let (text, pieces) = assemble(&cues);
        assert_eq!(text, "First words.\nAgenda\nBudget\nThen the second.");
        let starts: Vec<(i64, &str)> = pieces.iter().map(|p| (p.start_ms, &text[p.byte as usize..])).collect();
        assert_eq!(starts.len(), 4);
        assert_eq!(starts[0].0, 0);
        assert!(starts[1].1.starts_with("Agenda"));
        assert_eq!(starts[2].0, 4000);
        assert!(starts[2].1.starts_with("Budget"));
        assert!(starts[3].1.starts_with("Then"));
        assert_eq!(span_of(&pieces, text.len(), 0, text.len()), Some((0, 6000)));
    }

    #[test]
    fn sentences_end_at_punctuation_and_line_breaks() {
        let text = "One two. Three? Yes…\nA slide line\nv1.2 is out! x";
        let got: Vec<&str> = sentence_spans(text).into_iter().map(|(s, e)| &text[s..e]).collect();
        assert_eq!(got, ["One two.", "Three?", "Yes…", "A slide line", "v1.2 is out!"]);
    }

    #[test]
    fn a_window_shows_whole_words() {
        let text = "the sediment settles, two workers print";
        assert_eq!(whole_words(text, 6, text.len()), "settles, two workers print");
        assert_eq!(whole_words(text, 20, text.len()), "two workers print");
        assert_eq!(whole_words(text, 0, 12), "the sediment");
    }

    #[test]
    fn lower_case_offsets_map_back_to_the_original() {
        let text = "Aİb";
        let lower = text.to_lowercase();
        let map = lower_to_original(text);
        assert_eq!(map.len(), lower.len() + 1);
        let b = lower.find('b').unwrap();
        assert_eq!(&text[map[b]..], "b");
    }
}
