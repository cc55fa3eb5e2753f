//! Whisper inference on CTranslate2 weights (faster-whisper models) or
//! Hugging Face transformers checkpoints (`openai/whisper-*`, `hf`): the
//! encoder (`encoder`) and the decoder with its key/value cache (`decoder`)
//! are written on candle's layers (the layout of candle-transformers'
//! Whisper, with CTranslate2's exact GELU), fed from the `model.bin` variables
//! mapped to Hugging Face names (`weights`) or from `model.safetensors`
//! directly; decoding follows faster-whisper
//! with greedy search, temperature 0 and no fallback (`decode`).
//!
//! ```no_run
//! # fn main() -> Result<(), kino_speech::WhisperError> {
//! let mut whisper = kino_speech::Whisper::load("/path/to/faster-whisper-base")?;
//! let samples = vec![0.0f32; 16_000]; // 16 kHz mono
//! let transcript = whisper.transcribe(&samples, None)?;
//! for s in &transcript.segments {
//!     println!("[{} → {} ms] {}", s.start_ms, s.end_ms, s.text);
//! }
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::Config;

use crate::ct2::{Ct2Error, Ct2Model};

mod cpu;
mod decode;
mod decoder;
mod encoder;
mod hf;
mod stream;
mod weights;

pub use decode::{Segment, Transcript};
pub(crate) use decoder::Decoder;
use encoder::Encoder;
pub use stream::{Stream, StreamOptions, StreamStats};

/// Vocabulary size from which a model is multilingual (CTranslate2's
/// `is_multilingual`: 51865 and up; English-only models have 51864).
const MULTILINGUAL_VOCAB: usize = 51865;

/// Feature frames in one 30-second window.
pub const N_FRAMES: usize = 3000;

/// What can go wrong loading or running Whisper.
#[derive(Debug, thiserror::Error)]
pub enum WhisperError {
    /// The weight file could not be read.
    #[error(transparent)]
    Ct2(#[from] Ct2Error),
    /// A file of the model folder is missing or malformed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The weights do not make a Whisper model.
    #[error("not a Whisper model: {0}")]
    Model(String),
    /// A tensor operation failed.
    #[error("whisper: {0}")]
    Candle(#[from] candle_core::Error),
    /// The language asked for is not one the model knows.
    #[error("unknown language {0:?}")]
    Language(String),
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, WhisperError>;

/// The special tokens decoding needs, from the tokenizer.
#[derive(Debug, Clone)]
pub(crate) struct Specials {
    pub sot: u32,
    pub eot: u32,
    pub sot_prev: u32,
    pub transcribe: u32,
    pub no_timestamps: u32,
    pub no_speech: u32,
    /// First timestamp token (`<|0.00|>`), right after `<|notimestamps|>`.
    pub timestamp_begin: u32,
    /// Whether the start sequence takes a language and a task (false for
    /// English-only models).
    pub multilingual: bool,
    /// Language tokens and their codes (`en`, `de`, …); `en` alone for an
    /// English-only model.
    pub languages: Vec<(u32, String)>,
    /// Suppressed at every step (`config.json` `suppress_ids`).
    pub suppress: Vec<u32>,
    /// Suppressed at the first sampled step (`suppress_ids_begin`).
    pub suppress_begin: Vec<u32>,
}

/// The tensors of a CTranslate2 Whisper `model.bin` under their Hugging Face
/// transformers names (`model.encoder.*`, `model.decoder.*`), as f32: what
/// a `model.safetensors` of the same model holds (less `proj_out`, the
/// token embedding again). For converting and comparing the two layouts.
pub fn ct2_hf_tensors(model_bin: impl AsRef<Path>) -> Result<std::collections::HashMap<String, Tensor>> {
    let ct2 = Ct2Model::open(model_bin.as_ref())?;
    Ok(weights::hf_tensors(&ct2, &Device::Cpu)?.0)
}

/// A loaded Whisper model, ready to transcribe.
pub struct Whisper {
    config: Config,
    encoder: Encoder,
    decoder: Decoder,
    tokenizer: tokenizers::Tokenizer,
    specials: Specials,
    n_mels: usize,
    dir: PathBuf,
    /// Whether the encoder runs in int8.
    int8: bool,
}

impl std::fmt::Debug for Whisper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whisper")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish()
    }
}

impl Whisper {
    /// Loads a Whisper model folder, in either layout (told apart by the
    /// weight file present):
    ///
    /// - faster-whisper (CTranslate2): `model.bin`, `config.json`
    ///   (`suppress_ids`, `suppress_ids_begin`, `lang_ids`) and
    ///   `tokenizer.json`; the model is multilingual when its vocabulary has
    ///   at least 51865 tokens (CTranslate2's rule);
    /// - Hugging Face transformers (`openai/whisper-*`): `model.safetensors`,
    ///   `config.json` (`model_type = "whisper"`), `generation_config.json`
    ///   (`suppress_tokens`, `begin_suppress_tokens`, `lang_to_id`,
    ///   `no_timestamps_token_id`, `is_multilingual`) and `tokenizer.json`.
    ///
    /// An English-only model (`*.en`) transcribes English only: its
    /// languages are `["en"]`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Whisper> {
        let dir = dir.as_ref().to_path_buf();
        let device = Device::Cpu;
        let file_err = |path: PathBuf, message: String| WhisperError::File { path, message };
        let hf_layout = if dir.join("model.bin").is_file() {
            false
        } else if dir.join("model.safetensors").is_file() {
            true
        } else {
            return Err(file_err(
                dir.clone(),
                "no Whisper weights: neither model.bin (faster-whisper, CTranslate2) \
                 nor model.safetensors (Hugging Face transformers)"
                    .into(),
            ));
        };
        let (tensors, config) = if hf_layout {
            let config = hf::config(&dir)?;
            (hf::tensors(&dir, &device)?, config)
        } else {
            let ct2 = Ct2Model::open(dir.join("model.bin"))?;
            weights::hf_tensors(&ct2, &device)?
        };
        let n_mels = config.num_mel_bins;
        let vb = VarBuilder::from_tensors(tensors, candle_core::DType::F32, &device);
        let encoder = Encoder::load(vb.pp("model.encoder"), &config)?;
        let decoder = Decoder::load(vb.pp("model.decoder"), &config)?;
        drop(vb);

        let tok_path = dir.join("tokenizer.json");
        let tokenizer =
            tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| file_err(tok_path.clone(), e.to_string()))?;
        let token = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| file_err(tok_path.clone(), format!("no token {t}")))
        };
        let code = |id: u32| -> Option<String> {
            let t = tokenizer.id_to_token(id)?;
            Some(t.strip_prefix("<|")?.strip_suffix("|>")?.to_string())
        };
        let ids = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array()
                .map(|a| a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32).collect())
                .unwrap_or_default()
        };
        // (multilingual, languages, suppress, suppress at the first step,
        // <|notimestamps|>)
        let (multilingual, mut languages, suppress, suppress_begin, no_timestamps) = if hf_layout {
            let gen = hf::read_json(&dir.join("generation_config.json"))?;
            let multilingual = gen["is_multilingual"]
                .as_bool()
                .unwrap_or(config.vocab_size >= MULTILINGUAL_VOCAB);
            let mut languages: Vec<(u32, String)> = gen["lang_to_id"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(t, id)| {
                            let code = t.strip_prefix("<|")?.strip_suffix("|>")?.to_string();
                            Some((id.as_u64()? as u32, code))
                        })
                        .collect()
                })
                .unwrap_or_default();
            languages.sort();
            let no_timestamps = match gen["no_timestamps_token_id"].as_u64() {
                Some(id) => id as u32,
                None => token("<|notimestamps|>")?,
            };
            (
                multilingual,
                languages,
                ids(&gen["suppress_tokens"]),
                ids(&gen["begin_suppress_tokens"]),
                no_timestamps,
            )
        } else {
            let cfg = hf::read_json(&dir.join("config.json"))?;
            let languages = ids(&cfg["lang_ids"])
                .into_iter()
                .filter_map(|id| Some((id, code(id)?)))
                .collect();
            (
                config.vocab_size >= MULTILINGUAL_VOCAB,
                languages,
                ids(&cfg["suppress_ids"]),
                ids(&cfg["suppress_ids_begin"]),
                token("<|notimestamps|>")?,
            )
        };
        if !multilingual {
            // The language tokens of an English-only vocabulary are never
            // fed to the model (CTranslate2's `lang_ids` of such a model
            // are even off by one).
            languages = vec![(token("<|en|>").unwrap_or(0), "en".to_string())];
        }
        let no_speech = token("<|nospeech|>").or_else(|_| token("<|nocaptions|>"))?;
        let specials = Specials {
            sot: token("<|startoftranscript|>")?,
            eot: token("<|endoftext|>")?,
            sot_prev: token("<|startofprev|>")?,
            transcribe: token("<|transcribe|>")?,
            no_timestamps,
            no_speech,
            timestamp_begin: no_timestamps + 1,
            multilingual,
            languages,
            suppress,
            suppress_begin,
        };
        Ok(Whisper {
            config,
            encoder,
            decoder,
            tokenizer,
            specials,
            n_mels,
            dir,
            int8: false,
        })
    }

    /// Whether the model is multilingual (an English-only model, `*.en`,
    /// has no language detection and transcribes English only).
    pub fn is_multilingual(&self) -> bool {
        self.specials.multilingual
    }

    /// Runs the audio encoder's linear layers in int8 from now on (weights
    /// per output column, activations per row at run time, no smoothing;
    /// see `encoder.rs`). The decoder stays f32 (it runs a row or a few at a
    /// time). Transcripts of the parity clips stay within a point of WER of
    /// f32 (`tests/whisper_int8.rs`).
    pub fn quantize_encoder(&mut self) {
        self.encoder.quantize();
        self.int8 = true;
    }

    /// Whether the encoder runs in int8.
    pub fn is_int8(&self) -> bool {
        self.int8
    }

    /// The model folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Transcribes 16 kHz mono samples. `language` is a Whisper language
    /// code (`en`, `de`, …); `None` detects it from the first 30 seconds.
    pub fn transcribe(&mut self, samples: &[f32], language: Option<&str>) -> Result<Transcript> {
        decode::transcribe(self, samples, language)
    }

    /// Starts transcribing audio that arrives in pieces (see [`Stream`]):
    /// memory stays bounded by one window whatever the audio's length.
    pub fn stream(&mut self, opts: StreamOptions) -> Stream<'_> {
        Stream::new(self, opts)
    }

    /// Whether `code` is a language this model transcribes.
    pub fn knows_language(&self, code: &str) -> bool {
        self.specials.languages.iter().any(|(_, c)| c == code)
    }

    /// The languages this model transcribes (Whisper codes).
    pub fn languages(&self) -> Vec<String> {
        self.specials.languages.iter().map(|(_, c)| c.clone()).collect()
    }

    /// Encodes one window of features (`n_mels × n` values, mel-major,
    /// `n ≤ 3000`), padded with zeros to 3000 frames as the reference pads.
    pub(crate) fn encode(&mut self, features: &[f32], n_frames: usize, start: usize, len: usize) -> Result<Tensor> {
        let mut window = vec![0f32; self.n_mels * N_FRAMES];
        for m in 0..self.n_mels {
            let row = &features[m * n_frames + start..m * n_frames + start + len];
            window[m * N_FRAMES..m * N_FRAMES + len].copy_from_slice(row);
        }
        self.encoder.forward(window, N_FRAMES)
    }

    /// The decoder (with a key/value cache per window).
    pub(crate) fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    pub(crate) fn specials(&self) -> &Specials {
        &self.specials
    }

    pub(crate) fn n_mels(&self) -> usize {
        self.n_mels
    }

    pub(crate) fn text(&self, tokens: &[u32]) -> String {
        let eot = self.specials.eot;
        let text: Vec<u32> = tokens.iter().copied().filter(|&t| t < eot).collect();
        self.tokenizer.decode(&text, true).unwrap_or_default()
    }
}
