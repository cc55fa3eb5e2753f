//! Swin in int8 against the same model in f32 (whose parity with
//! transformers `tests/parity.rs` checks): the accuracy bound on images,
//! outlier channels smoothed by calibration, a bad calibration refused, and
//! the stored form read back.
//!
//! No pretrained Swin weights exist here, so the model is a Swin-T-shaped
//! checkpoint with random weights scaled as in a trained network (each layer
//! changes its input by O(1), unlike transformers' 0.02 initialisation,
//! with which the blocks barely touch the residual stream and any
//! quantization would look accurate). The images are the committed test
//! images and synthetic scenes (gradients, stripes, noise, text-like blocks).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use kino_vision::{Calibration, Int8Swin, Swin};
use safetensors::tensor::{Dtype, TensorView};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.next().max(1e-7), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    }

    fn vec(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        (0..n).map(|_| mean + std * self.normal()).collect()
    }
}

/// Writes a Swin checkpoint (`SwinForImageClassification` names) with
/// random weights: linear layers N(0, 1/fan_in), layer norms' scales around
/// 1, biases small. `outliers` `(channel, factor)` makes the outlier
/// channels of trained transformers: every block's first layer norm output
/// on that channel is `factor` times larger, and the q, k and v weights
/// that read it `factor` times smaller (the f32 model computes the same).
fn random_swin(dir: &Path, depths: &[usize], labels: usize, outliers: &[(usize, f32)], seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let heads = [3usize, 6, 12, 24];
    let config = serde_json::json!({
        "architectures": ["SwinForImageClassification"],
        "model_type": "swin",
        "image_size": 224, "patch_size": 4, "num_channels": 3, "embed_dim": 96,
        "depths": depths, "num_heads": &heads[..depths.len()], "window_size": 7,
        "mlp_ratio": 4.0, "qkv_bias": true, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
        "id2label": (0..labels).map(|i| (i.to_string(), format!("label {i}"))).collect::<HashMap<_, _>>(),
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let pre = serde_json::json!({
        "do_normalize": true, "do_rescale": true, "do_resize": true,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "resample": 3, "rescale_factor": 1.0 / 255.0, "size": {"height": 224, "width": 224},
    });
    std::fs::write(dir.join("preprocessor_config.json"), pre.to_string()).unwrap();

    let mut rng = Rng(seed);
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let linear = |rng: &mut Rng, t: &mut Vec<_>, name: &str, out: usize, inp: usize, bias: bool| {
        let w = rng.vec(out * inp, 0.0, 1.0 / (inp as f32).sqrt());
        t.push((format!("{name}.weight"), vec![out, inp], w));
        if bias {
            t.push((format!("{name}.bias"), vec![out], rng.vec(out, 0.0, 0.02)));
        }
    };
    let norm = |rng: &mut Rng, t: &mut Vec<_>, name: &str, d: usize, outliers: &[(usize, f32)]| {
        let mut w = rng.vec(d, 1.0, 0.1);
        for &(c, f) in outliers {
            if c < d {
                w[c] *= f;
            }
        }
        t.push((format!("{name}.weight"), vec![d], w));
        t.push((format!("{name}.bias"), vec![d], rng.vec(d, 0.0, 0.02)));
    };
    let p = "swin.embeddings";
    t.push((
        format!("{p}.patch_embeddings.projection.weight"),
        vec![96, 3, 4, 4],
        rng.vec(96 * 48, 0.0, 1.0 / 48f32.sqrt()),
    ));
    t.push((
        format!("{p}.patch_embeddings.projection.bias"),
        vec![96],
        rng.vec(96, 0.0, 0.02),
    ));
    norm(&mut rng, &mut t, &format!("{p}.norm"), 96, &[]);
    let mut dim = 96;
    for (s, &depth) in depths.iter().enumerate() {
        for b in 0..depth {
            let blk = format!("swin.encoder.layers.{s}.blocks.{b}");
            norm(&mut rng, &mut t, &format!("{blk}.layernorm_before"), dim, outliers);
            if let Some((_, _, b)) = t.last_mut() {
                for &(c, f) in outliers {
                    if c < dim {
                        b[c] *= f;
                    }
                }
            }
            for x in ["query", "key", "value"] {
                linear(&mut rng, &mut t, &format!("{blk}.attention.self.{x}"), dim, dim, true);
                let n = t.len() - 2;
                let w = &mut t[n].2;
                for &(c, f) in outliers {
                    if c < dim {
                        for j in 0..dim {
                            w[j * dim + c] /= f;
                        }
                    }
                }
            }
            t.push((
                format!("{blk}.attention.self.relative_position_bias_table"),
                vec![169, heads[s]],
                rng.vec(169 * heads[s], 0.0, 0.5),
            ));
            linear(
                &mut rng,
                &mut t,
                &format!("{blk}.attention.output.dense"),
                dim,
                dim,
                true,
            );
            norm(&mut rng, &mut t, &format!("{blk}.layernorm_after"), dim, &[]);
            linear(
                &mut rng,
                &mut t,
                &format!("{blk}.intermediate.dense"),
                4 * dim,
                dim,
                true,
            );
            linear(&mut rng, &mut t, &format!("{blk}.output.dense"), dim, 4 * dim, true);
        }
        if s + 1 < depths.len() {
            let m = format!("swin.encoder.layers.{s}.downsample");
            norm(&mut rng, &mut t, &format!("{m}.norm"), 4 * dim, &[]);
            linear(&mut rng, &mut t, &format!("{m}.reduction"), 2 * dim, 4 * dim, false);
            dim *= 2;
        }
    }
    norm(&mut rng, &mut t, "swin.layernorm", dim, &[]);
    linear(&mut rng, &mut t, "classifier", labels, dim, true);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = t
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap()));
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    dir.to_path_buf()
}

/// The committed test images and synthetic scenes, as RGB.
fn images() -> Vec<image::RgbImage> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    let mut out: Vec<image::RgbImage> = [
        "photo_320x200.png",
        "square_64.png",
        "odd_47x33.png",
        "rgba.png",
        "gray.png",
    ]
    .iter()
    .map(|f| image::open(fixtures.join(f)).unwrap().to_rgb8())
    .collect();
    let mut rng = Rng(99);
    for k in 0..11u32 {
        out.push(image::RgbImage::from_fn(160, 120, |x, y| {
            let n = (rng.next() * 255.0) as u8;
            match k % 4 {
                0 => image::Rgb([(x * 255 / 160) as u8, (y * 255 / 120) as u8, (k * 20) as u8]),
                1 => {
                    let on = ((x / (4 + k)) + (y / 9)).is_multiple_of(2);
                    if on {
                        image::Rgb([230, 220, 200])
                    } else {
                        image::Rgb([20, 30, (k * 10) as u8])
                    }
                }
                2 => image::Rgb([n, n / 2, 255 - n]),
                _ => {
                    // Dark "slide" with light text-like blocks.
                    let text = y % 20 < 8 && (x / 6 + y / 20 + k) % 3 != 0 && x > 10 && x < 150;
                    if text {
                        image::Rgb([240, 240, 240])
                    } else {
                        image::Rgb([30, 40, 80])
                    }
                }
            }
        }));
    }
    out
}

fn pixels(model: &Swin, imgs: &[image::RgbImage]) -> Tensor {
    let pre = model.preprocessor();
    let rows: Vec<Tensor> = imgs
        .iter()
        .map(|i| pre.preprocess_rgb(i, &Device::Cpu).unwrap())
        .collect();
    Tensor::stack(&rows, 0).unwrap()
}

fn calibrated(model: &Swin, imgs: &[image::RgbImage]) -> Calibration {
    let mut cal = model.calibration();
    for chunk in imgs.chunks(4) {
        model.calibrate(&mut cal, &pixels(model, chunk)).unwrap();
    }
    cal
}

#[test]
fn int8_swin_stays_within_the_bound_and_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = random_swin(&dir.path().join("swin"), &[2, 2, 6, 2], 100, &[], 1);
    let mut model = Swin::load(&path, &Device::Cpu).unwrap();
    let imgs = images();
    // Calibrate on half the images, check on all.
    let cal = calibrated(&model, &imgs[..8]);
    assert_eq!(cal.images(), 8);
    assert_eq!(cal.ranges().len(), 12 * 4 + 3, "Swin-T's linear layers");
    let q = model.quantize(&cal, kino_vision::swin::DEFAULT_PERCENTILE).unwrap();
    let px = pixels(&model, &imgs);
    let acc = model.accuracy(&q, &px).unwrap();
    eprintln!("int8 Swin-T (random weights), {} images: {acc:?}", imgs.len());
    acc.check().unwrap();
    assert!(acc.mean_cosine >= 0.995, "{acc:?}");
    // The int8 model changes the outputs (it is not f32 in disguise).
    assert!(acc.mean_cosine < 0.999_999, "{acc:?}");

    // Stored and read back: the same id and the same outputs.
    let file = dir.path().join("swin.int8.safetensors");
    let meta = HashMap::from([("percentile".to_string(), "0.9999".to_string())]);
    q.save(&file, &meta).unwrap();
    let (back, read_meta) = Int8Swin::load(&file).unwrap();
    assert_eq!(back.id(), q.id());
    assert_eq!(read_meta["percentile"], "0.9999");
    let f32_version = model.version().to_string();
    let direct = model
        .forward_with(&px, Some(&q))
        .unwrap()
        .pooled
        .to_vec2::<f32>()
        .unwrap();
    model.set_int8(Some(back)).unwrap();
    assert_eq!(model.version(), format!("{f32_version}+int8:{}", q.id()));
    let loaded = model.forward(&px).unwrap().pooled.to_vec2::<f32>().unwrap();
    assert_eq!(direct, loaded, "read back, the int8 model computes the same");
    model.set_int8(None).unwrap();
    assert_eq!(model.version(), f32_version);

    // A file for another model is refused, naming the mismatch.
    let small = Swin::load(
        &random_swin(&dir.path().join("small"), &[2, 2], 10, &[], 2),
        &Device::Cpu,
    )
    .unwrap();
    let (other, _) = Int8Swin::load(&file).unwrap();
    let mut small = small;
    let err = small.set_int8(Some(other)).unwrap_err().to_string();
    assert!(err.contains("do not fit"), "{err}");
    // A damaged file is refused.
    std::fs::write(&file, b"not safetensors").unwrap();
    let err = Int8Swin::load(&file).unwrap_err().to_string();
    assert!(err.contains("swin.int8.safetensors"), "{err}");
}

#[test]
fn calibration_smooths_injected_outlier_channels() {
    let dir = tempfile::tempdir().unwrap();
    // Three channels 80-120x larger than the rest at every block's input.
    let path = random_swin(
        &dir.path().join("swin"),
        &[2, 2, 2],
        50,
        &[(5, 120.0), (17, 80.0), (40, 100.0)],
        3,
    );
    let model = Swin::load(&path, &Device::Cpu).unwrap();
    let imgs = images();
    let px = pixels(&model, &imgs);
    let cal = calibrated(&model, &imgs[..8]);
    let ranges = &cal.ranges()[0];
    let p = ranges.percentile(0.9999);
    let rest = p
        .iter()
        .enumerate()
        .filter(|(c, _)| ![5, 17, 40].contains(c))
        .map(|(_, v)| *v);
    let typical = rest.fold(0f32, f32::max);
    assert!(
        p[5] > 10.0 * typical,
        "the outlier channel is seen: {} against {typical}",
        p[5]
    );

    let smoothed = model.accuracy(&model.quantize(&cal, 0.9999).unwrap(), &px).unwrap();
    // The same without smoothing (no ranges: the weights quantized as they are).
    let none = model.calibration();
    let plain = model.accuracy(&model.quantize(&none, 0.9999).unwrap(), &px).unwrap();
    eprintln!("outlier channels: smoothed {smoothed:?}; not smoothed {plain:?}");
    smoothed.check().unwrap();
    assert!(
        plain.check().is_err(),
        "without calibration the outliers cost accuracy: {plain:?}"
    );
    assert!(
        1.0 - smoothed.mean_cosine < 0.5 * (1.0 - plain.mean_cosine),
        "smoothing halves the error at least: {smoothed:?} against {plain:?}"
    );
}

#[test]
fn a_bad_calibration_is_refused_by_the_accuracy_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = random_swin(&dir.path().join("swin"), &[2, 2, 2], 50, &[], 4);
    let model = Swin::load(&path, &Device::Cpu).unwrap();
    let imgs = images();
    let px = pixels(&model, &imgs);
    let mut cal = calibrated(&model, &imgs[..8]);
    // A calibration that saw absurd values on a few channels of each layer
    // (a broken frame, a corrupted statistics file): the smoothing moves
    // their range into the weights, whose other rows then lose their
    // precision.
    for r in cal.ranges_mut() {
        let mut rows = vec![0f32; r.channels()];
        for c in (0..r.channels()).step_by(7) {
            rows[c] = 1e9;
        }
        for _ in 0..r.rows() {
            r.observe(&rows);
        }
    }
    let q = model.quantize(&cal, 0.9999).unwrap();
    let acc = model.accuracy(&q, &px).unwrap();
    eprintln!("bad calibration: {acc:?}");
    let err = acc.check().unwrap_err();
    assert!(err.contains("bound"), "{err}");
}
