//! Parity with Hugging Face transformers on committed fixtures made by
//! `scripts/fixtures/swin_reference.py` (tiny random checkpoints; see that
//! script for what each exercises). Tolerance: max |diff| <= 1e-4 on pooled
//! outputs, logits and last hidden states (f32).
//!
//! The models run on the CPU, or on the first CUDA GPU when the crate is built
//! with `--features cuda` and `KINO_TEST_DEVICE=cuda` is set (references and
//! comparisons stay on the CPU).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use kino_vision::{load_image, Preprocessor, Swin, VisionError};

const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The device under test: `KINO_TEST_DEVICE=cuda` picks CUDA GPU 0.
fn device() -> Device {
    match std::env::var("KINO_TEST_DEVICE").as_deref() {
        Ok("cuda") => Device::new_cuda(0).expect("KINO_TEST_DEVICE=cuda needs a GPU and --features cuda"),
        _ => Device::Cpu,
    }
}

fn refs(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(name).join("reference.safetensors"), &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let a = a.to_device(&Device::Cpu).unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn images(name: &str) -> Vec<PathBuf> {
    let dir = fixtures().join(name);
    let list: Vec<String> = serde_json::from_str(&std::fs::read_to_string(dir.join("images.json")).unwrap()).unwrap();
    list.into_iter().map(|p| dir.join(p)).collect()
}

/// Model parity on the reference's own pixel values (independent of preprocessing).
fn check_model(name: &str, keys: &[&str]) {
    let model = Swin::load(&fixtures().join(name), &device()).unwrap();
    let r = refs(name);
    for key in keys {
        let pv = r[&format!("{key}.pixel_values")]
            .unsqueeze(0)
            .unwrap()
            .to_device(model.device())
            .unwrap();
        let out = model.forward(&pv).unwrap();
        let pooled = max_diff(&out.pooled.squeeze(0).unwrap(), &r[&format!("{key}.pooled")]);
        let logits = max_diff(
            &out.logits.as_ref().unwrap().squeeze(0).unwrap(),
            &r[&format!("{key}.logits")],
        );
        let hidden = max_diff(
            &out.last_hidden_state.squeeze(0).unwrap(),
            &r[&format!("{key}.last_hidden_state")],
        );
        eprintln!("{name}/{key}: max|diff| pooled {pooled:.2e} logits {logits:.2e} last_hidden_state {hidden:.2e}");
        assert!(pooled <= TOL, "{name}/{key}: pooled differs by {pooled}");
        assert!(logits <= TOL, "{name}/{key}: logits differ by {logits}");
        assert!(hidden <= TOL, "{name}/{key}: last hidden state differs by {hidden}");
    }
}

#[test]
fn padding_paths_match_transformers() {
    // 34x34 input (patch padding), 9x9 grid with window 5 (window padding,
    // shifted-window mask), odd patch merging 9 -> 5, last stage = one window.
    check_model("swin_pad", &["img0", "img1", "img2"]);
}

#[test]
fn non_square_input_matches_transformers() {
    // 34x46: 9x12 grid, then 5x6 where the window is clamped and the width padded.
    check_model("swin_pad", &["raw"]);
}

#[test]
fn absolute_position_embeddings_match_transformers() {
    // Also qkv_bias=false, mlp_ratio 2, layer_norm_eps 1e-6.
    check_model("swin_abs", &["img0", "img1", "img2"]);
}

#[test]
fn end_to_end_embed_matches_transformers() {
    for name in ["swin_pad", "swin_abs"] {
        let model = Swin::load(&fixtures().join(name), &device()).unwrap();
        let r = refs(name);
        let imgs: Vec<_> = images(name).iter().map(|p| load_image(p).unwrap().to_rgb8()).collect();
        let feats = model.embed(&imgs).unwrap();
        assert_eq!(feats.len(), 3);
        for (i, f) in feats.iter().enumerate() {
            let pooled = Tensor::new(f.pooled.as_slice(), &Device::Cpu).unwrap();
            let d = max_diff(&pooled, &r[&format!("img{i}.pooled")]);
            let hidden = model.hidden_size();
            assert_eq!(f.hidden, hidden);
            assert_eq!(f.grid.len(), f.grid_tokens * hidden);
            let grid = Tensor::from_slice(&f.grid, (f.grid_tokens, hidden), &Device::Cpu).unwrap();
            let dg = max_diff(&grid, &r[&format!("img{i}.last_hidden_state")]);
            eprintln!("{name}/img{i} end to end: pooled {d:.2e} grid {dg:.2e}");
            assert!(d <= TOL && dg <= TOL, "{name}/img{i}: pooled {d}, grid {dg}");
            // Labels: top 5 of a 5- or 4-way head = all classes, sorted, probabilities of softmax(logits).
            let logits = r[&format!("img{i}.logits")].to_vec1::<f32>().unwrap();
            let m = logits.iter().cloned().fold(f32::MIN, f32::max);
            let z: f32 = logits.iter().map(|l| (l - m).exp()).sum();
            let names = model.labels();
            assert_eq!(f.labels.len(), logits.len().min(5));
            for w in f.labels.windows(2) {
                assert!(w[0].1 >= w[1].1, "labels not sorted: {:?}", f.labels);
            }
            for (label, p) in &f.labels {
                let idx = names.iter().position(|n| n == label).expect("label from id2label");
                let want = (logits[idx] - m).exp() / z;
                assert!((p - want).abs() < 1e-5, "{label}: {p} vs {want}");
            }
        }
    }
}

#[test]
fn batch_equals_single() {
    let model = Swin::load(&fixtures().join("swin_pad"), &device()).unwrap();
    let imgs: Vec<_> = images("swin_pad")
        .iter()
        .map(|p| load_image(p).unwrap().to_rgb8())
        .collect();
    let batch = model.embed(&imgs).unwrap();
    for (i, img) in imgs.iter().enumerate() {
        let one = model.embed(std::slice::from_ref(img)).unwrap();
        let d = one[0]
            .pooled
            .iter()
            .zip(&batch[i].pooled)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-5, "image {i}: batch and single differ by {d}");
    }
    assert!(model.embed(&[]).unwrap().is_empty());
}

#[test]
fn bare_swin_model_checkpoint_loads_without_head() {
    // A SwinModel checkpoint: no `swin.` prefix, no classifier.
    let src = fixtures().join("swin_pad");
    let dir = tempfile::tempdir().unwrap();
    let all = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let bare: HashMap<String, Tensor> = all
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("swin.").map(|k| (k.to_string(), v)))
        .collect();
    assert!(bare.keys().all(|k| !k.starts_with("classifier")));
    candle_core::safetensors::save(&bare, dir.path().join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["architectures"] = serde_json::json!(["SwinModel"]);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(
        src.join("preprocessor_config.json"),
        dir.path().join("preprocessor_config.json"),
    )
    .unwrap();
    let model = Swin::load(dir.path(), &Device::Cpu).unwrap();
    assert!(!model.has_head());
    let r = refs("swin_pad");
    let out = model.forward(&r["img1.pixel_values"].unsqueeze(0).unwrap()).unwrap();
    assert!(out.logits.is_none());
    let d = max_diff(&out.pooled.squeeze(0).unwrap(), &r["img1.pooled"]);
    assert!(d <= TOL, "bare checkpoint pooled differs by {d}");
    let img = load_image(&images("swin_pad")[0]).unwrap().to_rgb8();
    let feats = model.embed(&[img]).unwrap();
    assert!(feats[0].labels.is_empty());
}

#[test]
fn version_names_model_and_weights_hash() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("my-swin");
    std::fs::create_dir(&m).unwrap();
    for f in ["config.json", "model.safetensors", "preprocessor_config.json"] {
        std::fs::copy(fixtures().join("swin_abs").join(f), m.join(f)).unwrap();
    }
    let model = Swin::load(&m, &Device::Cpu).unwrap();
    let bytes = std::fs::read(m.join("model.safetensors")).unwrap();
    let hash = blake3::hash(&bytes).to_hex();
    assert_eq!(model.version(), format!("my-swin@{}", &hash.as_str()[..12]));
    assert_eq!(model.hidden_size(), 32);
    assert_eq!(model.labels(), ["red", "green", "blue", "gray"]);
}

#[test]
fn top_k_is_configurable() {
    let mut model = Swin::load(&fixtures().join("swin_pad"), &Device::Cpu).unwrap();
    model.set_top_k(2);
    let img = load_image(&images("swin_pad")[1]).unwrap().to_rgb8();
    let f = model.embed(&[img]).unwrap();
    assert_eq!(f[0].labels.len(), 2);
    assert!(f[0].labels[0].1 >= f[0].labels[1].1);
}

#[test]
fn input_smaller_than_the_window_is_a_clear_error() {
    let model = Swin::load(&fixtures().join("swin_pad"), &Device::Cpu).unwrap();
    let px = Tensor::zeros((1, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&px).unwrap_err();
    assert!(matches!(err, VisionError::Input(_)), "{err}");
    assert!(err.to_string().contains("window"), "{err}");
    let px = Tensor::zeros((1, 1, 34, 34), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(model.forward(&px).unwrap_err().to_string().contains("channels"));
    // Absolute position embeddings fix the input size.
    let abs = Swin::load(&fixtures().join("swin_abs"), &Device::Cpu).unwrap();
    let px = Tensor::zeros((1, 3, 40, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = abs.forward(&px).unwrap_err();
    assert!(err.to_string().contains("position embeddings"), "{err}");
}

#[test]
fn preprocessing_matches_transformers_float_output() {
    // The model's own processors (34x34 bicubic, 32x32 bilinear) and a 40x40 bicubic one.
    let mut worst = 0f32;
    for name in ["swin_pad", "swin_abs"] {
        let p = Preprocessor::from_dir(&fixtures().join(name)).unwrap();
        let r = refs(name);
        for (i, path) in images(name).iter().enumerate() {
            let img = load_image(path).unwrap();
            let d = max_diff(&p.preprocess(&img).unwrap(), &r[&format!("img{i}.pixel_values")]);
            worst = worst.max(d);
        }
    }
    let pr = candle_core::safetensors::load(fixtures().join("preprocess_ref.safetensors"), &Device::Cpu).unwrap();
    let photo = load_image(&fixtures().join("images/photo_320x200.png")).unwrap();
    let mut p40 = Preprocessor::imagenet(40, 40);
    p40.resample = kino_vision::Resample::Bicubic;
    let d40 = max_diff(&p40.preprocess(&photo).unwrap(), &pr["bicubic40_pixel_values"]);
    eprintln!("pixel_values max|diff|: model processors {worst:.2e}, 40x40 bicubic {d40:.2e}");
    assert!(worst <= 1e-6 && d40 <= 1e-6, "pixel values differ: {worst}, {d40}");
}

/// Mean and max absolute difference in 8-bit levels between kino's resize and Pillow's.
fn resize_diff(p: &Preprocessor, want: &Tensor) -> (f64, u8) {
    let photo = load_image(&fixtures().join("images/photo_320x200.png"))
        .unwrap()
        .to_rgb8();
    let got = p.resize(&photo).unwrap();
    let want = want.to_vec3::<u8>().unwrap(); // 3 x H x W
    let (mut sum, mut max, mut n) = (0u64, 0u8, 0u64);
    for (c, plane) in want.iter().enumerate() {
        for (y, row) in plane.iter().enumerate() {
            for (x, &w) in row.iter().enumerate() {
                let g = got.get_pixel(x as u32, y as u32).0[c];
                let d = g.abs_diff(w);
                sum += d as u64;
                max = max.max(d);
                n += 1;
            }
        }
    }
    (sum as f64 / n as f64, max)
}

#[test]
fn resize_matches_pillow_on_a_non_square_photo() {
    // 320x200 photo-like image -> 224x224 bicubic (swin-tiny's processor) and 100x150 bilinear.
    let pr = candle_core::safetensors::load(fixtures().join("preprocess_ref.safetensors"), &Device::Cpu).unwrap();
    let (mean, max) = resize_diff(&Preprocessor::imagenet(224, 224), &pr["bicubic224_u8"]);
    let mut bil = Preprocessor::imagenet(150, 100);
    bil.resample = kino_vision::Resample::Bilinear;
    let (mean_b, max_b) = resize_diff(&bil, &pr["bilinear150x100_u8"]);
    eprintln!(
        "resize vs HF image processor (Pillow): bicubic 224 mean |diff| {mean:.4} levels (max {max}), \
         bilinear 150x100 mean {mean_b:.4} (max {max_b})"
    );
    // Bound: mean absolute pixel difference at most 0.01 of a level (out of 255), max 1 level.
    assert!(mean <= 0.01 && max <= 1, "bicubic: mean {mean}, max {max}");
    assert!(mean_b <= 0.01 && max_b <= 1, "bilinear: mean {mean_b}, max {max_b}");
}

/// The CPU forward pass (kino's own, on plain buffers) computes what the
/// generic candle forward computes, for every activation transformers
/// names, with and without q/k/v biases, on a batch of three padded,
/// non-square inputs (swin_pad) and on absolute position embeddings
/// (swin_abs). transformers itself is only checked for `gelu` above.
#[test]
fn cpu_forward_matches_the_generic_forward_for_every_activation() {
    use candle_nn::VarBuilder;
    use kino_vision::SwinConfig;
    for name in ["swin_pad", "swin_abs"] {
        let dir = fixtures().join(name);
        let r = refs(name);
        let (_, h, w) = r["img0.pixel_values"].dims3().unwrap();
        let (h, w) = if name == "swin_pad" { (34, 46) } else { (h, w) };
        let pixels = Tensor::randn(0f32, 1.0, (3, 3, h, w), &Device::Cpu).unwrap();
        for act in ["gelu", "gelu_new", "relu", "silu", "quick_gelu"] {
            // swin_abs has no q/k/v biases to switch on.
            let biases: &[bool] = if name == "swin_pad" { &[true, false] } else { &[false] };
            for &qkv_bias in biases {
                let mut config = SwinConfig::from_file(&dir.join("config.json")).unwrap();
                config.hidden_act = act.into();
                config.qkv_bias = qkv_bias;
                let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
                let vb = VarBuilder::from_buffered_safetensors(bytes, candle_core::DType::F32, &Device::Cpu).unwrap();
                let pre = Preprocessor::from_dir(&dir).unwrap();
                let model = Swin::from_var_builder(config, vb, pre, "t".into(), &Device::Cpu, &dir).unwrap();
                let fast = model.forward(&pixels).unwrap();
                let generic = model.forward_generic(&pixels).unwrap();
                assert_eq!(fast.grid, generic.grid);
                let d = [
                    max_diff(&fast.last_hidden_state, &generic.last_hidden_state),
                    max_diff(&fast.pooled, &generic.pooled),
                    max_diff(fast.logits.as_ref().unwrap(), generic.logits.as_ref().unwrap()),
                ];
                eprintln!(
                    "{name} {act} qkv_bias {qkv_bias}: max|diff| hidden {:.1e} pooled {:.1e} logits {:.1e}",
                    d[0], d[1], d[2]
                );
                assert!(
                    d.iter().all(|&x| x <= TOL),
                    "{name} {act} qkv_bias {qkv_bias}: differ by {d:?}"
                );
            }
        }
    }
}
