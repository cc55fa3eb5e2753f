//! The sentence encoder: tokenizer + BERT + pooling (+ normalisation), as
//! sentence-transformers runs it.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::cpu::{CpuBert, Precision, CALIBRATION};
use crate::error::LanguageError;

/// Default batch size of [`SentenceEncoder::encode`] (sentence-transformers'
/// default too).
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Inputs to [`SentenceEncoder::encode`] are cut to at most this many bytes
/// per token of the model's `max_seq_length` before tokenizing (at a
/// whitespace when there is one), so that a 1 MB string costs no more than a
/// long sentence. A WordPiece token covers at most 100 characters (longer
/// words become one `[UNK]`), i.e. 400 bytes, so for text with whitespace the
/// cut never changes the tokens that survive truncation.
pub const MAX_BYTES_PER_TOKEN: usize = 400;

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
/// When several modes are on, their results are concatenated in the order
/// of the fields, as sentence-transformers does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pooling {
    /// The first token's (`[CLS]`) vector.
    pub cls: bool,
    /// Element-wise maximum over the real (unpadded) tokens.
    pub max: bool,
    /// Mean over the real tokens.
    pub mean: bool,
    /// Sum over the real tokens divided by the square root of their count.
    pub mean_sqrt_len: bool,
    /// Mean weighted by position (1, 2, …).
    pub weighted_mean: bool,
    /// The last real token's vector.
    pub last_token: bool,
}

impl Pooling {
    /// Mean pooling only (the default when a model directory has no pooling
    /// config, as in sentence-transformers).
    pub fn mean() -> Pooling {
        Pooling {
            mean: true,
            ..Pooling::default()
        }
    }

    fn modes(&self) -> usize {
        [
            self.cls,
            self.max,
            self.mean,
            self.mean_sqrt_len,
            self.weighted_mean,
            self.last_token,
        ]
        .iter()
        .filter(|m| **m)
        .count()
    }
}

#[derive(Debug, Deserialize)]
struct PoolingFile {
    word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Debug, Default, Deserialize)]
struct SbertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

#[derive(Debug, Default, Deserialize)]
struct TokenizerConfig {
    model_max_length: Option<f64>,
}

/// A BERT-family sentence encoder loaded from a sentence-transformers model
/// directory, giving the same vectors as sentence-transformers (cosine ≥
/// 0.9999 on the committed reference fixtures).
///
/// It is `Send + Sync`: load it once and share it in an `Arc` across pipeline
/// stages and web requests. Inference runs on the CPU with as many threads as
/// the machine has cores (candle's default).
///
/// Defined behaviour for odd input:
/// - an empty or whitespace-only string (or one made only of control
///   characters, which the tokenizer removes) is encoded as the empty token
///   sequence `[CLS] [SEP]`, exactly as sentence-transformers encodes `""`:
///   a fixed, finite, (when the model normalises) unit vector;
/// - text longer than `max_seq_length` tokens is truncated (use
///   [`SentenceEncoder::encode_whole`] or [`SentenceEncoder::encode_long`]
///   to see all of it);
/// - a huge string is cut before tokenizing (see [`MAX_BYTES_PER_TOKEN`]), so
///   time and memory stay bounded.
pub struct SentenceEncoder {
    model: CpuBert,
    /// Truncates at `max_seq_length` (special tokens included), no padding.
    pub(crate) tokenizer: Tokenizer,
    /// No truncation, no padding (for sliding windows).
    pub(crate) tokenizer_full: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    lowercase: bool,
    max_seq_length: usize,
    hidden: usize,
    dim: usize,
    name: String,
    checksum: String,
    /// Special tokens the post-processor puts before the text (`[CLS]`).
    pub(crate) prefix: Vec<u32>,
    /// Special tokens the post-processor puts after the text (`[SEP]`).
    pub(crate) suffix: Vec<u32>,
    batch_size: usize,
    dir: PathBuf,
    precision: Precision,
    /// At int8, the id of the stored calibration it uses (none: the fixed
    /// sentences).
    int8_id: Option<String>,
}

const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SentenceEncoder>();
};

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, LanguageError> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LanguageError::Missing {
                path: path.to_path_buf(),
                what: what.to_string(),
            }
        } else {
            LanguageError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })
}

/// Reads an optional JSON file: `Ok(None)` when it does not exist.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, LanguageError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LanguageError::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| LanguageError::Invalid {
            path: path.to_path_buf(),
            msg: format!("invalid JSON: {e}"),
        })
}

impl SentenceEncoder {
    /// Loads a sentence-transformers BERT-family model directory.
    ///
    /// Reads `config.json` (a BERT config), `model.safetensors`,
    /// `tokenizer.json`, and when present `modules.json` (a `Normalize`
    /// module turns on L2 normalisation; the `Pooling` module's folder holds
    /// the pooling config), `1_Pooling/config.json` (default: mean pooling),
    /// `sentence_bert_config.json` (`max_seq_length`, `do_lower_case`) and
    /// `tokenizer_config.json` (`model_max_length`, used when
    /// `sentence_bert_config.json` gives no `max_seq_length`).
    ///
    /// Errors name the file and the problem; a missing or malformed file is
    /// reported as bad input ([`LanguageError::is_bad_input`]).
    pub fn load(dir: &Path) -> Result<SentenceEncoder, LanguageError> {
        SentenceEncoder::load_with(dir, Precision::F32)
    }

    /// [`SentenceEncoder::load`] with the linear layers at `precision`
    /// ([`Precision::Int8`]: faster, slightly different vectors, recorded in
    /// [`SentenceEncoder::version`]).
    pub fn load_with(dir: &Path, precision: Precision) -> Result<SentenceEncoder, LanguageError> {
        if !dir.is_dir() {
            return Err(LanguageError::Missing {
                path: dir.to_path_buf(),
                what: "not a model directory".into(),
            });
        }
        // --- BERT config ------------------------------------------------
        let config_path = dir.join("config.json");
        let config_bytes = read_file(&config_path, "the model's config.json")?;
        let raw: serde_json::Value = serde_json::from_slice(&config_bytes).map_err(|e| LanguageError::Invalid {
            path: config_path.clone(),
            msg: format!("invalid JSON: {e}"),
        })?;
        if let Some(mt) = raw.get("model_type").and_then(|v| v.as_str()) {
            if mt != "bert" {
                return Err(LanguageError::Invalid {
                    path: config_path,
                    msg: format!("model_type {mt:?} is not supported (only BERT-family encoders, model_type \"bert\")"),
                });
            }
        }
        let config: BertConfig = serde_json::from_value(raw).map_err(|e| LanguageError::Invalid {
            path: config_path.clone(),
            msg: format!("not a BERT config: {e}"),
        })?;
        let hidden = config.hidden_size;

        // --- modules, pooling, normalisation ---------------------------
        let modules: Option<Vec<ModuleEntry>> = read_json(&dir.join("modules.json"))?;
        let normalize = modules
            .as_ref()
            .is_some_and(|m| m.iter().any(|e| e.kind.ends_with("Normalize")));
        let pooling_dir = modules
            .as_ref()
            .and_then(|m| m.iter().find(|e| e.kind.ends_with("Pooling")).map(|e| e.path.clone()))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "1_Pooling".to_string());
        let pooling_path = dir.join(&pooling_dir).join("config.json");
        let pooling = match read_json::<PoolingFile>(&pooling_path)? {
            None => Pooling::mean(),
            Some(p) => {
                if let Some(d) = p.word_embedding_dimension {
                    if d != hidden {
                        return Err(LanguageError::Invalid {
                            path: pooling_path,
                            msg: format!("word_embedding_dimension {d} differs from the model's hidden_size {hidden}"),
                        });
                    }
                }
                let pooling = Pooling {
                    cls: p.pooling_mode_cls_token,
                    max: p.pooling_mode_max_tokens,
                    mean: p.pooling_mode_mean_tokens,
                    mean_sqrt_len: p.pooling_mode_mean_sqrt_len_tokens,
                    weighted_mean: p.pooling_mode_weightedmean_tokens,
                    last_token: p.pooling_mode_lasttoken,
                };
                if pooling.modes() == 0 {
                    return Err(LanguageError::Invalid {
                        path: pooling_path,
                        msg: "no pooling mode is on".into(),
                    });
                }
                pooling
            }
        };

        // --- sequence length -------------------------------------------
        let sbert: SbertConfig = read_json(&dir.join("sentence_bert_config.json"))?.unwrap_or_default();
        let tok_config: TokenizerConfig = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or_default();
        let max_seq_length = sbert
            .max_seq_length
            .or_else(|| {
                tok_config
                    .model_max_length
                    .filter(|m| m.is_finite() && *m >= 1.0 && *m < 1e9)
                    .map(|m| m as usize)
            })
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        if max_seq_length < 3 {
            return Err(LanguageError::Invalid {
                path: dir.join("sentence_bert_config.json"),
                msg: format!("max_seq_length {max_seq_length} is too small"),
            });
        }

        // --- tokenizer ---------------------------------------------------
        let tok_path = dir.join("tokenizer.json");
        let tok_bytes = read_file(&tok_path, "the model's tokenizer.json")?;
        let mut tokenizer_full = Tokenizer::from_bytes(&tok_bytes).map_err(|e| LanguageError::Invalid {
            path: tok_path.clone(),
            msg: format!("not a tokenizer: {e}"),
        })?;
        tokenizer_full.with_padding(None);
        tokenizer_full
            .with_truncation(None)
            .map_err(|e| LanguageError::Tokenize(e.to_string()))?;
        let mut tokenizer = tokenizer_full.clone();
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| LanguageError::Invalid {
                path: tok_path.clone(),
                msg: format!("cannot truncate at {max_seq_length}: {e}"),
            })?;
        // The special tokens around a single sequence: encode a word and split
        // the special tokens into those before and after it.
        let probe = tokenizer_full
            .encode("a", true)
            .map_err(|e| LanguageError::Tokenize(e.to_string()))?;
        let mask = probe.get_special_tokens_mask();
        let ids = probe.get_ids();
        let first_text = mask
            .iter()
            .position(|m| *m == 0)
            .ok_or_else(|| LanguageError::Invalid {
                path: tok_path.clone(),
                msg: "the tokenizer produced no token for the text \"a\"".into(),
            })?;
        let last_text = mask.iter().rposition(|m| *m == 0).unwrap_or(first_text);
        let prefix = ids[..first_text].to_vec();
        let suffix = ids[last_text + 1..].to_vec();
        // --- weights -----------------------------------------------------
        let weights_path = dir.join("model.safetensors");
        let weights = read_file(
            &weights_path,
            "the model's weights; only safetensors are supported, not pytorch_model.bin",
        )?;
        let checksum = blake3::hash(&weights).to_hex().to_string();
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu).map_err(|e| {
            LanguageError::Weights {
                path: weights_path.clone(),
                source: e,
            }
        })?;
        let model = CpuBert::load(vb, &config).map_err(|e| LanguageError::Weights {
            path: weights_path.clone(),
            source: e,
        })?;

        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let mut enc = SentenceEncoder {
            model,
            tokenizer,
            tokenizer_full,
            pooling,
            normalize,
            lowercase: sbert.do_lower_case,
            max_seq_length,
            hidden,
            dim: hidden * pooling.modes(),
            name,
            checksum,
            prefix,
            suffix,
            batch_size: DEFAULT_BATCH_SIZE,
            dir: dir.to_path_buf(),
            precision,
            int8_id: None,
        };
        if precision == Precision::Int8 {
            let f32_version = enc.f32_version();
            let stored = crate::int8::TextCalibration::load(dir)?.filter(|cal| {
                let same = cal.f32_version() == Some(f32_version.as_str());
                if !same {
                    tracing::warn!(
                        "{}: recorded for {:?}, not these weights ({f32_version}): calibrating on fixed \
                         sentences instead; `kino models quantize` records it again",
                        dir.join(crate::int8::TextCalibration::FILE).display(),
                        cal.f32_version().unwrap_or("an unknown version")
                    );
                }
                same
            });
            if let Some(cal) = stored {
                enc.check_calibration(&cal)?;
                enc.set_int8(&cal);
                return Ok(enc);
            }
            let encodings = enc
                .tokenizer
                .encode_batch(CALIBRATION.to_vec(), true)
                .map_err(|e| LanguageError::Tokenize(e.to_string()))?;
            let seqs: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
            enc.model.quantize(&seqs).map_err(|e| LanguageError::Weights {
                path: weights_path.clone(),
                source: e,
            })?;
        }
        Ok(enc)
    }

    /// Length of the vectors [`SentenceEncoder::encode`] returns (384 for
    /// all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// A short stable id of the model: the directory name and the first 12
    /// hex digits of the blake3 of `model.safetensors`, e.g.
    /// `all-MiniLM-L6-v2@1a2b3c4d5e6f`. Stored with every embedding so that
    /// stale embeddings can be found after a model change. At
    /// [`Precision::Int8`] it ends in `+int8` (e.g.
    /// `all-MiniLM-L6-v2@1a2b3c4d5e6f+int8`), since the vectors differ.
    ///
    /// With a stored calibration ([`crate::TextCalibration`]) it ends in
    /// `+int8:<calibration id>` instead.
    pub fn version(&self) -> String {
        match (self.precision, &self.int8_id) {
            (Precision::F32, _) => self.f32_version(),
            (Precision::Int8, None) => format!("{}+int8", self.f32_version()),
            (Precision::Int8, Some(id)) => format!("{}+int8:{id}", self.f32_version()),
        }
    }

    /// [`SentenceEncoder::version`] at f32: the weights' name and digest.
    pub fn f32_version(&self) -> String {
        format!("{}@{}", self.name, &self.checksum[..12])
    }

    /// Refuses a calibration recorded for a model of other layers.
    pub(crate) fn check_calibration(&self, cal: &crate::int8::TextCalibration) -> Result<(), LanguageError> {
        let layers = self.model.linear_inputs();
        let widths: Vec<usize> = cal.ranges().iter().map(Vec::len).collect();
        if widths != layers {
            return Err(LanguageError::Invalid {
                path: self.dir.join(crate::int8::TextCalibration::FILE),
                msg: format!(
                    "{} calibrated layers for a model of {}; `kino models quantize` writes it again",
                    widths.len(),
                    layers.len()
                ),
            });
        }
        Ok(())
    }

    /// The model (for calibration).
    pub(crate) fn model(&self) -> &CpuBert {
        &self.model
    }

    /// Turns the linear layers to int8 with the calibration `cal`.
    pub(crate) fn set_int8(&mut self, cal: &crate::int8::TextCalibration) {
        self.model.quantize_with(cal.ranges());
        self.precision = Precision::Int8;
        self.int8_id = Some(cal.id().to_string());
    }

    /// Token ids of `texts` as [`SentenceEncoder::encode`] runs them.
    pub(crate) fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, LanguageError> {
        Ok(self.encodings(texts)?.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// `texts` prepared ([`Self::prepare`]) and tokenized, truncated at
    /// `max_seq_length`.
    fn encodings(&self, texts: &[&str]) -> Result<Vec<tokenizers::Encoding>, LanguageError> {
        let prepared: Vec<String> = texts.iter().map(|t| self.prepare(t).into_owned()).collect();
        self.tokenizer
            .encode_batch(prepared, true)
            .map_err(|e| LanguageError::Tokenize(e.to_string()))
    }

    /// The precision of the linear layers.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The full blake3 (hex) of `model.safetensors`.
    pub fn checksum(&self) -> &str {
        &self.checksum
    }

    /// The model's name (its directory's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The longest token sequence the model sees, special tokens included
    /// (256 for all-MiniLM-L6-v2).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Whether output vectors are L2-normalised (the model has a `Normalize`
    /// module).
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// Whether input is lower-cased before tokenizing
    /// (`do_lower_case` in `sentence_bert_config.json`).
    pub fn lowercases(&self) -> bool {
        self.lowercase
    }

    /// The pooling the model uses.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Sets how many sequences go through the model at once (at least 1).
    pub fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size.max(1);
    }

    /// The batch size in use.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// How many tokens (special tokens included, after truncation) the model
    /// sees for `text`.
    pub fn token_count(&self, text: &str) -> Result<usize, LanguageError> {
        let text = self.prepare(text);
        let enc = self
            .tokenizer
            .encode(text.as_ref(), true)
            .map_err(|e| LanguageError::Tokenize(e.to_string()))?;
        Ok(enc.get_ids().len())
    }

    /// Lower-cases when the model asks for it and cuts huge inputs.
    fn prepare<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        // sentence-transformers strips each text before tokenizing.
        let cut = cut_text(text.trim(), self.max_seq_length.saturating_mul(MAX_BYTES_PER_TOKEN));
        if self.lowercase {
            std::borrow::Cow::Owned(cut.to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(cut)
        }
    }

    /// Encodes texts into sentence vectors, one per text, in input order.
    ///
    /// Texts are tokenized (truncated at `max_seq_length`), sorted by length
    /// and run in batches of [`SentenceEncoder::batch_size`] with padding and
    /// attention masks, then pooled and (when the model says so)
    /// L2-normalised. See the type's documentation for empty and huge input.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, LanguageError> {
        Ok(self.encode_marking_cut(texts)?.0)
    }

    /// [`SentenceEncoder::encode`], also saying which texts were cut (longer
    /// than `max_seq_length` tokens, or than the bytes read before
    /// tokenizing).
    pub(crate) fn encode_marking_cut(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<bool>), LanguageError> {
        if texts.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut cut: Vec<bool> = texts.iter().map(|t| self.prepared_was_cut(t)).collect();
        let encodings = self.encodings(texts)?;
        for (c, e) in cut.iter_mut().zip(&encodings) {
            *c |= !e.get_overflowing().is_empty();
        }
        let seqs: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
        Ok((self.encode_ids(&seqs)?, cut))
    }

    /// Whether [`Self::prepare`] cuts `text` before tokenizing.
    fn prepared_was_cut(&self, text: &str) -> bool {
        let t = text.trim();
        cut_text(t, self.max_seq_length.saturating_mul(MAX_BYTES_PER_TOKEN)).len() < t.len()
    }

    /// Encodes one text (see [`SentenceEncoder::encode`]).
    pub fn encode_one(&self, text: &str) -> Result<Vec<f32>, LanguageError> {
        Ok(self.encode(&[text])?.pop().unwrap_or_default())
    }

    /// Runs token id sequences (special tokens included, each at most
    /// `max_seq_length` long) through the model, longest first in batches,
    /// and returns the pooled (normalised) vectors in input order.
    pub(crate) fn encode_ids(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, LanguageError> {
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); seqs.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| seqs[i].as_slice()).collect();
            let vecs = self.forward_batch(&batch)?;
            for (&i, v) in chunk.iter().zip(vecs) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn forward_batch(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, LanguageError> {
        let b = batch.len();
        let len = batch.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        if len > self.max_seq_length {
            return Err(LanguageError::Argument(format!(
                "a sequence of {len} tokens exceeds max_seq_length {}",
                self.max_seq_length
            )));
        }
        // Packed forward: no padding tokens (see `cpu`), so every row is real.
        let hidden = self.model.forward(batch)?;
        let h = self.hidden;
        let ones = vec![1u32; len];
        let mut out = Vec::with_capacity(b);
        let mut start = 0;
        for s in batch {
            let n = s.len();
            let mut v = pool(&hidden[start * h..(start + n) * h], &ones[..n], h, &self.pooling);
            if self.normalize {
                l2_normalize(&mut v);
            }
            out.push(v);
            start += n;
        }
        Ok(out)
    }
}

/// Pools one sequence's token vectors (`rows`: `len × h`, row-major) with
/// its attention mask, as sentence-transformers' `Pooling` module does.
fn pool(rows: &[f32], mask: &[u32], h: usize, p: &Pooling) -> Vec<f32> {
    let real: Vec<usize> = mask
        .iter()
        .enumerate()
        .filter(|(_, m)| **m != 0)
        .map(|(i, _)| i)
        .collect();
    let n = real.len();
    let row = |t: usize| &rows[t * h..(t + 1) * h];
    let mut out = Vec::with_capacity(h * p.modes());
    if p.cls {
        out.extend_from_slice(row(0));
    }
    if p.max {
        let mut m = vec![-1e9f32; h];
        for &t in &real {
            for (a, x) in m.iter_mut().zip(row(t)) {
                *a = a.max(*x);
            }
        }
        out.extend(m);
    }
    let sum = || {
        let mut s = vec![0f64; h];
        for &t in &real {
            for (a, x) in s.iter_mut().zip(row(t)) {
                *a += *x as f64;
            }
        }
        s
    };
    if p.mean {
        let d = (n as f64).max(1e-9);
        out.extend(sum().into_iter().map(|x| (x / d) as f32));
    }
    if p.mean_sqrt_len {
        let d = (n as f64).sqrt().max(1e-9);
        out.extend(sum().into_iter().map(|x| (x / d) as f32));
    }
    if p.weighted_mean {
        let mut s = vec![0f64; h];
        let mut w_sum = 0f64;
        for &t in &real {
            let w = (t + 1) as f64;
            w_sum += w;
            for (a, x) in s.iter_mut().zip(row(t)) {
                *a += w * *x as f64;
            }
        }
        let d = w_sum.max(1e-9);
        out.extend(s.into_iter().map(|x| (x / d) as f32));
    }
    if p.last_token {
        let t = real.last().copied().unwrap_or(0);
        out.extend_from_slice(row(t));
    }
    out
}

/// Divides `v` by its L2 norm (at least 1e-12, as `torch.nn.functional.normalize`).
pub(crate) fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| (*x as f64) * (*x as f64))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    for x in v.iter_mut() {
        *x = (*x as f64 / norm) as f32;
    }
}

/// Cuts `text` to at most `max_bytes` bytes: at the last whitespace within
/// the limit when there is one, else at a character boundary.
pub(crate) fn cut_text(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    match head.rfind(char::is_whitespace) {
        Some(ws) if ws > 0 => &head[..ws],
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_text_keeps_short_text_and_cuts_at_whitespace() {
        assert_eq!(cut_text("hello world", 100), "hello world");
        assert_eq!(cut_text("hello world again", 13), "hello world");
        // No whitespace: cut at a char boundary, never inside a character.
        let s = "ééééé";
        assert_eq!(cut_text(s, 5), "éé");
    }

    #[test]
    fn pooling_modes_match_their_definitions() {
        // Two real tokens and one padded one, h = 2.
        let rows = [1.0, 2.0, 3.0, 6.0, 100.0, 100.0];
        let mask = [1, 1, 0];
        let p = |f: fn(&mut Pooling)| {
            let mut p = Pooling::default();
            f(&mut p);
            pool(&rows, &mask, 2, &p)
        };
        assert_eq!(p(|p| p.mean = true), vec![2.0, 4.0]);
        assert_eq!(p(|p| p.max = true), vec![3.0, 6.0]);
        assert_eq!(p(|p| p.cls = true), vec![1.0, 2.0]);
        assert_eq!(p(|p| p.last_token = true), vec![3.0, 6.0]);
        let s = p(|p| p.mean_sqrt_len = true);
        assert!((s[0] - 4.0 / 2f32.sqrt()).abs() < 1e-6);
        let w = p(|p| p.weighted_mean = true);
        assert!((w[0] - (1.0 + 2.0 * 3.0) / 3.0).abs() < 1e-6);
        // Concatenation order: cls, max, mean.
        let all = p(|p| {
            p.cls = true;
            p.mean = true;
            p.max = true
        });
        assert_eq!(all, vec![1.0, 2.0, 3.0, 6.0, 2.0, 4.0]);
    }

    #[test]
    fn l2_normalize_gives_unit_norm_and_keeps_zero() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        let mut z = vec![0.0, 0.0];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
    }
}
