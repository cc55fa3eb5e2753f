//! `kino train` learns the fusion weights from the library's own time
//! alignment: ten visually distinct synthetic scene classes (ffmpeg's
//! sources), training videos with subtitles describing the scene, held-out
//! videos (other seeds, shades, sizes) with no text at all, queried with
//! paraphrases that appear in no subtitle. Before training, text→held-out
//! video recall@1 is near chance (the small random Swin's ImageNet labels say
//! nothing about the scenes); after `kino train`, which a running `kino
//! serve` picks up and re-fuses the library for from the kept features
//! (nothing decoded), it is at least 0.8. A
//! second run with nothing new changes nothing; marks on search results
//! (right, wrong) make the next run train again with them; `--rollback` goes
//! back step by step; too
//! little aligned text is refused with the current weights left in place.

mod common;

use common::{json_of, rt, text_model};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kino_store::Store;

/// A scene class: its ffmpeg source for training videos and for held-out
/// ones, what the subtitles say, and the queries (found in no subtitle).
struct Class {
    name: &'static str,
    train: [&'static str; 3],
    held_out: &'static str,
    says: [&'static str; 3],
    queries: [&'static str; 2],
}

const CLASSES: [Class; 10] = [
    Class {
        name: "red",
        train: ["color=c=0xd01010", "color=c=0xb00808", "color=c=0xe83030"],
        held_out: "color=c=0xc82818",
        says: [
            "a plain red screen",
            "the whole picture is red",
            "nothing but the colour red",
        ],
        queries: ["everything on screen is red", "something completely red"],
    },
    Class {
        name: "blue",
        train: ["color=c=0x1020d0", "color=c=0x0818a0", "color=c=0x3048f0"],
        held_out: "color=c=0x2038e0",
        says: [
            "a plain blue screen",
            "the whole picture is blue",
            "nothing but the colour blue",
        ],
        queries: ["everything on screen is blue", "something completely blue"],
    },
    Class {
        name: "green",
        train: ["color=c=0x10b020", "color=c=0x089018", "color=c=0x40d050"],
        held_out: "color=c=0x20c038",
        says: [
            "a plain green screen",
            "the whole picture is green",
            "nothing but the colour green",
        ],
        queries: ["everything on screen is green", "something completely green"],
    },
    Class {
        name: "testcard",
        train: ["testsrc2", "testsrc2,hue=h=20", "testsrc2,eq=brightness=0.06"],
        held_out: "testsrc2,hue=h=-25",
        says: [
            "a moving television test card",
            "a test pattern with a running counter",
            "the test card shows numbers ticking",
        ],
        queries: ["a broadcast test image", "test pattern on the tv"],
    },
    Class {
        name: "fractal",
        train: [
            "mandelbrot",
            "mandelbrot=start_x=-0.7:start_y=0.2",
            "mandelbrot=start_scale=2",
        ],
        held_out: "mandelbrot=start_x=-0.75:start_y=0.1",
        says: [
            "zooming into the mandelbrot fractal",
            "an endlessly detailed mandelbrot set",
            "the fractal keeps unfolding",
        ],
        queries: ["a famous fractal shape in deep zoom", "mandelbrot set animation"],
    },
    Class {
        name: "life",
        train: ["life=mold=10:seed=1", "life=mold=10:seed=2", "life=mold=10:seed=3"],
        held_out: "life=mold=10:seed=7",
        says: [
            "the game of life grows and dies",
            "tiny cells of conway's life",
            "the cells of the game of life multiply",
        ],
        queries: ["cells living and dying in conway's game", "conway's life simulation"],
    },
    Class {
        name: "static",
        train: [
            "color=c=gray,noise=alls=90:allf=t",
            "color=c=0x8a8a8a,noise=alls=80:allf=t",
            "color=c=0x787878,noise=alls=100:allf=t",
        ],
        held_out: "color=c=0x909090,noise=alls=70:allf=t",
        says: [
            "grey television static",
            "snowy noise like an untuned tv",
            "the screen is full of static",
        ],
        queries: ["random static interference", "tv snow noise"],
    },
    Class {
        name: "gradient",
        train: ["gradients=seed=3", "gradients=seed=5", "gradients=seed=8"],
        held_out: "gradients=seed=11",
        says: [
            "soft gradients of colour blending",
            "a smooth colour gradient drifts",
            "colours melt into one another",
        ],
        queries: ["slowly shifting colour gradients", "blended colours melting together"],
    },
    Class {
        name: "bars",
        train: ["smptebars", "smptebars,eq=brightness=0.05", "smptehdbars,hue=h=10"],
        held_out: "smptehdbars",
        says: [
            "vertical colour bars for calibration",
            "smpte colour bars",
            "stripes of colour from an engineering signal",
        ],
        queries: ["calibration colour bars on a tv", "colour bar stripes"],
    },
    Class {
        name: "carpet",
        train: [
            "sierpinski=type=carpet",
            "sierpinski=type=carpet:seed=2",
            "sierpinski=type=carpet:seed=3",
        ],
        held_out: "sierpinski=type=carpet:seed=5",
        says: [
            "a sierpinski carpet of nested squares",
            "squares inside squares inside squares",
            "the carpet fractal of holes",
        ],
        queries: ["nested square holes repeating", "a self-similar carpet of squares"],
    },
];

/// A `kino serve` stopped when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn models(dir: &Path) -> PathBuf {
    let m = dir.join("models");
    std::fs::create_dir_all(m.join("sentence-transformers")).unwrap();
    std::os::unix::fs::symlink(text_model(), m.join("sentence-transformers/all-MiniLM-L6-v2")).unwrap();
    common::add_tiny_swin(&m);
    m
}

fn kino(home: &Path, models: &Path, db: &str) -> Command {
    common::kino_with_models(home, models, db)
}

fn srt_time(ms: u32) -> String {
    format!(
        "{:02}:{:02}:{:02},{:03}",
        ms / 3_600_000,
        (ms / 60_000) % 60,
        (ms / 1000) % 60,
        ms % 1000
    )
}

/// A `secs`-second video of `source` (an ffmpeg source, then filters
/// after a comma); with `says`, a subtitle every 5 s.
fn make_video(path: &Path, source: &str, secs: u32, says: Option<&[&str; 3]>) {
    let (src, filters) = source.split_once(',').unwrap_or((source, ""));
    let sep = if src.contains('=') { ':' } else { '=' };
    let mut graph = format!("{src}{sep}s=320x180:r=4");
    if !filters.is_empty() {
        graph = format!("{graph},{filters}");
    }
    let secs_text = secs.to_string();
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &graph,
        "-t",
        &secs_text,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        path.to_str().unwrap(),
    ]);
    if let Some(says) = says {
        let mut srt = String::new();
        for (k, start) in (0..secs * 1000).step_by(5000).enumerate() {
            srt.push_str(&format!(
                "{}\n{} --> {}\n{}\n\n",
                k + 1,
                srt_time(start),
                srt_time(start + 5000),
                says[k % 3]
            ));
        }
        std::fs::write(path.with_extension("srt"), srt).unwrap();
    }
}

/// The library: per class three 30-second subtitled training videos (three
/// shades, seeds or parameters) and one 20-second held-out video without
/// text (another).
fn library(lib: &Path) {
    std::fs::create_dir_all(lib).unwrap();
    std::thread::scope(|s| {
        for c in &CLASSES {
            s.spawn(move || {
                for (k, source) in c.train.iter().enumerate() {
                    make_video(&lib.join(format!("{}-{k}.mp4", c.name)), source, 30, Some(&c.says));
                }
                make_video(&lib.join(format!("held-{}.mp4", c.name)), c.held_out, 20, None);
            });
        }
    });
}

/// Text→held-out-video recall@1: for each query, the best-ranked moment in
/// a held-out video must be in that class's held-out video.
fn held_out_recall(home: &Path, models: &Path, db: &str) -> (f64, Vec<String>) {
    let mut hits = 0;
    let mut misses = Vec::new();
    let mut n = 0;
    for c in &CLASSES {
        for q in c.queries {
            n += 1;
            let out = kino(home, models, db)
                .args(["search", "--json", "-k", "80", q])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let v = json_of(&out);
            let top = v["results"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|r| r["path"].as_str())
                .find(|p| p.contains("/held-"))
                .map(String::from);
            let want = format!("/held-{}.mp4", c.name);
            if top.as_deref().is_some_and(|p| p.ends_with(&want)) {
                hits += 1;
            } else {
                misses.push(format!("{q:?} → {top:?}"));
            }
        }
    }
    (hits as f64 / n as f64, misses)
}

/// Runs `kino train` with the fault point `point` armed: it must die by
/// SIGKILL there.
fn train_killed_at(home: &Path, models: &Path, db: &str, point: &str) {
    use std::os::unix::process::ExitStatusExt;
    let killed = kino(home, models, db)
        .args(["train", "--json"])
        .env("KINO_FAULT", point)
        .output()
        .unwrap();
    assert_eq!(
        killed.status.signal(),
        Some(9),
        "killed by SIGKILL at {point}: {:?} {}",
        killed.status,
        String::from_utf8_lossy(&killed.stderr)
    );
}

#[test]
fn kino_train_learns_to_find_wordless_videos_by_what_they_show() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    library(&lib);
    let models = models(dir.path());
    let home = dir.path().join("home");
    let db = dir.path().join("kino.db").display().to_string();

    let out = kino(&home, &models, &db).arg("ingest").arg(&lib).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every video keeps its visual features.
    let ids: Vec<i64> = rt().block_on(async {
        let s = Store::open(&db).await.unwrap();
        s.videos().await.unwrap().iter().map(|v| v.id).collect()
    });
    assert_eq!(ids.len(), 40);
    for id in &ids {
        let f = home.join("features").join(format!("{id}.kfeat"));
        let shape = kino_fusion::features::read_shape(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(shape.pooled_dim, 32);
        assert!(shape.has_grid(), "under the cap, grids are kept");
    }

    let (before, _) = held_out_recall(&home, &models, &db);
    assert!(
        before <= 0.3,
        "before training the held-out videos are found by chance: {before}"
    );

    // A running `kino serve` picks the new weights up and re-fuses the
    // library from the kept features, decoding nothing.
    let port = common::free_port();
    let log = dir.path().join("serve.log");
    let mut serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_kino"))
            .env_remove("KINO_DATABASE_URL")
            .env("KINO_SPEECH", "off")
            .env("KINO_OCR", "off")
            .env("KINO_MODEL_POLL_MS", "200")
            .arg("--home")
            .arg(&home)
            .arg("--models")
            .arg(&models)
            .arg("--db")
            .arg(&db)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    common::wait_until("kino serve", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    // kill -9 during training (the named fault point: SIGKILL after step
    // 100): nothing is adopted, the last checkpoint stays, and the next run
    // resumes from it.
    train_killed_at(&home, &models, &db, "train-step:100");
    assert!(models.join("fusion/train-checkpoint.json").is_file());
    assert!(models.join("fusion/train-checkpoint.safetensors").is_file());
    assert!(!models.join("fusion/current").exists(), "nothing adopted");

    // Killed again, in stage 2 (after step 20, past two or three of its
    // epochs): stage 1 finished and is kept, stage 2 has its checkpoint.
    train_killed_at(&home, &models, &db, "train-stage2-step:20");
    assert!(models.join("fusion/train-stage1.json").is_file());
    assert!(models.join("fusion/train-stage2.safetensors").is_file());
    assert!(!models.join("fusion/current").exists(), "nothing adopted");

    let out = kino(&home, &models, &db).args(["train", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(&out);
    eprintln!("kino train: {report}");
    assert_eq!(report["stage1_kept"], true, "stage 1 is not trained again: {report}");
    let epoch = report["stage2"]["resumed_from_epoch"].as_u64().unwrap_or(0);
    assert!(epoch >= 1, "stage 2 resumed from its checkpoint: {report}");
    for f in [
        "train-stage1.json",
        "train-stage1.safetensors",
        "train-stage2.safetensors",
    ] {
        assert!(!models.join("fusion").join(f).exists(), "{f} removed at the end");
    }
    let resumed = report["resumed_from_step"].as_u64().unwrap_or(0);
    assert!(
        (20..100).contains(&resumed),
        "resumed from the last checkpoint before step 100: {report}"
    );
    assert!(
        !models.join("fusion/train-checkpoint.json").exists(),
        "checkpoint removed at the end"
    );
    assert_eq!(report["adopted"], true, "{report}");
    assert_eq!(report["current"], "v1", "{report}");
    assert!(report["recall_at_1"].as_f64().unwrap() >= 0.8, "{report}");
    assert!(
        report["recall_at_1"].as_f64().unwrap() >= report["recall_at_1_before"].as_f64().unwrap(),
        "{report}"
    );
    // The ablation: the pooled projection alone, with the trained grid, and
    // with the trained cross-attention too, each measured on the held-out
    // videos; the weights adopted are the best of them.
    let ablation = report["ablation"].as_object().expect("an ablation");
    for name in ["pooled", "pooled+grid", "pooled+grid+cross_attention"] {
        let r = &ablation[name];
        for key in ["recall_at_1", "cue_recall_at_1"] {
            let x = r[key].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&x), "{name}.{key}: {report}");
        }
    }
    assert!(
        ablation["pooled+grid"]["grid_gate"].as_f64().unwrap() > 0.0,
        "the grid was trained: {report}"
    );
    let stage2 = &report["stage2"];
    assert!(
        stage2["final_loss"].as_f64().unwrap() < stage2["first_loss"].as_f64().unwrap(),
        "stage 2 learnt: {report}"
    );
    let chosen = &ablation[report["chosen"].as_str().unwrap()];
    for r in ablation.values() {
        assert!(
            chosen["recall_at_1"].as_f64().unwrap() >= r["recall_at_1"].as_f64().unwrap(),
            "{report}"
        );
    }
    assert_eq!(chosen["recall_at_1"], report["recall_at_1"], "{report}");
    assert!(models.join("fusion/v1/fusion.safetensors").is_file());
    let recorded = rt().block_on(async {
        let s = Store::open(&db).await.unwrap();
        s.models().await.unwrap()
    });
    assert!(
        recorded.iter().any(|m| m.kind == "fusion" && m.source.contains("v1")),
        "{recorded:?}"
    );

    let fused_with = |version: &str| {
        rt().block_on(async {
            let s = Store::open(&db).await.unwrap();
            let n = s
                .videos()
                .await
                .unwrap()
                .iter()
                .filter(|v| v.stage_versions.get("fusion").map(String::as_str) == Some(version))
                .count();
            s.close().await;
            n
        })
    };
    let version = report["fusion_version"].as_str().unwrap().to_string();
    // The log line follows the commit, so wait for both: the store and the
    // log (the last video's line can come a moment after its commit).
    let refused = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("re-fused from the kept features (no frame decoded)")
            .count()
    };
    common::wait_until("serve re-fusing the library", Duration::from_secs(180), || {
        fused_with(&version) == 40 && refused() >= 40
    });
    let served = std::fs::read_to_string(&log).unwrap();
    assert!(served.contains("fusion weights loaded"), "{served}");
    assert_eq!(
        served
            .matches("re-fused from the kept features (no frame decoded)")
            .count(),
        40,
        "{served}"
    );
    let _ = serve.0.kill();
    let _ = serve.0.wait();

    let (after, misses) = held_out_recall(&home, &models, &db);
    eprintln!("text→held-out-video recall@1: {before:.2} before training, {after:.2} after; misses: {misses:?}");
    assert!(
        after >= 0.8,
        "after training: {after} (before {before}); misses: {misses:#?}"
    );

    // Subtitle search still works with the trained weights: each class's
    // subtitle sentences find a moment of that class's subtitled videos first.
    for c in &CLASSES {
        for said in c.says {
            let out = kino(&home, &models, &db)
                .args(["search", "--json", "-k", "5", said])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let v = json_of(&out);
            let top = v["results"][0]["path"].as_str().unwrap_or_default().to_string();
            let name = top.rsplit('/').next().unwrap_or_default().to_string();
            assert!(
                name.starts_with(&format!("{}-", c.name)),
                "{said:?} with trained weights → {top:?}"
            );
        }
    }

    // Nothing new: quick, nothing changes.
    let t = std::time::Instant::now();
    let out = kino(&home, &models, &db).args(["train", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = json_of(&out);
    assert_eq!(again["adopted"], false, "{again}");
    assert!(again["reason"].as_str().unwrap().contains("nothing new"), "{again}");
    assert!(t.elapsed().as_secs() < 30, "{:?}", t.elapsed());
    assert!(!models.join("fusion/v2").exists());

    // Marks from the web UI (stored as the page stores them) change the
    // next run's pairs: a right one is an extra positive, a wrong one a hard
    // negative.
    rt().block_on(async {
        let s = Store::open(&db).await.unwrap();
        let videos = s.videos().await.unwrap();
        let id = |name: &str| videos.iter().find(|v| v.path.ends_with(name)).unwrap().id;
        for (name, right) in [("held-red.mp4", true), ("blue-0.mp4", false)] {
            s.record_feedback(&kino_store::Feedback {
                id: 0,
                query: "a scarlet picture".into(),
                video_id: id(name),
                start_ms: 0,
                end_ms: 10_000,
                right,
                created_ms: 0,
            })
            .await
            .unwrap();
        }
        s.close().await;
    });
    let out = kino(&home, &models, &db).args(["train", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let marked = json_of(&out);
    eprintln!("kino train with marks: {marked}");
    assert_eq!(marked["feedback_positives"], 1, "{marked}");
    assert_eq!(marked["feedback_negatives"], 1, "{marked}");
    assert!(marked["recall_at_1"].is_number(), "it trained again: {marked}");
    let latest = marked["current"].as_str().unwrap().to_string();

    // Rollback, step by step, to the default weights; the videos are then
    // stale again and re-fused.
    let mut rolled = Vec::new();
    loop {
        let out = kino(&home, &models, &db)
            .args(["train", "--rollback", "--json"])
            .output()
            .unwrap();
        if out.status.code() == Some(2) {
            break;
        }
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let back = json_of(&out);
        rolled.push(back["rolled_back"].as_str().unwrap().to_string());
        assert!(rolled.len() <= 2, "{rolled:?}");
    }
    assert_eq!(rolled.first(), Some(&latest));
    assert_eq!(rolled.last().map(String::as_str), Some("v1"));
    assert!(!models.join("fusion/current").exists());
    let t = std::time::Instant::now();
    let out = kino(&home, &models, &db)
        .args(["reindex", "--stale", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "kino reindex --stale re-fused 40 videos (1,100 s of video) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let reindexed = json_of(&out);
    assert!(reindexed.to_string().contains("40"), "{reindexed}");
}

#[test]
fn too_little_aligned_text_is_refused_and_the_weights_stay() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    make_video(&lib.join("red.mp4"), CLASSES[0].train[0], 20, Some(&CLASSES[0].says));
    make_video(&lib.join("blue.mp4"), CLASSES[1].train[0], 20, None);
    let models = models(dir.path());
    let home = dir.path().join("home");
    let db = dir.path().join("kino.db").display().to_string();
    let out = kino(&home, &models, &db).arg("ingest").arg(&lib).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = kino(&home, &models, &db).args(["train"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("only 20 frames have text aligned"), "{err}");
    assert!(err.contains("at least 200"), "{err}");
    assert!(!models.join("fusion/current").exists());
}
