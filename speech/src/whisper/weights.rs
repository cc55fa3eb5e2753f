//! CTranslate2 Whisper variables → the Hugging Face `openai/whisper-*` names
//! that candle-transformers' Whisper model asks for, and the model config
//! from the tensor shapes.
//!
//! CTranslate2's converter (its `WhisperLoader`, a `BartLoader`) stores:
//!
//! ```text
//! {encoder,decoder}/layer_N/self_attention/linear_0   q, k, v fused along rows
//! {encoder,decoder}/layer_N/self_attention/linear_1   out_proj
//! {encoder,decoder}/layer_N/self_attention/layer_norm self_attn_layer_norm
//! decoder/layer_N/attention/linear_0                  encoder_attn.q_proj
//! decoder/layer_N/attention/linear_1                  encoder_attn k, v fused along rows
//! decoder/layer_N/attention/linear_2                  encoder_attn.out_proj
//! decoder/layer_N/attention/layer_norm                encoder_attn_layer_norm
//! {encoder,decoder}/layer_N/ffn/linear_0, linear_1    fc1, fc2
//! {encoder,decoder}/layer_N/ffn/layer_norm            final_layer_norm
//! {encoder,decoder}/layer_norm                        layer_norm
//! encoder/conv1, encoder/conv2                        conv1, conv2
//! decoder/embeddings/weight                           embed_tokens
//! decoder/position_encodings/encodings                embed_positions
//! ```
//!
//! Layer norms are `gamma`/`beta` (HF: `weight`/`bias`). The fused key bias
//! is all zeros (HF's `k_proj` has none) and is dropped. The encoder's
//! position encodings (Whisper's fixed sinusoids) are stored too:
//! `encoder/position_encodings/encodings` → `embed_positions`.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_transformers::models::whisper::Config;

use super::{Result, WhisperError};
use crate::ct2::Ct2Model;

/// The HF-named f32 tensors of the model and its config.
pub(crate) fn hf_tensors(m: &Ct2Model, dev: &Device) -> Result<(HashMap<String, Tensor>, Config)> {
    let mut out = HashMap::new();
    let load = |name: &str| -> Result<Tensor> {
        let (shape, values) = m.tensor_f32(name)?;
        Ok(Tensor::from_vec(values, shape, dev)?)
    };
    let scalar = |name: &str| -> Result<usize> {
        let (_, v) = m.tensor_f32(name)?;
        v.first()
            .map(|&x| x as usize)
            .ok_or_else(|| WhisperError::Model(format!("{name} is empty")))
    };
    let shape = |name: &str| -> Result<Vec<usize>> {
        m.variable(name)
            .map(|v| v.shape().to_vec())
            .ok_or_else(|| WhisperError::Model(format!("no variable {name} in {}", m.path().display())))
    };
    let count_layers = |side: &str| {
        (0..)
            .take_while(|l| m.contains(&format!("{side}/layer_{l}/ffn/linear_0/weight")))
            .count()
    };

    let conv1 = shape("encoder/conv1/weight")?;
    let embeddings = shape("decoder/embeddings/weight")?;
    let (d_model, num_mel_bins) = (conv1[0], conv1[1]);
    let config = Config {
        num_mel_bins,
        max_source_positions: shape("encoder/position_encodings/encodings")?[0],
        d_model,
        encoder_attention_heads: scalar("encoder/num_heads")?,
        encoder_layers: count_layers("encoder"),
        vocab_size: embeddings[0],
        max_target_positions: shape("decoder/position_encodings/encodings")?[0],
        decoder_attention_heads: scalar("decoder/num_heads")?,
        decoder_layers: count_layers("decoder"),
        suppress_tokens: Vec::new(),
    };
    if config.encoder_layers == 0 || config.decoder_layers == 0 {
        return Err(WhisperError::Model(format!(
            "{} has no encoder or decoder layers",
            m.path().display()
        )));
    }

    let mut put = |hf: String, t: Tensor| {
        out.insert(hf, t);
    };
    // Linear (weight, bias) and layer norm (gamma, beta) copies.
    let linear = |put: &mut dyn FnMut(String, Tensor), ct2: &str, hf: &str| -> Result<()> {
        put(format!("{hf}.weight"), load(&format!("{ct2}/weight"))?);
        put(format!("{hf}.bias"), load(&format!("{ct2}/bias"))?);
        Ok(())
    };
    let norm = |put: &mut dyn FnMut(String, Tensor), ct2: &str, hf: &str| -> Result<()> {
        put(format!("{hf}.weight"), load(&format!("{ct2}/gamma"))?);
        put(format!("{hf}.bias"), load(&format!("{ct2}/beta"))?);
        Ok(())
    };
    // A fused projection split along rows into `names.len()` parts, each
    // `(hf name, keep its bias)`: the key's (zero) bias is dropped.
    let split = |put: &mut dyn FnMut(String, Tensor), ct2: &str, names: &[(&str, bool)]| -> Result<()> {
        let w = load(&format!("{ct2}/weight"))?;
        let b = load(&format!("{ct2}/bias"))?;
        let n = names.len();
        let rows = w.dim(0)?;
        if rows != n * d_model || b.dim(0)? != rows {
            return Err(WhisperError::Model(format!(
                "{ct2}: {rows} rows, expected {n} × {d_model}"
            )));
        }
        for (i, (hf, bias)) in names.iter().enumerate() {
            put(format!("{hf}.weight"), w.narrow(0, i * d_model, d_model)?.contiguous()?);
            if *bias {
                put(format!("{hf}.bias"), b.narrow(0, i * d_model, d_model)?.contiguous()?);
            }
        }
        Ok(())
    };

    for side in ["encoder", "decoder"] {
        let layers = if side == "encoder" {
            config.encoder_layers
        } else {
            config.decoder_layers
        };
        for l in 0..layers {
            let c = format!("{side}/layer_{l}");
            let h = format!("model.{side}.layers.{l}");
            let (q, k, v) = (
                format!("{h}.self_attn.q_proj"),
                format!("{h}.self_attn.k_proj"),
                format!("{h}.self_attn.v_proj"),
            );
            split(
                &mut put,
                &format!("{c}/self_attention/linear_0"),
                &[(q.as_str(), true), (k.as_str(), false), (v.as_str(), true)],
            )?;
            linear(
                &mut put,
                &format!("{c}/self_attention/linear_1"),
                &format!("{h}.self_attn.out_proj"),
            )?;
            norm(
                &mut put,
                &format!("{c}/self_attention/layer_norm"),
                &format!("{h}.self_attn_layer_norm"),
            )?;
            if side == "decoder" {
                linear(
                    &mut put,
                    &format!("{c}/attention/linear_0"),
                    &format!("{h}.encoder_attn.q_proj"),
                )?;
                let (k, v) = (format!("{h}.encoder_attn.k_proj"), format!("{h}.encoder_attn.v_proj"));
                split(
                    &mut put,
                    &format!("{c}/attention/linear_1"),
                    &[(k.as_str(), false), (v.as_str(), true)],
                )?;
                linear(
                    &mut put,
                    &format!("{c}/attention/linear_2"),
                    &format!("{h}.encoder_attn.out_proj"),
                )?;
                norm(
                    &mut put,
                    &format!("{c}/attention/layer_norm"),
                    &format!("{h}.encoder_attn_layer_norm"),
                )?;
            }
            linear(&mut put, &format!("{c}/ffn/linear_0"), &format!("{h}.fc1"))?;
            linear(&mut put, &format!("{c}/ffn/linear_1"), &format!("{h}.fc2"))?;
            norm(
                &mut put,
                &format!("{c}/ffn/layer_norm"),
                &format!("{h}.final_layer_norm"),
            )?;
        }
        norm(
            &mut put,
            &format!("{side}/layer_norm"),
            &format!("model.{side}.layer_norm"),
        )?;
    }
    linear(&mut put, "encoder/conv1", "model.encoder.conv1")?;
    linear(&mut put, "encoder/conv2", "model.encoder.conv2")?;
    put(
        "model.decoder.embed_tokens.weight".into(),
        load("decoder/embeddings/weight")?,
    );
    put(
        "model.encoder.embed_positions.weight".into(),
        load("encoder/position_encodings/encodings")?,
    );
    put(
        "model.decoder.embed_positions.weight".into(),
        load("decoder/position_encodings/encodings")?,
    );
    Ok((out, config))
}
