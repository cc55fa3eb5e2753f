//! The folder watcher and content hashing on real temporary folders.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use kino_ingest::hash::content_hash;
use kino_ingest::watch::{WatchEvent, WatchOptions, Watcher};

const SETTLE: Duration = Duration::from_millis(300);

fn opts() -> WatchOptions {
    WatchOptions {
        settle: SETTLE,
        ..Default::default()
    }
}

fn canon(p: &Path) -> PathBuf {
    p.canonicalize().unwrap()
}

/// Events until `ScanComplete` (or panics after 10 s).
fn until_scan_complete(rx: &Receiver<WatchEvent>) -> Vec<WatchEvent> {
    let mut got = Vec::new();
    loop {
        match rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no ScanComplete within 10 s")
        {
            WatchEvent::ScanComplete => return got,
            e => got.push(e),
        }
    }
}

/// Events arriving within `wait`.
fn drain(rx: &Receiver<WatchEvent>, wait: Duration) -> Vec<WatchEvent> {
    let end = Instant::now() + wait;
    let mut got = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(e) => got.push(e),
            Err(_) => break,
        }
    }
    got
}

fn stable_paths(evs: &[WatchEvent]) -> Vec<PathBuf> {
    evs.iter()
        .filter_map(|e| match e {
            WatchEvent::Stable { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn startup_scan_reports_existing_videos_and_audio_files_and_ignores_temp_hidden_and_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = canon(dir.path());
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(root.join(".hiddendir")).unwrap();
    for f in [
        "a.mp4",
        "sub/b.MKV",
        "sub/deeper/c.webm",
        "talk.mp3",
        "sub/call.M4A",
        "memo.opus",
        "memo.opus.part",
        ".hidden.mp4",
        "d.mp4.part",
        "e.crdownload",
        "f.tmp",
        "notes.txt",
        ".hiddendir/g.mp4",
    ] {
        std::fs::write(root.join(f), b"data").unwrap();
    }
    let (_w, rx) = Watcher::start(std::slice::from_ref(&root), opts()).unwrap();
    let mut got = stable_paths(&until_scan_complete(&rx));
    got.sort();
    assert_eq!(
        got,
        vec![
            root.join("a.mp4"),
            root.join("memo.opus"),
            root.join("sub/b.MKV"),
            root.join("sub/call.M4A"),
            root.join("sub/deeper/c.webm"),
            root.join("talk.mp3"),
        ]
    );
    assert!(drain(&rx, Duration::from_millis(800)).is_empty());
}

#[test]
fn a_slowly_copied_file_is_reported_once_after_it_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let root = canon(dir.path());
    // A settling time well above the gaps between writes, even on a busy machine.
    let settle = Duration::from_millis(1000);
    let (_w, rx) = Watcher::start(std::slice::from_ref(&root), WatchOptions { settle, ..opts() }).unwrap();
    assert!(until_scan_complete(&rx).is_empty());
    let p = root.join("incoming.mp4");
    let mut f = std::fs::File::create(&p).unwrap();
    // 12 chunks, 100 ms apart: 1.2 s of copying, each gap shorter than the settling time.
    for _ in 0..12 {
        f.write_all(&[7u8; 10_000]).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(rx.try_recv().is_err(), "reported while still being written");
    }
    drop(f);
    let done = Instant::now();
    let evs = drain(&rx, Duration::from_secs(3));
    assert_eq!(evs.len(), 1, "{evs:?}");
    match &evs[0] {
        WatchEvent::Stable { path, size, mtime_ms } => {
            assert_eq!(path, &p);
            assert_eq!(*size, 120_000);
            assert!(*mtime_ms > 0);
        }
        e => panic!("unexpected {e:?}"),
    }
    assert!(done.elapsed() >= settle);
}

#[test]
fn rename_gives_removed_and_stable_with_the_same_hash() {
    let dir = tempfile::tempdir().unwrap();
    let root = canon(dir.path());
    std::fs::create_dir(root.join("other")).unwrap();
    let a = root.join("a.mp4");
    std::fs::write(&a, b"the same bytes everywhere").unwrap();
    let hash_before = content_hash(&a).unwrap();
    let (_w, rx) = Watcher::start(std::slice::from_ref(&root), opts()).unwrap();
    assert_eq!(stable_paths(&until_scan_complete(&rx)), vec![a.clone()]);

    let b = root.join("other/b.mp4");
    let t = Instant::now();
    std::fs::rename(&a, &b).unwrap();
    let evs = drain(&rx, Duration::from_secs(2));
    assert!(evs.contains(&WatchEvent::Removed { path: a.clone() }), "{evs:?}");
    assert_eq!(stable_paths(&evs), vec![b.clone()], "{evs:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    // A move keeps the content hash: the consumer recognises it and does not re-index.
    assert_eq!(content_hash(&b).unwrap(), hash_before);
}

#[test]
fn deletion_is_reported_as_removed() {
    let dir = tempfile::tempdir().unwrap();
    let root = canon(dir.path());
    std::fs::create_dir(root.join("sub")).unwrap();
    let a = root.join("a.mp4");
    let b = root.join("sub/b.mp4");
    std::fs::write(&a, b"a").unwrap();
    std::fs::write(&b, b"b").unwrap();
    let (_w, rx) = Watcher::start(std::slice::from_ref(&root), opts()).unwrap();
    assert_eq!(stable_paths(&until_scan_complete(&rx)).len(), 2);
    std::fs::remove_file(&a).unwrap();
    std::fs::remove_dir_all(root.join("sub")).unwrap();
    let mut evs = drain(&rx, Duration::from_secs(2));
    evs.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        evs,
        vec![WatchEvent::Removed { path: a }, WatchEvent::Removed { path: b }]
    );
}

#[test]
fn changes_while_stopped_are_picked_up_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = canon(dir.path());
    std::fs::write(root.join("old.mp4"), b"old").unwrap();
    std::fs::write(root.join("gone.mp4"), b"gone").unwrap();
    let (w, rx) = Watcher::start(std::slice::from_ref(&root), opts()).unwrap();
    assert_eq!(stable_paths(&until_scan_complete(&rx)).len(), 2);
    w.stop();
    // While stopped: one added, one deleted, one changed.
    std::fs::write(root.join("new.mkv"), b"new").unwrap();
    std::fs::remove_file(root.join("gone.mp4")).unwrap();
    std::fs::write(root.join("old.mp4"), b"old, edited").unwrap();
    let (_w, rx) = Watcher::start(std::slice::from_ref(&root), opts()).unwrap();
    let evs = until_scan_complete(&rx);
    let mut got: Vec<(PathBuf, u64)> = evs
        .iter()
        .map(|e| match e {
            WatchEvent::Stable { path, size, .. } => (path.clone(), *size),
            e => panic!("unexpected {e:?}"),
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![(root.join("new.mkv"), 3), (root.join("old.mp4"), 11)]);
}

#[test]
fn a_download_renamed_from_part_is_reported_under_its_final_name_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = canon(dir.path());
    let (_w, rx) = Watcher::start(std::slice::from_ref(&root), opts()).unwrap();
    until_scan_complete(&rx);
    let part = root.join("clip.mp4.part");
    std::fs::write(&part, b"downloading").unwrap();
    std::thread::sleep(SETTLE * 2);
    assert!(rx.try_recv().is_err());
    std::fs::rename(&part, root.join("clip.mp4")).unwrap();
    let evs = drain(&rx, Duration::from_secs(2));
    assert_eq!(stable_paths(&evs), vec![root.join("clip.mp4")]);
    assert_eq!(evs.len(), 1, "{evs:?}");
}

#[test]
fn missing_root_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nowhere");
    let err = Watcher::start(std::slice::from_ref(&p), opts()).err().expect("error");
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn content_hash_is_blake3_of_the_bytes_and_tells_contents_apart() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&a, &data).unwrap();
    assert_eq!(content_hash(&a).unwrap(), blake3::hash(&data).to_hex().to_string());
    let copy = dir.path().join("copy.bin");
    std::fs::copy(&a, &copy).unwrap();
    assert_eq!(content_hash(&copy).unwrap(), content_hash(&a).unwrap());
    let mut other = data.clone();
    other[2_999_999] ^= 1;
    std::fs::write(&copy, &other).unwrap();
    assert_ne!(content_hash(&copy).unwrap(), content_hash(&a).unwrap());
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(
        content_hash(&empty).unwrap(),
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
    assert!(matches!(
        content_hash(&dir.path().join("none")),
        Err(kino_ingest::IngestError::NotFound { .. })
    ));
}
