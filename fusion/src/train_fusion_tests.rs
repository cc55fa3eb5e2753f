use super::*;

use rand::Rng;

fn gaussian(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            // Box–Muller.
            let (u, v): (f64, f64) = (rng.gen_range(1e-9..1.0), rng.gen());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn t(values: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Identity weights with every trainable tensor perturbed, the pooled projection and the grid open.
fn perturbed_model(d: usize, v: usize, rng: &mut rand::rngs::StdRng) -> FusionModel {
    let base = FusionModel::identity(d, v, 4).unwrap();
    let pool: Vec<f32> = gaussian(rng, d * v).iter().map(|x| 0.2 * x).collect();
    let base = base.with_pool_projection(&pool, &gaussian(rng, d), 0.7, 0.4).unwrap();
    let mut updates = HashMap::new();
    for name in ["grid_proj.weight", "grid_proj.bias"] {
        let shape = base.tensor(name).unwrap().dims().to_vec();
        let n: usize = shape.iter().product();
        updates.insert(name.to_string(), t(gaussian(rng, n), &shape));
    }
    updates.insert("grid_gate".into(), t(vec![0.3], &[1]));
    updates.insert("blend".into(), t(vec![0.8, 1.3], &[2]));
    for side in ["t2v", "v2t"] {
        for n in ATTENTION_NAMES {
            let name = format!("{side}.{n}");
            let old = base.tensor(&name).unwrap();
            let shape = old.dims().to_vec();
            let count: usize = shape.iter().product();
            let noise = t(gaussian(rng, count).iter().map(|x| 0.05 * x).collect(), &shape);
            updates.insert(name, (old + noise).unwrap());
        }
    }
    base.with_tensors(updates).unwrap()
}

fn unit_vec(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f32> {
    normalized(&gaussian(rng, n))
}

#[test]
fn the_batched_training_forward_computes_what_fuse_computes() {
    let (d, v, g) = (32, 48, 4);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let model = perturbed_model(d, v, &mut rng);
    let segments: Vec<FusionSegment> = (0..6)
        .map(|i| FusionSegment {
            cues: (0..(i % 3 + 1)).map(|_| unit_vec(&mut rng, d)).collect(),
            weights: (0..(i % 3 + 1)).map(|k| 0.5 + 0.25 * k as f32).collect(),
            labels: (i % 2 == 0).then(|| unit_vec(&mut rng, d)),
            pooled: (i != 3).then(|| gaussian(&mut rng, v)),
            grid: (i != 4).then(|| VisualGrid {
                tokens: g,
                hidden: v,
                data: gaussian(&mut rng, g * v),
            }),
        })
        .collect();
    let params = Params::new(&model, &FusionTrainOptions::default()).unwrap();
    let visual = visual_constants(&model, &segments).unwrap();
    let examples: Vec<(usize, usize)> = segments
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (0..s.cues.len()).map(move |c| (i, c)))
        .collect();
    let batch = build_batch(&segments, &visual, &examples, d, grid_shape(&model, &segments), &params).unwrap();
    let (fused, visual_only) = forward(&params, &batch).unwrap();
    let fused = fused.to_vec2::<f32>().unwrap();
    let visual_only = visual_only.to_vec2::<f32>().unwrap();
    for (row, (s, held)) in examples.iter().enumerate() {
        let want = model.fuse(&segments[*s].inputs(Some(*held))).unwrap();
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
        assert!(
            close(&fused[row], &want.fused),
            "fused vector of example {row} ({s}, {held})"
        );
        assert!(
            close(&visual_only[row], want.visual.as_ref().unwrap()),
            "visual-only vector of example {row}"
        );
    }
}

/// Classes each with a direction in the visual space that shows in its grid tokens only at some positions, and a
/// direction in the text space its cues lie around: 120 training segments with two cues, 30 wordless held-out ones.
struct Classes {
    d: usize,
    v: usize,
    means: Vec<Vec<f32>>,
    train: Vec<FusionSegment>,
    held: Vec<(usize, FusionSegment)>,
}

fn classes() -> Classes {
    let (d, v, g, classes) = (32, 48, 4, 6);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let looks: Vec<Vec<f32>> = (0..classes).map(|_| unit_vec(&mut rng, v)).collect();
    let means: Vec<Vec<f32>> = (0..classes).map(|_| unit_vec(&mut rng, d)).collect();
    let segment = |rng: &mut rand::rngs::StdRng, class: usize, cues: usize| {
        let mut data = Vec::with_capacity(g * v);
        for pos in 0..g {
            let noise = gaussian(rng, v);
            let shown = if pos % 2 == 0 { 3.0 } else { 0.0 };
            data.extend(looks[class].iter().zip(&noise).map(|(l, n)| shown * l + 0.3 * n));
        }
        FusionSegment {
            cues: (0..cues)
                .map(|_| {
                    let noise = gaussian(rng, d);
                    normalized(
                        &means[class]
                            .iter()
                            .zip(&noise)
                            .map(|(m, n)| m + 0.15 * n)
                            .collect::<Vec<_>>(),
                    )
                })
                .collect(),
            weights: vec![1.0; cues],
            labels: None,
            pooled: None,
            grid: Some(VisualGrid {
                tokens: g,
                hidden: v,
                data,
            }),
        }
    };
    let train: Vec<FusionSegment> = (0..120).map(|i| segment(&mut rng, i % classes, 2)).collect();
    let held: Vec<(usize, FusionSegment)> = (0..30)
        .map(|i| (i % classes, segment(&mut rng, i % classes, 0)))
        .collect();
    Classes {
        d,
        v,
        means,
        train,
        held,
    }
}

impl Classes {
    /// Held-out score: each class's mean text as a query must find a wordless segment of its class first.
    fn score(&self, m: &FusionModel) -> Result<f64, FusionError> {
        let vectors: Vec<Option<Vec<f32>>> = self
            .held
            .iter()
            .map(|(_, s)| m.fuse(&s.inputs(None)).ok().map(|f| f.fused))
            .collect();
        let mut hits = 0;
        for (class, q) in self.means.iter().enumerate() {
            let best = vectors
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.as_ref().map(|v| (i, dot(q, v))))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            hits += usize::from(best.is_some_and(|(i, _)| self.held[i].0 == class));
        }
        Ok(hits as f64 / self.means.len() as f64)
    }
}

/// The starting weights have the grid and the pooled vector shut: a wordless segment cannot be found at all. Stage 2
/// opens the grid and learns its projection.
#[test]
fn stage_two_learns_the_grid_projection_from_held_out_cues() {
    let w = classes();
    let mut evaluate = |m: &FusionModel| w.score(m);
    let base = FusionModel::identity(w.d, w.v, 4).unwrap();
    let opts = FusionTrainOptions {
        epochs: 15,
        lr: 1e-2,
        patience: 0,
        ..Default::default()
    };
    let (trained, report) = train_fusion(&base, &w.train, &opts, None, &mut evaluate, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.score_start, 0.0, "the shut grid finds nothing");
    assert!(report.final_loss < report.first_loss, "{report:?}");
    assert!(report.score >= 0.8, "{report:?}");
    assert!(trained.reads_grids(), "the grid gate is open");
    assert_eq!(evaluate(&trained).unwrap(), report.score);
    // The weights round-trip through a file under the same version.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    trained.save(&path).unwrap();
    let loaded = FusionModel::load(&path, trained.config()).unwrap();
    assert_eq!(loaded.version(), trained.version());
}

/// Stage 2 killed in its sixth epoch resumes from the checkpoint of the fifth and ends where an uninterrupted run
/// ends.
#[test]
fn an_interrupted_stage_two_resumes_from_its_checkpoint() {
    let w = classes();
    let mut evaluate = |m: &FusionModel| w.score(m);
    let base = FusionModel::identity(w.d, w.v, 4).unwrap();
    let opts = FusionTrainOptions {
        epochs: 15,
        lr: 1e-2,
        patience: 0,
        ..Default::default()
    };
    let (full, report) = train_fusion(&base, &w.train, &opts, None, &mut evaluate, &mut |_, _, _| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("stage2");
    let file = dir.path().join("stage2.safetensors");
    let steps_per_epoch = w.train.len() * 2 / opts.batch + 1;
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_fusion(
            &base,
            &w.train,
            &opts,
            Some((&stem, "data")),
            &mut evaluate,
            &mut |epoch, _, _| {
                assert!(epoch < 6, "killed in epoch 6");
            },
        )
    }));
    assert!(interrupted.is_err());
    assert!(file.is_file(), "a checkpoint after each epoch");
    let mut first = None;
    let (resumed, r) = train_fusion(
        &base,
        &w.train,
        &opts,
        Some((&stem, "data")),
        &mut evaluate,
        &mut |epoch, _, _| {
            first.get_or_insert(epoch);
        },
    )
    .unwrap();
    assert_eq!(r.resumed_from_epoch, Some(6), "{r:?}");
    assert_eq!(first, Some(6));
    assert_eq!(
        r.steps, report.steps,
        "{r:?} vs {report:?} ({steps_per_epoch} steps an epoch)"
    );
    assert!((r.score - report.score).abs() <= 0.02, "{r:?} vs {report:?}");
    let diff = (resumed.tensor("grid_proj.weight").unwrap() - full.tensor("grid_proj.weight").unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-3, "resumed weights differ by {diff}");
    assert!(!file.exists(), "the checkpoint is deleted at the end");

    // Another data fingerprint starts afresh.
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_fusion(
            &base,
            &w.train,
            &opts,
            Some((&stem, "data")),
            &mut evaluate,
            &mut |epoch, _, _| assert!(epoch < 2),
        )
    }));
    assert!(interrupted.is_err());
    let (_, r) = train_fusion(
        &base,
        &w.train,
        &opts,
        Some((&stem, "other")),
        &mut evaluate,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(r.resumed_from_epoch, None);
}

#[test]
fn too_few_examples_are_refused() {
    let base = FusionModel::identity(8, 8, 2).unwrap();
    let one = FusionSegment {
        cues: vec![normalized(&[1.0; 8])],
        weights: vec![1.0],
        pooled: None,
        labels: Some(normalized(&[1.0; 8])),
        grid: None,
    };
    let err = train_fusion(
        &base,
        &[one],
        &FusionTrainOptions::default(),
        None,
        &mut |_| Ok(0.0),
        &mut |_, _, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, FusionError::Train(_)), "{err}");
}

#[test]
fn a_held_out_cue_is_found_in_its_own_segment() {
    let d = 8;
    let base = FusionModel::identity(d, 8, 2).unwrap();
    let e = |i: usize| {
        let mut x = vec![0f32; d];
        x[i] = 1.0;
        x
    };
    let near = |i: usize, j: usize| normalized(&e(i).iter().zip(e(j)).map(|(a, b)| a + 0.5 * b).collect::<Vec<_>>());
    // Segment 0: cues near axis 0 and axis 0 (+1); segment 1: axis 2; segment 2: axis 3.
    let segs = [
        FusionSegment {
            cues: vec![near(0, 1), near(0, 4)],
            weights: vec![1.0, 1.0],
            ..Default::default()
        },
        FusionSegment {
            cues: vec![e(2)],
            weights: vec![1.0],
            ..Default::default()
        },
        FusionSegment {
            cues: vec![e(3), near(3, 5)],
            weights: vec![1.0, 1.0],
            ..Default::default()
        },
    ];
    let segs: Vec<&FusionSegment> = segs.iter().collect();
    let (r1, r5, n) = held_out_cue_recall(&base, &segs, &[true, false, true]).unwrap();
    assert_eq!(n, 4);
    assert_eq!((r1, r5), (1.0, 1.0));
    // Queries nobody holds: none.
    assert_eq!(held_out_cue_recall(&base, &segs, &[false, true, false]).unwrap().2, 0);
}
