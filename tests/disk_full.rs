//! A full disk under `KINO_HOME` (a small tmpfs mounted for the test; the
//! test fails, never skips, when it cannot mount one): indexing stops with
//! a clear error naming the problem, the jobs wait or fail with the reason,
//! what was already indexed stays whole and searchable, and once space
//! returns the next run indexes everything, each video once.

mod common;

use common::{models_dir, rt};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kino_store::{JobState, Store, VideoStatus};

/// A tmpfs mounted at a folder; unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (this test needs root or CAP_SYS_ADMIN): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_path_buf())
    }

    /// Writes a ballast file until the disk is full.
    fn fill(&self) -> PathBuf {
        let ballast = self.0.join("ballast");
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0x5au8; 64 << 10];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = f.sync_all();
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn make_video(dir: &Path, name: &str, hue: u32, words: &str) {
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("smptebars=s=320x180:r=10:d=30")
        .arg("-vf")
        .arg(format!("hue=h={hue}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(dir.join(format!("{name}.mp4")))
        .status()
        .unwrap();
    assert!(st.success());
    let srt: String = (0..3)
        .map(|k| {
            let s = k * 10 + 2;
            format!(
                "{}\n00:00:{s:02},000 --> 00:00:{:02},000\n{words}, part {k}.\n\n",
                k + 1,
                s + 4
            )
        })
        .collect();
    std::fs::write(dir.join(format!("{name}.srt")), srt).unwrap();
}

fn ingest(home: &Path, lib: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kino"))
        .env_remove("KINO_DATABASE_URL")
        .env("KINO_OCR", "off")
        .arg("--home")
        .arg(home)
        .arg("--models")
        .arg(models_dir())
        .args(["ingest"])
        .arg(lib)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("ingest hung on a full disk");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.wait_with_output().unwrap()
}

/// Runs an ingest that must fail without a panic; returns what it said, in lower case.
fn failed_ingest(home: &Path, lib: &Path) -> String {
    let out = ingest(home, lib);
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .to_lowercase();
    assert!(!out.status.success(), "a full disk is not a success: {said}");
    assert_ne!(out.status.code(), Some(101), "no panic: {said}");
    assert!(!said.contains("panicked"), "{said}");
    println!("ingest on a full disk said:\n{said}");
    said
}

/// A video's file name, status and segment texts.
type VideoRow = (String, VideoStatus, Vec<String>);
/// A job's video, state and last error.
type JobRow = (i64, JobState, Option<String>);

/// Each video's (file name, status, segment texts), and each job's state.
fn state(db: &str) -> (Vec<VideoRow>, Vec<JobRow>) {
    rt().block_on(async {
        let store = Store::open(db).await.unwrap();
        let mut videos = Vec::new();
        for v in store.videos().await.unwrap() {
            let texts = store
                .segments(v.id)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.text)
                .collect();
            let name = Path::new(&v.path).file_name().unwrap().to_string_lossy().to_string();
            videos.push((name, v.status, texts));
        }
        videos.sort_by(|a, b| a.0.cmp(&b.0));
        let jobs = store
            .jobs(100)
            .await
            .unwrap()
            .into_iter()
            .map(|j| (j.video_id, j.state, j.last_error))
            .collect();
        store.close().await;
        (videos, jobs)
    })
}

#[test]
fn a_full_disk_stops_indexing_cleanly_and_kino_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    make_video(&lib, "first", 0, "A potter shapes a bowl on the wheel");
    let home = dir.path().join("home");
    let disk = SmallDisk::mount(&home, "48m");
    let db = home.join("kino.db").display().to_string();

    let out = ingest(&home, &lib);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (before, _) = state(&db);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].1, VideoStatus::Done);
    assert_eq!(before[0].2.len(), 3);

    // The disk fills up; two more videos arrive. Completely full: kino
    // stops at once, saying why.
    let ballast = disk.fill();
    make_video(&lib, "second", 90, "A diver swims past a coral reef");
    make_video(&lib, "third", 200, "A blacksmith hammers a glowing horseshoe");
    let said = failed_ingest(&home, &lib);
    assert!(said.contains("the disk is full"), "{said}");
    assert!(
        said.contains(&home.display().to_string().to_lowercase()),
        "names the folder: {said}"
    );

    // Nearly full: indexing starts, then runs out of space part-way.
    let len = std::fs::metadata(&ballast).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ballast)
        .unwrap()
        .set_len(len.saturating_sub(128 << 10))
        .unwrap();
    let said = failed_ingest(&home, &lib);
    assert!(
        said.contains("no space left") || said.contains("disk is full"),
        "the reason is said: {said}"
    );

    // Room again: what was indexed is whole, nothing is half there, and
    // the jobs that did not finish say why.
    std::fs::remove_file(&ballast).unwrap();
    let (during, jobs) = state(&db);
    assert_eq!(during[0], before[0], "the first video's index is untouched");
    for (name, status, texts) in &during[1..] {
        assert!(texts.is_empty(), "{name}: no partial index on a full disk");
        assert_ne!(*status, VideoStatus::Done, "{name}");
    }
    // A job the full disk stopped waits (queued or still leased, taken
    // again on the next run: the disk could not even record a failure),
    // or, where the store could still write, records why it failed.
    // (Where the disk filled before a new file could even be registered, it
    // has no row and no job yet: the next run registers it.)
    let unfinished: Vec<_> = jobs.iter().filter(|j| j.1 != JobState::Done).collect();
    for (video, state, error) in unfinished {
        let e = error.as_deref().unwrap_or("").to_lowercase();
        assert!(
            matches!(state, JobState::Queued | JobState::Running)
                || e.contains("no space left")
                || e.contains("disk is full"),
            "job of video {video}: {state:?} {e:?}"
        );
    }
    let check = rt().block_on(async {
        let store = Store::open(&db).await.unwrap();
        let r = store.integrity_check().await.unwrap();
        store.close().await;
        r
    });
    assert_eq!(check, "ok", "the database is whole");

    // The next run indexes the rest, each video once.
    let out = ingest(&home, &lib);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (after, _) = state(&db);
    assert_eq!(after.len(), 3);
    assert_eq!(after[0], before[0]);
    for (name, status, texts) in &after {
        assert_eq!(*status, VideoStatus::Done, "{name}");
        assert_eq!(texts.len(), 3, "{name}: {texts:?}");
    }
    drop(disk);
}
