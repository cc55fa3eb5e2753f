//! Hugging Face transformers Whisper folders (`openai/whisper-*`):
//! `config.json` (`WhisperConfig`), `model.safetensors` with the names the
//! encoder and decoder ask for (`model.encoder.*`, `model.decoder.*`; the
//! output projection `proj_out` is the token embedding and is not read) and
//! `generation_config.json` (suppressed tokens, languages, multilinguality).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::whisper::Config;

use super::{Result, WhisperError};

/// Reads a JSON file of the model folder.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|message| WhisperError::File {
            path: path.to_path_buf(),
            message,
        })
}

/// The model config from HF's `config.json`; anything but `model_type =
/// "whisper"` is refused.
pub(crate) fn config(dir: &Path) -> Result<Config> {
    let path = dir.join("config.json");
    let cfg = read_json(&path)?;
    let model_type = cfg["model_type"].as_str().unwrap_or("");
    if model_type != "whisper" {
        return Err(WhisperError::Model(format!(
            "{}: model_type is {:?}, not \"whisper\"",
            path.display(),
            model_type
        )));
    }
    let field = |key: &str| -> Result<usize> {
        cfg[key]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| WhisperError::Model(format!("{}: no {key}", path.display())))
    };
    Ok(Config {
        num_mel_bins: field("num_mel_bins")?,
        max_source_positions: field("max_source_positions")?,
        d_model: field("d_model")?,
        encoder_attention_heads: field("encoder_attention_heads")?,
        encoder_layers: field("encoder_layers")?,
        vocab_size: field("vocab_size")?,
        max_target_positions: field("max_target_positions")?,
        decoder_attention_heads: field("decoder_attention_heads")?,
        decoder_layers: field("decoder_layers")?,
        suppress_tokens: Vec::new(),
    })
}

/// The tensors of `model.safetensors`, as f32 (checkpoints in half
/// precision are widened).
pub(crate) fn tensors(dir: &Path, dev: &Device) -> Result<HashMap<String, Tensor>> {
    let path = dir.join("model.safetensors");
    let file_err = |e: candle_core::Error| WhisperError::File {
        path: path.clone(),
        message: format!("not a readable safetensors file: {e}"),
    };
    let raw = candle_core::safetensors::load(&path, dev).map_err(file_err)?;
    raw.into_iter()
        .map(|(name, t)| Ok((name, t.to_dtype(DType::F32)?)))
        .collect()
}
