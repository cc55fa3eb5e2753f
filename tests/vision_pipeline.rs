//! The vision branch in the pipeline: a library indexed without vision
//! weights is marked as needing vision; once a (small, random, HF-format)
//! Swin checkpoint is in place, `kino reindex --stale` adds visual vectors
//! and tags. Also: peak memory does not grow with the video's length.

mod common;

use common::{peak_rss_kb, rt, text_model};

use std::path::{Path, PathBuf};
use std::process::Command;

use kino_store::Store;

/// A models folder with the real text model and, optionally, the small Swin fixture as the vision model.
fn models(dir: &Path, with_vision: bool) -> PathBuf {
    let m = dir.join("models");
    std::fs::create_dir_all(m.join("sentence-transformers")).unwrap();
    let link = m.join("sentence-transformers/all-MiniLM-L6-v2");
    if !link.exists() {
        std::os::unix::fs::symlink(text_model(), &link).unwrap();
    }
    if with_vision {
        add_vision(&m);
    }
    m
}

fn add_vision(models: &Path) {
    common::add_tiny_swin(models);
}

fn kino(home: &Path, models: &Path, db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL")
        .arg("-q")
        .arg("--home")
        .arg(home)
        .arg("--models")
        .arg(models)
        .arg("--db")
        .arg(db);
    c
}

fn make_video(path: &Path, secs: u32, size: &str, rate: u32) {
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=s={size}:r={rate}:d={secs}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    let mut srt = String::new();
    for (k, start) in (0..secs).step_by(10).enumerate() {
        srt.push_str(&format!(
            "{}\n{:02}:{:02}:{:02},000 --> {:02}:{:02}:{:02},000\nLine {k}: a cosy living room with a sofa.\n\n",
            k + 1,
            start / 3600,
            (start / 60) % 60,
            start % 60,
            (start + 4) / 3600,
            ((start + 4) / 60) % 60,
            (start + 4) % 60
        ));
    }
    std::fs::write(path.with_extension("srt"), srt).unwrap();
}

/// A vision checkpoint without a classifier head (a bare `SwinModel`) gives
/// no labels, and the default fusion weights do not use raw grids: a video
/// without subtitles then has nothing searchable by text. That is indexed as
/// such (no segments), not failed.
#[test]
fn a_headless_vision_model_and_no_subtitles_index_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let video = lib.join("silent.mp4");
    make_video(&video, 12, "320x180", 10);
    std::fs::remove_file(video.with_extension("srt")).unwrap();
    let models = models(dir.path(), true);
    let cfg_path = models.join("microsoft/swin-tiny-patch4-window7-224/config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let obj = cfg.as_object_mut().unwrap();
    obj.remove("id2label");
    obj.remove("label2id");
    obj.insert("architectures".into(), serde_json::json!(["SwinModel"]));
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let home = dir.path().join("home");
    let db = dir.path().join("kino.db").display().to_string();

    let out = kino(&home, &models, &db).arg("ingest").arg(&lib).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (v, segs) = rt().block_on(async {
        let s = Store::open(&db).await.unwrap();
        let v = s.videos().await.unwrap().remove(0);
        let segs = s.segments(v.id).await.unwrap();
        (v, segs)
    });
    assert_eq!(v.status, kino_store::VideoStatus::Done, "{:?}", v.error);
    assert!(segs.is_empty(), "nothing searchable, so no segments: {}", segs.len());
}

#[test]
fn reindex_stale_adds_the_vision_branch_once_weights_exist() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    make_video(&lib.join("room.mp4"), 25, "320x180", 10);
    let models = models(dir.path(), false);
    let home = dir.path().join("home");
    let db = dir.path().join("kino.db").display().to_string();

    let out = kino(&home, &models, &db).arg("ingest").arg(&lib).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("vision branch off"),
        "says the vision branch is off"
    );
    let (v, segs) = rt().block_on(async {
        let s = Store::open(&db).await.unwrap();
        let v = s.videos().await.unwrap().remove(0);
        let segs = s.segments(v.id).await.unwrap();
        (v, segs)
    });
    assert!(v.needs_vision && v.vision_model.is_none());
    assert!(segs.iter().all(|s| s.visual_emb.is_none() && s.tags.is_empty()));

    add_vision(&models);
    let out = kino(&home, &models, &db)
        .args(["reindex", "--stale", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["reindexed"], 1, "{summary}");
    let (v, segs) = rt().block_on(async {
        let s = Store::open(&db).await.unwrap();
        let v = s.videos().await.unwrap().remove(0);
        let segs = s.segments(v.id).await.unwrap();
        (v, segs)
    });
    assert!(!v.needs_vision, "vision filled in");
    assert!(v.vision_model.is_some());
    assert_eq!(
        segs.len(),
        3,
        "25 s in 10 s windows (the 5 s tail merges only below 2 s)"
    );
    for s in &segs {
        assert!(
            s.visual_emb.as_ref().map(|e| e.len()) == Some(384),
            "visual vector in the text space"
        );
        assert!(!s.tags.is_empty(), "labels from the checkpoint's head become tags");
        assert!(s.thumbnail.is_some());
        let thumb = home.join("thumbnails").join(s.thumbnail.as_ref().unwrap());
        assert!(
            std::fs::read(&thumb).unwrap().starts_with(&[0xFF, 0xD8]),
            "thumbnail is a JPEG"
        );
    }
    // Nothing is stale any more.
    let out = kino(&home, &models, &db)
        .args(["reindex", "--stale", "--json"])
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["selected"], 0, "{summary}");
}

#[test]
fn peak_memory_does_not_grow_with_video_length() {
    let dir = tempfile::tempdir().unwrap();
    let models = models(dir.path(), true);
    let mut peaks = Vec::new();
    for minutes in [5u32, 30] {
        let lib = dir.path().join(format!("lib{minutes}"));
        std::fs::create_dir_all(&lib).unwrap();
        make_video(&lib.join("long.mp4"), minutes * 60, "320x180", 5);
        let db = dir.path().join(format!("k{minutes}.db")).display().to_string();
        let mut cmd = kino(&dir.path().join(format!("home{minutes}")), &models, &db);
        cmd.arg("ingest").arg(&lib);
        let kb = peak_rss_kb(&cmd);
        let segments = rt().block_on(async { Store::open(&db).await.unwrap().segment_count().await.unwrap() });
        assert_eq!(segments, (minutes * 6) as i64, "{minutes} min in 10 s segments");
        eprintln!("peak RSS indexing a {minutes}-minute video: {} MiB", kb / 1024);
        peaks.push(kb);
    }
    let (short, long) = (peaks[0], peaks[1]);
    assert!(
        long < 400 * 1024,
        "peak RSS {} MiB exceeds the 400 MiB bound",
        long / 1024
    );
    assert!(
        long < short + 40 * 1024,
        "6x the length must not cost more memory: 5 min {} MiB, 30 min {} MiB",
        short / 1024,
        long / 1024
    );
}

/// `kino embed-image --json`: one `{"path","embedding","labels"}` line per
/// image; a truncated image is exit code 2 with the file named.
#[test]
fn embed_image_prints_one_json_line_per_image_and_refuses_a_truncated_file() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("vision/tests/fixtures");
    let model = fixtures.join("swin_pad");
    let photo = fixtures.join("images/photo_320x200.png");
    let gray = fixtures.join("images/gray.png");
    let out = Command::new(env!("CARGO_BIN_EXE_kino"))
        .args(["-q", "embed-image", "--json", "--model"])
        .arg(&model)
        .arg(&photo)
        .arg(&gray)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["path"], photo.display().to_string());
    for l in &lines {
        let emb = l["embedding"].as_array().unwrap();
        assert_eq!(emb.len(), 32, "swin_pad's hidden size");
        assert!(emb.iter().all(|x| x.as_f64().unwrap().is_finite()));
        let labels = l["labels"].as_array().unwrap();
        assert_eq!(labels.len(), 5, "top 5 of the head's classes: {l}");
        let p: Vec<f64> = labels.iter().map(|x| x[1].as_f64().unwrap()).collect();
        assert!(p.windows(2).all(|w| w[0] >= w[1]), "sorted by probability: {p:?}");
    }
    assert_ne!(lines[0]["embedding"], lines[1]["embedding"]);

    let bad = fixtures.join("images/truncated.png");
    let out = Command::new(env!("CARGO_BIN_EXE_kino"))
        .args(["-q", "embed-image", "--json", "--model"])
        .arg(&model)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("truncated.png"), "names the file: {err}");
}

/// A segment as (start, end, text, visual embedding).
type VisualSegment = (i64, i64, String, Vec<f32>);

/// Each video's segments, by path.
fn visual_index(db: &str) -> Vec<(String, Vec<VisualSegment>)> {
    rt().block_on(async {
        let store = Store::open(db).await.unwrap();
        let mut out = Vec::new();
        for v in store.videos().await.unwrap() {
            let segs = store.segments(v.id).await.unwrap();
            let segs = segs
                .into_iter()
                .map(|s| (s.start_ms, s.end_ms, s.text, s.visual_emb.expect("a visual embedding")))
                .collect();
            out.push((v.path, segs));
        }
        store.close().await;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    })
}

/// Eight vision workers with batches of one frame often finish a video's
/// frames out of order (about every other run here: the reordering itself
/// is unit-tested in `pipeline::tests`); the index must be the one a single
/// worker builds (same segments, same visual vectors to rounding).
#[test]
fn out_of_order_vision_workers_build_the_same_index_as_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    for (i, rate) in [10, 12].into_iter().enumerate() {
        make_video(&lib.join(format!("clip{i}.mp4")), 40, "320x180", rate);
    }
    let models = models(dir.path(), true);
    let run = |name: &str, workers: &str, batch: &str| {
        let db = dir.path().join(format!("{name}.db")).display().to_string();
        let out = kino(&dir.path().join(format!("home-{name}")), &models, &db)
            .env("KINO_VISION_WORKERS", workers)
            .env("KINO_VISION_BATCH", batch)
            .arg("ingest")
            .arg(&lib)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {log}");
        visual_index(&db)
    };
    let want = run("one", "1", "8");
    let got = run("many", "8", "1");
    assert_eq!(want.len(), 2);
    assert!(
        want.iter().all(|(_, s)| s.len() == 4),
        "40 s, a cue every 10 s: {want:?}"
    );
    for ((gp, gs), (wp, ws)) in got.iter().zip(&want) {
        assert_eq!(gp, wp);
        assert_eq!(gs.len(), ws.len(), "{gp}: segment count");
        for (g, w) in gs.iter().zip(ws) {
            assert_eq!((g.0, g.1, &g.2), (w.0, w.1, &w.2), "{gp}: segment");
            let diff = g.3.iter().zip(&w.3).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-4, "{gp} {}-{} ms: visual vectors differ by {diff}", g.0, g.1);
        }
    }
}
