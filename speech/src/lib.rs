//! kino's speech branch: Whisper on CTranslate2 weights.
//!
//! Built so far: [`ct2`], the reader of CTranslate2's `model.bin` (the
//! weights of faster-whisper models), and [`mel`], Whisper's log-mel front
//! end, computed as faster-whisper's `FeatureExtractor` computes it, and
//! [`whisper`], transcription with timestamps on those weights (candle),
//! whole or as a [`Stream`] in bounded memory, with the energy [`gate`] that
//! keeps silence away from the model.

#![warn(missing_docs)]

pub mod ct2;
pub mod gate;
pub mod mel;
pub mod whisper;

pub use ct2::{Ct2Error, Ct2Model, DType, Variable};
pub use mel::{log_mel, mel_filters};
pub use whisper::{Segment, Stream, StreamOptions, StreamStats, Transcript, Whisper, WhisperError};
