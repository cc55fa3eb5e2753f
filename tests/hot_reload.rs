//! `kino serve` picks up a vision model installed while it runs: a library
//! indexed without vision weights gets visual vectors once a (small, random,
//! HF-format) Swin checkpoint appears in the models folder, with no restart,
//! and search answers all along.

mod common;

use common::{rt, text_model};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kino_store::Store;
use serde_json::Value;

/// A 12 s test pattern with subtitles, written under a temporary name and
/// renamed (the watcher ignores temporary names).
fn make_video(dir: &Path, name: &str) {
    let tmp = dir.join(format!("{name}.tmp.mp4"));
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=s=160x120:r=5:d=12")
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        dir.join(format!("{name}.srt")),
        "1\n00:00:01,000 --> 00:00:05,000\nA cosy living room with a sofa.\n\n\
         2\n00:00:07,000 --> 00:00:11,000\nSomeone waters the plants by the window.\n\n",
    )
    .unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.mp4"))).unwrap();
}

/// A minimal HTTP/1.1 request over loopback; returns (status, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = common::dechunk(&body);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    Ok((status, body))
}

fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path).unwrap();
    assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server, killed on drop; its log is kept for failure messages.
struct Server {
    child: Child,
    log: std::path::PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `limit` for `f`; panics with the server's log when it never holds.
    fn wait_for(&mut self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while !f() {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("kino serve exited ({st}) waiting for {what}:\n{}", self.log());
            }
            assert!(
                t.elapsed() < limit,
                "timed out after {} s waiting for {what}; server log:\n{}",
                limit.as_secs(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_loads_a_vision_model_installed_while_it_runs_and_reindexes_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    make_video(&lib, "living-room");
    // Models: the real text model, no vision weights.
    let models = dir.path().join("models");
    std::fs::create_dir_all(models.join("sentence-transformers")).unwrap();
    std::os::unix::fs::symlink(text_model(), models.join("sentence-transformers/all-MiniLM-L6-v2")).unwrap();
    let home = dir.path().join("home");
    let db = dir.path().join("kino.db").display().to_string();
    let port = free_port();
    let log = dir.path().join("serve.log");
    let mut server = Server {
        child: Command::new(env!("CARGO_BIN_EXE_kino"))
            .env_remove("KINO_DATABASE_URL")
            .env("KINO_MODEL_POLL_MS", "200")
            .arg("--home")
            .arg(&home)
            .arg("--models")
            .arg(&models)
            .arg("--db")
            .arg(&db)
            .args(["serve", "--library"])
            .arg(&lib)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        log,
    };
    let limit = Duration::from_secs(120);
    server.wait_for("the server", limit, || TcpStream::connect(("127.0.0.1", port)).is_ok());

    // Indexed without vision.
    let video = |port| -> Option<Value> {
        let v = get_json(port, "/api/videos");
        v["videos"].as_array().and_then(|a| a.first().cloned())
    };
    server.wait_for("the video indexed without vision", limit, || {
        video(port).is_some_and(|v| v["status"] == "done")
    });
    let v = video(port).unwrap();
    assert_eq!(v["needs_vision"], true, "{v}");
    let video_id = v["id"].as_i64().unwrap();
    let read_db = || {
        rt().block_on(async {
            let s = Store::open(&db).await.unwrap();
            let v = s.video(video_id).await.unwrap().unwrap();
            let segs = s.segments(video_id).await.unwrap();
            s.close().await;
            (v, segs)
        })
    };
    let (row, segs) = read_db();
    assert!(!segs.is_empty());
    assert!(segs.iter().all(|s| s.visual_emb.is_none()), "no visual vectors yet");
    assert!(!row.stage_versions.contains_key("vision"), "{:?}", row.stage_versions);
    for stage in ["decode", "text", "fusion"] {
        assert!(
            row.stage_versions.contains_key(stage),
            "{stage}: {:?}",
            row.stage_versions
        );
    }
    let search = "/api/search?q=a%20cosy%20living%20room&k=3";
    assert!(!get_json(port, search)["results"].as_array().unwrap().is_empty());

    // Search keeps answering while the model arrives and the video is reindexed.
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Result<u16, String>>>> = Arc::default();
    let searcher = {
        let (stop, answers) = (stop.clone(), answers.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = http_get(port, search).map(|(s, _)| s).map_err(|e| e.to_string());
                answers.lock().unwrap().push(r);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Install the vision model as a fetch would: the config first, the
    // weights a moment later (a folder without weights is no model yet).
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("vision/tests/fixtures/swin_pad");
    let dst = models.join("microsoft/swin-tiny-patch4-window7-224");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(src.join("config.json"), dst.join("config.json")).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    for f in ["preprocessor_config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }

    let installed = Instant::now();
    server.wait_for(
        "visual vectors after the model appeared",
        Duration::from_secs(60),
        || {
            let v = video(port).unwrap();
            v["status"] == "done" && v["needs_vision"] == false
        },
    );
    let took = installed.elapsed();
    // A few more searches after the swap, then stop.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    searcher.join().unwrap();

    let (row, segs) = read_db();
    assert!(!segs.is_empty());
    for s in &segs {
        assert_eq!(
            s.visual_emb.as_ref().map(|e| e.len()),
            Some(384),
            "every segment carries a visual vector in the text space"
        );
        assert!(s.model_version.contains("swin"), "{}", s.model_version);
    }
    assert!(row.stage_versions.contains_key("vision"), "{:?}", row.stage_versions);
    assert_eq!(
        row.vision_model.as_deref(),
        row.stage_versions.get("vision").map(String::as_str)
    );
    assert!(!row.needs_vision);

    let answers = answers.lock().unwrap();
    assert!(answers.len() >= 3, "searched during the swap: {answers:?}");
    let bad: Vec<_> = answers.iter().filter(|a| **a != Ok(200)).collect();
    assert!(
        bad.is_empty(),
        "search answered other than 200 during the swap: {bad:?}"
    );
    // Still searchable, now over the new index.
    assert!(!get_json(port, search)["results"].as_array().unwrap().is_empty());

    // One background reindex, nothing more: the video is fresh now.
    let jobs = get_json(port, "/api/jobs");
    let kinds: Vec<(String, String)> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["kind"].as_str().unwrap().to_string(),
                j["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(kinds.iter().filter(|(k, _)| k == "reindex").count(), 1, "{kinds:?}");
    assert!(kinds.iter().all(|(_, s)| s == "done"), "{kinds:?}");
    let log = server.log();
    assert!(log.contains("vision model loaded"), "{log}");
    eprintln!("visual vectors {:.1} s after the weights appeared", took.as_secs_f64());
}
