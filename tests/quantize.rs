//! `kino models quantize` and `--precision int8|auto` for the vision model,
//! end to end: calibrate on the library's frames, write the int8 form with
//! its report, index with it (the vision version changes, so the videos are
//! stale), search with top-10 results that overlap f32's, and refuse a
//! model int8 cannot represent, writing nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{json_of, rt, text_model};
use serde_json::Value;

const SCENES: [(&str, &str, [&str; 2]); 6] = [
    (
        "bars",
        "smptebars",
        ["colour bars for calibrating a monitor", "the test signal tone"],
    ),
    (
        "mandel",
        "mandelbrot",
        ["zooming into a fractal", "the edge of the set"],
    ),
    (
        "life",
        "life=s=160x120:mold=10:seed=3",
        ["cells that live and die", "a glider crosses the grid"],
    ),
    ("pattern", "testsrc2", ["a moving test pattern", "the counter ticks"]),
    (
        "rgb",
        "rgbtestsrc",
        ["red green and blue stripes", "primary colours side by side"],
    ),
    (
        "cells",
        "cellauto=s=160x120:rule=110",
        ["a cellular automaton grows", "rule one hundred and ten"],
    ),
];

fn library(lib: &Path) {
    std::fs::create_dir_all(lib).unwrap();
    for (name, src, says) in SCENES {
        let path = lib.join(format!("{name}.mp4"));
        common::ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("{src},scale=160:120,format=yuv420p"),
            "-t",
            "8",
            "-r",
            "5",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            path.to_str().unwrap(),
        ]);
        std::fs::write(
            lib.join(format!("{name}.srt")),
            format!(
                "1\n00:00:00,500 --> 00:00:03,500\n{}\n\n2\n00:00:04,500 --> 00:00:07,500\n{}\n\n",
                says[0], says[1]
            ),
        )
        .unwrap();
    }
}

fn vision_dir(models: &Path) -> PathBuf {
    models.join("microsoft/swin-tiny-patch4-window7-224")
}

fn text_dir(models: &Path) -> PathBuf {
    models.join("sentence-transformers/all-MiniLM-L6-v2")
}

/// The text model linked file by file (quantize writes beside them, never
/// into the shared copy) and the tiny Swin.
fn models(dir: &Path) -> PathBuf {
    let m = dir.join("models");
    link_files(&text_model(), &text_dir(&m));
    assert_eq!(common::add_tiny_swin(&m), vision_dir(&m));
    m
}

fn link_files(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if std::fs::metadata(e.path()).unwrap().is_dir() {
            link_files(&e.path(), &dst.join(e.file_name()));
        } else if !e.file_name().to_string_lossy().starts_with("model.int8") {
            std::os::unix::fs::symlink(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

fn kino(home: &Path, models: &Path, db: &str) -> Command {
    let mut c = common::kino_with_models(home, models, db);
    c.env_remove("KINO_PRECISION");
    c
}

/// Loads the safetensors file `path`, lets `change` alter each tensor by
/// name, and saves it back.
fn edit_weights(path: &Path, mut change: impl FnMut(&str, &mut candle_core::Tensor)) {
    let mut tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    for (name, t) in tensors.iter_mut() {
        change(name, t);
    }
    candle_core::safetensors::save(&tensors, path).unwrap();
}

fn vision_versions(db: &str) -> Vec<String> {
    rt().block_on(async {
        let s = kino_store::Store::open(db).await.unwrap();
        let v = s
            .videos()
            .await
            .unwrap()
            .iter()
            .map(|v| v.stage_versions.get("vision").cloned().unwrap_or_default())
            .collect();
        s.close().await;
        v
    })
}

/// Each query's top 10 as `path@start`.
fn top10(home: &Path, models: &Path, db: &str, precision: &str) -> Vec<Vec<String>> {
    SCENES
        .iter()
        .flat_map(|(_, _, says)| says.iter())
        .chain(["something on a screen", "a pattern of colours"].iter())
        .map(|q| {
            let out = kino(home, models, db)
                .args(["--precision", precision, "search", "--json", "-k", "10", q])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            json_of(&out)["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| format!("{}@{}", r["path"].as_str().unwrap(), r["start_ms"]))
                .collect()
        })
        .collect()
}

#[test]
fn quantize_calibrates_on_the_library_and_int8_search_overlaps_f32() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    library(&lib);
    let models = models(dir.path());
    let home = dir.path().join("home");
    let db = dir.path().join("kino.db").display().to_string();
    let vdir = vision_dir(&models);

    // int8 before any int8 form exists: a clear error, exit 2.
    let out = kino(&home, &models, &db)
        .args(["--precision", "int8", "ingest"])
        .arg(&lib)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kino models quantize"), "{err}");

    let out = kino(&home, &models, &db).arg("ingest").arg(&lib).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let f32_versions = vision_versions(&db);
    assert_eq!(f32_versions.len(), 6);
    assert!(
        f32_versions.iter().all(|v| !v.is_empty() && !v.contains("int8")),
        "{f32_versions:?}"
    );
    let f32_top = top10(&home, &models, &db, "f32");

    // Calibrate on 24 frames of the library.
    let out = kino(&home, &models, &db)
        .args(["models", "quantize", "--calibrate", "24", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all: Value = json_of(&out);
    eprintln!("kino models quantize: {all}");
    // The sentence encoder: calibrated on the library's 12 cues.
    let text = &all["text"];
    assert_eq!(text["written"], true, "{all}");
    assert_eq!(text["report"]["calibration"]["sentences"], 12, "{all}");
    assert_eq!(text["report"]["calibration"]["source"], "library", "{all}");
    assert!(
        text["report"]["accuracy"]["min_cosine"].as_f64().unwrap() >= 0.995,
        "{all}"
    );
    let text_version = text["report"]["int8_version"].as_str().unwrap().to_string();
    assert!(text_version.contains("+int8:"), "{text_version}");
    assert!(text_dir(&models).join("model.int8.safetensors").is_file());
    assert!(
        !text_model().join("model.int8.safetensors").exists(),
        "the shared copy is untouched"
    );
    // The vision model.
    let r = &all["vision"];
    assert_eq!(r["written"], true, "{r}");
    let report = &r["report"];
    assert_eq!(report["calibration"]["frames"], 24, "{r}");
    assert_eq!(report["calibration"]["source"], "library", "{r}");
    assert_eq!(report["calibration"]["videos"], 6, "{r}");
    // Two stages of two blocks (4 layers each) and one patch merging.
    assert_eq!(
        report["calibration"]["layers"].as_array().unwrap().len(),
        4 * 4 + 1,
        "{r}"
    );
    assert!(report["accuracy"]["min_cosine"].as_f64().unwrap() >= 0.99, "{r}");
    assert!(report["accuracy"]["top5_agreement"].as_f64().unwrap() >= 0.95, "{r}");
    assert!(vdir.join("model.int8.safetensors").is_file());
    let stored: Value = serde_json::from_slice(&std::fs::read(vdir.join("model.int8.json")).unwrap()).unwrap();
    assert_eq!(&stored, report);

    // auto picks the int8 form up: the vision stage is stale, re-indexed.
    let out = kino(&home, &models, &db)
        .args(["--precision", "auto", "reindex", "--stale", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = json_of(&out);
    assert_eq!(summary["reindexed"], 6, "{summary}");
    let int8_versions = vision_versions(&db);
    let want = report["int8_version"].as_str().unwrap();
    assert!(
        int8_versions.iter().all(|v| v.starts_with(want)),
        "{int8_versions:?} (want {want})"
    );
    let text_models: Vec<String> = rt().block_on(async {
        let s = kino_store::Store::open(&db).await.unwrap();
        let v = s
            .videos()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|v| v.text_model)
            .collect();
        s.close().await;
        v
    });
    assert_eq!(text_models.len(), 6);
    assert!(
        text_models.iter().all(|v| *v == text_version),
        "{text_models:?} (want {text_version})"
    );

    // Search at int8 overlaps f32's top 10.
    let int8_top = top10(&home, &models, &db, "int8");
    let (mut shared, mut total) = (0usize, 0usize);
    for (a, b) in f32_top.iter().zip(&int8_top) {
        shared += a.iter().filter(|x| b.contains(x)).count();
        total += a.len();
    }
    let overlap = shared as f64 / total as f64;
    eprintln!("top-10 overlap int8/f32 over {} queries: {overlap:.3}", f32_top.len());
    assert!(total >= 6 * f32_top.len(), "every video in each top 10: {total}");
    assert!(overlap >= 0.9, "top-10 overlap {overlap}");

    // Nothing stale at int8 now; back at f32, every video is stale again.
    let out = kino(&home, &models, &db)
        .args(["--precision", "int8", "reindex", "--stale", "--json"])
        .output()
        .unwrap();
    assert_eq!(json_of(&out)["selected"], 0, "{}", String::from_utf8_lossy(&out.stdout));
    let out = kino(&home, &models, &db)
        .args(["reindex", "--stale", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        json_of(&out)["reindexed"],
        6,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(vision_versions(&db), f32_versions);

    // New vision weights: the int8 form made from the old ones is refused
    // at int8 (exit 2, naming the command) and set aside at auto.
    let mut changed = 0;
    edit_weights(&vdir.join("model.safetensors"), |name, t| {
        if name.ends_with("layernorm.weight") && changed == 0 {
            eprintln!("changing {name}");
            *t = (&*t * 1.01).unwrap();
            changed += 1;
        }
    });
    assert_eq!(changed, 1);
    let out = kino(&home, &models, &db)
        .args(["--precision", "int8", "reindex", "--stale"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("made from other weights") && err.contains("kino models quantize"),
        "{err}"
    );
    let out = kino(&home, &models, &db)
        .args(["--precision", "auto", "reindex", "--stale", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let now = vision_versions(&db);
    assert!(
        now.iter().all(|v| !v.contains("int8") && !f32_versions.contains(v)),
        "{now:?}"
    );
}

#[test]
fn a_model_int8_cannot_represent_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let models = models(dir.path());
    let home = dir.path().join("home");
    let db = dir.path().join("kino.db").display().to_string();
    let vdir = vision_dir(&models);
    // A model int8 cannot represent: the blocks' weights scaled up (so that
    // they matter), and a dead input channel (its layer norm scale and shift
    // 0) read by q, k, v and the MLP with a huge weight in every output
    // column. f32 never sees it (its input is 0); int8's per-column scale is
    // set by it and rounds the column's real weights to zero.
    edit_weights(&vdir.join("model.safetensors"), |name, t| {
        if !name.contains("blocks") {
            return;
        }
        let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let dims = t.dims().to_vec();
        if name.contains("layernorm") {
            v[0] = 0.0;
        } else if name.ends_with(".weight") && dims.len() == 2 {
            let inp = dims[1];
            v.iter_mut().for_each(|w| *w *= 20.0);
            let reads_ln = ["query", "key", "value", "intermediate"]
                .iter()
                .any(|n| name.contains(n));
            if reads_ln {
                for j in 0..dims[0] {
                    v[j * inp] = 300.0;
                }
            }
        }
        *t = candle_core::Tensor::from_vec(v, dims, &candle_core::Device::Cpu).unwrap();
    });

    // An empty library: bundled scenes.
    let out = kino(&home, &models, &db)
        .args(["models", "quantize", "--calibrate", "16", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("outside the accuracy bound") && stderr.contains("nothing written"),
        "{stderr}"
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &all["vision"];
    assert_eq!(r["written"], false, "{r}");
    assert!(
        r["report"]["calibration"]["source"]
            .as_str()
            .unwrap()
            .starts_with("bundled"),
        "{r}"
    );
    assert!(!vdir.join("model.int8.safetensors").exists());
    assert!(!vdir.join("model.int8.json").exists());
}
