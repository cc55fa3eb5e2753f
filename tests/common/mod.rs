//! Helpers shared by the `kino` binary's integration tests.
#![allow(dead_code)] // each test binary uses a part

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The default text model's folder (`KINO_TEST_TEXT_MODEL`, set by
/// `scripts/test`, else the default models folder). Fails, not skips, when absent.
pub fn text_model() -> PathBuf {
    let text = std::env::var("KINO_TEST_TEXT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap())
                .join(".local/share/kino/models/sentence-transformers/all-MiniLM-L6-v2")
        });
    assert!(
        text.join("model.safetensors").is_file(),
        "text model missing at {}: run scripts/setup",
        text.display()
    );
    text
}

/// The models folder holding [`text_model`].
pub fn models_dir() -> PathBuf {
    text_model().parent().unwrap().parent().unwrap().to_path_buf()
}

/// The test Postgres server, without a database name.
pub fn pg_base() -> String {
    std::env::var("KINO_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Drops a Postgres database of the test server if it exists.
pub fn drop_pg_database(name: &str) {
    Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
        .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .status()
        .unwrap();
}

/// A current-thread tokio runtime for store calls from a test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Waits up to `limit` for `child` to exit; kills it and panics with `what`
/// when it is still running then.
pub fn wait_for_exit(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The body of an HTTP/1.1 response sent with `Transfer-Encoding: chunked`.
pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..line_end]).trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + n]);
        b = &b[line_end + 2 + n + 2..];
    }
}

/// A minimal HTTP/1.1 request over loopback; returns (status, headers, body).
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>, extra: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, body)
}

/// GET `path` and parse the JSON body (asserting 200).
pub fn get_json(port: u16, path: &str) -> Value {
    let (status, _, body) = http(port, "GET", path, None, &[]);
    assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Waits until `f` holds (3 minutes at most).
pub fn wait_for(what: &str, f: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(180), f)
}

/// Waits until `f` holds, `limit` at most.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `kino serve`, killed when dropped.
pub struct Server(pub Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs ffmpeg quietly with `args`; panics with its message when it fails.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Silent 12-second colour videos in `lib`, one per `(name, line)`, each
/// with a sidecar subtitle saying `line` from 2 to 7 s: distractors.
pub fn subtitled_distractors(lib: &Path, topics: &[(&str, &str)]) {
    for (i, (name, line)) in topics.iter().enumerate() {
        let path = lib.join(format!("{name}.mp4"));
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("color=c=0x{:02x}4080:s=160x120:r=5:d=12", (40 * i) % 256),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            path.to_str().unwrap(),
        ]);
        std::fs::write(
            lib.join(format!("{name}.srt")),
            format!("1\n00:00:02,000 --> 00:00:07,000\n{line}\n\n"),
        )
        .unwrap();
    }
}

/// GNU time's peak resident set size (KiB) of `cmd`, run with its
/// arguments and environment; panics when it fails.
pub fn peak_rss_kb(cmd: &Command) -> u64 {
    let mut t = Command::new("/usr/bin/time");
    t.arg("-f")
        .arg("PEAK_RSS_KB=%M")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    let out = t.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    err.lines()
        .rev()
        .find_map(|l| l.strip_prefix("PEAK_RSS_KB="))
        .and_then(|v| v.trim().parse().ok())
        .expect("GNU time reports the peak RSS")
}

/// Resident memory of a run: its peak, and its typical level.
#[derive(Debug, Clone)]
pub struct RssProfile {
    /// Peak resident set size (KiB): the kernel's high-water mark, as last
    /// read before the process ended (sampled every 50 ms).
    pub peak_kb: u64,
    /// Median of the resident set size sampled every 50 ms (KiB): the
    /// steady level, which brief spikes (a model's scratch buffers) do not
    /// move but anything that accumulates with the input's length does.
    pub median_kb: u64,
    /// What the process wrote on stderr.
    pub stderr: String,
}

/// Runs `cmd` (output discarded) and samples its memory from `/proc`;
/// panics when it fails.
pub fn rss_profile(cmd: &mut Command) -> RssProfile {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let status_file = format!("/proc/{}/status", child.id());
    let field = |text: &str, name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    let (mut samples, mut peak) = (Vec::new(), 0);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(rss) = field(&text, "VmRSS:") {
                samples.push(rss);
            }
            peak = peak.max(field(&text, "VmHWM:").unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = reader.join().unwrap();
    assert!(status.success(), "{err}");
    assert!(!samples.is_empty(), "no memory samples: {err}");
    samples.sort_unstable();
    RssProfile {
        peak_kb: peak,
        median_kb: samples[samples.len() / 2],
        stderr: err,
    }
}

/// Runs `cmd` to its end.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

/// The JSON a successful command printed; panics with its stderr when it
/// failed.
pub fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Copies the tiny random Swin checkpoint (`vision/tests/fixtures/swin_pad`)
/// to where kino looks for the default vision model under `models`;
/// returns that folder.
pub fn add_tiny_swin(models: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("vision/tests/fixtures/swin_pad");
    let dst = models.join("microsoft/swin-tiny-patch4-window7-224");
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "model.safetensors", "preprocessor_config.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    dst
}

/// `kino -q --home HOME --models MODELS --db DB` with speech and on-screen
/// text off and no database URL from the environment.
pub fn kino_with_models(home: &Path, models: &Path, db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL")
        .env("KINO_SPEECH", "off")
        .env("KINO_OCR", "off")
        .arg("-q")
        .arg("--home")
        .arg(home)
        .arg("--models")
        .arg(models)
        .arg("--db")
        .arg(db);
    c
}
