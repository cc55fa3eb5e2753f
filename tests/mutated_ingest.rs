//! Mutated media through the whole pipeline with speech (Whisper) and
//! on-screen text (PP-OCR) on: `kino ingest` of seeded mutants of a clip
//! with spoken words and a slide finishes within its budget, without a
//! panic, every file indexed or failed with a reason, and with a peak
//! memory close to that of the intact clip. `KINO_FUZZ_SEED` replays a run;
//! `KINO_MUTANTS` sets how many (default 8).

mod common;

use common::models_dir;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kino_fuzzkit::SplitMix;

/// A 10 s clip: a slide with a sentence on it, and the sentence spoken.
fn seed_clip(dir: &Path) -> Vec<u8> {
    let wav = dir.join("speech.wav");
    let st = Command::new("espeak-ng")
        .args(["-v", "en", "-s", "140", "-w"])
        .arg(&wav)
        .arg("The lighthouse keeper climbs the stairs and lights the lamp at dusk.")
        .status()
        .expect("espeak-ng runs (scripts/setup installs it)");
    assert!(st.success());
    let clip = dir.join("seed.mp4");
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=white:s=640x360:r=10:d=10,drawtext=text='LIGHTHOUSE KEEPER':fontsize=48:fontcolor=black:x=60:y=150",
        "-i",
        wav.to_str().unwrap(),
        "-af",
        "apad",
        "-t",
        "10",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        clip.to_str().unwrap(),
    ]);
    std::fs::read(&clip).unwrap()
}

/// Bit flips and garbage runs, keeping the file's length (so the container
/// still mostly parses and the decoders see damaged packets).
fn mutate(bytes: &[u8], rng: &mut SplitMix) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..1 + rng.below(12) {
        let i = rng.below(b.len());
        if rng.below(2) == 0 {
            b[i] ^= 1 << rng.below(8);
        } else {
            for k in i..(i + 1 + rng.below(512)).min(b.len()) {
                b[k] = rng.next_u64() as u8;
            }
        }
    }
    b
}

/// Runs `kino ingest LIB --json` under GNU time: (exit code, stdout, stderr, peak RSS KiB).
fn ingest(home: &Path, lib: &Path) -> (Option<i32>, String, String, u64) {
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "PEAK_RSS_KB=%M"])
        .arg(env!("CARGO_BIN_EXE_kino"))
        .arg("--home")
        .arg(home)
        .arg("--models")
        .arg(models_dir())
        .args(["ingest", "--json"])
        .arg(lib)
        .env_remove("KINO_DATABASE_URL")
        .env("KINO_SPEECH", "always")
        .env("KINO_OCR", "auto")
        .output()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(900), "ingest took {:?}", t.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let rss = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("PEAK_RSS_KB="))
        .and_then(|v| v.trim().parse().ok())
        .expect("GNU time reports the peak RSS");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        stderr,
        rss,
    )
}

#[test]
fn ingest_of_mutated_media_with_speech_and_ocr_finishes_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_clip(dir.path());

    // The intact clip: its words are heard and read.
    let clean = dir.path().join("clean");
    std::fs::create_dir_all(&clean).unwrap();
    std::fs::write(clean.join("intact.mp4"), &seed).unwrap();
    let (code, stdout, stderr, base_rss) = ingest(&dir.path().join("home-clean"), &clean);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("\"status\":\"done\""), "{stdout}");
    // Both stages ran on it: a cue heard and a cue read.
    let db = dir.path().join("home-clean/kino.db").display().to_string();
    let sources: Vec<String> = common::rt().block_on(async {
        let store = kino_store::Store::open(&db).await.unwrap();
        let v = store.videos().await.unwrap().remove(0);
        let cues = store.cues(v.id).await.unwrap();
        store.close().await;
        cues.into_iter().map(|c| c.source).collect()
    });
    for source in ["speech", "screen"] {
        assert!(sources.iter().any(|s| s == source), "no {source} cue: {sources:?}");
    }

    let n: usize = std::env::var("KINO_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let s = kino_fuzzkit::seed_from("KINO_FUZZ_SEED");
    println!("{n} mutants, seed {s} (KINO_FUZZ_SEED={s} replays them)");
    let mut rng = SplitMix(s);
    let lib = dir.path().join("mutants");
    std::fs::create_dir_all(&lib).unwrap();
    for i in 0..n {
        std::fs::write(lib.join(format!("m{i}.mp4")), mutate(&seed, &mut rng)).unwrap();
    }
    let (code, stdout, stderr, rss) = ingest(&dir.path().join("home"), &lib);
    assert!(matches!(code, Some(0) | Some(1)), "exit {code:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let rows: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(rows.len(), n, "{stdout}");
    let mut done = 0;
    for r in &rows {
        match r["status"].as_str() {
            Some("done") => done += 1,
            Some("failed") => assert!(!r["error"].as_str().unwrap_or("").is_empty(), "a failure says why: {r}"),
            // Byte-identical mutants are duplicates of each other.
            Some("duplicate") => {}
            _ => panic!("neither indexed nor failed: {r}"),
        }
    }
    println!(
        "{done} of {n} mutants indexed, the rest failed with a reason; peak RSS {} MB (the intact clip: {} MB)",
        rss / 1024,
        base_rss / 1024
    );
    assert!(
        rss <= base_rss + base_rss / 2 + 256 * 1024,
        "peak RSS {rss} KiB against {base_rss} KiB for the intact clip"
    );
}
