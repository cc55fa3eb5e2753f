//! Durability of the pipeline: a `kill -9` mid-ingest loses nothing and
//! indexes nothing twice; two `kino worker` processes share one Postgres
//! queue, each job done once; a worker exports its own metrics; SIGTERM with
//! a job in flight releases it and the next start resumes it.

mod common;

use common::{drop_pg_database, free_port, http, models_dir, pg_base, rt, wait_for, Server};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kino_store::{JobState, NewVideo, Store, VideoStatus};

fn kino(home: &Path, db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL")
        .arg("--home")
        .arg(home)
        .arg("--models")
        .arg(models_dir())
        .arg("--db")
        .arg(db);
    c
}

/// Videos long enough that indexing them takes a few seconds, each with subtitles.
fn make_library(dir: &Path, n: usize, secs: u32) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let topics = [
        "baking bread",
        "repairing a bicycle",
        "sailing a boat",
        "playing the violin",
        "painting a wall",
        "climbing a rock",
    ];
    (0..n)
        .map(|i| {
            let path = dir.join(format!("clip{i}.mp4"));
            let st = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
                .arg(format!("testsrc2=s=640x360:r=25:d={secs}"))
                .arg("-vf")
                .arg(format!("hue=h={}", i * 50)) // distinct content: identical files would be duplicates
                .args([
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-g",
                    "50",
                    "-pix_fmt",
                    "yuv420p",
                ])
                .arg(&path)
                .status()
                .unwrap();
            assert!(st.success());
            let mut srt = String::new();
            for (k, start) in (0..secs).step_by(15).enumerate() {
                srt.push_str(&format!(
                    "{}\n00:{:02}:{:02},000 --> 00:{:02}:{:02},000\nPart {k} of a video about {}.\n\n",
                    k + 1,
                    start / 60,
                    start % 60,
                    (start + 5) / 60,
                    (start + 5) % 60,
                    topics[i % topics.len()]
                ));
            }
            std::fs::write(dir.join(format!("clip{i}.srt")), srt).unwrap();
            path
        })
        .collect()
}

/// A video's file name, status and segments as (start, end, text).
type VideoSnapshot = (String, VideoStatus, Vec<(i64, i64, String)>);

/// Every video, by path.
fn snapshot(db: &str) -> Vec<VideoSnapshot> {
    rt().block_on(async {
        let store = Store::open(db).await.unwrap();
        let mut out = Vec::new();
        for v in store.videos().await.unwrap() {
            let segs = store.segments(v.id).await.unwrap();
            let name = Path::new(&v.path).file_name().unwrap().to_string_lossy().to_string();
            out.push((
                name,
                v.status,
                segs.into_iter().map(|s| (s.start_ms, s.end_ms, s.text)).collect(),
            ));
        }
        store.close().await;
        out
    })
}

fn done_count(db: &str) -> usize {
    rt().block_on(async {
        let store = Store::open(db).await.unwrap();
        let n = store
            .videos()
            .await
            .unwrap()
            .iter()
            .filter(|v| v.status == VideoStatus::Done)
            .count();
        store.close().await;
        n
    })
}

#[test]
fn kill_9_mid_ingest_then_rerun_indexes_every_video_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    make_library(&lib, 5, 90);

    // Reference: an uninterrupted run.
    let ref_db = dir.path().join("ref.db").display().to_string();
    let st = kino(&dir.path().join("home-ref"), &ref_db)
        .arg("-q")
        .arg("ingest")
        .arg(&lib)
        .status()
        .unwrap();
    assert!(st.success());
    let reference = snapshot(&ref_db);
    assert_eq!(reference.len(), 5);

    // Interrupted run: kill -9 once the first video is done.
    let db = dir.path().join("kino.db").display().to_string();
    let home = dir.path().join("home");
    let log_path = dir.path().join("interrupted.log");
    let mut child: Child = kino(&home, &db)
        .arg("-q")
        .arg("ingest")
        .arg(&lib)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if dir.path().join("kino.db").exists() && done_count(&db) >= 1 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(300), "no video finished in time");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "ingest ended ({status}) before it could be killed: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = done_count(&db);
    assert!(at_kill < 5, "the kill must land mid-way (done at kill: {at_kill})");

    // Rerun: resumes, indexes the rest, nothing twice.
    let out = kino(&home, &db)
        .arg("-q")
        .arg("ingest")
        .arg(&lib)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = snapshot(&db);
    assert_eq!(after.len(), 5);
    for ((name, status, segs), (rname, _, rsegs)) in after.iter().zip(&reference) {
        assert_eq!(name, rname);
        assert_eq!(*status, VideoStatus::Done, "{name}");
        assert_eq!(segs, rsegs, "{name}: segments differ from an uninterrupted run");
    }
    rt().block_on(async {
        let store = Store::open(&db).await.unwrap();
        for v in store.videos().await.unwrap() {
            let jobs = store.jobs_of_video(v.id).await.unwrap();
            assert!(jobs.iter().all(|j| j.state == JobState::Done), "{}: {jobs:?}", v.path);
            assert_eq!(jobs.len(), 1, "{}: one job per video", v.path);
        }
        store.close().await;
    });
}

#[test]
fn two_workers_share_one_postgres_queue() {
    let base = pg_base();
    let name = format!("kino_scale_{}", std::process::id());
    let db = format!("{base}/{name}");
    let drop_db = || drop_pg_database(&name);
    drop_db();
    let dir = tempfile::tempdir().unwrap();
    let files = make_library(&dir.path().join("lib"), 6, 30);

    // Queue the videos.
    let ids: Vec<i64> = rt().block_on(async {
        let store = Store::open(&db).await.unwrap();
        let mut ids = Vec::new();
        for f in &files {
            let v = store
                .upsert_video(&NewVideo {
                    path: f.display().to_string(),
                    content_hash: None,
                    size_bytes: 0,
                    mtime_ms: 0,
                })
                .await
                .unwrap();
            store.enqueue_job(v.id, "index").await.unwrap();
            ids.push(v.id);
        }
        store.close().await;
        ids
    });

    let spawn = |n: usize| {
        kino(&dir.path().join(format!("home{n}")), &db)
            .args(["--log-format", "json", "worker"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let workers = vec![spawn(0), spawn(1)];
    let t = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let all_done = rt().block_on(async {
            let store = Store::open(&db).await.unwrap();
            let jobs = store.jobs(100).await.unwrap();
            store.close().await;
            jobs.len() == ids.len()
                && jobs
                    .iter()
                    .all(|j| matches!(j.state, JobState::Done | JobState::Failed))
        });
        if all_done {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "workers did not finish the queue"
        );
    }
    // Graceful stop (SIGTERM), then read what each worker did.
    let mut per_worker = Vec::new();
    for w in workers {
        Command::new("kill")
            .arg("-TERM")
            .arg(w.id().to_string())
            .status()
            .unwrap();
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success(), "worker exits cleanly on SIGTERM");
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        let indexed: Vec<String> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "indexed")
            .map(|v| v["fields"]["path"].as_str().unwrap_or_default().to_string())
            .collect();
        per_worker.push(indexed);
    }
    assert!(
        per_worker.iter().all(|w| !w.is_empty()),
        "both workers did work: {per_worker:?}"
    );
    let mut all: Vec<String> = per_worker.concat();
    all.sort();
    let mut expected: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    expected.sort();
    assert_eq!(all, expected, "each video indexed exactly once");
    rt().block_on(async {
        let store = Store::open(&db).await.unwrap();
        for id in &ids {
            let jobs = store.jobs_of_video(*id).await.unwrap();
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].state, JobState::Done);
            assert_eq!(jobs[0].attempts, 1, "claimed once");
        }
        store.close().await;
    });
    drop_db();
}

#[test]
fn a_long_video_resumes_from_its_checkpoint_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    make_library(&lib, 1, 300);

    // Reference: uninterrupted (checkpointing along the way too).
    let ref_db = dir.path().join("ref.db").display().to_string();
    let st = kino(&dir.path().join("home-ref"), &ref_db)
        .env("KINO_CHECKPOINT_SECS", "20")
        .arg("-q")
        .arg("ingest")
        .arg(&lib)
        .status()
        .unwrap();
    assert!(st.success());
    let reference = snapshot(&ref_db);
    // testsrc2 shows a running counter: on-screen text in every segment
    // (read once per 10 s, the picture changing everywhere), beside a
    // subtitle cue every 15 s.
    assert_eq!(reference[0].2.len(), 30, "300 s: 30 segments with text");
    let subtitled = reference[0].2.iter().filter(|s| s.2.contains("Part ")).count();
    assert_eq!(subtitled, 20, "a subtitle cue every 15 s: 20 segments");

    let db = dir.path().join("kino.db").display().to_string();
    let home = dir.path().join("home");
    let mut child = kino(&home, &db)
        .env("KINO_CHECKPOINT_SECS", "20")
        .arg("-q")
        .arg("ingest")
        .arg(&lib)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let checkpoint = loop {
        std::thread::sleep(Duration::from_millis(50));
        if dir.path().join("kino.db").exists() {
            let cp = rt().block_on(async {
                let store = Store::open(&db).await.ok()?;
                let jobs = store.jobs(10).await.ok()?;
                store.close().await;
                jobs.first().and_then(|j| j.checkpoint.clone())
            });
            if let Some(cp) = cp {
                break cp;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(300), "no checkpoint in time");
        assert!(
            child.try_wait().unwrap().is_none(),
            "ingest ended before a checkpoint was seen"
        );
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let done_ms: i64 = serde_json::from_str::<serde_json::Value>(&checkpoint).unwrap()["done_ms"]
        .as_i64()
        .unwrap();
    assert!(done_ms > 0 && done_ms < 300_000, "{checkpoint}");
    assert!(
        snapshot(&db)[0].2.is_empty(),
        "search sees nothing of a half-indexed video"
    );

    let out = kino(&home, &db)
        .env("KINO_CHECKPOINT_SECS", "20")
        .arg("ingest")
        .arg(&lib)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resuming from its checkpoint"), "the rerun resumes: {log}");
    let after = snapshot(&db);
    assert_eq!(after[0].1, VideoStatus::Done);
    let spans = |s: &[(i64, i64, String)]| s.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>();
    assert_eq!(
        spans(&after[0].2),
        spans(&reference[0].2),
        "same segments as an uninterrupted run"
    );
    // Up to the checkpoint the same texts (staged); after it the same
    // subtitles. On-screen text is read again at the first frame decoded
    // after the checkpoint, so it may catch a change of the counter that
    // the uninterrupted run's change test had not read yet.
    let subtitle = |t: &str| {
        t.find("Part ")
            .map(|i| t[i..].split_inclusive('.').next().unwrap_or("").to_string())
    };
    for (a, r) in after[0].2.iter().zip(&reference[0].2) {
        if a.1 <= done_ms {
            assert_eq!(a, r, "staged before the checkpoint at {done_ms} ms");
        } else {
            assert_eq!(subtitle(&a.2), subtitle(&r.2), "{a:?} vs {r:?}");
        }
    }
}

/// `kino worker --metrics ADDR` serves its own Prometheus metrics: the
/// frames it decoded and its stages' times show there once it has indexed
/// a queued video; a bad address is a usage error.
#[test]
fn a_worker_exports_its_own_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_library(&dir.path().join("lib"), 1, 20);
    let db = dir.path().join("kino.db").display().to_string();
    rt().block_on(async {
        let store = Store::open(&db).await.unwrap();
        let v = store
            .upsert_video(&NewVideo {
                path: files[0].display().to_string(),
                content_hash: None,
                size_bytes: 0,
                mtime_ms: 0,
            })
            .await
            .unwrap();
        store.enqueue_job(v.id, "index").await.unwrap();
        store.close().await;
    });
    let home = dir.path().join("home");
    let port = free_port();
    let _worker = Server(
        kino(&home, &db)
            .env("KINO_OCR", "off")
            .args(["-q", "worker", "--metrics", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let frames = || -> f64 {
        let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return 0.0;
        };
        drop(s);
        let (status, _, body) = http(port, "GET", "/metrics", None, &[]);
        assert_eq!(status, 200);
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix("kino_frames_decoded_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    wait_for("the worker's frames in its metrics", || frames() >= 20.0);
    let (_, _, body) = http(port, "GET", "/metrics", None, &[]);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("kino_stage_seconds"), "{text}");
    let (status, _, _) = http(port, "GET", "/api/search?q=x", None, &[]);
    assert_eq!(status, 404, "only /metrics is served");

    let out = kino(&home, &db)
        .args(["worker", "--metrics", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics nonsense"));
}

/// SIGTERM to `kino serve` while it indexes a video: the job is released
/// (queued again, its attempt given back, its checkpoint kept), not failed;
/// the process exits cleanly; the next start resumes the job from its
/// checkpoint and indexes the video exactly once.
#[test]
fn sigterm_with_a_job_in_flight_releases_it_and_the_next_start_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    make_library(&lib, 1, 240);
    let db = dir.path().join("kino.db").display().to_string();
    let home = dir.path().join("home");
    let serve = |log: &str| {
        let port = free_port();
        let child = kino(&home, &db)
            .env("KINO_CHECKPOINT_SECS", "20")
            .args(["serve", "--library"])
            .arg(&lib)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .unwrap();
        (child, port)
    };
    let job_now = || {
        rt().block_on(async {
            let store = Store::open(&db).await.ok()?;
            let jobs = store.jobs(10).await.ok()?;
            store.close().await;
            jobs.into_iter().next()
        })
    };

    let (mut child, _port) = serve("first.log");
    let t = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if dir.path().join("kino.db").exists()
            && job_now().is_some_and(|j| j.state == JobState::Running && j.checkpoint.is_some())
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "no running job with a checkpoint in time"
        );
        assert!(child.try_wait().unwrap().is_none(), "serve ended early");
    }
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = common::wait_for_exit(&mut child, Duration::from_secs(60), "serve after SIGTERM");
    let log = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status:?}\n{log}");
    let job = job_now().expect("the job is still there");
    assert_eq!(job.state, JobState::Queued, "released, not failed: {job:?}\n{log}");
    assert_eq!(job.attempts, 0, "the attempt is given back: {job:?}");
    assert!(job.last_error.is_none(), "no error recorded: {job:?}");
    assert!(job.checkpoint.is_some(), "the checkpoint is kept: {job:?}");
    assert_eq!(snapshot(&db)[0].1, VideoStatus::Queued);
    assert!(snapshot(&db)[0].2.is_empty(), "nothing half-indexed is visible");

    let (mut child, port) = serve("second.log");
    let t = Instant::now();
    while done_count(&db) < 1 {
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the next start did not finish the video"
        );
        assert!(child.try_wait().unwrap().is_none(), "serve ended early");
    }
    let (code, _, body) = http(port, "GET", "/api/search?q=baking+bread", None, &[]);
    assert_eq!(code, 200);
    let found: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(!found["results"].as_array().unwrap().is_empty(), "{found}");
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    common::wait_for_exit(&mut child, Duration::from_secs(60), "serve after SIGTERM");
    let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert!(
        log.contains("resuming from its checkpoint"),
        "the next start resumes: {log}"
    );
    let after = snapshot(&db);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].2.len(), 24, "240 s: 24 segments, each once");
    let spans: Vec<(i64, i64)> = after[0].2.iter().map(|s| (s.0, s.1)).collect();
    for (k, s) in spans.iter().enumerate() {
        assert_eq!(*s, (k as i64 * 10_000, (k as i64 + 1) * 10_000), "segment {k}");
    }
    rt().block_on(async {
        let store = Store::open(&db).await.unwrap();
        let jobs = store.jobs(10).await.unwrap();
        assert_eq!(jobs.len(), 1, "one job: {jobs:?}");
        assert_eq!(jobs[0].state, JobState::Done);
        assert_eq!(jobs[0].attempts, 1, "counted as one attempt");
        store.close().await;
    });
}

/// Every segment of every video, by file name: (start, end, text, fused vector).
type FullSnapshot = Vec<(String, VideoStatus, Vec<(i64, i64, String, Vec<f32>)>)>;

fn full_snapshot(db: &str) -> FullSnapshot {
    rt().block_on(async {
        let store = Store::open(db).await.unwrap();
        let mut out = Vec::new();
        for v in store.videos().await.unwrap() {
            let segs = store.segments(v.id).await.unwrap();
            let name = Path::new(&v.path).file_name().unwrap().to_string_lossy().to_string();
            out.push((
                name,
                v.status,
                segs.into_iter()
                    .map(|s| (s.start_ms, s.end_ms, s.text, s.fused))
                    .collect(),
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        store.close().await;
        out
    })
}

/// `kill -9` of `kino serve` at named points (inside the segment
/// transaction, inside the checkpoint-staging transaction, twice each) and
/// at random moments (seed logged; `KINO_TEST_SEED` replays one), nine
/// kills in a row; then a clean start finishes the library. Every video is indexed
/// exactly once (one job, one set of segments) and its segments equal an
/// uninterrupted run's: same count, same times, same text, fused vectors
/// within 1e-4.
#[test]
fn kill_9_of_serve_at_named_and_random_points_leaves_the_index_an_uninterrupted_run_would() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    make_library(&lib, 3, 50);
    // On-screen text off: testsrc2's running counter is read again at the
    // first frame after a resumed checkpoint (see the test above).
    let with_env = |c: &mut Command| {
        c.env("KINO_CHECKPOINT_SECS", "10").env("KINO_OCR", "off");
    };

    let ref_db = dir.path().join("ref.db").display().to_string();
    let mut c = kino(&dir.path().join("home-ref"), &ref_db);
    with_env(&mut c);
    assert!(c.args(["-q", "ingest"]).arg(&lib).status().unwrap().success());
    let reference = full_snapshot(&ref_db);
    assert_eq!(reference.len(), 3);
    // A cue every 15 s (no pictures, no screen text): the 10 s windows
    // holding one, 4 of 5.
    assert!(
        reference.iter().all(|v| v.2.len() == 4),
        "4 segments each: {reference:?}"
    );

    let db = dir.path().join("kino.db").display().to_string();
    let home = dir.path().join("home");
    let seed = kino_fuzzkit::seed_from("KINO_TEST_SEED");
    println!("random kills: seed {seed} (KINO_TEST_SEED={seed} replays them)");
    let mut rng = kino_fuzzkit::SplitMix(seed);
    // The first hit of each point in a run: a later one may never come
    // once the videos left are few.
    let named = ["stage-tx@1", "segments-tx@1", "stage-tx@1", "segments-tx@1"];
    let mut kills = Vec::new();
    for run in 0..9 {
        let port = free_port();
        let mut c = kino(&home, &db);
        with_env(&mut c);
        c.args(["serve", "--library"])
            .arg(&lib)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let fault = named.get(run).copied();
        if let Some(point) = fault {
            c.env("KINO_FAULT", point);
        }
        let mut child = c.spawn().unwrap();
        let status = match fault {
            Some(point) => {
                // Killed by its own fault point (or finished everything
                // first: then the point was never reached, which fails).
                let t = Instant::now();
                loop {
                    if let Some(st) = child.try_wait().unwrap() {
                        break st;
                    }
                    assert!(
                        t.elapsed() < Duration::from_secs(240),
                        "run {run}: {point} never reached"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            None => {
                let wait_ms = 1500 + rng.next_u64() % 6000;
                std::thread::sleep(Duration::from_millis(wait_ms));
                let _ = child.kill();
                child.wait().unwrap()
            }
        };
        assert_eq!(
            status.signal(),
            Some(9),
            "run {run} ({fault:?}) ended by SIGKILL: {status:?}"
        );
        kills.push(fault.unwrap_or("random").to_string());
    }
    println!("killed: {kills:?}");

    // A clean start finishes the library.
    let port = free_port();
    let mut c = kino(&home, &db);
    with_env(&mut c);
    let mut child = c
        .args(["serve", "--library"])
        .arg(&lib)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while done_count(&db) < 3 {
        std::thread::sleep(Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(300), "the clean start did not finish");
    }
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    common::wait_for_exit(&mut child, Duration::from_secs(60), "serve after SIGTERM");

    let after = full_snapshot(&db);
    assert_eq!(after.len(), reference.len(), "every video once");
    for (a, r) in after.iter().zip(&reference) {
        assert_eq!(a.0, r.0);
        assert_eq!(a.1, VideoStatus::Done, "{}", a.0);
        assert_eq!(a.2.len(), r.2.len(), "{}: segment count", a.0);
        for (x, y) in a.2.iter().zip(&r.2) {
            assert_eq!((x.0, x.1, &x.2), (y.0, y.1, &y.2), "{}: segment times and text", a.0);
            let worst = x.3.iter().zip(&y.3).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-4, "{} at {} ms: fused vectors differ by {worst}", a.0, x.0);
        }
    }
    rt().block_on(async {
        let store = Store::open(&db).await.unwrap();
        for v in store.videos().await.unwrap() {
            // Indexed exactly once: one job done. (A random kill once left
            // a second, done job here: the startup scan read a video as
            // queued, its job finished, and the scan queued another. A
            // video indexed since it was read is no longer queued again.)
            // Nine kills can land on one job three times, its attempts: on
            // a busy machine a job lasts long enough. It then fails as
            // designed (lease expired on its last attempt) and the next
            // start queues the video again; anything else is a fault.
            let jobs = store.jobs_of_video(v.id).await.unwrap();
            let done = jobs.iter().filter(|j| j.state == JobState::Done).count();
            assert_eq!(done, 1, "{}: one job done: {jobs:?}", v.path);
            assert_eq!(
                jobs.last().map(|j| j.state),
                Some(JobState::Done),
                "{}: {jobs:?}",
                v.path
            );
            for j in jobs.iter().filter(|j| j.state != JobState::Done) {
                assert_eq!(j.state, JobState::Failed, "{}: {jobs:?}", v.path);
                assert_eq!(j.attempts, j.max_attempts, "{}: {jobs:?}", v.path);
                assert!(
                    j.last_error.as_deref().is_some_and(|e| e.contains("lease expired")),
                    "{}: a job failed other than by its worker's kills: {jobs:?}",
                    v.path
                );
            }
            assert!(jobs.len() <= 1 + kills.len() / 3, "{}: {jobs:?}", v.path);
            assert_eq!(
                store.staged_segments(v.id).await.unwrap().len(),
                0,
                "no staged rows left"
            );
        }
        store.close().await;
    });
}
