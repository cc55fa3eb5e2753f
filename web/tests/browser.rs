//! Browser test: serves the fixture library on a free loopback port and runs
//! `node web/browser-tests/search.mjs` (search, play, ask, library, history,
//! the video page and its transcript, video-level results and summaries; playwright-core driving Debian's
//! headless Chromium at /usr/bin/chromium). Screenshots of each page land in
//! `target/test-output/web/`.
//!
//! `npm ci` runs in `web/browser-tests` only when its `node_modules` is
//! absent (the package-lock is committed). The engine is the test one
//! (bag-of-words over the store's exact index); production uses fusion.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Fixture, TestDb, BICYCLE_START_MS, OVEN_CUE_START_MS};
use kino_store::Backend;

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser-tests")
}

fn ensure_node_modules() {
    let dir = tests_dir();
    if dir.join("node_modules/playwright-core/package.json").is_file() {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .expect("npm is needed for the browser test (Debian package npm; scripts/setup installs it)");
    assert!(
        out.status.success(),
        "npm ci in {} failed (needs the npm registry once): {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_play_ask_video_page_in_headless_chromium() {
    let chromium = std::env::var("KINO_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "headless Chromium not found at {chromium} (install Debian's chromium, or set KINO_CHROMIUM)"
    );
    ensure_node_modules();

    let db = TestDb::new(Backend::Sqlite);
    let store = db.open().await;
    let fx = Fixture::build(&store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kino_web::serve_on(
        listener,
        fx.config(),
        store.clone(),
        common::engine(&store),
        async {
            let _ = stop_rx.await;
        },
    ));

    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/web");
    let _ = std::fs::remove_dir_all(&out_dir);
    let script = tests_dir().join("search.mjs");
    let kitchen = fx.kitchen.to_string();
    let start = BICYCLE_START_MS.to_string();
    let url = format!("http://{addr}");
    let out_s = out_dir.display().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .env("KINO_URL", url)
            .env("KINO_OUT", out_s)
            .env("KINO_QUERY", "red bicycle against a stone wall")
            .env("KINO_VIDEO_ID", kitchen)
            .env("KINO_START_MS", start)
            .env("KINO_QUESTION", "Where does the red bicycle lean?")
            .env("KINO_XSS_QUERY", "markup subtitle")
            .env("KINO_CUE_START_MS", OVEN_CUE_START_MS.to_string())
            .env("KINO_CUE_TEXT", "vierzig Minuten")
            .env("KINO_CHROMIUM", chromium)
            .output()
            .expect("node is needed for the browser test (Debian package nodejs)")
    })
    .await
    .unwrap();
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "browser test failed:\n{stdout}\n{stderr}");
    // The marks the page sent are stored with the query and the moment.
    let marks = store.feedback().await.unwrap();
    assert!(!marks.is_empty() && marks.len() <= 2, "{marks:?}");
    assert_eq!(marks[0].query, "red bicycle against a stone wall");
    assert!(marks[0].right, "{marks:?}");
    assert_eq!(marks[0].video_id.to_string(), fx.kitchen.to_string());
    assert_eq!(marks[0].start_ms, BICYCLE_START_MS);
    if let Some(second) = marks.get(1) {
        assert!(!second.right, "{marks:?}");
    }
    for shot in [
        "search.png",
        "marked.png",
        "playing.png",
        "ask.png",
        "xss.png",
        "library.png",
        "video.png",
        "history.png",
        "phone-search.png",
        "videos.png",
        "video-summary.png",
    ] {
        let p = out_dir.join(shot);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {} missing or empty", p.display());
    }
    db.finish(store).await;
}
