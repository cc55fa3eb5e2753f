//! Upgrade: a database written by the release before this wave (commit
//! 5fc1e77: no speech, no on-screen text, no whole-video documents, five
//! migrations older) opens with this kino on SQLite and on Postgres. The
//! migrations apply, every segment stays searchable at once, and the
//! stages that release lacked catch up as stale work: an ingest of the
//! library at its new place finds the files moved (same content), keeps
//! their index until the new one replaces it, and indexes each video once
//! more, with the new stages' versions recorded.
//!
//! The fixture (`tests/fixtures/upgrade/`) is made by
//! `scripts/fixtures/previous_release.sh`, which builds that release.

mod common;

use common::{drop_pg_database, models_dir, pg_base, rt};

use std::path::{Path, PathBuf};
use std::process::Command;

use kino_store::{Store, VideoStatus};
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade")
}

/// Where the previous release saw the library (gone now: the files moved).
const OLD_LIBRARY: &str = "/tmp/kino-upgrade-fixture/lib";

fn kino(home: &Path, db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL")
        .env("KINO_OCR", "off")
        .arg("--home")
        .arg(home)
        .arg("--models")
        .arg(models_dir())
        .arg("--db")
        .arg(db);
    c
}

fn json(cmd: &mut Command) -> Vec<Value> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Each video's (file name, status, segment count, stage names recorded).
fn videos(db: &str) -> Vec<(String, VideoStatus, usize, Vec<String>)> {
    rt().block_on(async {
        let store = Store::open(db).await.unwrap();
        let mut out = Vec::new();
        for v in store.videos().await.unwrap() {
            let n = store.segments(v.id).await.unwrap().len();
            let name = Path::new(&v.path).file_name().unwrap().to_string_lossy().to_string();
            let mut stages: Vec<String> = v.stage_versions.keys().cloned().collect();
            stages.sort();
            out.push((name, v.status, n, stages));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        store.close().await;
        out
    })
}

fn top_path(home: &Path, db: &str, q: &str) -> String {
    let res = &json(kino(home, db).args(["search", q, "--json"]))[0];
    res["results"][0]["path"].as_str().unwrap_or_default().to_string()
}

fn upgrade(db: &str, home: &Path, dir: &Path) {
    assert!(
        !Path::new(OLD_LIBRARY).exists(),
        "{OLD_LIBRARY} exists: the upgrade test needs the old library gone (remove it)"
    );
    // Searchable at once, before any file is seen again.
    assert!(top_path(home, db, "a lighthouse keeper on the stairs").ends_with("lighthouse.mp4"));
    assert!(top_path(home, db, "bread fresh from the oven").ends_with("bakery.mp4"));
    let before = videos(db);
    assert_eq!(before.len(), 2, "{before:?}");
    for v in &before {
        assert_eq!(v.1, VideoStatus::Done, "{v:?}");
        assert_eq!(v.2, 2, "two subtitled windows each: {v:?}");
    }

    // The library at its new place: moved, then re-indexed as stale.
    let lib = dir.join("library");
    std::fs::create_dir_all(&lib).unwrap();
    for f in ["lighthouse.mp4", "lighthouse.srt", "bakery.mp4", "bakery.srt"] {
        std::fs::copy(fixture().join("lib").join(f), lib.join(f)).unwrap();
    }
    let rows = json(kino(home, db).arg("ingest").arg(&lib).arg("--json"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["status"], "done", "{r}");
        assert_eq!(r["moved"], true, "found moved, not new: {r}");
        assert_eq!(r["segments"], 2, "{r}");
    }
    let after = videos(db);
    assert_eq!(after.len(), 2, "no second row per video: {after:?}");
    for v in &after {
        assert_eq!(v.1, VideoStatus::Done, "{v:?}");
        for stage in ["speech", "document"] {
            assert!(
                v.3.iter().any(|s| s == stage),
                "{}: the {stage} stage caught up: {:?}",
                v.0,
                v.3
            );
        }
    }
    let top = top_path(home, db, "a lighthouse keeper on the stairs");
    assert!(
        top.starts_with(&lib.display().to_string()) && top.ends_with("lighthouse.mp4"),
        "{top}"
    );
    // Nothing is stale any more: a second ingest changes nothing.
    let rows = json(kino(home, db).arg("ingest").arg(&lib).arg("--json"));
    assert!(rows.iter().all(|r| r["status"] == "unchanged"), "{rows:?}");
}

#[test]
fn a_sqlite_database_of_the_previous_release_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kino.db");
    std::fs::copy(fixture().join("kino.db"), &db).unwrap();
    upgrade(&db.display().to_string(), &dir.path().join("home"), dir.path());
}

#[test]
fn a_postgres_database_of_the_previous_release_upgrades() {
    let name = format!("kino_upgrade_{}", std::process::id());
    drop_pg_database(&name);
    let base = pg_base();
    let st = Command::new("psql")
        .arg(format!("{base}/postgres"))
        .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("psql")
        .arg(format!("{base}/{name}"))
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(fixture().join("postgres.sql"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restoring the dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    upgrade(&format!("{base}/{name}"), &dir.path().join("home"), dir.path());
    drop_pg_database(&name);
}
