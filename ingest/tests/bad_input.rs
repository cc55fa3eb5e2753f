//! Every bad input of issue 3 gives a clear error (or a partial result with a warning),
//! never a panic or a hang.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{centre, ffmpeg, rgb_clip, Colour, H264};
use kino_ingest::{DecodeBudget, FrameSampler, IngestError, SampleOptions};

fn open_err(path: &Path) -> IngestError {
    match FrameSampler::open(path, &SampleOptions::default()) {
        Ok(s) => match s.into_iter().find_map(|f| f.err()) {
            Some(e) => e,
            None => panic!("{} decoded without error", path.display()),
        },
        Err(e) => e,
    }
}

fn assert_names_file(err: &IngestError, path: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the file: {msg}"
    );
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.mp4");
    let e = open_err(&p);
    assert!(matches!(e, IngestError::NotFound { .. }), "{e:?}");
    assert_names_file(&e, &p);
    assert!(matches!(kino_ingest::probe(&p), Err(IngestError::NotFound { .. })));
}

#[test]
fn zero_byte_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.mp4");
    std::fs::write(&p, b"").unwrap();
    let e = open_err(&p);
    assert!(matches!(e, IngestError::Empty { .. }), "{e:?}");
    assert_names_file(&e, &p);
    assert!(e.to_string().contains("empty"));
    assert!(e.is_bad_input());
}

#[test]
fn text_file_with_a_video_extension() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.mp4");
    std::fs::write(&p, "these are my notes, not a video\n".repeat(50)).unwrap();
    let e = open_err(&p);
    assert!(matches!(e, IngestError::NotMedia { .. }), "{e:?}");
    assert_names_file(&e, &p);
    assert!(matches!(kino_ingest::probe(&p), Err(IngestError::NotMedia { .. })));
}

#[test]
fn a_directory_is_not_media() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("folder.mp4");
    std::fs::create_dir(&p).unwrap();
    assert!(matches!(open_err(&p), IngestError::NotMedia { .. }));
}

#[test]
fn audio_only_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("song.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", p.to_str().unwrap()]);
    let e = open_err(&p);
    assert!(matches!(e, IngestError::NoVideo { audio_only: true, .. }), "{e:?}");
    assert!(e.to_string().contains("audio only"), "{e}");
    assert_names_file(&e, &p);
    let info = kino_ingest::probe(&p).unwrap();
    assert!(!info.has_video && info.has_audio);
}

#[test]
fn truncated_download_without_index_is_reported_as_truncated() {
    // moov at the end (the default): cutting the file loses the index.
    let dir = tempfile::tempdir().unwrap();
    let clip = rgb_clip(dir.path(), "full.mp4", H264);
    let bytes = std::fs::read(&clip).unwrap();
    let p = dir.path().join("cut.mp4");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = open_err(&p);
    assert!(matches!(e, IngestError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert_names_file(&e, &p);
}

#[test]
fn truncated_stream_gives_the_frames_before_the_cut_and_a_warning() {
    // Index first (faststart): the first half of the data still decodes.
    let dir = tempfile::tempdir().unwrap();
    // Busy pictures, so that the media data (not the index) fills most of the file.
    let clip = dir.path().join("full.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x240:r=25:d=6",
        "-c:v",
        "libx264",
        "-g",
        "25",
        "-movflags",
        "+faststart",
        clip.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&clip).unwrap();
    let p = dir.path().join("cut.mp4");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let mut s = FrameSampler::open(&p, &SampleOptions::default()).unwrap();
    let frames: Vec<_> = s.by_ref().collect::<Result<_, _>>().unwrap();
    assert!(!frames.is_empty() && frames.len() < 6, "{} frames", frames.len());
    assert_eq!(frames[0].pts_ms, 0);
    assert!(
        s.warnings().iter().any(|w| w.contains("truncated")),
        "{:?}",
        s.warnings()
    );
}

#[test]
fn stream_corrupt_half_way_still_decodes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let clip = rgb_clip(dir.path(), "full.ts", H264);
    let mut bytes = std::fs::read(&clip).unwrap();
    // Garbage over a stretch in the middle (2.5-3.5 s of 6 s, roughly).
    let n = bytes.len();
    let mut x: u32 = 12345;
    for b in &mut bytes[n * 5 / 12..n * 7 / 12] {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    let p = dir.path().join("corrupt.ts");
    std::fs::write(&p, &bytes).unwrap();
    let frames: Vec<_> = FrameSampler::open(&p, &SampleOptions::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(frames.len() >= 4, "{} frames", frames.len());
    assert_eq!(centre(&frames[0].image), Colour::Red);
    // The part after the damage is decoded again.
    let last = frames.last().unwrap();
    assert!(last.pts_ms >= 5000, "last frame at {}", last.pts_ms);
    assert_eq!(centre(&last.image), Colour::Blue);
}

#[test]
fn absurd_dimensions() {
    // A YUV4MPEG header declaring a 20000x16 picture.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("wide.y4m");
    let mut data = b"YUV4MPEG2 W20000 H16 F25:1 Ip A1:1 C420jpeg\nFRAME\n".to_vec();
    data.extend(std::iter::repeat_n(16u8, 20000 * 16 * 3 / 2));
    std::fs::write(&p, &data).unwrap();
    let e = open_err(&p);
    assert!(
        matches!(
            e,
            IngestError::AbsurdDimensions {
                width: 20000,
                height: 16,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("20000x16"), "{e}");
    assert!(matches!(
        kino_ingest::probe(&p),
        Err(IngestError::AbsurdDimensions { .. })
    ));
}

#[test]
fn decode_budget_in_frames_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let clip = rgb_clip(dir.path(), "rgb.mp4", H264);
    let opts = SampleOptions {
        decode_budget: DecodeBudget {
            max_frames: Some(20),
            max_wall: None,
        },
        ..Default::default()
    };
    let results: Vec<_> = FrameSampler::open(&clip, &opts).unwrap().collect();
    let err = results.iter().find_map(|r| r.as_ref().err()).expect("budget error");
    assert!(matches!(err, IngestError::BudgetExceeded { .. }), "{err:?}");
    assert!(err.to_string().contains("20 frames"), "{err}");
    // Ends after the error.
    assert!(results.last().unwrap().is_err());

    let opts = SampleOptions {
        decode_budget: DecodeBudget {
            max_frames: None,
            max_wall: Some(Duration::from_nanos(1)),
        },
        ..Default::default()
    };
    let t = Instant::now();
    let e = open_err_with(&clip, &opts);
    assert!(matches!(e, IngestError::BudgetExceeded { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

fn open_err_with(path: &Path, opts: &SampleOptions) -> IngestError {
    match FrameSampler::open(path, opts) {
        Ok(s) => s.into_iter().find_map(|f| f.err()).expect("an error"),
        Err(e) => e,
    }
}

#[test]
fn invalid_fps() {
    let dir = tempfile::tempdir().unwrap();
    let clip = rgb_clip(dir.path(), "rgb.mp4", H264);
    for fps in [0.0, -1.0, f64::NAN] {
        let opts = SampleOptions {
            fps,
            ..Default::default()
        };
        assert!(matches!(
            FrameSampler::open(&clip, &opts),
            Err(IngestError::InvalidOptions { .. })
        ));
    }
}

fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Runs in a child process without root rights (see `unreadable_file`).
#[test]
fn unreadable_file_child() {
    let Ok(p) = std::env::var("KINO_TEST_UNREADABLE") else {
        return;
    };
    let p = Path::new(&p);
    assert!(
        matches!(open_err(p), IngestError::PermissionDenied { .. }),
        "{:?}",
        open_err(p)
    );
    assert!(matches!(
        kino_ingest::probe(p),
        Err(IngestError::PermissionDenied { .. })
    ));
    assert!(matches!(
        kino_ingest::hash::content_hash(p),
        Err(IngestError::PermissionDenied { .. })
    ));
    assert!(open_err(p).to_string().contains("permission denied"));
}

#[test]
fn unreadable_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let clip = rgb_clip(dir.path(), "secret.mp4", H264);
    std::fs::set_permissions(&clip, std::fs::Permissions::from_mode(0o000)).unwrap();
    if euid() != 0 {
        assert!(matches!(open_err(&clip), IngestError::PermissionDenied { .. }));
        return;
    }
    // Root reads anything: check as an unprivileged user in a child process.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", "unreadable_file_child", "--test-threads=1"])
        .env("KINO_TEST_UNREADABLE", &clip)
        .output()
        .expect("setpriv (util-linux) is needed to test permissions as root");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {text}");
    assert!(text.contains("1 passed"), "child did not run the check: {text}");
}

/// An endless stream under a video's name: a named pipe (with no writer,
/// whose open would block for ever, and with a writer that never stops) and
/// a character device (`/dev/zero`, through a symlink). Each is refused at
/// once as not a regular file, by probe, frame sampling and audio decoding.
#[test]
fn endless_streams_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("live.ts");
    let st = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success(), "mkfifo");
    let zero = dir.path().join("zero.mp4");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let check = |p: &Path| {
        let t = Instant::now();
        let e = kino_ingest::probe(p).expect_err("refused");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert_names_file(&e, p);
        let e = open_err(p);
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let Err(e) = kino_ingest::AudioDecoder::open(p, &Default::default()) else {
            panic!("{}: audio decoding accepted a stream", p.display());
        };
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{}: took {:?}",
            p.display(),
            t.elapsed()
        );
    };
    check(&fifo);
    check(&zero);
    // A pipe with a writer that never stops: still refused at once.
    let mut writer = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("while :; do cat /dev/zero > '{}'; done", fifo.display()))
        .spawn()
        .unwrap();
    check(&fifo);
    let _ = writer.kill();
    let _ = writer.wait();
}
