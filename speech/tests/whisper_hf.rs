//! Hugging Face transformers Whisper folders (`openai/whisper-*` layout):
//! no such checkpoint is kept offline, so the test writes one from the real
//! faster-whisper-base weights (`kino models fetch speech`) and checks that
//! it transcribes token for token as the CTranslate2 folder does; and that
//! broken folders fail with clear errors.

mod common;

use std::path::Path;

use kino_speech::whisper::ct2_hf_tensors;
use kino_speech::{Whisper, WhisperError};
use serde_json::{json, Value};

fn base_dir() -> std::path::PathBuf {
    let dir = common::models_dir().join("Systran/faster-whisper-base");
    assert!(
        dir.join("model.bin").is_file(),
        "{} is missing: install the speech model with `kino models fetch speech`",
        dir.display()
    );
    dir
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes an HF-layout copy of the faster-whisper folder `ct2` into `out`.
///
/// `model.safetensors`: the HF-named tensors `weights.rs` makes of
/// `model.bin` (the names `WhisperForConditionalGeneration` saves, less
/// `proj_out.weight`, tied to `model.decoder.embed_tokens.weight`), f32.
///
/// `config.json` (HF `WhisperConfig`), from the tensor shapes:
/// `num_mel_bins` = conv1's input channels, `d_model` = its output
/// channels, `encoder_layers`/`decoder_layers` = the layers present,
/// `*_attention_heads` = CT2's `{encoder,decoder}/num_heads` (8 for base),
/// `vocab_size` = the embedding's rows, `max_source_positions` /
/// `max_target_positions` = the position tables' rows, `*_ffn_dim` = fc1's
/// rows.
///
/// `generation_config.json`, from the CT2 `config.json` and the tokenizer:
/// `suppress_tokens` = `suppress_ids`, `begin_suppress_tokens` =
/// `suppress_ids_begin`, `lang_to_id` = `{"<|xx|>": id}` for each id of
/// `lang_ids`, `no_timestamps_token_id` = `<|notimestamps|>`,
/// `decoder_start_token_id` = `<|startoftranscript|>`, `eos_token_id` =
/// `<|endoftext|>`, `is_multilingual` = vocabulary of at least 51865 tokens
/// (CTranslate2's rule), `alignment_heads` copied.
///
/// `tokenizer.json` is copied.
fn write_hf(ct2: &Path, out: &Path) {
    let tensors = ct2_hf_tensors(ct2.join("model.bin")).unwrap();
    candle_core::safetensors::save(&tensors, out.join("model.safetensors")).unwrap();
    let dims = |name: &str| tensors[name].dims().to_vec();
    let layers = |side: &str| {
        (0..)
            .take_while(|l| tensors.contains_key(&format!("model.{side}.layers.{l}.fc1.weight")))
            .count()
    };
    let conv1 = dims("model.encoder.conv1.weight");
    let vocab = dims("model.decoder.embed_tokens.weight")[0];
    let heads = |side: &str| {
        let m = kino_speech::Ct2Model::open(ct2.join("model.bin")).unwrap();
        m.tensor_f32(&format!("{side}/num_heads")).unwrap().1[0] as usize
    };
    let config = json!({
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "activation_function": "gelu",
        "num_mel_bins": conv1[1],
        "d_model": conv1[0],
        "encoder_layers": layers("encoder"),
        "decoder_layers": layers("decoder"),
        "encoder_attention_heads": heads("encoder"),
        "decoder_attention_heads": heads("decoder"),
        "encoder_ffn_dim": dims("model.encoder.layers.0.fc1.weight")[0],
        "decoder_ffn_dim": dims("model.decoder.layers.0.fc1.weight")[0],
        "vocab_size": vocab,
        "max_source_positions": dims("model.encoder.embed_positions.weight")[0],
        "max_target_positions": dims("model.decoder.embed_positions.weight")[0],
        "torch_dtype": "float32",
    });
    std::fs::write(out.join("config.json"), config.to_string()).unwrap();

    let ct2_config = read_json(&ct2.join("config.json"));
    let tokenizer = tokenizers::Tokenizer::from_file(ct2.join("tokenizer.json")).unwrap();
    let id = |t: &str| tokenizer.token_to_id(t).unwrap();
    let lang_to_id: serde_json::Map<String, Value> = ct2_config["lang_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let i = v.as_u64().unwrap() as u32;
            (tokenizer.id_to_token(i).unwrap(), json!(i))
        })
        .collect();
    let generation = json!({
        "suppress_tokens": ct2_config["suppress_ids"],
        "begin_suppress_tokens": ct2_config["suppress_ids_begin"],
        "alignment_heads": ct2_config["alignment_heads"],
        "lang_to_id": lang_to_id,
        "task_to_id": {"transcribe": id("<|transcribe|>"), "translate": id("<|translate|>")},
        "no_timestamps_token_id": id("<|notimestamps|>"),
        "decoder_start_token_id": id("<|startoftranscript|>"),
        "eos_token_id": id("<|endoftext|>"),
        "is_multilingual": vocab >= 51865,
        "max_length": 448,
    });
    std::fs::write(out.join("generation_config.json"), generation.to_string()).unwrap();
    std::fs::copy(ct2.join("tokenizer.json"), out.join("tokenizer.json")).unwrap();
}

#[test]
fn an_hf_folder_transcribes_token_for_token_as_the_ct2_folder() {
    let ct2 = base_dir();
    let tmp = tempfile::tempdir().unwrap();
    write_hf(&ct2, tmp.path());
    assert!(!tmp.path().join("model.bin").exists());

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (samples, rate) = common::read_wav(&fixtures.join("whisper_short_en.wav"));
    assert_eq!(rate, 16_000);

    let mut hf = Whisper::load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(hf.is_multilingual());
    assert!(hf.knows_language("de"));
    let from_hf = hf.transcribe(&samples, None).unwrap();
    drop(hf);
    let mut base = Whisper::load(&ct2).unwrap();
    let from_ct2 = base.transcribe(&samples, None).unwrap();
    assert_eq!(from_hf.language, "en");
    assert_eq!(from_hf.language, from_ct2.language);
    assert!((from_hf.language_probability - from_ct2.language_probability).abs() < 1e-5);
    let tokens =
        |t: &kino_speech::Transcript| -> Vec<Vec<u32>> { t.segments.iter().map(|s| s.tokens.clone()).collect() };
    assert!(!from_hf.segments.is_empty());
    assert_eq!(tokens(&from_hf), tokens(&from_ct2));
    for (a, b) in from_hf.segments.iter().zip(&from_ct2.segments) {
        assert_eq!((a.start_ms, a.end_ms, &a.text), (b.start_ms, b.end_ms, &b.text));
    }
}

#[test]
fn broken_hf_folders_fail_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Neither weight file.
    std::fs::write(dir.join("config.json"), r#"{"model_type":"whisper"}"#).unwrap();
    let e = Whisper::load(dir).unwrap_err();
    assert!(matches!(e, WhisperError::File { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("model.bin") && msg.contains("model.safetensors"), "{msg}");

    // A truncated safetensors file.
    let t = candle_core::Tensor::zeros((64, 64), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(&std::collections::HashMap::from([("w".to_string(), t)]), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(
        dir.join("config.json"),
        json!({"model_type": "whisper", "num_mel_bins": 80, "max_source_positions": 1500, "d_model": 64,
               "encoder_attention_heads": 1, "encoder_layers": 1, "vocab_size": 51865,
               "max_target_positions": 448, "decoder_attention_heads": 1, "decoder_layers": 1})
        .to_string(),
    )
    .unwrap();
    let e = Whisper::load(dir).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, WhisperError::File { .. }), "{e}");
    assert!(
        msg.contains("model.safetensors") && msg.contains("safetensors"),
        "{msg}"
    );

    // A config that is not Whisper's.
    std::fs::write(dir.join("config.json"), r#"{"model_type":"bert","hidden_size":384}"#).unwrap();
    let e = Whisper::load(dir).unwrap_err();
    assert!(matches!(e, WhisperError::Model(_)), "{e}");
    assert!(e.to_string().contains("\"bert\", not \"whisper\""), "{e}");
}
