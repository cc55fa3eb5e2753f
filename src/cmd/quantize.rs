//! `kino models quantize`: calibrates the int8 forms of the sentence encoder
//! (on sentences of the user's own library) and of the vision model (on its
//! frames), checks each against f32 on that data, and writes each beside
//! its f32 weights with its calibration statistics and accuracy report, or
//! refuses to when it is outside the bound. (Bundled sentences and scenes
//! stand in for an empty library.)

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use kino_ingest::{FrameSampler, SampleOptions};
use kino_vision::Calibration;
use serde_json::json;

use crate::config::Config;
use crate::engines::VISION_INT8_FILE;
use crate::error::usage;

/// The report written beside the int8 weights.
pub const REPORT_FILE: &str = "model.int8.json";
/// The text model's accuracy bound: cosine to f32 on every calibration
/// sentence.
const TEXT_MIN_COSINE: f32 = 0.995;
/// Frames per forward pass while calibrating and checking.
const BATCH: usize = 8;

/// Where the calibration frames came from.
struct Frames {
    images: Vec<image::RgbImage>,
    source: String,
    videos: usize,
}

/// What calibration samples from the library: at most `n` of its videos
/// (spread over it, by path; files still there) and their cues' text.
struct Sample {
    videos: Vec<kino_store::Video>,
    sentences: Vec<String>,
}

/// Reads the sample from the store once (both models calibrate on it).
fn library_sample(config: &Config, n: usize) -> Result<Sample> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = kino_store::Store::open(&config.db).await?;
        let mut videos: Vec<_> = store
            .videos()
            .await
            .context("reading the library's videos")?
            .into_iter()
            .filter(|v| Path::new(&v.path).is_file())
            .collect();
        videos.sort_by(|a, b| a.path.cmp(&b.path));
        let step = videos.len().div_ceil(n).max(1);
        let videos: Vec<_> = videos.into_iter().step_by(step).collect();
        let mut sentences = Vec::new();
        for v in &videos {
            sentences.extend(store.cues(v.id).await?.into_iter().map(|c| c.text));
        }
        store.close().await;
        sentences.retain(|t| !t.trim().is_empty());
        sentences.sort();
        sentences.dedup();
        let step = sentences.len().div_ceil(n).max(1);
        let sentences = sentences.into_iter().step_by(step).take(n).collect();
        anyhow::Ok(Sample { videos, sentences })
    })
}

/// Up to `n` frames spread over the sample's videos (evenly in time within
/// each, the videos taken in turn); bundled scenes when there are none.
fn library_frames(videos: &[kino_store::Video], n: usize, quiet: bool) -> Result<Frames> {
    let mut images = Vec::with_capacity(n);
    let mut used = 0;
    if !videos.is_empty() {
        let chosen: Vec<_> = videos.iter().collect();
        let per_video = n.div_ceil(chosen.len()).max(1);
        for v in chosen {
            if images.len() >= n {
                break;
            }
            let secs = v.facts.duration_ms.unwrap_or(60_000).max(1000) as f64 / 1000.0;
            let opts = SampleOptions {
                fps: (per_video as f64 / secs).clamp(0.001, 30.0),
                max_side: Some(448),
                thumbnail_width: 0,
                ..SampleOptions::default()
            };
            let before = images.len();
            let sampler = match FrameSampler::open(Path::new(&v.path), &opts) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(path = %v.path, error = %e, "skipped for calibration");
                    continue;
                }
            };
            for frame in sampler.take(per_video) {
                match frame {
                    Ok(f) => images.push(f.image),
                    Err(e) => {
                        tracing::warn!(path = %v.path, error = %e, "stopped reading frames for calibration");
                        break;
                    }
                }
                if images.len() >= n {
                    break;
                }
            }
            if images.len() > before {
                used += 1;
            }
            if !quiet {
                eprint!("\rcalibration frames: {}/{n}", images.len());
            }
        }
        if !quiet {
            eprintln!();
        }
    }
    if images.is_empty() {
        return Ok(Frames {
            images: kino_vision::swin::bundled_scenes(n),
            source: "bundled scenes (the library has no readable videos)".into(),
            videos: 0,
        });
    }
    Ok(Frames {
        images,
        source: "library".into(),
        videos: used,
    })
}

/// Summary statistics of one layer's calibrated input ranges.
fn layer_stats(
    i: usize,
    r: &kino_vision::swin::ChannelRanges,
    percentile: f64,
    shape: (usize, usize),
    f32_channels: usize,
) -> serde_json::Value {
    let p = r.percentile(percentile);
    let mut sorted = p.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let top = sorted.last().copied().unwrap_or(0.0);
    let max = r.max().iter().copied().fold(0f32, f32::max);
    json!({
        "layer": i,
        "inputs": shape.0,
        "outputs": shape.1,
        "rows": r.rows(),
        "range_median": median,
        "range_top": top,
        "max": max,
        // The outlier channels computed in f32 (the others are smoothed).
        "f32_channels": f32_channels,
    })
}

/// What quantizing one model came to.
struct Outcome {
    /// The refusal, when outside the bound (nothing written then).
    refused: Option<String>,
    /// The report (also written beside the weights when accepted).
    report: serde_json::Value,
    /// One line for people.
    summary: String,
}

impl Outcome {
    fn json(&self) -> serde_json::Value {
        json!({"written": self.refused.is_none(), "reason": self.refused, "report": self.report})
    }
}

/// Runs `kino models quantize`: the sentence encoder, and the vision model
/// when there is one.
pub fn quantize(config: &Config, calibrate: usize, percentile: f64, json_out: bool, quiet: bool) -> Result<()> {
    if calibrate == 0 {
        return Err(usage("--calibrate must be at least 1"));
    }
    if !(0.5..=1.0).contains(&percentile) {
        return Err(usage(format!(
            "--percentile {percentile}: give a value between 0.5 and 1"
        )));
    }
    let sample = library_sample(config, calibrate)?;
    let text = quantize_text(config, &sample.sentences, percentile)?;
    let vdir = config.vision_model_dir();
    let vision = if kino_vision::is_model_dir(&vdir) {
        Some(quantize_vision(
            &sample.videos,
            &vdir,
            calibrate,
            percentile,
            quiet || json_out,
        )?)
    } else {
        None
    };
    if json_out {
        println!(
            "{}",
            json!({
                "text": text.json(),
                "vision": vision.as_ref().map(Outcome::json),
            })
        );
    } else {
        out!("{}", text.summary);
        match &vision {
            Some(v) => out!("{}", v.summary),
            None => out!(
                "vision: no model at {} (config.json + model.safetensors): nothing to quantize",
                vdir.display()
            ),
        }
    }
    let refused: Vec<&str> = [Some(&text), vision.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|o| o.refused.as_deref())
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(usage(refused.join("; ")))
    }
}

/// The sentence encoder's stored calibration: ranges recorded on the
/// library's sentences, checked against f32 on them (cosine >= 0.995).
fn quantize_text(config: &Config, texts: &[String], percentile: f64) -> Result<Outcome> {
    use kino_language::Precision;
    let started = Instant::now();
    let dir = config.text_model_dir();
    let f32_enc = crate::engines::load_text(&dir, Precision::F32)?;
    let source = if texts.is_empty() {
        "bundled sentences (the library has no text yet)"
    } else {
        "library"
    };
    let lib: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Calibrated on the library's sentences and the fixed ones (which
    // `calibrate` adds); checked on both.
    let cal = f32_enc
        .calibrate(&lib, percentile)
        .context("calibrating the text model")?;
    let refs: Vec<&str> = lib
        .iter()
        .chain(kino_language::CALIBRATION_SENTENCES)
        .copied()
        .collect();
    let a = f32_enc.encode(&refs)?;
    let f32_version = f32_enc.f32_version();
    let int8 = f32_enc.quantized(&cal).context("turning the text model to int8")?;
    let b = int8.encode(&refs)?;
    let cos: Vec<f32> = a.iter().zip(&b).map(|(x, y)| kino_language::cosine(x, y)).collect();
    let min = cos.iter().copied().fold(f32::INFINITY, f32::min);
    let mean = cos.iter().sum::<f32>() / cos.len().max(1) as f32;
    let report = json!({
        "model": dir.display().to_string(),
        "f32_version": f32_version,
        "int8_version": int8.version(),
        "calibration": {"sentences": texts.len(), "source": source, "percentile": percentile},
        "accuracy": {"sentences": cos.len(), "min_cosine": min, "mean_cosine": mean},
        "bound": {"min_cosine": TEXT_MIN_COSINE},
        "seconds": started.elapsed().as_secs_f64(),
    });
    if min.is_nan() || min < TEXT_MIN_COSINE {
        return Ok(Outcome {
            refused: Some(format!(
                "{}: the int8 text model is outside the accuracy bound on {} sentences: \
                 the cosine to f32 falls to {min:.4} (the bound is {TEXT_MIN_COSINE}); nothing written",
                dir.display(),
                cos.len()
            )),
            summary: format!("text int8: refused (min cosine {min:.4})"),
            report,
        });
    }
    let meta = HashMap::from([
        ("percentile".to_string(), percentile.to_string()),
        ("calibration_source".to_string(), source.to_string()),
    ]);
    let report_path = dir.join(REPORT_FILE);
    std::fs::write(&report_path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", report_path.display()))?;
    cal.save(&dir, &meta)?;
    Ok(Outcome {
        refused: None,
        summary: format!(
            "text int8: {} calibrated on {} sentences ({source}); cosine to f32 min {min:.4} mean {mean:.4}; \
             written to {} (report {}).",
            dir.display(),
            texts.len(),
            dir.join(kino_language::TextCalibration::FILE).display(),
            report_path.display()
        ),
        report,
    })
}

/// The vision model's int8 form, calibrated on library frames and checked
/// against f32 on them.
fn quantize_vision(
    videos: &[kino_store::Video],
    dir: &Path,
    calibrate: usize,
    percentile: f64,
    quiet: bool,
) -> Result<Outcome> {
    let started = Instant::now();
    let swin = crate::engines::load_vision(dir, crate::cli::PrecisionArg::F32)?.expect("a model folder");
    let frames = library_frames(videos, calibrate, quiet)?;
    let pre = swin.preprocessor();
    let batches = frames
        .images
        .chunks(BATCH)
        .map(|c| pre.batch(c, &candle_core::Device::Cpu))
        .collect::<std::result::Result<Vec<_>, _>>()
        .context("preparing the calibration frames")?;
    let mut cal: Calibration = swin.calibration();
    let f32_outputs = batches
        .iter()
        .map(|px| swin.calibrate(&mut cal, px))
        .collect::<std::result::Result<Vec<_>, _>>()
        .context("calibrating")?;
    let q = swin.quantize(&cal, percentile)?;
    let mut accuracy: Option<kino_vision::Accuracy> = None;
    for (px, f) in batches.iter().zip(&f32_outputs) {
        let a = swin
            .accuracy_against(&q, px, f)
            .context("checking the int8 model against f32")?;
        accuracy = Some(match accuracy {
            Some(acc) => acc.merge(a),
            None => a,
        });
    }
    let accuracy = accuracy.expect("at least one batch");
    let shapes = swin.linear_shapes();
    let f32_channels = q.f32_channels();
    let layers: Vec<_> = cal
        .ranges()
        .iter()
        .enumerate()
        .map(|(i, r)| layer_stats(i, r, percentile, shapes[i], f32_channels[i]))
        .collect();
    let int8_version = q.version();
    let report = json!({
        "model": dir.display().to_string(),
        "f32_version": swin.version(),
        "int8_version": int8_version,
        "calibration": {
            "frames": cal.images(),
            "source": frames.source,
            "videos": frames.videos,
            "percentile": percentile,
            "layers": layers,
        },
        "accuracy": accuracy,
        "bound": {"min_cosine": kino_vision::swin::MIN_COSINE, "min_top5_agreement": kino_vision::swin::MIN_TOP5_AGREEMENT},
        "seconds": started.elapsed().as_secs_f64(),
    });
    if let Err(why) = accuracy.check() {
        return Ok(Outcome {
            refused: Some(format!(
                "{}: the int8 model is outside the accuracy bound on {} calibration frames: {why}; nothing written \
                 (the f32 model stays in use; try more frames with --calibrate, or a higher --percentile)",
                dir.display(),
                cal.images()
            )),
            summary: format!("vision int8: refused ({why})"),
            report,
        });
    }
    let meta = HashMap::from([
        ("percentile".to_string(), percentile.to_string()),
        ("calibration_frames".to_string(), cal.images().to_string()),
        ("calibration_source".to_string(), frames.source.clone()),
    ]);
    // The report first, then the weights (what a running serve watches).
    let report_path = dir.join(REPORT_FILE);
    std::fs::write(&report_path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", report_path.display()))?;
    q.save(&dir.join(VISION_INT8_FILE), &meta)?;
    Ok(Outcome {
        refused: None,
        summary: format!(
            "vision int8: {} calibrated on {} frames ({}); pooled cosine to f32 min {:.4} mean {:.4}{}; \
             written to {} (report {}). Use it with --precision int8 or auto.",
            dir.display(),
            cal.images(),
            frames.source,
            accuracy.min_cosine,
            accuracy.mean_cosine,
            accuracy
                .top5_agreement
                .map(|a| format!(", top-5 labels agree {:.1} %", a * 100.0))
                .unwrap_or_default(),
            dir.join(VISION_INT8_FILE).display(),
            report_path.display()
        ),
        report,
    })
}
