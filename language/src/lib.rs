//! kino-language: the language branch of kino.
//!
//! Turns text (subtitle cues, transcripts, visual label names, user queries)
//! into sentence embeddings in one shared space, with a BERT-family
//! sentence-transformers model run in candle (CPU) and tokenized by the
//! `tokenizers` crate. The vectors match sentence-transformers' (cosine ≥
//! 0.9999 on the committed fixtures in `tests/fixtures/`).
//!
//! ```no_run
//! use std::{path::Path, sync::Arc};
//! use kino_language::SentenceEncoder;
//!
//! let enc = Arc::new(SentenceEncoder::load(Path::new("models/sentence-transformers/all-MiniLM-L6-v2"))?);
//! let v = enc.encode(&["a cat on a sofa", "un chat sur un canapé"])?;
//! assert_eq!(v[0].len(), enc.dim());
//! let long = enc.encode_long("a long transcript …", kino_language::DEFAULT_WINDOW, kino_language::DEFAULT_STRIDE)?;
//! println!("{} windows, model {}", long.windows.len(), enc.version());
//! # Ok::<(), kino_language::LanguageError>(())
//! ```

mod cpu;
mod encoder;
mod error;
mod int8;
mod long;

pub use cpu::{Precision, CALIBRATION as CALIBRATION_SENTENCES};
pub use encoder::{Pooling, SentenceEncoder, DEFAULT_BATCH_SIZE, MAX_BYTES_PER_TOKEN};
pub use error::LanguageError;
pub use int8::TextCalibration;
pub use long::{LongEmbedding, WindowEmbedding, DEFAULT_STRIDE, DEFAULT_WINDOW, MAX_LONG_BYTES, WINDOW_BATCH};

/// The default text model's name (a folder under the models directory).
pub const DEFAULT_TEXT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Cosine similarity of two vectors (0 when either is all zeros).
pub use kino_kernels::cosine;
