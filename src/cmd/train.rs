//! `kino train`: learns the fusion weights from the library itself.
//!
//! The supervision is the time alignment: a frame is paired with the text
//! said or shown around it (subtitles, speech, on-screen text), other
//! videos' text is the negatives ([`kino_fusion::train`]). In: the kept
//! visual features of every indexed video and its stored cues. Out: a new
//! version of the fusion weights under `<models>/fusion`
//! ([`crate::fusion_weights`]), adopted only when its held-out text→video
//! recall is at least that of the weights in use; videos fused with other
//! weights are then stale and re-fused from their features.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use kino_fusion::align::Segmenter;
use kino_fusion::train::{self, Projection, TrainCue, TrainFrame, TrainOptions, TrainReport, TrainVideo};
use kino_fusion::train_fusion::{train_fusion, FusionTrainOptions};
use kino_fusion::{FusionError, FusionModel};
use kino_language::SentenceEncoder;
use kino_store::{ModelRecord, Store, VideoStatus};
use serde_json::json;

use super::train_eval::{cue_recall, training_segments, visual_recall, EvalVideo, LabelCache};
use crate::config::Config;
use crate::engines;
use crate::error::usage;
use crate::fusion_weights;
use crate::pipeline::features::{embed_stored_cues, features_path};

/// What `kino train` was asked.
#[derive(Debug, Clone)]
pub struct TrainArgs {
    /// Passes over the training pairs at most.
    pub epochs: usize,
    /// Stop after this long (the best weights so far are kept).
    pub max_minutes: Option<f64>,
    /// `cpu` (the only device of this build).
    pub device: String,
    /// Go back to the previous version instead of training.
    pub rollback: bool,
    /// Print JSON.
    pub json: bool,
}

/// Label gates tried on the held-out videos: how much the ImageNet label
/// text still counts beside the trained projection.
const LABEL_GATES: [f32; 3] = [0.0, 0.5, 1.0];

/// One library video as training reads it.
struct LibraryVideo {
    path: String,
    /// Marks from users: (right, wrong).
    marked: (usize, usize),
    duration_ms: Option<i64>,
    features: std::path::PathBuf,
    train: TrainVideo,
}

/// `kino train`.
pub fn train(config: &Config, args: &TrainArgs, quiet: bool) -> Result<()> {
    let dir = config.fusion_dir();
    let rt = super::runtime()?;
    if args.rollback {
        return rollback(config, &rt, &dir, args.json);
    }
    if args.device != "cpu" {
        return Err(usage(format!(
            "--device {}: this build trains on the CPU only (--device cpu)",
            args.device
        )));
    }
    let started = Instant::now();
    let text = engines::load_text(&config.text_model_dir(), config.precision.text())?;
    let Some(swin) = engines::load_vision(&config.vision_model_dir(), config.precision)? else {
        return Err(usage(format!(
            "no vision model at {}: there are no visual features to train on; \
             run `kino models fetch vision`, then `kino reindex --stale`",
            config.vision_model_dir().display()
        )));
    };
    let current = engines::fusion_for(text.dim(), Some(&swin), &dir)?;
    let current_name = fusion_weights::current(&dir);
    let store = rt.block_on(Store::open(&config.db))?;

    // What there is to learn from, and whether it changed since the last run.
    let (library, fingerprint) = read_library(&rt, &store, config, &text, &engines::vision_version(&swin))?;
    let stamp = |version: &str| format!("{fingerprint:016x}:{version}:{}", args.epochs);
    let fingerprint = stamp(current.version());
    let last_run = dir.join("last-run.json");
    let last: Option<serde_json::Value> = std::fs::read_to_string(&last_run)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
    if last.as_ref().and_then(|l| l["fingerprint"].as_str()) == Some(fingerprint.as_str()) {
        let out = json!({
            "adopted": false,
            "current": current_name,
            "reason": "nothing new since the last run: the same videos, features, text and weights",
            "seconds": started.elapsed().as_secs_f64(),
        });
        return print(&out, args.json, quiet);
    }
    // Videos without any text teach nothing (and cannot be held out).
    let library: Vec<LibraryVideo> = library.into_iter().filter(|v| !v.train.cues.is_empty()).collect();
    let videos: Vec<TrainVideo> = library.iter().map(|v| v.train.clone()).collect();
    let pairs = train::count_pairs(&videos, TrainOptions::default().window_ms);
    let opts = options_for(pairs, videos.len(), args);
    if pairs < opts.min_pairs || videos.len() < 2 {
        return Err(usage(format!(
            "only {pairs} frames have text aligned with them in {} videos with kept features \
             (training needs at least {} in 2 videos or more): the fusion weights stay as they are; \
             index more videos with subtitles, speech or on-screen text first",
            videos.len(),
            opts.min_pairs
        )));
    }
    let (trained_on, held) = train::split(&videos, opts.holdout);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let checkpoint = dir.join("train-checkpoint");
    let mut progress = |p: &train::Progress| {
        crate::fault::point(|| format!("train-step:{}", p.step));
        if quiet || args.json {
            return;
        }
        match p.recall_at_1 {
            Some(r) => eprintln!(
                "epoch {} step {}: loss {:.3}, held-out recall@1 {r:.3}",
                p.epoch, p.step, p.loss
            ),
            None => tracing::debug!(epoch = p.epoch, step = p.step, loss = p.loss, "training"),
        }
    };
    // Stage 1's result of this very run, kept when a kill came during stage 2.
    let stage1 = Stage1Files::new(&dir);
    let kept = stage1.read(&fingerprint, current.config());
    let stage1_kept = kept.is_some();
    let trained = match &kept {
        Some(_) => None,
        None => Some(train::train_projection(
            &videos,
            None,
            &opts,
            Some(&checkpoint),
            &mut progress,
        )?),
    };

    // The held-out videos through the whole fusion module: the weights in
    // use against the new projection with each label gate. Held-out videos
    // first (their cues are the queries), the training videos' segments
    // compete with theirs.
    let segmenter = Segmenter::default();
    let mut labels = LabelCache::new();
    let eval: Vec<EvalVideo> = held
        .iter()
        .chain(trained_on.iter())
        .map(|&i| {
            let v = &library[i];
            EvalVideo::read(
                &v.features,
                v.duration_ms,
                &v.train.cues,
                held.contains(&i),
                &segmenter,
                &text,
                &mut labels,
            )
            .with_context(|| v.path.clone())
        })
        .collect::<Result<_>>()?;
    let before = visual_recall(&current, &eval)?;
    let before_cues = cue_recall(&current, &eval)?;
    let (gate, pooled_model, report) = match (kept, trained) {
        (Some(kept), _) => kept,
        (None, Some((projection, report))) => {
            let mut best: Option<(f32, FusionModel, f64)> = None;
            for gate in LABEL_GATES {
                let candidate = with_projection(&current, &projection, gate)?;
                let r = visual_recall(&candidate, &eval)?.0;
                if best.as_ref().is_none_or(|(_, _, b)| r > b + 1e-9) {
                    best = Some((gate, candidate, r));
                }
            }
            let Some((gate, model, _)) = best else {
                anyhow::bail!("no candidate weights were evaluated");
            };
            if !report.stopped_by_time {
                stage1.write(&fingerprint, gate, &model, &report)?;
            }
            (gate, model, report)
        }
        (None, None) => unreachable!("stage 1 either ran or was kept"),
    };
    let pooled_recall = visual_recall(&pooled_model, &eval)?;

    // Stage 2: the grid and the cross-attention, on the training videos'
    // segments with the target cue held out; then the ablation.
    let left = args.max_minutes.map(|m| m * 60.0 - started.elapsed().as_secs_f64());
    let stage2 = if report.stopped_by_time || left.is_some_and(|s| s <= 0.0) {
        None
    } else {
        let segments = training_segments(&eval);
        let opts2 = FusionTrainOptions {
            max_seconds: left,
            ..FusionTrainOptions::default()
        };
        let mut evaluate = |m: &FusionModel| -> Result<f64, FusionError> {
            let score = || -> Result<f64> { Ok(visual_recall(m, &eval)?.0 + 0.01 * cue_recall(m, &eval)?.0) };
            score().map_err(|e| FusionError::Train(format!("{e:#}")))
        };
        let mut progress2 = |epoch: usize, step: usize, loss: f64| {
            crate::fault::point(|| format!("train-stage2-step:{step}"));
            tracing::debug!(epoch, step, loss, "training the grid and the cross-attention");
        };
        let stem = dir.join("train-stage2");
        match train_fusion(
            &pooled_model,
            &segments,
            &opts2,
            Some((&stem, &fingerprint)),
            &mut evaluate,
            &mut progress2,
        ) {
            Ok(r) => Some(r),
            Err(FusionError::Train(why)) => {
                tracing::warn!("the grid and the cross-attention were not trained: {why}");
                None
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut ablation = serde_json::Map::new();
    let mut candidates: Vec<(&str, FusionModel)> = Vec::new();
    if let Some((full, _)) = &stage2 {
        let grid_only: HashMap<String, candle_core::Tensor> = ["grid_proj.weight", "grid_proj.bias", "grid_gate"]
            .iter()
            .filter_map(|n| full.tensor(n).map(|t| (n.to_string(), t.clone())))
            .collect();
        candidates.push(("pooled+grid", pooled_model.with_tensors(grid_only)?));
        candidates.push(("pooled+grid+cross_attention", full.with_tensors(HashMap::new())?));
    }
    // The best by wordless recall; at equal recall, by held-out cue recall.
    let pooled_cues = cue_recall(&pooled_model, &eval)?;
    ablation.insert(
        "pooled".into(),
        json!({ "recall_at_1": pooled_recall.0, "recall_at_5": pooled_recall.1, "cue_recall_at_1": pooled_cues.0 }),
    );
    let mut chosen = ("pooled", pooled_model, pooled_recall, pooled_cues);
    for (name, m) in candidates {
        let r = visual_recall(&m, &eval)?;
        let c = cue_recall(&m, &eval)?;
        ablation.insert(
            name.into(),
            json!({ "recall_at_1": r.0, "recall_at_5": r.1, "cue_recall_at_1": c.0, "grid_gate": m.gates().2 }),
        );
        // A richer variant must beat the simpler one by more than noise:
        // better wordless recall, or the same and held-out cue recall better
        // by three queries' worth at least.
        let min_gain = (3.0 / c.1.max(1) as f64).max(0.05);
        let better = r.0 > chosen.2 .0 + 1e-9 || (r.0 >= chosen.2 .0 - 1e-9 && c.0 >= chosen.3 .0 + min_gain - 1e-9);
        if better {
            chosen = (name, m, r, c);
        }
    }
    let (chosen_name, model, after, after_cues) = chosen;
    let adopt = after.0 > 0.0 && after.0 + 1e-9 >= before.0;
    let mut out = json!({
        "adopted": adopt,
        "previous": current_name,
        "current": current_name,
        "recall_at_1_before": before.0,
        "recall_at_5_before": before.1,
        "recall_at_1": after.0,
        "recall_at_5": after.1,
        "label_gate": gate,
        "cue_recall_at_1_before": before_cues.0,
        "cue_recall_at_1": after_cues.0,
        "cue_queries": after_cues.1,
        "chosen": chosen_name,
        "ablation": ablation,
        "stage2": stage2.as_ref().map(|(_, r)| json!(r)),
        "stage1_kept": stage1_kept,
        "projection_recall_at_1": report.recall_at_1,
        "projection_recall_at_1_start": report.recall_at_1_start,
        "feedback_positives": library.iter().map(|v| v.marked.0).sum::<usize>(),
        "feedback_negatives": library.iter().map(|v| v.marked.1).sum::<usize>(),
        "videos_train": report.videos_train,
        "videos_holdout": report.videos_holdout,
        "pairs_train": report.pairs_train,
        "pairs_holdout": report.pairs_holdout,
        "epochs_run": report.epochs_run,
        "steps": report.steps,
        "stopped_early": report.stopped_early,
        "stopped_by_time": report.stopped_by_time,
        "resumed_from_step": report.resumed_from_step,
        "final_loss": report.final_loss,
        "train_seconds": report.seconds,
        "fusion_version": current.version(),
    });
    if adopt {
        let name = fusion_weights::install(&dir, &model, &out)?;
        out["current"] = json!(name);
        out["fusion_version"] = json!(model.version());
        record(&rt, &store, &dir, &name, &model);
    } else {
        out["reason"] = json!(format!(
            "held-out recall@1 {:.3} is below the weights in use ({:.3}): they stay",
            after.0, before.0
        ));
    }
    out["seconds"] = json!(started.elapsed().as_secs_f64());
    // The next run with nothing new (and these weights in use) stops early;
    // unless this one stopped for --max-minutes: the next one resumes it
    // from its checkpoint.
    let stage2_stopped = stage2.as_ref().is_some_and(|(_, r)| r.stopped_by_time);
    if !stage2_stopped {
        stage1.remove();
    }
    if report.stopped_by_time || stage2_stopped {
        let _ = std::fs::remove_file(&last_run);
    } else {
        let now_in_use = if adopt { model.version() } else { current.version() };
        let last = json!({ "fingerprint": stamp(now_in_use) });
        std::fs::write(&last_run, serde_json::to_string(&last)?)
            .with_context(|| format!("writing {}", last_run.display()))?;
    }
    rt.block_on(store.close());
    print(&out, args.json, quiet)
}

/// The training options for `pairs` aligned pairs: at least about eight
/// optimiser steps per epoch (fewer micro-batches accumulated on small
/// libraries), a warm-up of at most a tenth of the run.
fn options_for(pairs: usize, videos: usize, args: &TrainArgs) -> TrainOptions {
    let d = TrainOptions::default();
    let accumulate = (pairs / (d.batch * 8)).clamp(1, d.accumulate);
    let epochs = args.epochs.max(1);
    let total_steps = epochs * pairs.div_ceil(d.batch * accumulate).max(1);
    // At least three held-out videos where there are enough (a quarter at most).
    let holdout = (3.0 / videos.max(1) as f64).clamp(d.holdout, 0.25);
    // A checkpoint every five epochs on small libraries, every 200 steps at most.
    let checkpoint_every = (5 * pairs.div_ceil(d.batch * accumulate)).clamp(20, d.checkpoint_every);
    TrainOptions {
        checkpoint_every,
        holdout,
        epochs,
        max_seconds: args.max_minutes.map(|m| m * 60.0),
        accumulate,
        warmup_steps: d.warmup_steps.min(total_steps / 10),
        patience: 10,
        ..d
    }
}

/// `kino train --rollback`.
fn rollback(config: &Config, rt: &tokio::runtime::Runtime, dir: &Path, json_out: bool) -> Result<()> {
    let Some((from, to)) = fusion_weights::rollback(dir)? else {
        return Err(usage(
            "the default fusion weights are in use: there is no earlier version to go back to",
        ));
    };
    let _ = std::fs::remove_file(dir.join("last-run.json"));
    let store = rt.block_on(Store::open(&config.db))?;
    let text = engines::load_text(&config.text_model_dir(), config.precision.text())?;
    let vision = engines::load_vision(&config.vision_model_dir(), config.precision)?;
    let model = engines::fusion_for(text.dim(), vision.as_ref(), dir)?;
    record(rt, &store, dir, to.as_deref().unwrap_or("default"), &model);
    rt.block_on(store.close());
    // What the version now in use measured when it was made.
    let measured = to
        .as_deref()
        .and_then(|v| fusion_weights::report(dir, v))
        .map(|r| r["recall_at_1"].clone());
    let out = json!({ "rolled_back": from, "current": to, "recall_at_1": measured });
    if json_out {
        println!("{out}");
    } else {
        println!(
            "fusion weights: {from} → {}; `kino reindex --stale` re-fuses the library (a running `kino serve` does it by itself)",
            to.as_deref().unwrap_or("the default weights")
        );
    }
    Ok(())
}

fn print(out: &serde_json::Value, json_out: bool, quiet: bool) -> Result<()> {
    if json_out {
        println!("{out}");
        return Ok(());
    }
    if quiet {
        return Ok(());
    }
    if let Some(reason) = out["reason"].as_str().filter(|_| out["recall_at_1"].is_null()) {
        println!(
            "{reason}; fusion weights unchanged ({})",
            out["current"].as_str().unwrap_or("default")
        );
        return Ok(());
    }
    println!(
        "held-out text→video recall@1: {:.3} with the weights in use, {:.3} with the new ones (recall@5 {:.3} → {:.3})",
        out["recall_at_1_before"].as_f64().unwrap_or(0.0),
        out["recall_at_1"].as_f64().unwrap_or(0.0),
        out["recall_at_5_before"].as_f64().unwrap_or(0.0),
        out["recall_at_5"].as_f64().unwrap_or(0.0),
    );
    println!(
        "trained on {} frame–text pairs from {} videos ({} held out), {} epochs, {} steps, {:.0} s",
        out["pairs_train"],
        out["videos_train"],
        out["videos_holdout"],
        out["epochs_run"],
        out["steps"],
        out["train_seconds"].as_f64().unwrap_or(0.0)
    );
    if let Some(ablation) = out["ablation"].as_object() {
        for (name, r) in ablation {
            println!(
                "  {name:<28} wordless recall@1 {:.3}, held-out cue recall@1 {:.3}",
                r["recall_at_1"].as_f64().unwrap_or(0.0),
                r["cue_recall_at_1"].as_f64().unwrap_or(0.0)
            );
        }
        println!(
            "  in use from now if adopted: {}",
            out["chosen"].as_str().unwrap_or("?")
        );
    }
    let (right, wrong) = (
        out["feedback_positives"].as_u64().unwrap_or(0),
        out["feedback_negatives"].as_u64().unwrap_or(0),
    );
    if right + wrong > 0 {
        println!("with the web UI's marks: {right} right (extra positives), {wrong} wrong (hard negatives)");
    }
    if out["adopted"].as_bool() == Some(true) {
        println!(
            "adopted as {}; `kino reindex --stale` re-fuses the library from its kept features \
             (a running `kino serve` does it by itself); `kino train --rollback` goes back",
            out["current"].as_str().unwrap_or("?")
        );
    } else if let Some(reason) = out["reason"].as_str() {
        println!("not adopted: {reason}");
    }
    Ok(())
}

/// Records the weights in use in the store's models table.
fn record(rt: &tokio::runtime::Runtime, store: &Store, dir: &Path, name: &str, model: &FusionModel) {
    let rec = ModelRecord {
        name: "kino/fusion".into(),
        kind: "fusion".into(),
        version: model.version().into(),
        checksum: model.version().rsplit(':').next().unwrap_or_default().into(),
        source: format!("kino train ({name})"),
        path: fusion_weights::weights_path(dir, name).display().to_string(),
        updated_ms: 0,
    };
    if let Err(e) = rt.block_on(store.upsert_model(&rec)) {
        tracing::warn!("the fusion weights were not recorded in the store: {e:#}");
    }
}

/// Every indexed video with kept features (made with the current vision
/// model), its pooled vectors, its embedded cues and the marks users put on
/// its search results; and a fingerprint of all of it.
fn read_library(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    config: &Config,
    text: &SentenceEncoder,
    vision_version: &str,
) -> Result<(Vec<LibraryVideo>, u64)> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut out = Vec::new();
    let marks = rt.block_on(store.feedback())?;
    let mut embedded: HashMap<String, Vec<f32>> = HashMap::new();
    let dir = config.features_dir();
    for v in rt.block_on(store.videos())? {
        if v.status != VideoStatus::Done || v.stage_versions.get("vision").map(String::as_str) != Some(vision_version) {
            continue;
        }
        let features = features_path(&dir, v.id);
        let Ok(meta) = std::fs::metadata(&features) else {
            continue;
        };
        let cues = rt.block_on(store.cues(v.id))?;
        (v.id, meta.len(), &v.path).hash(&mut hasher);
        for c in &cues {
            (c.start_ms, c.end_ms, &c.text).hash(&mut hasher);
        }
        let frames = kino_fusion::features::read_pooled(&features)?;
        let cues = embed_stored_cues(text, cues)?;
        // Marks users put on this video's search results: the query's text
        // as an extra positive (right) or a hard negative (wrong).
        let (mut positives, mut negatives) = (Vec::new(), Vec::new());
        for m in marks.iter().filter(|m| m.video_id == v.id) {
            (m.id, m.right, m.start_ms, m.end_ms, &m.query).hash(&mut hasher);
            let embedding = match embedded.get(&m.query) {
                Some(e) => e.clone(),
                None => {
                    let e = text.encode_one(&m.query).context("encoding a marked query")?;
                    embedded.insert(m.query.clone(), e.clone());
                    e
                }
            };
            let cue = TrainCue {
                start_ms: m.start_ms,
                end_ms: m.end_ms,
                embedding,
            };
            if m.right {
                positives.push(cue);
            } else {
                negatives.push(cue);
            }
        }
        out.push(LibraryVideo {
            marked: (positives.len(), negatives.len()),
            path: v.path.clone(),
            duration_ms: v.facts.duration_ms,
            features,
            train: TrainVideo {
                negatives,
                id: v.content_hash.clone().unwrap_or_else(|| v.path.clone()),
                frames: frames
                    .into_iter()
                    .map(|(pts_ms, pooled)| TrainFrame { pts_ms, pooled })
                    .collect(),
                cues: cues
                    .iter()
                    .map(|c| TrainCue {
                        start_ms: c.start_ms,
                        end_ms: c.end_ms,
                        embedding: c.embedding.clone(),
                    })
                    .chain(positives)
                    .collect(),
            },
        });
    }
    Ok((out, hasher.finish()))
}

/// Stage 1's result of a run (the weights with the projection and label
/// gate, and its report), kept until the run ends so that a kill during
/// stage 2 does not train stage 1 again: `train-stage1.safetensors`, then
/// `train-stage1.json` naming the run's fingerprint.
struct Stage1Files {
    weights: std::path::PathBuf,
    meta: std::path::PathBuf,
}

impl Stage1Files {
    fn new(dir: &Path) -> Self {
        Self {
            weights: dir.join("train-stage1.safetensors"),
            meta: dir.join("train-stage1.json"),
        }
    }

    fn read(&self, fingerprint: &str, config: kino_fusion::FusionConfig) -> Option<(f32, FusionModel, TrainReport)> {
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&self.meta).ok()?).ok()?;
        if meta["fingerprint"].as_str() != Some(fingerprint) {
            return None;
        }
        let model = FusionModel::load(&self.weights, config)
            .map_err(|e| tracing::warn!("{e}: stage 1 runs again"))
            .ok()?;
        let report: TrainReport = serde_json::from_value(meta["report"].clone()).ok()?;
        tracing::info!("stage 1 of this run was done before it was interrupted: going on with stage 2");
        Some((meta["label_gate"].as_f64()? as f32, model, report))
    }

    fn write(&self, fingerprint: &str, gate: f32, model: &FusionModel, report: &TrainReport) -> Result<()> {
        model.save(&self.weights)?;
        let meta = json!({ "fingerprint": fingerprint, "label_gate": gate, "report": report });
        let tmp = self.meta.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&meta)?).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.meta).with_context(|| format!("writing {}", self.meta.display()))
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.meta);
        let _ = std::fs::remove_file(&self.weights);
    }
}

/// The current weights with the trained projection and label gate `gate`.
fn with_projection(current: &FusionModel, p: &Projection, gate: f32) -> Result<FusionModel> {
    Ok(current.with_pool_projection(&p.weight, &p.bias, 1.0, gate)?)
}
