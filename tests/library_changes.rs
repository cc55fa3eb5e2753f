//! Files that change under a running `kino serve`: a video replaced while
//! it is being indexed ends with the new content's segments only; an
//! identical copy is recorded as a duplicate and indexed nothing twice; a
//! file deleted leaves search and, restored, comes back without being
//! indexed again.

mod common;

use common::{free_port, get_json, models_dir, rt, wait_for, Server};

use std::path::Path;
use std::process::{Command, Stdio};

use kino_store::{Store, VideoStatus};

/// A test-pattern video of `secs` seconds (colour shifted by `hue`, so
/// different hues are different files) with one subtitle cue per 10 s
/// window saying `words`; written under a temporary name, then renamed in
/// place (the watcher ignores temporary names).
fn make_video(dir: &Path, name: &str, secs: u32, hue: u32, words: &str) {
    let tmp = dir.join(format!(".{name}.tmp.mp4"));
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("smptebars=s=320x180:r=10:d={secs}"))
        .arg("-vf")
        .arg(format!("hue=h={hue}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(st.success());
    let srt: String = (0..secs / 10)
        .map(|k| {
            let s = k * 10 + 2;
            format!(
                "{}\n00:{:02}:{:02},000 --> 00:{:02}:{:02},000\n{words}, part {k}.\n\n",
                k + 1,
                s / 60,
                s % 60,
                (s + 4) / 60,
                (s + 4) % 60
            )
        })
        .collect();
    std::fs::write(dir.join(format!("{name}.srt")), srt).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.mp4"))).unwrap();
}

/// The stored video at `path` (by file name).
fn video(db: &str, name: &str) -> Option<kino_store::Video> {
    rt().block_on(async {
        let store = Store::open(db).await.ok()?;
        let v = store
            .videos()
            .await
            .ok()?
            .into_iter()
            .find(|v| v.path.ends_with(&format!("/{name}")));
        store.close().await;
        v
    })
}

fn segment_texts(db: &str, id: i64) -> Vec<String> {
    rt().block_on(async {
        let store = Store::open(db).await.unwrap();
        let segs = store.segments(id).await.unwrap();
        store.close().await;
        segs.into_iter().map(|s| s.text).collect()
    })
}

fn jobs_of(db: &str, id: i64) -> Vec<kino_store::Job> {
    rt().block_on(async {
        let store = Store::open(db).await.unwrap();
        let jobs = store.jobs_of_video(id).await.unwrap();
        store.close().await;
        jobs
    })
}

/// The ids of the videos a search finds, best first.
fn found_videos(port: u16, q: &str) -> Vec<i64> {
    let v = get_json(port, &format!("/api/search?q={}", q.replace(' ', "+")));
    let mut ids: Vec<i64> = Vec::new();
    for m in v["results"].as_array().unwrap() {
        let id = m["video_id"].as_i64().unwrap();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

#[test]
fn replaced_copied_deleted_and_restored_files_under_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    make_video(&lib, "long", 120, 0, "An old lighthouse keeper climbs the stairs");
    make_video(&lib, "short", 20, 120, "A juggler practises with five oranges");
    let db = dir.path().join("kino.db").display().to_string();
    let port = free_port();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_kino"))
            .env_remove("KINO_DATABASE_URL")
            .env("KINO_OCR", "off")
            .arg("--home")
            .arg(dir.path().join("home"))
            .arg("--models")
            .arg(models_dir())
            .arg("--db")
            .arg(&db)
            .args(["serve", "--library"])
            .arg(&lib)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap(),
    );

    // Replaced while it is being indexed: the new content wins, alone.
    wait_for("the long video's indexing to start", || {
        video(&db, "long.mp4").is_some_and(|v| v.status == VideoStatus::Indexing)
    });
    make_video(&lib, "long", 60, 240, "A baker kneads dough for the morning loaves");
    wait_for("the replaced video to be indexed with its new content", || {
        video(&db, "long.mp4").is_some_and(|v| {
            v.status == VideoStatus::Done && segment_texts(&db, v.id).iter().any(|t| t.contains("baker"))
        })
    });
    let long = video(&db, "long.mp4").unwrap();
    let texts = segment_texts(&db, long.id);
    assert_eq!(
        texts.len(),
        6,
        "60 s of new content: 6 segments, nothing of the old 120 s: {texts:?}"
    );
    assert!(texts.iter().all(|t| !t.contains("lighthouse")), "{texts:?}");

    // An identical copy: recorded as a duplicate, not indexed again.
    wait_for("the short video", || {
        video(&db, "short.mp4").is_some_and(|v| v.status == VideoStatus::Done)
    });
    let short = video(&db, "short.mp4").unwrap();
    std::fs::copy(lib.join("short.mp4"), dir.path().join("copy.mp4")).unwrap();
    std::fs::rename(dir.path().join("copy.mp4"), lib.join("copy.mp4")).unwrap();
    wait_for("the copy recorded as a duplicate", || {
        video(&db, "copy.mp4").is_some_and(|v| v.status == VideoStatus::Duplicate)
    });
    let copy = video(&db, "copy.mp4").unwrap();
    assert!(
        segment_texts(&db, copy.id).is_empty(),
        "a duplicate has no segments of its own"
    );
    assert!(jobs_of(&db, copy.id).is_empty(), "nor a job");
    let found = found_videos(port, "juggler practises with five oranges");
    assert_eq!(found.first(), Some(&short.id), "{found:?}");
    assert!(!found.contains(&copy.id), "the copy is not a second result: {found:?}");

    // Deleted: gone from search. Restored: back, without a second job.
    let jobs_before = jobs_of(&db, short.id).len();
    std::fs::rename(lib.join("short.mp4"), dir.path().join("short.mp4")).unwrap();
    wait_for("the deleted video to leave search", || {
        video(&db, "short.mp4").is_some_and(|v| v.status == VideoStatus::Missing)
            && !found_videos(port, "juggler practises with five oranges").contains(&short.id)
    });
    std::fs::rename(dir.path().join("short.mp4"), lib.join("short.mp4")).unwrap();
    wait_for("the restored video back in search", || {
        video(&db, "short.mp4").is_some_and(|v| v.status == VideoStatus::Done)
            && found_videos(port, "juggler practises with five oranges").first() == Some(&short.id)
    });
    assert_eq!(
        jobs_of(&db, short.id).len(),
        jobs_before,
        "restored without indexing again"
    );
    assert_eq!(segment_texts(&db, short.id).len(), 2);
}

/// A named pipe with a video's name in the library (an endless stream, or
/// one whose open blocks for ever without a writer) is refused as not a
/// regular file; the ingest finishes and indexes the real video beside it.
#[test]
fn a_named_pipe_in_the_library_is_refused_and_the_rest_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    make_video(&lib, "real", 20, 0, "A gardener waters the tomatoes");
    assert!(Command::new("mkfifo")
        .arg(lib.join("live.mp4"))
        .status()
        .unwrap()
        .success());
    let db = dir.path().join("kino.db").display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kino"))
        .env_remove("KINO_DATABASE_URL")
        .env("KINO_OCR", "off")
        .arg("--home")
        .arg(dir.path().join("home"))
        .arg("--models")
        .arg(models_dir())
        .arg("--db")
        .arg(&db)
        .args(["ingest", "--json"])
        .arg(&lib)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::wait_for_exit(&mut child, std::time::Duration::from_secs(120), "ingest beside a pipe");
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "one file failed: {said}");
    assert!(said.contains("live.mp4: not a regular file"), "{said}");
    assert_eq!(video(&db, "real.mp4").map(|v| v.status), Some(VideoStatus::Done));
}
