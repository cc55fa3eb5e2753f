//! `kino serve` as a whole: watcher + workers + web with the real query
//! engine (fusion scoring over the real text model). Files dropped into the
//! library are indexed and searchable over HTTP; a moved file keeps its
//! index; a deleted file disappears from search; SIGTERM stops cleanly;
//! searches stay fast under a slow-loris attack.

mod common;

use common::{free_port, get_json, http, models_dir, wait_for, wait_for_exit, Server};

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn make_video(dir: &Path, name: &str, colour: &str, srt: &str) {
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("color=c={colour}:s=160x120:r=10:d=20"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(dir.join(format!("{name}.tmp.mp4")))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(dir.join(format!("{name}.srt")), srt).unwrap();
    // Appear atomically under the final name (temporary names are ignored by the watcher).
    std::fs::rename(dir.join(format!("{name}.tmp.mp4")), dir.join(format!("{name}.mp4"))).unwrap();
}

#[test]
fn serve_indexes_dropped_files_and_answers_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    make_video(
        &lib,
        "garden",
        "green",
        "1\n00:00:11,000 --> 00:00:17,000\nToday I am sowing tomato seeds in small pots of compost.\n\n",
    );
    let port = free_port();
    let start = || {
        Server(
            Command::new(env!("CARGO_BIN_EXE_kino"))
                .env_remove("KINO_DATABASE_URL")
                .arg("--home")
                .arg(dir.path().join("home"))
                .arg("--models")
                .arg(models_dir())
                .args(["serve", "--library"])
                .arg(&lib)
                .args(["--bind", &format!("127.0.0.1:{port}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut server = start();
    wait_for("the server", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    // A second file dropped while serving.
    make_video(
        &lib,
        "storm",
        "gray",
        "1\n00:00:02,000 --> 00:00:08,000\nLightning flashes and thunder rumbles as heavy rain pours.\n\n",
    );
    wait_for("both videos indexed", || {
        let v = get_json(port, "/api/videos");
        let vids = v["videos"].as_array().cloned().unwrap_or_default();
        vids.len() == 2 && vids.iter().all(|v| v["status"] == "done")
    });

    let res = get_json(port, "/api/search?q=someone%20is%20planting%20seeds&k=3");
    let top = &res["results"][0];
    assert!(top["path"].as_str().unwrap().ends_with("garden.mp4"), "{res}");
    assert!(
        top["start_ms"].as_i64().unwrap() <= 11_000 && top["end_ms"].as_i64().unwrap() >= 17_000,
        "{res}"
    );
    let video_id = top["video_id"].as_i64().unwrap();

    let (status, _, body) = http(
        port,
        "POST",
        "/api/ask",
        Some(r#"{"question":"what is the weather doing?"}"#),
        &[],
    );
    assert_eq!(status, 200);
    let ans: Value = serde_json::from_slice(&body).unwrap();
    assert!(ans["answer"].as_str().unwrap().contains("thunder"), "{ans}");
    assert!(
        ans["citations"][0]["path"].as_str().unwrap().ends_with("storm.mp4"),
        "{ans}"
    );
    assert!(ans["query_id"].as_i64().unwrap() > 0);

    let (status, head, body) = http(
        port,
        "GET",
        &format!("/media/{video_id}"),
        None,
        &[("Range", "bytes=0-99")],
    );
    assert_eq!(status, 206, "{head}");
    assert_eq!(body.len(), 100);
    assert!(head.to_ascii_lowercase().contains("content-type: video/mp4"), "{head}");

    let (_, _, metrics) = http(port, "GET", "/metrics", None, &[]);
    let metrics = String::from_utf8_lossy(&metrics);
    for m in ["kino_frames_decoded_total", "kino_stage_seconds", "kino_jobs_total"] {
        assert!(metrics.contains(m), "/metrics lacks {m}");
    }

    // A move keeps the index (same id, same segments); a deletion hides the video.
    let before = get_json(port, &format!("/api/videos/{video_id}"));
    std::fs::create_dir_all(lib.join("moved")).unwrap();
    std::fs::rename(lib.join("garden.mp4"), lib.join("moved/garden.mp4")).unwrap();
    wait_for("the move", || {
        let v = get_json(port, &format!("/api/videos/{video_id}"));
        v.to_string().contains("moved/garden.mp4") && v.to_string().contains("\"done\"")
    });
    let after = get_json(port, &format!("/api/videos/{video_id}"));
    assert_eq!(before["segments"], after["segments"], "moved, not re-indexed");
    std::fs::remove_file(lib.join("moved/garden.mp4")).unwrap();
    wait_for("the deletion", || {
        let r = get_json(port, "/api/search?q=planting%20seeds&k=5");
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["video_id"].as_i64() != Some(video_id))
    });

    // SIGTERM: a clean exit.
    Command::new("kill")
        .arg("-TERM")
        .arg(server.0.id().to_string())
        .status()
        .unwrap();
    let st = wait_for_exit(&mut server.0, Duration::from_secs(30), "kino serve after SIGTERM");
    assert!(st.success(), "exit status {st}");

    // A file deleted while kino was down is found missing at the next start.
    std::fs::remove_file(lib.join("storm.mp4")).unwrap();
    let _server = start();
    wait_for("the restarted server", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    wait_for("the storm video marked missing", || {
        let v = get_json(port, "/api/videos");
        v["videos"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "storm.mp4" && v["status"] == "missing")
    });
}

#[test]
fn serve_refuses_a_public_bind_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kino"))
        .env_remove("KINO_TOKEN")
        .arg("--home")
        .arg(dir.path())
        .args(["serve", "--bind", "0.0.0.0:18999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kino serve` on an empty home with one setting in its environment:
/// exit code and standard error.
fn serve_with(setting: &str, value: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kino"))
        .env(setting, value)
        .arg("--home")
        .arg(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn serve_refuses_a_misspelt_huge_pages_setting_before_starting() {
    let (code, err) = serve_with("KINO_HUGE_PAGES", "of");
    assert_eq!(code, Some(2), "{err}");
    // Refused first: not after loading models or opening the web port.
    assert!(err.contains("KINO_HUGE_PAGES=of: expected on or off"), "{err}");
    assert!(!err.contains("web UI"), "{err}");
}

#[test]
fn serve_refuses_a_search_concurrency_that_is_not_a_positive_number() {
    for bad in ["0", "four", "-1"] {
        let (code, err) = serve_with("KINO_SEARCH_CONCURRENCY", bad);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(
            err.contains(&format!("KINO_SEARCH_CONCURRENCY={bad}: expected a whole number")),
            "{err}"
        );
        assert!(!err.contains("web UI"), "{err}");
    }
}

/// The real `kino serve` (real sentence encoder on every query) under a
/// slow-loris attack of 500 connections, each sending one header line every
/// two seconds and never ending its request head: a normal client's 1,000
/// searches, on fresh connections, keep p99 ≤ 200 ms, and the server closes
/// the attacking connections at its head deadline.
#[test]
fn searches_stay_fast_under_a_slowloris_attack() {
    use std::io::{Read, Write};
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    make_video(
        &lib,
        "garden",
        "green",
        "1\n00:00:11,000 --> 00:00:17,000\nToday I am sowing tomato seeds in small pots of compost.\n\n",
    );
    let port = free_port();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_kino"))
            .env_remove("KINO_DATABASE_URL")
            .arg("--home")
            .arg(dir.path().join("home"))
            .arg("--models")
            .arg(models_dir())
            .args(["serve", "--library"])
            .arg(&lib)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the garden video to be searchable", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
            && get_json(port, "/api/search?q=tomato+seeds")["results"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
    });

    // 500 attackers on 10 threads, each trickling headers.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attackers: Vec<_> = (0..10)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut conns: Vec<(TcpStream, Option<Instant>)> = (0..50)
                    .map(|_| {
                        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                        s.write_all(b"GET /api/search?q=tomato HTTP/1.1\r\nHost: x\r\n")
                            .unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                        (s, None)
                    })
                    .collect();
                let opened = Instant::now();
                let mut closed_after = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for (s, closed) in conns.iter_mut().filter(|c| c.1.is_none()) {
                        let mut b = [0u8; 64];
                        let gone = match s.read(&mut b) {
                            Ok(0) => true,
                            Ok(_) => false,
                            Err(e) => {
                                !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
                            }
                        };
                        if gone || s.write_all(b"X-Slow: 1\r\n").is_err() {
                            *closed = Some(Instant::now());
                            closed_after.push(opened.elapsed());
                        }
                    }
                    std::thread::sleep(Duration::from_secs(2));
                }
                (closed_after, conns.iter().filter(|c| c.1.is_none()).count())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let queries = ["tomato seeds", "compost in pots", "gardening", "sowing vegetables"];
    let mut lat = Vec::new();
    let t0 = Instant::now();
    for i in 0..1000 {
        let t = Instant::now();
        let (code, _, _) = http(
            port,
            "GET",
            &format!("/api/search?q={}+{i}", queries[i % 4].replace(' ', "+")),
            None,
            &[],
        );
        lat.push(t.elapsed());
        assert_eq!(code, 200, "request {i} under attack");
    }
    // Long enough for the head deadline (10 s) to pass for every attacker.
    std::thread::sleep(Duration::from_secs(14).saturating_sub(t0.elapsed()));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut closed = Vec::new();
    let mut open = 0;
    for a in attackers {
        let (c, o) = a.join().unwrap();
        closed.extend(c);
        open += o;
    }
    lat.sort();
    let p50 = lat[lat.len() / 2];
    let p99 = lat[lat.len() * 99 / 100];
    println!(
        "kino serve under 500 slow-loris connections: 1,000 searches (real encoder), p50 {:.1} ms, p99 {:.1} ms; {} attacking connections closed by the server, {open} still open",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        closed.len()
    );
    assert!(p99 <= Duration::from_millis(200), "p99 {p99:?} under attack");
    assert_eq!(open, 0, "every attacking connection closed at the head deadline");
}
