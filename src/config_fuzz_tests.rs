//! Hostile input for the config file (issue #21): mutated and generated `kino.toml` files. `KINO_FUZZ_CASES`
//! sets the cases per property (default 10 000); `scripts/soak` runs a million in release mode.
//!
//! What holds: reading never panics; every error names the file; a generated file reads back as written, and
//! is refused exactly when a value has the wrong type or an unknown name.

use kino_fuzzkit::{config, mutated};
use proptest::prelude::*;

use super::*;

/// The documented example (the doc comment of [`FileConfig`]).
const EXAMPLE: &str = r#"db = "postgres://postgres@127.0.0.1/kino"
models = "/srv/kino/models"
log_format = "json"
text_model = "sentence-transformers/all-MiniLM-L6-v2"
vision_model = "microsoft/swin-tiny-patch4-window7-224"
vision_revision = "main"
speech = "auto"            # "auto" | "always" | "off"
speech_model = "Systran/faster-whisper-base"
ocr = "auto"               # "auto" | "off": read the text shown on screen
ocr_model = "rapidocr/PP-OCRv6"
features_max_gb = 20        # cap of KINO_HOME/features (the kept visual features)
precision = "int8"
"#;

const DICTIONARY: &[&[u8]] = &[
    b"=",
    b" = ",
    b"\"",
    b"'",
    b"'''",
    b"\"\"\"",
    b"\\",
    b"\\u0000",
    b"\\U0010FFFF",
    b"\\uD800",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"{",
    b"}",
    b"[table]",
    b"[[array]]",
    b"a.b.c = 1",
    b",",
    b".",
    b"#",
    b"\n",
    b"\r\n",
    b"\r",
    b"\t",
    b"\0",
    b"\xEF\xBB\xBF",
    b"\xFF",
    b"\xC3",
    b"nan",
    b"-nan",
    b"inf",
    b"-inf",
    b"1e999",
    b"-1",
    b"-0.0",
    b"99999999999999999999",
    b"0x7fffffffffffffff",
    b"1979-05-27T07:32:00Z",
    b"true",
    b"features_max_gb = ",
    b"precision = ",
    b"log_format = \"text\"",
    b"speech = \"always\"",
    b"ocr = \"off\"",
    b"models = ",
    b"db = ",
];

fn seeds() -> Vec<Vec<u8>> {
    vec![
        EXAMPLE.as_bytes().to_vec(),
        EXAMPLE.replace('\n', "\r\n").into_bytes(),
        b"features_max_gb = 0.5\nspeech = 'off'\nocr = \"auto\"\n".to_vec(),
        b"db = \"\"\"multi\nline\"\"\"\nmodels = 'C:\\models'\n".to_vec(),
        Vec::new(),
    ]
}

/// One `kino.toml` per test thread, rewritten for each case.
fn write_case(bytes: &[u8]) -> PathBuf {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
    }
    let path = DIR.with(|d| d.path().join("kino.toml"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn global(home: &Path) -> GlobalArgs {
    GlobalArgs {
        home: Some(home.to_path_buf()),
        db: None,
        models: None,
        verbose: 0,
        quiet: 0,
        log_format: None,
        precision: None,
    }
}

/// Reads `bytes` as `kino.toml`, directly and through [`Config::resolve`]: errors name the file (or the
/// environment variable at fault), and the file's values come through.
fn check_file(bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = write_case(bytes);
    let shown = path.display().to_string();
    let loaded = load_file(&path);
    if let Err(e) = &loaded {
        prop_assert!(format!("{e:#}").contains(&shown), "{e:#}");
    }
    let resolved = Config::resolve(&global(path.parent().unwrap()));
    match (&loaded, &resolved) {
        (_, Err(e)) => {
            let msg = format!("{e:#}");
            prop_assert!(msg.contains(&shown) || msg.starts_with("KINO_"), "{msg}");
        }
        (Ok(file), Ok(c)) => {
            prop_assert_eq!(c.home.as_path(), path.parent().unwrap());
            if let Some(m) = &file.text_model {
                prop_assert_eq!(&c.text_model, m);
            }
        }
        (Err(e), Ok(_)) => prop_assert!(false, "resolve read a file load_file refuses: {e:#}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn fuzz_config_mutated(bytes in mutated(seeds(), DICTIONARY)) {
        check_file(&bytes)?;
    }

    #[test]
    fn fuzz_config_generated(file in gen_file()) {
        let path = write_case(file.render().as_bytes());
        match load_file(&path) {
            Ok(c) => {
                prop_assert!(file.valid(), "accepted {}", file.render());
                prop_assert_eq!(c.db, file.db.clone());
                prop_assert_eq!(c.models, file.models.clone().map(PathBuf::from));
                prop_assert_eq!(c.text_model, file.text_model.clone());
                prop_assert_eq!(c.speech.map(SpeechMode::as_str), file.speech.as_deref());
                prop_assert_eq!(c.log_format.is_some(), file.log_format.is_some());
                let gb = file.features_max_gb.as_ref().map(|g| g.parse::<f64>().unwrap());
                prop_assert_eq!(c.features_max_gb.map(f64::to_bits), gb.map(f64::to_bits));
            }
            Err(e) => {
                prop_assert!(!file.valid(), "refused {}: {e:#}", file.render());
                prop_assert!(format!("{e:#}").contains(&path.display().to_string()), "{e:#}");
            }
        }
    }
}

/// A generated `kino.toml`: each value as TOML source, or an unknown key.
#[derive(Debug, Clone)]
struct GenFile {
    db: Option<String>,
    models: Option<String>,
    text_model: Option<String>,
    log_format: Option<String>,
    speech: Option<String>,
    /// A TOML float or integer literal that Rust's `f64` parser reads the same way.
    features_max_gb: Option<String>,
    unknown_key: bool,
    crlf: bool,
}

impl GenFile {
    fn valid(&self) -> bool {
        !self.unknown_key
            && self.log_format.as_deref().is_none_or(|f| f == "text" || f == "json")
            && self
                .speech
                .as_deref()
                .is_none_or(|s| ["auto", "always", "off"].contains(&s))
    }

    fn render(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut out = String::new();
        for (key, value) in [
            ("db", self.db.as_deref().map(quote)),
            ("models", self.models.as_deref().map(quote)),
            ("text_model", self.text_model.as_deref().map(quote)),
            ("log_format", self.log_format.as_deref().map(quote)),
            ("speech", self.speech.as_deref().map(quote)),
            ("features_max_gb", self.features_max_gb.clone()),
        ] {
            if let Some(v) = value {
                out.push_str(&format!("{key} = {v}\n"));
            }
        }
        if self.unknown_key {
            out.push_str("dbb = \"typo\"\n");
        }
        if self.crlf {
            out = out.replace('\n', "\r\n");
        }
        out
    }
}

fn gen_file() -> impl Strategy<Value = GenFile> {
    let text = || proptest::option::of("\\PC{0,24}");
    let word = || proptest::option::of(prop_oneof!["auto", "always", "off", "text", "json", "[a-zA-Z]{0,6}"]);
    let number = proptest::option::of(prop_oneof![
        (0u32..100_000).prop_map(|n| n.to_string()),
        (0.0f64..1e6).prop_map(|x| format!("{x:?}")),
        Just("1e3".to_string()),
        Just("0.0".to_string()),
    ]);
    (
        (text(), text(), text()),
        (word(), word(), number),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |((db, models, text_model), (log_format, speech, features_max_gb), unknown, crlf)| GenFile {
                db,
                models,
                text_model,
                log_format,
                speech,
                features_max_gb,
                unknown_key: unknown,
                crlf,
            },
        )
}

#[test]
fn deeply_nested_arrays_are_an_error_not_a_stack_overflow() {
    for open in ["[", "{a=", "[{a="] {
        let text = format!("db = {}", open.repeat(100_000));
        let path = write_case(text.as_bytes());
        let err = load_file(&path).expect_err("an unclosed array is no config");
        assert!(format!("{err:#}").contains(&path.display().to_string()), "{err:#}");
    }
}

#[test]
fn bad_features_cap_names_the_file() {
    for value in ["nan", "-inf", "inf", "-1", "-0.5"] {
        let path = write_case(format!("features_max_gb = {value}\n").as_bytes());
        let err = Config::resolve(&global(path.parent().unwrap())).expect_err(value);
        assert!(format!("{err:#}").contains(&path.display().to_string()), "{err:#}");
    }
}

#[test]
fn unreadable_bytes_name_the_file() {
    for bytes in [&b"db = \"\xFF\"\n"[..], b"\0", b"\xEF\xBB\xBFdb = 1\n"] {
        let path = write_case(bytes);
        let err = load_file(&path).expect_err("not a valid config");
        assert!(format!("{err:#}").contains(&path.display().to_string()), "{err:#}");
    }
}
