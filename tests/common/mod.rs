//! Helpers shared by the `kino` binary's integration tests.
#![allow(dead_code)] // each test binary uses a part

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

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
