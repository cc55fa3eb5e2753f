//! kino-fusion: turns a video's frame features and timed text into searchable segments, and a question into
//! ranked moments and an extractive answer.
//!
//! The crate consumes the outputs of the other stages as plain data and depends on none of them:
//!
//! * [`align`] cuts the timeline into segments (fixed windows, optionally snapped to shot boundaries) and assigns
//!   frames and cues to them by time overlap. [`align::SegmentBuilder`] does it incrementally, in bounded memory,
//!   for videos of any length; [`align::Segmenter::segment`] is the batch form.
//! * [`tags`] turns the ImageNet labels of a segment's frames into its top tags and a label text ("tabby cat,
//!   sofa") that the caller embeds with the text encoder.
//! * [`model`] is the cross-attention fusion module (candle): text tokens attend over visual tokens and back,
//!   giving one fused vector per segment in the text encoder's space plus the text-only and visual-only vectors.
//! * [`train`] learns the pooled projection from the time alignment of frames and cues (MIL-NCE), and
//!   [`train_fusion`] then the grid projection and gate and the cross-attention, with the target cue held out of
//!   the segment's input; [`features`] is the file format of the visual features kept for both.
//! * [`score`] ranks segments against a query embedding and merges neighbouring matches into moments.
//! * [`answer`] picks the best-supported transcript sentences (and visual tags) of the top moments as an
//!   extractive answer with citations.
//!
//! Text is never embedded inside this crate: callers pass embeddings in, and where a stage needs to embed
//! (answers), it takes a [`TextEmbedder`], which any `Fn(&[&str]) -> anyhow::Result<Vec<Vec<f32>>>` implements.

pub mod align;
pub mod answer;
pub mod features;
pub mod model;
pub mod score;
pub mod tags;
pub mod train;
pub mod train_fusion;

mod error;
pub mod vecmath;

#[cfg(test)]
mod fuzz_tests;

pub use align::{AlignedSegment, SegmentBuilder, Segmenter};
pub use answer::{Answer, Citation};
pub use error::FusionError;
pub use model::{FusedSegment, FusionConfig, FusionModel, SegmentInputs, VisualGrid};
pub use score::{Candidate, Moment, Weights};

/// A piece of timed text: a subtitle cue, a stretch of transcribed speech or text read from a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedText {
    /// Start on the video's timeline, in milliseconds.
    pub start_ms: i64,
    /// End on the video's timeline, in milliseconds (exclusive). `end_ms <= start_ms` is a point in time.
    pub end_ms: i64,
    /// The text itself.
    pub text: String,
    /// Where it comes from: `subtitle`, `speech`, `screen`, … (data, not an enum, so new sources need no change).
    pub source: String,
    /// Its sentence embedding in the text encoder's space (may be empty while alignment only needs times).
    pub embedding: Vec<f32>,
}

/// What the vision branch says about one sampled frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameVisual {
    /// Presentation time of the frame, in milliseconds.
    pub pts_ms: i64,
    /// The pooled image embedding (used for shot detection).
    pub pooled: Vec<f32>,
    /// The last stage's token grid, row-major `grid_tokens × hidden` (7×7 = 49 tokens for Swin-tiny at 224).
    pub grid: Vec<f32>,
    /// Number of tokens in `grid`.
    pub grid_tokens: usize,
    /// Width of one grid token.
    pub hidden: usize,
    /// Top classifier labels with their probabilities, best first.
    pub labels: Vec<(String, f32)>,
}

/// Something that embeds text into the text encoder's space, one vector per input, in order.
///
/// The binary passes `kino_language::SentenceEncoder` through a closure:
/// `&|t: &[&str]| encoder.encode(t).map_err(Into::into)`.
pub trait TextEmbedder {
    /// Embeds `texts`, returning one vector per text.
    fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>>;
}

impl<F> TextEmbedder for F
where
    F: Fn(&[&str]) -> anyhow::Result<Vec<Vec<f32>>>,
{
    fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        self(texts)
    }
}
