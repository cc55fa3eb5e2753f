use super::setup::{fold, unfold};
use super::state::{learning_rate, Rng};
use super::*;
use crate::vecmath::{norm, normalized};

const D: usize = 48;
const V: usize = 64;
const CLASSES: usize = 8;

/// Per class a unit "text" vector and a unit "visual" direction, plus one offset shared by every frame.
struct World {
    text: Vec<Vec<f32>>,
    visual: Vec<Vec<f32>>,
    offset: Vec<f32>,
}

fn gaussian(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gaussian() as f32).collect()
}

fn world(seed: u64) -> World {
    let mut rng = Rng(seed);
    World {
        text: (0..CLASSES).map(|_| normalized(&gaussian(&mut rng, D))).collect(),
        visual: (0..CLASSES).map(|_| normalized(&gaussian(&mut rng, V))).collect(),
        offset: gaussian(&mut rng, V).iter().map(|x| 5.0 + 2.0 * x).collect(),
    }
}

/// A 30 s video of one class: a frame every second (`3·v_c + N(0, 1) + offset`), a 3 s cue every 3 s
/// (`normalise(t_c + 0.2·N(0, 1))`).
fn video(w: &World, id: &str, class: usize, rng: &mut Rng) -> TrainVideo {
    let frames = (0..30)
        .map(|i| TrainFrame {
            pts_ms: i * 1000,
            pooled: (0..V)
                .map(|k| 3.0 * w.visual[class][k] + rng.gaussian() as f32 + w.offset[k])
                .collect(),
        })
        .collect();
    let cues = (0..10)
        .map(|i| TrainCue {
            start_ms: i * 3000,
            end_ms: i * 3000 + 3000,
            embedding: normalized(
                &w.text[class]
                    .iter()
                    .map(|t| t + 0.2 * rng.gaussian() as f32)
                    .collect::<Vec<_>>(),
            ),
        })
        .collect();
    TrainVideo {
        negatives: Vec::new(),
        id: id.into(),
        frames,
        cues,
    }
}

/// Six videos per class.
fn library(w: &World, seed: u64) -> Vec<TrainVideo> {
    let mut rng = Rng(seed);
    (0..CLASSES * 6)
        .map(|i| video(w, &format!("video-{i:03}"), i % CLASSES, &mut rng))
        .collect()
}

/// One fresh video per class: recall over them is decided by the class alone.
fn test_set(w: &World) -> Vec<TrainVideo> {
    let mut rng = Rng(999);
    (0..CLASSES)
        .map(|c| video(w, &format!("test-{c}"), c, &mut rng))
        .collect()
}

fn options() -> TrainOptions {
    TrainOptions {
        epochs: 12,
        batch: 32,
        accumulate: 1,
        warmup_steps: 10,
        eval_every: 20,
        checkpoint_every: 10,
        segment_ms: 30_000,
        min_pairs: 100,
        ..TrainOptions::default()
    }
}

fn random_projection(seed: u64) -> Projection {
    let mut rng = Rng(seed);
    Projection {
        text_dim: D,
        visual_dim: V,
        weight: gaussian(&mut rng, D * V),
        bias: gaussian(&mut rng, D),
    }
}

#[test]
fn training_learns_the_time_alignment() {
    let w = world(1);
    let lib = library(&w, 2);
    let test = test_set(&w);
    let test_refs: Vec<&TrainVideo> = test.iter().collect();
    let (before, _) = recall(&random_projection(5), &test_refs, 30_000);
    assert!(before <= 0.35, "recall@1 before training {before}");

    let mut steps = 0;
    let (p, report) = train_projection(&lib, None, &options(), None, &mut |pr| steps = pr.step).unwrap();
    let (after, after5) = recall(&p, &test_refs, 30_000);
    eprintln!("{report:?}; test-set recall@1 {before} -> {after} (@5 {after5})");
    assert!(after >= 0.8, "recall@1 after training {after}");
    assert!(after5 >= after);
    assert_eq!(report.steps, steps);
    assert!(report.videos_holdout >= 1 && report.videos_train + report.videos_holdout == lib.len());
    assert!(report.pairs_train > 0 && report.pairs_holdout > 0);
    assert!(report.recall_at_1 >= report.recall_at_1_start, "{report:?}");
    assert!(report.final_loss.is_finite() && report.resumed_from_step.is_none());
}

#[test]
fn split_is_deterministic_by_id_and_non_empty() {
    let w = world(1);
    let lib = library(&w, 2);
    let (train, hold) = split(&lib, 0.1);
    assert!(!train.is_empty() && !hold.is_empty());
    assert_eq!(train.len() + hold.len(), lib.len());
    assert_eq!(split(&lib, 0.1), (train.clone(), hold.clone()));
    // Not by order: reversing the library holds out the same videos.
    let rev: Vec<TrainVideo> = lib.iter().rev().cloned().collect();
    let ids = |vs: &[TrainVideo], idx: &[usize]| {
        let mut v: Vec<String> = idx.iter().map(|&i| vs[i].id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&rev, &split(&rev, 0.1).1), ids(&lib, &hold));
    // Two videos: one each side, whatever the share.
    for share in [0.01, 0.5, 0.99] {
        let (t, h) = split(&lib[..2], share);
        assert_eq!((t.len(), h.len()), (1, 1), "share {share}");
    }
    assert_eq!(split(&lib, 0.0).1, Vec::<usize>::new());
}

#[test]
fn too_few_pairs_or_videos_is_a_training_error() {
    let w = world(1);
    let lib = library(&w, 2);
    let pairs = count_pairs(&lib, 5000);
    assert_eq!(pairs, lib.len() * 30);
    // Frames outside every cue's window do not count.
    let mut sparse = lib[..3].to_vec();
    sparse[0].cues.truncate(1); // 0..3000 ms: frames 0..=5 s have it within ±2.5 s
    assert_eq!(count_pairs(&sparse[..1], 5000), 6);
    let opts = TrainOptions {
        min_pairs: 10_000,
        ..options()
    };
    let err = train_projection(&lib, None, &opts, None, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FusionError::Train(_)), "{err:?}");
    assert!(msg.contains(&pairs.to_string()) && msg.contains("10000"), "{msg}");
    let err = train_projection(&lib[..1], None, &options(), None, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FusionError::Train(_)), "{err:?}");
}

#[test]
fn an_interrupted_run_resumes_from_its_checkpoint() {
    let w = world(3);
    let lib = library(&w, 4);
    let opts = TrainOptions {
        epochs: 6,
        patience: 0,
        ..options()
    };
    let (p_full, full) = train_projection(&lib, None, &opts, None, &mut |_| {}).unwrap();
    assert!(full.steps > 40, "{full:?}");

    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("ckpt");
    let (st_path, json_path) = state::paths(&stem);
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_projection(&lib, None, &opts, Some(&stem), &mut |p| {
            if p.step == 35 {
                panic!("interrupted at step 35");
            }
        })
    }));
    assert!(interrupted.is_err());
    assert!(st_path.exists() && json_path.exists());

    let mut first_step = None;
    let (p, resumed) = train_projection(&lib, None, &opts, Some(&stem), &mut |p| {
        first_step.get_or_insert(p.step);
    })
    .unwrap();
    assert_eq!(resumed.resumed_from_step, Some(30), "{resumed:?}");
    assert_eq!(first_step, Some(31));
    assert_eq!(resumed.steps, full.steps);
    assert!(
        (resumed.recall_at_1 - full.recall_at_1).abs() <= 0.02,
        "{resumed:?} vs {full:?}"
    );
    let diff = p
        .weight
        .iter()
        .zip(&p_full.weight)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-3, "resumed weights differ by {diff}");
    assert!(
        !st_path.exists() && !json_path.exists(),
        "checkpoint deleted on completion"
    );

    // A checkpoint of other options is ignored.
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_projection(&lib, None, &opts, Some(&stem), &mut |p| assert!(p.step < 12))
    }));
    assert!(interrupted.is_err());
    let other = TrainOptions {
        epochs: 1,
        ..opts.clone()
    };
    let (_, r) = train_projection(&lib, None, &other, Some(&stem), &mut |_| {}).unwrap();
    assert_eq!(r.resumed_from_step, None);
}

/// A kill between the renames of the checkpoint's two files leaves tensors of one step beside the JSON of another
/// (or a damaged file): the next run starts afresh, reaching the uninterrupted run's recall, instead of failing.
#[test]
fn a_torn_or_damaged_checkpoint_is_ignored() {
    let w = world(3);
    let lib = library(&w, 4);
    let opts = TrainOptions {
        epochs: 4,
        patience: 0,
        checkpoint_every: 10,
        ..options()
    };
    let (_, full) = train_projection(&lib, None, &opts, None, &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("ckpt");
    let (st_path, json_path) = state::paths(&stem);
    let mut saved_json = None;
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_projection(&lib, None, &opts, Some(&stem), &mut |p| {
            if p.step == 15 {
                saved_json = std::fs::read(&json_path).ok();
            }
            if p.step == 25 {
                panic!("killed at step 25");
            }
        })
    }));
    assert!(interrupted.is_err());
    // The JSON of step 10 beside the tensors of step 20.
    std::fs::write(&json_path, saved_json.expect("a checkpoint at step 10")).unwrap();
    let (_, r) = train_projection(&lib, None, &opts, Some(&stem), &mut |_| {}).unwrap();
    assert_eq!(r.resumed_from_step, None, "{r:?}");
    assert!((r.recall_at_1 - full.recall_at_1).abs() <= 0.02, "{r:?} vs {full:?}");

    // A damaged tensors file.
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_projection(&lib, None, &opts, Some(&stem), &mut |p| assert!(p.step < 25))
    }));
    assert!(interrupted.is_err());
    std::fs::write(&st_path, b"not a safetensors file").unwrap();
    let (_, r) = train_projection(&lib, None, &opts, Some(&stem), &mut |_| {}).unwrap();
    assert_eq!(r.resumed_from_step, None, "{r:?}");
}

#[test]
fn a_time_limit_stops_and_keeps_the_checkpoint() {
    let w = world(1);
    let lib = library(&w, 2);
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("run");
    let opts = TrainOptions {
        max_seconds: Some(0.0),
        ..options()
    };
    let (_, r) = train_projection(&lib, None, &opts, Some(&stem), &mut |_| {}).unwrap();
    assert!(r.stopped_by_time && r.steps == 1, "{r:?}");
    assert!(state::paths(&stem).1.exists());
    let (_, r) = train_projection(&lib, None, &opts, Some(&stem), &mut |_| {}).unwrap();
    assert_eq!((r.resumed_from_step, r.steps), (Some(1), 2));
}

#[test]
fn projection_is_unit_length_and_folding_is_exact() {
    let mut rng = Rng(11);
    let ws = gaussian(&mut rng, D * V);
    let bs = gaussian(&mut rng, D);
    let mean: Vec<f32> = gaussian(&mut rng, V).iter().map(|x| 3.0 * x).collect();
    let std: Vec<f32> = gaussian(&mut rng, V).iter().map(|x| 0.5 + x.abs()).collect();
    let p = fold(&ws, &bs, &mean, &std);
    for _ in 0..5 {
        let raw: Vec<f32> = gaussian(&mut rng, V)
            .iter()
            .zip(&mean)
            .map(|(x, m)| 2.0 * x + m)
            .collect();
        let y = p.apply(&raw);
        assert!((norm(&y) - 1.0).abs() < 1e-5);
        let z: Vec<f32> = raw
            .iter()
            .zip(mean.iter().zip(&std))
            .map(|(x, (m, s))| (x - m) / s)
            .collect();
        let internal: Vec<f32> = ws
            .chunks(V)
            .zip(&bs)
            .map(|(row, b)| crate::vecmath::dot(row, &z) + b)
            .collect();
        let internal = normalized(&internal);
        let err = y.iter().zip(&internal).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 1e-4, "fold error {err}");
    }
    let (w2, b2) = unfold(&p, &mean, &std);
    assert!(w2.iter().zip(&ws).all(|(a, b)| (a - b).abs() < 1e-4));
    assert!(b2.iter().zip(&bs).all(|(a, b)| (a - b).abs() < 1e-3));
}

#[test]
fn training_from_an_initial_projection_starts_where_it_left() {
    let w = world(1);
    let lib = library(&w, 2);
    let (p, first) = train_projection(&lib, None, &options(), None, &mut |_| {}).unwrap();
    let opts = TrainOptions { epochs: 1, ..options() };
    let (_, again) = train_projection(&lib, Some(&p), &opts, None, &mut |_| {}).unwrap();
    assert!(
        (again.recall_at_1_start - first.recall_at_1).abs() < 1e-9,
        "{again:?} vs {first:?}"
    );
    let bad = Projection { visual_dim: V + 1, ..p };
    assert!(matches!(
        train_projection(&lib, Some(&bad), &opts, None, &mut |_| {}),
        Err(FusionError::Dimension { .. })
    ));
}

#[test]
fn learning_rate_warms_up_then_decays_to_a_tenth() {
    assert!((learning_rate(1.0, 5, 10, 100) - 0.5).abs() < 1e-12);
    assert!((learning_rate(1.0, 10, 10, 100) - 1.0).abs() < 1e-12);
    assert!((learning_rate(1.0, 100, 10, 100) - 0.1).abs() < 1e-12);
    assert!(learning_rate(1.0, 55, 10, 100) < 1.0 && learning_rate(1.0, 55, 10, 100) > 0.1);
}

#[test]
fn hard_negatives_push_the_marked_text_away() {
    let w = world(1);
    let mut lib = library(&w, 2);
    // A near miss: text close to class 0's but not what its videos show (a user marked it wrong on them).
    let mut rng = Rng(99);
    let near: Vec<f32> = normalized(
        &w.text[0]
            .iter()
            .zip(gaussian(&mut rng, D))
            .map(|(t, n)| t + 0.08 * n)
            .collect::<Vec<_>>(),
    );
    let test = test_set(&w);
    let class0: Vec<&TrainFrame> = test[0].frames.iter().collect();
    let similarity = |p: &Projection| -> f32 {
        class0
            .iter()
            .map(|f| crate::vecmath::dot(&p.apply(&f.pooled), &near))
            .sum::<f32>()
            / class0.len() as f32
    };
    let opts = TrainOptions {
        patience: 0,
        ..options()
    };
    let (plain, _) = train_projection(&lib, None, &opts, None, &mut |_| {}).unwrap();
    for v in lib.iter_mut().step_by(CLASSES) {
        v.negatives.push(TrainCue {
            start_ms: 0,
            end_ms: 30_000,
            embedding: near.clone(),
        });
    }
    let (marked, report) = train_projection(&lib, None, &opts, None, &mut |_| {}).unwrap();
    let (before, after) = (similarity(&plain), similarity(&marked));
    eprintln!("class-0 frames against the near-miss text: {before:.3} without marks, {after:.3} with");
    assert!(after < before - 0.05, "{before} -> {after}");
    // The class is still found by its own text.
    let refs: Vec<&TrainVideo> = test.iter().collect();
    assert!(recall(&marked, &refs, 30_000).0 >= 0.8, "{report:?}");
}
