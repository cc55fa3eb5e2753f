//! Several `kino serve` replicas on one database, fed by other processes:
//! every replica sees a video within 5 seconds of the process that indexed
//! it committing, whichever process that was; a login on one replica is
//! valid on the other; searches made through the API are stored.

mod common;

use common::{drop_pg_database, free_port, http, models_dir, pg_base, wait_until, Server};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "replica-test-token";

fn kino(home: &Path, db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL")
        .env("KINO_OCR", "off")
        .arg("--home")
        .arg(home)
        .arg("--models")
        .arg(models_dir())
        .arg("--db")
        .arg(db);
    c
}

/// A 12-second clip with one subtitle line.
fn clip(dir: &Path, name: &str, hue: u32, line: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    common::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x180:r=10:d=12",
        "-vf",
        &format!("hue=h={hue}"),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        path.to_str().unwrap(),
    ]);
    std::fs::write(
        path.with_extension("srt"),
        format!("1\n00:00:00,500 --> 00:00:11,000\n{line}\n"),
    )
    .unwrap();
}

fn serve(home: &Path, db: &str, port: u16) -> Server {
    Server(
        kino(home, db)
            .env("KINO_SYNC_POLL_MS", "60000") // Postgres: only NOTIFY can be in time
            .args(["-q", "serve", "--bind", &format!("127.0.0.1:{port}"), "--token", TOKEN])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn bearer() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

/// Paths of the moments a replica finds for `q`.
fn found(port: u16, q: &str) -> Vec<String> {
    let (auth, value) = bearer();
    let (status, _, body) = http(
        port,
        "GET",
        &format!("/api/search?q={}&k=3", q.replace(' ', "+")),
        None,
        &[(auth, &value)],
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["score"].as_f64().unwrap_or(0.0) > 0.5)
        .map(|m| m["path"].as_str().unwrap_or("").to_string())
        .collect()
}

fn ready(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && http(port, "GET", "/healthz", None, &[]).0 == 200
}

/// Indexes `lib` from a separate process and waits until every replica
/// finds `q` in `name`; returns the slowest replica's delay after the
/// indexing process exited.
fn index_and_wait(home: &Path, db: &str, lib: &Path, ports: &[u16], q: &str, name: &str) -> Duration {
    let out = kino(home, db).arg("ingest").arg(lib).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = Instant::now();
    for &port in ports {
        wait_until(
            &format!("replica on {port} to find {name}"),
            Duration::from_secs(5),
            || found(port, q).iter().any(|p| p.ends_with(name)),
        );
    }
    done.elapsed()
}

#[test]
fn two_replicas_on_postgres_see_every_writer_and_share_logins() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("kino_replicas_{}", std::process::id());
    drop_pg_database(&name);
    let db = format!("{}/{name}", pg_base());
    // The database exists and is migrated before the replicas start.
    let out = kino(&dir.path().join("h0"), &db)
        .args(["db", "migrate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (pa, pb) = (free_port(), free_port());
    let _a = serve(&dir.path().join("ha"), &db, pa);
    let _b = serve(&dir.path().join("hb"), &db, pb);
    wait_until("both replicas", Duration::from_secs(60), || ready(pa) && ready(pb));
    // Both have loaded their (empty) index.
    assert!(found(pa, "sailing a boat across the bay").is_empty());
    assert!(found(pb, "sailing a boat across the bay").is_empty());

    // A video indexed by a third process.
    let lib = dir.path().join("lib");
    clip(&lib, "sailing.mp4", 0, "We are sailing a boat across the bay");
    let late = index_and_wait(
        &dir.path().join("h1"),
        &db,
        &lib,
        &[pa, pb],
        "sailing a boat across the bay",
        "sailing.mp4",
    );
    eprintln!("a new video reached both replicas {late:?} after the indexing process exited");

    // Another video by a fourth process; the first stays found.
    let lib2 = dir.path().join("lib2");
    clip(&lib2, "violin.mp4", 120, "She is playing the violin on a stage");
    index_and_wait(
        &dir.path().join("h2"),
        &db,
        &lib2,
        &[pa, pb],
        "playing the violin",
        "violin.mp4",
    );
    assert!(found(pa, "sailing a boat across the bay")
        .iter()
        .any(|p| p.ends_with("sailing.mp4")));

    // A login on replica A is valid on replica B; a made-up session is not.
    let (status, head, _) = http(
        pa,
        "POST",
        "/login",
        Some(&format!("token={TOKEN}")),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {head}"))
        .to_string();
    let (status, _, _) = http(pb, "GET", "/api/videos", None, &[("Cookie", &cookie)]);
    assert_eq!(status, 200, "replica B accepts A's session");
    let (status, _, _) = http(pb, "GET", "/api/videos", None, &[("Cookie", "kino_session=00ff")]);
    assert_eq!(status, 401);

    // A search through B's API is in the history, as read on A.
    let q = "violin recital history check";
    found(pb, q);
    let (status, _, body) = http(pa, "GET", "/history", None, &[("Cookie", &cookie)]);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains(q), "the API search is stored");
    drop((_a, _b));
    drop_pg_database(&name);
}

#[test]
fn a_replica_on_sqlite_sees_another_processs_video_within_five_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kino.db").display().to_string();
    let out = kino(&dir.path().join("h0"), &db)
        .args(["db", "migrate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let _a = Server(
        kino(&dir.path().join("ha"), &db)
            .args(["-q", "serve", "--bind", &format!("127.0.0.1:{port}"), "--token", TOKEN])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the replica", Duration::from_secs(60), || ready(port));
    assert!(found(port, "repairing a bicycle wheel").is_empty());
    let lib = dir.path().join("lib");
    clip(&lib, "bicycle.mp4", 60, "Now we are repairing a bicycle wheel");
    index_and_wait(
        &dir.path().join("h1"),
        &db,
        &lib,
        &[port],
        "repairing a bicycle wheel",
        "bicycle.mp4",
    );
}

/// A gauge's value on `/metrics`.
fn gauge(port: u16, name: &str) -> f64 {
    let (auth, value) = bearer();
    let (status, _, body) = http(port, "GET", "/metrics", None, &[(auth, &value)]);
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(f64::NAN)
}

fn serve_approximate(home: &Path, db: &str, port: u16) -> Server {
    Server(
        kino(home, db)
            .env("KINO_ANN_MIN_SEGMENTS", "1")
            .args(["-q", "serve", "--bind", &format!("127.0.0.1:{port}"), "--token", TOKEN])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn a_restarted_server_opens_its_saved_index_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kino.db").display().to_string();
    let home = dir.path().join("home");
    let lib = dir.path().join("lib");
    clip(&lib, "sailing.mp4", 0, "We are sailing a boat across the bay");
    let out = kino(&dir.path().join("h1"), &db)
        .arg("ingest")
        .arg(&lib)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // First start: the index is read from the database, its shortlists
    // built (every library is "large" here) and saved under the home.
    let port = free_port();
    let first = serve_approximate(&home, &db, port);
    wait_until("the first server", Duration::from_secs(60), || ready(port));
    wait_until("approximate search", Duration::from_secs(30), || {
        gauge(port, "kino_index_approximate") == 1.0
    });
    assert_eq!(gauge(port, "kino_index_shortlists_loaded"), 0.0, "built, not loaded");
    assert!(found(port, "sailing a boat across the bay")
        .iter()
        .any(|p| p.ends_with("sailing.mp4")));
    let snapshot = std::fs::read_dir(home.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path().join("snapshot/meta.json"))
        .next()
        .unwrap();
    wait_until("the saved index", Duration::from_secs(30), || snapshot.exists());
    drop(first); // kill -9: nothing more is saved

    // Meanwhile another process indexes a second video.
    let lib2 = dir.path().join("lib2");
    clip(&lib2, "violin.mp4", 120, "She is playing the violin on a stage");
    let out = kino(&dir.path().join("h2"), &db)
        .arg("ingest")
        .arg(&lib2)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Second start: the saved index and shortlists are opened, the new
    // video caught up from the change log; both are found approximately.
    let port = free_port();
    let _second = serve_approximate(&home, &db, port);
    wait_until("the second server", Duration::from_secs(60), || ready(port));
    wait_until("approximate search again", Duration::from_secs(30), || {
        gauge(port, "kino_index_approximate") == 1.0
    });
    assert_eq!(gauge(port, "kino_index_shortlists_loaded"), 1.0, "loaded, not rebuilt");
    let segments = gauge(port, "kino_index_segments");
    assert_eq!(gauge(port, "kino_index_shortlisted_segments"), segments);
    assert!(segments >= 2.0, "{segments}");
    assert!(found(port, "playing the violin")
        .iter()
        .any(|p| p.ends_with("violin.mp4")));
    assert!(found(port, "sailing a boat across the bay")
        .iter()
        .any(|p| p.ends_with("sailing.mp4")));
}
