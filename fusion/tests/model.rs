//! The cross-attention fusion module: default weights, weights files, bad input.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use kino_fusion::vecmath::{cosine, norm, normalized};
use kino_fusion::{FusionConfig, FusionError, FusionModel, SegmentInputs, VisualGrid};

const D: usize = 8;
const V: usize = 12;

fn unit(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; D];
    v[i] = 1.0;
    v
}

fn approx(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
}

#[test]
fn text_only_and_visual_only_segments_keep_their_meaning() {
    let m = FusionModel::identity(D, V, 2).unwrap();
    let text = SegmentInputs {
        text: vec![unit(0), unit(1)],
        text_weights: vec![3.0, 1.0],
        ..Default::default()
    };
    let f = m.fuse(&text).unwrap();
    let expected = normalized(&[3.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert!(approx(&f.fused, &expected), "{:?}", f.fused);
    assert_eq!(f.text.as_deref().map(|t| approx(t, &expected)), Some(true));
    assert!(f.visual.is_none());

    let seen = SegmentInputs {
        labels: Some(vec![0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ..Default::default()
    };
    let f = m.fuse(&seen).unwrap();
    assert!(approx(&f.fused, &unit(2)));
    assert!(f.text.is_none());
    assert!(approx(f.visual.as_deref().unwrap(), &unit(2)));
}

#[test]
fn identity_fusion_blends_what_is_said_and_what_is_seen() {
    let m = FusionModel::identity(D, V, 2).unwrap();
    let inputs = SegmentInputs {
        text: vec![unit(0)],
        labels: Some(unit(3)),
        ..Default::default()
    };
    let f = m.fuse(&inputs).unwrap();
    assert!((norm(&f.fused) - 1.0).abs() < 1e-4);
    let (to_text, to_label) = (cosine(&f.fused, &unit(0)), cosine(&f.fused, &unit(3)));
    assert!(
        to_text > 0.6 && to_label > 0.6,
        "fused leans on both sides: {to_text} {to_label}"
    );
    assert!((to_text - to_label).abs() < 0.05, "equal blend: {to_text} {to_label}");
    // Grids are ignored under the default weights (gate 0): same result with a grid.
    let with_grid = SegmentInputs {
        grids: vec![VisualGrid {
            tokens: 2,
            hidden: V,
            data: (0..2 * V).map(|i| i as f32).collect(),
        }],
        ..inputs.clone()
    };
    assert!(approx(&m.fuse(&with_grid).unwrap().fused, &f.fused));
    assert!(
        m.version().starts_with("kino-fusion-xattn-v1:identity:d8-v12-h2"),
        "{}",
        m.version()
    );
}

#[test]
fn relevant_visual_tokens_draw_the_text_more_than_irrelevant_ones() {
    // Two visual tokens (label + one open grid token); the text attends mostly to the one close to it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let dev = Device::Cpu;
    let mut proj = vec![0f32; D * V];
    for i in 0..D {
        proj[i * V + i] = 1.0;
    }
    t.insert("grid_proj.weight".into(), Tensor::from_vec(proj, (D, V), &dev).unwrap());
    t.insert(
        "grid_proj.bias".into(),
        Tensor::zeros(D, candle_core::DType::F32, &dev).unwrap(),
    );
    t.insert("grid_gate".into(), Tensor::new(&[1f32], &dev).unwrap());
    for side in ["t2v", "v2t"] {
        for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            t.insert(
                format!("{side}.{p}.weight"),
                Tensor::eye(D, candle_core::DType::F32, &dev).unwrap(),
            );
            t.insert(
                format!("{side}.{p}.bias"),
                Tensor::zeros(D, candle_core::DType::F32, &dev).unwrap(),
            );
        }
        t.insert(
            format!("{side}.norm.weight"),
            Tensor::ones(D, candle_core::DType::F32, &dev).unwrap(),
        );
        t.insert(
            format!("{side}.norm.bias"),
            Tensor::zeros(D, candle_core::DType::F32, &dev).unwrap(),
        );
    }
    // Only the text side in the fused vector, so the test sees where the text's attention went.
    t.insert("blend".into(), Tensor::new(&[1f32, 0.0], &dev).unwrap());
    candle_core::safetensors::save(&t, &path).unwrap();
    let cfg = FusionConfig {
        text_dim: D,
        visual_dim: V,
        heads: 1,
    };
    let m = FusionModel::load(&path, cfg).unwrap();
    assert!(
        m.version().starts_with("kino-fusion-xattn-v1:weights:"),
        "{}",
        m.version()
    );

    let text = normalized(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let close = normalized(&[0.8, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]); // label, near the text
    let mut far_grid = vec![0f32; V];
    far_grid[5] = 1.0; // grid token, orthogonal to the text
    let inputs = SegmentInputs {
        text: vec![text.clone()],
        labels: Some(close.clone()),
        grids: vec![VisualGrid {
            tokens: 1,
            hidden: V,
            data: far_grid,
        }],
        ..Default::default()
    };
    let f = m.fuse(&inputs).unwrap();
    let visual = f.visual.clone().unwrap();
    assert!(
        visual[5] > 0.5 && visual[1] > 0.3,
        "the open grid token is in the visual vector: {visual:?}"
    );
    // The text attended to the label close to it, not to the unrelated grid token (uniform attention would give
    // the grid token a positive share).
    let (to_close, to_far) = (cosine(&f.fused, &close), cosine(&f.fused, &unit(5)));
    assert!(to_close > 0.7 && to_far < 0.0, "{to_close} {to_far} {:?}", f.fused);

    // Saving and loading reproduces the model exactly.
    let again = dir.path().join("again.safetensors");
    m.save(&again).unwrap();
    let m2 = FusionModel::load(&again, cfg).unwrap();
    assert_eq!(m2.fuse(&inputs).unwrap(), f);
}

#[test]
fn weights_files_that_do_not_fit_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FusionConfig {
        text_dim: D,
        visual_dim: V,
        heads: 2,
    };
    let good = dir.path().join("good.safetensors");
    FusionModel::identity(D, V, 2).unwrap().save(&good).unwrap();
    assert!(FusionModel::load(&good, cfg).is_ok());

    let missing = dir.path().join("nope.safetensors");
    let err = FusionModel::load(&missing, cfg).unwrap_err().to_string();
    assert!(err.contains("nope.safetensors") && err.contains("cannot read"), "{err}");

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not weights at all").unwrap();
    let err = FusionModel::load(&garbage, cfg).unwrap_err().to_string();
    assert!(
        err.contains("garbage.safetensors") && err.contains("not a safetensors file"),
        "{err}"
    );

    let other = FusionConfig {
        text_dim: 4,
        visual_dim: V,
        heads: 2,
    };
    let err = FusionModel::load(&good, other).unwrap_err().to_string();
    assert!(err.contains("good.safetensors") && err.contains("shape"), "{err}");

    let mut partial: HashMap<String, Tensor> = HashMap::new();
    partial.insert("grid_gate".into(), Tensor::new(&[1f32], &Device::Cpu).unwrap());
    let part = dir.path().join("partial.safetensors");
    candle_core::safetensors::save(&partial, &part).unwrap();
    let err = FusionModel::load(&part, cfg).unwrap_err().to_string();
    assert!(err.contains("missing tensor"), "{err}");

    assert!(
        matches!(FusionModel::identity(D, V, 3), Err(FusionError::Config(_))),
        "heads must divide text_dim"
    );
}

#[test]
fn bad_segment_inputs_are_errors_not_panics() {
    let m = FusionModel::identity(D, V, 2).unwrap();
    let err = m.fuse(&SegmentInputs::default()).unwrap_err();
    assert!(err.to_string().contains("neither"), "{err}");
    let err = m
        .fuse(&SegmentInputs {
            text: vec![vec![1.0; 3]],
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            FusionError::Dimension {
                expected: D,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = m
        .fuse(&SegmentInputs {
            text: vec![unit(0)],
            text_weights: vec![1.0, 2.0],
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("text_weights"), "{err}");
    let err = m
        .fuse(&SegmentInputs {
            labels: Some(vec![1.0; D + 1]),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("label embedding"), "{err}");
    // Zero vectors carry no meaning: a segment of only zeros cannot be fused either.
    assert!(m
        .fuse(&SegmentInputs {
            text: vec![vec![0.0; D]],
            ..Default::default()
        })
        .is_err());
}

#[test]
fn a_trained_pooled_projection_opens_its_gate_and_names_new_weights() {
    let base = FusionModel::identity(D, V, 2).unwrap();
    assert!(!base.reads_pooled());
    let pooled: Vec<f32> = (0..V).map(|i| if i == 7 { 2.0 } else { 0.0 }).collect();
    let inputs = SegmentInputs {
        labels: Some(unit(0)),
        pooled: Some(pooled.clone()),
        ..Default::default()
    };
    // The default weights ignore the pooled vector: the label is the visual side.
    let f = base.fuse(&inputs).unwrap();
    assert!(approx(f.visual.as_ref().unwrap(), &unit(0)));

    // A projection sending visual dimension 7 to text dimension 3.
    let mut w = vec![0f32; D * V];
    w[3 * V + 7] = 1.0;
    let trained = base.with_pool_projection(&w, &[0.0; D], 1.0, 0.0).unwrap();
    assert!(trained.reads_pooled());
    assert_ne!(trained.version(), base.version(), "new weights, new version");
    assert!(trained.version().starts_with("kino-fusion-xattn-v1:weights:"));
    assert_eq!(trained.gates(), (1.0, 0.0, 0.0));
    let f = trained.fuse(&inputs).unwrap();
    assert!(approx(f.visual.as_ref().unwrap(), &unit(3)), "{:?}", f.visual);
    assert!(approx(&f.fused, &unit(3)), "a wordless segment is what it shows");
    assert!(approx(&trained.project_pooled(&pooled).unwrap().unwrap(), &unit(3)));

    // With the label gate at 1 both count; with text, the text side is blended in.
    let both = base.with_pool_projection(&w, &[0.0; D], 1.0, 1.0).unwrap();
    let v = both.fuse(&inputs).unwrap().visual.unwrap();
    assert!(v[0] > 0.6 && v[3] > 0.6, "{v:?}");
    let with_text = SegmentInputs {
        text: vec![unit(5)],
        ..inputs.clone()
    };
    let f = both.fuse(&with_text).unwrap();
    assert!(f.fused[5] > 0.3 && f.fused[3] > 0.1, "{:?}", f.fused);

    // Saved and loaded: the same version and the same vectors.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    trained.save(&path).unwrap();
    let loaded = FusionModel::load(&path, trained.config()).unwrap();
    assert_eq!(loaded.version(), trained.version());
    assert_eq!(loaded.fuse(&inputs).unwrap(), trained.fuse(&inputs).unwrap());

    // Wrong shapes and non-finite values are refused.
    assert!(base.with_pool_projection(&w[1..], &[0.0; D], 1.0, 1.0).is_err());
    let mut nan = w.clone();
    nan[0] = f32::NAN;
    assert!(base.with_pool_projection(&nan, &[0.0; D], 1.0, 1.0).is_err());
}
