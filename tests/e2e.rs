//! End-to-end: generated videos with subtitles are ingested by the `kino`
//! binary into SQLite and into Postgres, then `kino search --json` and
//! `kino ask --json` find the right video and time range.

mod common;

use common::{drop_pg_database, models_dir, pg_base, wait_for_exit};

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn kino(home: &Path, db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL")
        .arg("--home")
        .arg(home)
        .arg("--models")
        .arg(models_dir())
        .arg("--db")
        .arg(db)
        .arg("-q");
    c
}

/// A `secs`-long video of one colour with an SRT sidecar.
fn make_video(dir: &Path, name: &str, colour: &str, secs: u32, srt: &str) -> PathBuf {
    let path = dir.join(format!("{name}.mp4"));
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("color=c={colour}:s=160x120:r=10:d={secs}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(st.success());
    std::fs::write(dir.join(format!("{name}.srt")), srt).unwrap();
    path
}

fn library(dir: &Path) {
    make_video(
        dir,
        "garden",
        "green",
        30,
        "1\n00:00:01,000 --> 00:00:05,000\nWelcome back to the allotment.\n\n\
         2\n00:00:21,000 --> 00:00:27,000\nToday I am sowing tomato seeds in small pots of compost.\n\n",
    );
    make_video(
        dir,
        "chess",
        "white",
        30,
        "1\n00:00:02,000 --> 00:00:08,000\nWhite opens with the queen's gambit.\n\n\
         2\n00:00:12,000 --> 00:00:18,000\nBlack castles kingside and the bishop pins the knight.\n\n",
    );
    make_video(
        dir,
        "storm",
        "gray",
        30,
        "1\n00:00:03,000 --> 00:00:09,000\nDark clouds roll in over the hills.\n\n\
         2\n00:00:14,000 --> 00:00:20,000\nLightning flashes and thunder rumbles as heavy rain begins to pour.\n\n",
    );
}

fn run_json_lines(cmd: &mut Command) -> Vec<Value> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed ({:?}): {}",
        cmd,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ingest_then_search(db: &str, home: &Path, lib: &Path) {
    let rows = run_json_lines(kino(home, db).arg("ingest").arg(lib).arg("--json"));
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert_eq!(r["status"], "done", "{r}");
        assert!(r["segments"].as_u64().unwrap() >= 2, "{r}");
    }

    let res = &run_json_lines(kino(home, db).args(["search", "someone is planting seeds", "--json"]))[0];
    let top = &res["results"][0];
    assert!(top["path"].as_str().unwrap().ends_with("garden.mp4"), "{res}");
    let (s, e) = (top["start_ms"].as_i64().unwrap(), top["end_ms"].as_i64().unwrap());
    assert!(
        s <= 21_000 && e >= 27_000,
        "the sowing cue (21–27 s) lies in the moment {s}–{e}"
    );
    for key in ["video_id", "score", "text", "tags"] {
        assert!(top.get(key).is_some(), "result lacks {key}: {top}");
    }

    // A paraphrase sharing no words with the subtitles.
    let res = &run_json_lines(kino(home, db).args(["search", "gardening: putting plants into soil", "--json"]))[0];
    assert!(
        res["results"][0]["path"].as_str().unwrap().ends_with("garden.mp4"),
        "{res}"
    );
    let res = &run_json_lines(kino(home, db).args(["search", "a thunderstorm", "-k", "3", "--json"]))[0];
    assert!(
        res["results"][0]["path"].as_str().unwrap().ends_with("storm.mp4"),
        "{res}"
    );

    let ans = &run_json_lines(kino(home, db).args(["ask", "which chess opening does white play?", "--json"]))[0];
    assert!(ans["answer"].as_str().unwrap().contains("queen's gambit"), "{ans}");
    assert!(
        ans["citations"][0]["path"].as_str().unwrap().ends_with("chess.mp4"),
        "{ans}"
    );
    assert!(ans["query_id"].as_i64().unwrap() > 0);

    // Ingesting again indexes nothing twice.
    let rows = run_json_lines(kino(home, db).arg("ingest").arg(lib).arg("--json"));
    assert!(rows.iter().all(|r| r["status"] == "unchanged"), "{rows:?}");
}

#[test]
fn sqlite_ingest_search_ask() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    library(&lib);
    let db = dir.path().join("kino.db").display().to_string();
    ingest_then_search(&db, &dir.path().join("home"), &lib);
}

#[test]
fn postgres_ingest_search_ask() {
    let base = pg_base();
    let name = format!("kino_e2e_{}", std::process::id());
    let drop = || drop_pg_database(&name);
    drop();
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    library(&lib);
    ingest_then_search(&format!("{base}/{name}"), &dir.path().join("home"), &lib);
    drop();
}

#[test]
fn bad_files_fail_with_their_reason_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("empty.mp4"), b"").unwrap();
    std::fs::write(lib.join("text.mkv"), b"this is not a video at all").unwrap();
    make_video(
        &lib,
        "good",
        "blue",
        3,
        "1\n00:00:00,500 --> 00:00:02,000\nA short blue clip.\n\n",
    );
    let db = dir.path().join("kino.db").display().to_string();
    let out = kino(&dir.path().join("home"), &db)
        .arg("ingest")
        .arg(&lib)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by = |n: &str| {
        rows.iter()
            .find(|r| r["path"].as_str().unwrap().ends_with(n))
            .unwrap()
            .clone()
    };
    assert_eq!(by("good.mp4")["status"], "done");
    for bad in ["empty.mp4", "text.mkv"] {
        let r = by(bad);
        assert_eq!(r["status"], "failed", "{r}");
        assert!(
            r["error"].as_str().unwrap().contains(bad),
            "the error names the file: {r}"
        );
    }
}

/// `kino ingest -v 2>&1 | head` closes the log pipe early. The ingest must go
/// on and finish (it hung: the log subscriber reported the failed write with
/// `eprintln!`, which panicked inside sqlx's SQLite worker, and every later
/// query waited forever), and a closed stdout must not panic either.
#[test]
fn a_closed_log_pipe_neither_hangs_nor_breaks_ingest() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    make_video(
        &lib,
        "garden",
        "green",
        10,
        "1\n00:00:01,000 --> 00:00:05,000\nToday I am sowing tomato seeds.\n\n",
    );
    let home = dir.path().join("home");
    let db = dir.path().join("kino.db").display().to_string();
    let mut child = kino(&home, &db)
        .env("RUST_LOG", "debug")
        .arg("ingest")
        .arg(&lib)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read two log lines, then close both pipes, as `| head -2` would.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    for _ in 0..2 {
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
    }
    drop(err);
    drop(child.stdout.take());
    let status = wait_for_exit(
        &mut child,
        Duration::from_secs(120),
        "kino ingest with its log pipe closed",
    );
    assert!(
        status.success(),
        "kino ingest exited with {status:?} after its log pipe closed"
    );
    let res = &run_json_lines(kino(&home, &db).args(["search", "planting seeds", "--json"]))[0];
    assert!(
        res["results"][0]["path"].as_str().unwrap().ends_with("garden.mp4"),
        "{res}"
    );
}

/// `--precision int8`: the library is indexed with the int8 sentence
/// encoder (its version, ending in `+int8`, is stored), searches at that
/// precision find the same videos, and going back to f32 makes the text
/// stale: `kino reindex --stale` re-encodes every video once. A precision
/// that does not exist is a usage error (exit 2) naming the values.
#[test]
fn int8_precision_indexes_searches_and_is_part_of_the_text_version() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    library(&lib);
    let home = dir.path().join("home");
    let db = dir.path().join("kino.db").display().to_string();
    let text_models = || {
        common::rt().block_on(async {
            let store = kino_store::Store::open(&db).await.unwrap();
            let v: Vec<String> = store
                .videos()
                .await
                .unwrap()
                .into_iter()
                .map(|v| v.text_model.unwrap_or_default())
                .collect();
            store.close().await;
            v
        })
    };

    let rows = run_json_lines(
        kino(&home, &db)
            .args(["--precision", "int8", "ingest"])
            .arg(&lib)
            .arg("--json"),
    );
    assert!(rows.iter().all(|r| r["status"] == "done"), "{rows:?}");
    let int8 = text_models();
    assert_eq!(int8.len(), 3);
    assert!(int8.iter().all(|m| m.ends_with("+int8")), "{int8:?}");

    let top = |precision: &str, q: &str| {
        let res = &run_json_lines(kino(&home, &db).args(["--precision", precision, "search", q, "--json"]))[0];
        res["results"][0]["path"].as_str().unwrap().to_string()
    };
    assert!(top("int8", "someone is planting seeds").ends_with("garden.mp4"));
    assert!(top("int8", "a thunderstorm").ends_with("storm.mp4"));
    assert!(top("int8", "which chess opening").ends_with("chess.mp4"));

    // Back to f32 (the default): every video's text is stale, and re-encoded.
    let out = kino(&home, &db).args(["reindex", "--stale"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let f32 = text_models();
    assert!(f32.iter().all(|m| !m.ends_with("+int8") && !m.is_empty()), "{f32:?}");
    assert!(top("f32", "someone is planting seeds").ends_with("garden.mp4"));

    let out = kino(&home, &db)
        .args(["--precision", "int4", "search", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("int4") && err.contains("int8"), "{err}");
}
