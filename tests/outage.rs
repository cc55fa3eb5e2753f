//! A Postgres restart in the middle of `kino ingest` costs retries, not
//! jobs: every video ends up indexed once. The test runs its own private
//! Postgres server (initdb in a temporary folder, on a free port), so the
//! restart touches no other test. The same while `kino serve` answers
//! searches: 503 while the database is down, answers again when it is back.

mod common;

use common::{models_dir, rt};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kino_store::{JobState, Store, VideoStatus};

fn make_library(dir: &Path, n: usize, secs: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let st = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=s=640x360:r=25:d={secs}"))
            .arg("-vf")
            .arg(format!("hue=h={}", i * 50))
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
            .arg(dir.join(format!("v{i}.mp4")))
            .status()
            .unwrap();
        assert!(st.success());
        let srt: String = (0..secs / 10)
            .map(|k| {
                let s = k * 10 + 1;
                format!(
                    "{}\n00:{:02}:{:02},000 --> 00:{:02}:{:02},000\nVideo {i}, line {k}.\n\n",
                    k + 1,
                    s / 60,
                    s % 60,
                    (s + 3) / 60,
                    (s + 3) % 60
                )
            })
            .collect();
        std::fs::write(dir.join(format!("v{i}.srt")), srt).unwrap();
    }
}

/// A private Postgres server in a temporary folder.
struct PrivatePg {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    // The server refuses to run as root: use the `postgres` account then.
    if unsafe_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivatePg {
    fn start() -> PrivatePg {
        let versions = std::fs::read_dir("/usr/lib/postgresql").expect("Postgres server binaries");
        let mut v: Vec<PathBuf> = versions.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect();
        v.sort();
        let bin = v.pop().expect("a Postgres version");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        if unsafe_is_root() {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
        }
        let st = as_postgres(&bin, "initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePg {
            bin,
            data,
            port,
            _dir: dir,
        };
        pg.ctl("start");
        pg
    }

    fn ctl(&self, what: &str) {
        let mut c = as_postgres(&self.bin, "pg_ctl");
        c.arg("-D").arg(&self.data).args(["-w", "-m", "fast", what]);
        if what == "start" {
            c.args(["-o", &format!("-p {} -k /tmp -c listen_addresses=127.0.0.1", self.port)]);
            c.arg("-l").arg(self.data.join("log.txt"));
        }
        let st = c.stdout(Stdio::null()).status().unwrap();
        assert!(st.success(), "pg_ctl {what}");
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let mut c = as_postgres(&self.bin, "pg_ctl");
        let _ = c
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}

#[test]
fn postgres_restart_mid_ingest_loses_no_job() {
    let pg = PrivatePg::start();
    let db = format!("postgres://postgres@127.0.0.1:{}/kino", pg.port);
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    make_library(&lib, 4, 120);

    let mut child = Command::new(env!("CARGO_BIN_EXE_kino"))
        .env_remove("KINO_DATABASE_URL")
        .arg("--home")
        .arg(dir.path().join("home"))
        .arg("--models")
        .arg(models_dir())
        .arg("--db")
        .arg(&db)
        .args(["-q", "ingest"])
        .arg(&lib)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until indexing is under way, then restart Postgres under it.
    let t = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let running = rt().block_on(async {
            let Ok(store) = Store::connect(&db).await else {
                return false;
            };
            let r = store.running_jobs().await.map(|j| !j.is_empty()).unwrap_or(false);
            store.close().await;
            r
        });
        if running {
            break;
        }
        if t.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("indexing never started: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    pg.ctl("stop");
    std::thread::sleep(Duration::from_secs(3));
    pg.ctl("start");

    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ingest survives the outage: {log}");
    rt().block_on(async {
        let store = Store::open(&db).await.unwrap();
        let videos = store.videos().await.unwrap();
        assert_eq!(videos.len(), 4);
        for v in &videos {
            assert_eq!(v.status, VideoStatus::Done, "{}", v.path);
            assert_eq!(
                store.segments(v.id).await.unwrap().len(),
                12,
                "{}: 120 s in 10 s windows",
                v.path
            );
            let jobs = store.jobs_of_video(v.id).await.unwrap();
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].state, JobState::Done);
        }
        store.close().await;
    });
}

/// Postgres stopped under a running `kino serve`: searches answer 503 with a
/// message (never a hang or a 500) while it is down, and answer again
/// without a restart once it is back; `/healthz` says the same; a video
/// queued while the database was down is indexed once it returns.
#[test]
fn postgres_down_during_search_answers_503_and_recovers_without_a_restart() {
    let pg = PrivatePg::start();
    let db = format!("postgres://postgres@127.0.0.1:{}/kino", pg.port);
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    make_library(&lib, 1, 20);
    let port = common::free_port();
    let _server = common::Server(
        Command::new(env!("CARGO_BIN_EXE_kino"))
            .env_remove("KINO_DATABASE_URL")
            .arg("--home")
            .arg(dir.path().join("home"))
            .arg("--models")
            .arg(models_dir())
            .arg("--db")
            .arg(&db)
            .args(["serve", "--library"])
            .arg(&lib)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let search = || common::http(port, "GET", "/api/search?q=Video+0+line+1", None, &[]);
    common::wait_until("serve answers", Duration::from_secs(120), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    common::wait_until("the first video is searchable", Duration::from_secs(180), || {
        let (code, _, body) = search();
        code == 200 && String::from_utf8_lossy(&body).contains("line 1")
    });

    pg.ctl("stop");
    let mut codes = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (code, _, body) = search();
        assert!(
            t.elapsed() < Duration::from_secs(35),
            "no hang while the database is down"
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if code != 200 {
            assert_eq!(code, 503, "{v}");
            assert!(!v["error"].as_str().unwrap_or("").is_empty(), "a message: {v}");
        }
        codes.push(code);
    }
    assert!(codes.contains(&503), "searches notice the outage: {codes:?}");
    let (code, _, _) = common::http(port, "GET", "/healthz", None, &[]);
    assert_eq!(code, 503);
    // A new video arrives while the database is down.
    let second = dir.path().join("late");
    make_library(&second, 2, 20);
    std::fs::rename(second.join("v1.mp4"), lib.join("v1.mp4")).unwrap();
    std::fs::rename(second.join("v1.srt"), lib.join("v1.srt")).unwrap();
    std::thread::sleep(Duration::from_secs(2));

    pg.ctl("start");
    common::wait_until("search answers again", Duration::from_secs(30), || search().0 == 200);
    assert_eq!(common::http(port, "GET", "/healthz", None, &[]).0, 200);
    common::wait_until("the late video is indexed", Duration::from_secs(180), || {
        let (code, _, body) = common::http(port, "GET", "/api/search?q=Video+1+line+1", None, &[]);
        code == 200 && String::from_utf8_lossy(&body).contains("Video 1, line 1")
    });
    rt().block_on(async {
        let store = Store::open(&db).await.unwrap();
        // The segments commit first and the job is marked done just after:
        // a search can see the video a moment before its job reads done.
        let t = Instant::now();
        loop {
            let mut done = 0;
            for v in store.videos().await.unwrap() {
                let jobs = store.jobs_of_video(v.id).await.unwrap();
                done += jobs.iter().filter(|j| j.state == JobState::Done).count();
            }
            if done >= 2 || t.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let videos = store.videos().await.unwrap();
        assert_eq!(videos.len(), 2, "{videos:?}");
        for v in &videos {
            assert_eq!(v.status, VideoStatus::Done, "{}", v.path);
            let jobs = store.jobs_of_video(v.id).await.unwrap();
            assert_eq!(jobs.len(), 1, "{}: one job", v.path);
            assert_eq!(jobs[0].state, JobState::Done);
        }
        store.close().await;
    });
}
