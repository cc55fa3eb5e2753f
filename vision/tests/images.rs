//! Bad and unusual image files: converted or refused with a clear error
//! naming the file, never a panic.

use std::path::{Path, PathBuf};

use candle_core::Device;
use kino_vision::{load_image, Swin, VisionError};

fn img(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/images")
        .join(name)
}

fn model() -> Swin {
    Swin::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/swin_pad"),
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn unusual_images_are_converted_and_embedded() {
    let m = model();
    for (name, w, h) in [
        ("gray.png", 40, 30),
        ("rgba.png", 40, 30),
        ("cmyk.jpg", 40, 30),
        ("gray16.png", 40, 30),
        ("rgb16.png", 24, 16),
        ("one_pixel.png", 1, 1),
        ("odd_47x33.png", 47, 33),
    ] {
        let im = load_image(&img(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((im.width(), im.height()), (w, h), "{name}");
        let rgb = im.to_rgb8();
        let f = m.embed(&[rgb]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(f[0].pooled.len(), m.hidden_size());
        assert!(
            f[0].pooled.iter().all(|v| v.is_finite()),
            "{name}: non-finite embedding"
        );
    }
}

#[test]
fn cmyk_jpeg_colours_are_converted() {
    // The CMYK JPEG was made from a photo whose pixels are not gray: after
    // conversion the channels must differ somewhere (not a raw K channel).
    let rgb = load_image(&img("cmyk.jpg")).unwrap().to_rgb8();
    let differs = rgb.pixels().filter(|p| p.0[0].abs_diff(p.0[2]) > 20).count();
    assert!(
        differs > 100,
        "CMYK image looks gray after conversion ({differs} coloured pixels)"
    );
}

#[test]
fn sixteen_bit_png_keeps_its_range() {
    let im = load_image(&img("gray16.png")).unwrap();
    let rgb = im.to_rgb8();
    let max = rgb.pixels().map(|p| p.0[0]).max().unwrap();
    let min = rgb.pixels().map(|p| p.0[0]).min().unwrap();
    assert!(max > 100 && max > min, "16-bit image lost its range: {min}..{max}");
}

#[test]
fn huge_image_is_refused_before_decoding() {
    let t = std::time::Instant::now();
    let err = load_image(&img("huge_10000.png")).unwrap_err();
    assert!(
        matches!(
            err,
            VisionError::TooLarge {
                width: 10000,
                height: 10000,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("huge_10000.png") && msg.contains("10000x10000"), "{msg}");
    assert!(t.elapsed().as_secs_f64() < 1.0, "refusal took {:?}", t.elapsed());
}

#[test]
fn truncated_image_is_a_decode_error_naming_the_file() {
    let err = load_image(&img("truncated.png")).unwrap_err();
    assert!(matches!(err, VisionError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("truncated.png"), "{err}");
}

#[test]
fn not_an_image_and_missing_file_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("notes.png");
    std::fs::write(&txt, "this is text, not a picture").unwrap();
    let err = load_image(&txt).unwrap_err();
    assert!(
        matches!(err, VisionError::Decode { .. }) && err.to_string().contains("notes.png"),
        "{err}"
    );
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_image(&empty).unwrap_err().to_string().contains("empty.jpg"));
    let missing = dir.path().join("nope.png");
    let err = load_image(&missing).unwrap_err();
    assert!(
        matches!(err, VisionError::Io { .. }) && err.to_string().contains("nope.png"),
        "{err}"
    );
}

#[test]
fn bad_model_directories_are_clear_errors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/swin_abs");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No files at all.
    let err = Swin::load(d, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    // Broken JSON.
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    let err = Swin::load(d, &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, VisionError::Config { .. }) && err.to_string().contains("config.json"),
        "{err}"
    );
    // Another architecture.
    std::fs::write(d.join("config.json"), r#"{"model_type": "swinv2"}"#).unwrap();
    let err = Swin::load(d, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("swinv2"), "{err}");
    // Inconsistent sizes.
    std::fs::write(d.join("config.json"), r#"{"depths": [2, 2], "num_heads": [3]}"#).unwrap();
    assert!(Swin::load(d, &Device::Cpu)
        .unwrap_err()
        .to_string()
        .contains("num_heads"));
    // Good config, missing weights.
    std::fs::copy(src.join("config.json"), d.join("config.json")).unwrap();
    let err = Swin::load(d, &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, VisionError::Io { .. }) && err.to_string().contains("model.safetensors"),
        "{err}"
    );
    // Weights that are not safetensors.
    std::fs::write(d.join("model.safetensors"), b"garbage").unwrap();
    let err = Swin::load(d, &Device::Cpu).unwrap_err();
    assert!(matches!(err, VisionError::Weights { .. }), "{err}");
    // Weights of another config: a tensor has the wrong shape.
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["embed_dim"] = serde_json::json!(24);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(src.join("model.safetensors"), d.join("model.safetensors")).unwrap();
    let err = Swin::load(d, &Device::Cpu).unwrap_err();
    assert!(matches!(err, VisionError::Weights { .. }), "{err}");
    assert!(
        err.to_string().contains("shape") || err.to_string().contains("patch_embeddings"),
        "{err}"
    );
    // Bad preprocessor config.
    std::fs::copy(src.join("config.json"), d.join("config.json")).unwrap();
    std::fs::write(d.join("preprocessor_config.json"), r#"{"resample": 9}"#).unwrap();
    let err = Swin::load(d, &Device::Cpu).unwrap_err();
    assert!(
        err.to_string().contains("preprocessor_config.json") && err.to_string().contains("resample"),
        "{err}"
    );
    // No preprocessor config: ImageNet defaults at the model's image size.
    std::fs::remove_file(d.join("preprocessor_config.json")).unwrap();
    let m = Swin::load(d, &Device::Cpu).unwrap();
    assert_eq!(m.preprocessor(), &kino_vision::Preprocessor::imagenet(32, 32));
}
