//! The models, loaded at start and shared by every pipeline stage and request
//! (`kino serve` can swap the vision model in later: [`Engines::with_vision`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use kino_fusion::FusionModel;
use kino_language::{Precision, SentenceEncoder};
use kino_speech::Whisper;
use kino_vision::Swin;

use crate::cli::PrecisionArg;
use crate::config::{Config, OcrMode, SpeechMode};
use crate::error::usage;

/// Width of a Swin-T last-stage token; the fusion module's visual width when
/// the vision branch is off.
const DEFAULT_VISUAL_DIM: usize = 768;
/// Attention heads of the default fusion module (divides 384).
const FUSION_HEADS: usize = 6;
/// The format of the kept visual features; part of the vision stage's
/// version, so videos indexed before features were kept are stale for
/// vision (one decoding pass adds them).
pub const FEATURES_FORMAT: &str = "features-v1";

/// The vision stage's version for `swin`: its weights and the features
/// format the pipeline keeps.
pub fn vision_version(swin: &Swin) -> String {
    format!("{}+{FEATURES_FORMAT}", swin.version())
}

/// The loaded models.
pub struct Engines {
    /// Sentence encoder (subtitles, label names, queries).
    pub text: Arc<SentenceEncoder>,
    /// Swin, when weights are present.
    pub vision: Option<Arc<Swin>>,
    /// Cross-attention fusion.
    pub fusion: Arc<FusionModel>,
    /// Why the vision branch is off, when it is.
    pub vision_off_reason: Option<String>,
    /// Whisper, when speech is on and its model loads (one at a time: a
    /// transcription holds it for a whole file).
    pub speech: Option<Arc<Speech>>,
    /// Why speech is off, when it is.
    pub speech_off_reason: Option<String>,
    /// PP-OCR through ONNX Runtime, when `ocr` allows and the models and
    /// the runtime load.
    pub screen: Option<Arc<Screen>>,
    /// Why on-screen text is off, when it is.
    pub screen_off_reason: Option<String>,
    /// Where `kino train` keeps the fusion weights' versions.
    pub fusion_dir: PathBuf,
}

/// The on-screen text models (detection, angle, recognition) and their
/// stage version.
pub struct Screen {
    /// The OCR engine (thread-safe; one frame at a time runs it).
    pub ocr: kino_ocr::Ocr,
    /// Its stage version: model folder, weight digests, frame size.
    pub version: String,
}

/// The speech model and how it is used.
pub struct Speech {
    /// The model (a transcription holds the lock for a whole file).
    pub whisper: Mutex<Whisper>,
    /// When it transcribes.
    pub mode: SpeechMode,
    /// Its stage version: model name, weights digest, mode.
    pub version: String,
}

pub use crate::staleness::Versions;

/// Loads the text encoder only (queries need nothing else), its linear
/// layers at `precision` (queries must be encoded at the index's).
pub fn load_text(dir: &Path, precision: Precision) -> Result<SentenceEncoder> {
    if !dir.join("model.safetensors").is_file() {
        return Err(usage(format!(
            "{}: no text model here (model.safetensors missing); run `kino models fetch` or scripts/setup",
            dir.display()
        )));
    }
    // Nothing can be indexed or searched without it: a damaged text model is
    // the user's to repair (exit code 2), named with what to run.
    SentenceEncoder::load_with(dir, precision).map_err(|e| {
        if e.is_bad_input() {
            usage(e.to_string())
        } else {
            usage(format!(
                "{}: the text model does not load ({e}); `kino models verify text` checks its files \
                 and `kino models fetch text` installs it again",
                dir.display()
            ))
        }
    })
}

/// The int8 form of the vision model in a model folder, written by `kino
/// models quantize` beside the f32 weights.
pub const VISION_INT8_FILE: &str = "model.int8.safetensors";

/// Loads the vision model in `dir`: `Ok(None)` when no weights are there
/// (`config.json` + `model.safetensors`), an error when they do not load.
/// At int8 its linear layers run in int8 from [`VISION_INT8_FILE`] (a
/// usage error when there is none); at auto when there is one.
pub fn load_vision(dir: &Path, precision: PrecisionArg) -> Result<Option<Swin>> {
    if !kino_vision::is_model_dir(dir) {
        return Ok(None);
    }
    // Weights that differ from the install's manifest are damaged, even when
    // they still parse (a flipped bit makes wrong vectors, not an error).
    if let Some(m) = kino_models::manifest::Manifest::read(dir).ok().flatten() {
        let bad = m.verify(dir).with_context(|| format!("checking {}", dir.display()))?;
        if let Some(first) = bad.first() {
            anyhow::bail!("{}: {}", dir.join(&first.path).display(), first.what);
        }
    }
    let mut swin = Swin::load(dir, &candle_core::Device::Cpu)
        .with_context(|| format!("loading the vision model from {}", dir.display()))?;
    let int8 = dir.join(VISION_INT8_FILE);
    match precision {
        PrecisionArg::F32 => {}
        PrecisionArg::Int8 if !int8.is_file() => {
            return Err(usage(format!(
                "--precision int8: the vision model in {} has no int8 form ({VISION_INT8_FILE}); \
                 run `kino models quantize` to calibrate one on your library, or use --precision auto",
                dir.display()
            )))
        }
        PrecisionArg::Auto if !int8.is_file() => {}
        PrecisionArg::Int8 | PrecisionArg::Auto => {
            let (q, _) = kino_vision::Int8Swin::load(&int8).map_err(|e| {
                usage(format!(
                    "{e}; `kino models quantize` writes it again (or use --precision f32)"
                ))
            })?;
            // Refused when made from other weights (the model was replaced
            // since) or for another model: fatal at int8, f32 at auto.
            if let Err(e) = swin.set_int8(Some(q)) {
                let why = format!("{}: {e}; `kino models quantize` makes it again", int8.display());
                if precision == PrecisionArg::Int8 {
                    return Err(usage(why));
                }
                tracing::warn!("{why}; the vision model runs in f32 meanwhile");
            }
        }
    }
    Ok(Some(swin))
}

/// Loads the speech model in `dir` (a faster-whisper folder with
/// `model.bin`, or a Hugging Face transformers one with `model.safetensors`),
/// after checking its weights: against the pinned digest for the default
/// model and the tiny.en fallback, else against the folder's
/// `kino-manifest.json` when it has one. `Ok(Err(reason))` when there is no
/// usable model there.
/// At `precision` int8 or auto the audio encoder's linear layers run in
/// int8 (it needs no calibration) and the version gains `+int8`.
pub fn load_speech(
    dir: &Path,
    name: &str,
    precision: PrecisionArg,
) -> Result<std::result::Result<(Whisper, String), String>> {
    use kino_models::catalog::{DEFAULT_SPEECH, FALLBACK_SPEECH, WHISPER_BASE_SHA256, WHISPER_TINY_EN_SHA256};
    let Some(weights) = ["model.bin", "model.safetensors"]
        .into_iter()
        .find(|f| dir.join(f).is_file())
    else {
        return Ok(Err(format!(
            "no speech model at {} (model.bin missing): speech is not indexed; \
             run `kino models fetch speech`, then `kino reindex --stale`",
            dir.display()
        )));
    };
    let bin = dir.join(weights);
    let digest = kino_models::manifest::sha256_file(&bin).with_context(|| format!("reading {}", bin.display()))?;
    let expected = match name {
        DEFAULT_SPEECH => Some(WHISPER_BASE_SHA256.to_string()),
        FALLBACK_SPEECH => Some(WHISPER_TINY_EN_SHA256.to_string()),
        _ => kino_models::manifest::Manifest::read(dir)
            .ok()
            .flatten()
            .and_then(|m| m.file(weights).map(|f| f.sha256.clone())),
    };
    if let Some(expected) = expected.filter(|e| *e != digest) {
        return Ok(Err(format!(
            "{}: SHA-256 {digest} is not the expected {expected}: the file is damaged or another model; \
             speech is not indexed until `kino models fetch speech` installs it again",
            bin.display()
        )));
    }
    match Whisper::load(dir) {
        Ok(mut w) if precision != PrecisionArg::F32 => {
            w.quantize_encoder();
            Ok(Ok((w, format!("{name}@{}+int8", &digest[..12]))))
        }
        Ok(w) => Ok(Ok((w, format!("{name}@{}", &digest[..12])))),
        Err(e) => Ok(Err(format!(
            "{}: the speech model does not load ({e}); speech is not indexed",
            dir.display()
        ))),
    }
}

/// The speech engine for `config`: `Err(reason)` when speech is off. When
/// the configured model is the default and its folder has no `model.bin`,
/// the English-only fallback (Whisper tiny.en) is used if it is installed,
/// with the reason logged.
pub fn speech_for(config: &Config) -> Result<std::result::Result<Speech, String>> {
    use kino_models::catalog::{DEFAULT_SPEECH, FALLBACK_SPEECH};
    if config.speech == SpeechMode::Off {
        return Ok(Err("speech = \"off\" in the configuration".into()));
    }
    let mut dir = config.speech_model_dir();
    let mut name = config.speech_model.as_str();
    let fallback = config.models.join(FALLBACK_SPEECH);
    if name == DEFAULT_SPEECH && !dir.join("model.bin").is_file() && fallback.join("model.bin").is_file() {
        tracing::warn!(
            "no speech model at {} (model.bin missing): using the English-only fallback {} \
             (speech in other languages is transcribed poorly); `kino models fetch speech` \
             installs the default, then `kino reindex --stale`",
            dir.display(),
            fallback.display()
        );
        dir = fallback;
        name = FALLBACK_SPEECH;
    }
    Ok(load_speech(&dir, name, config.precision)?.map(|(whisper, v)| Speech {
        whisper: Mutex::new(whisper),
        mode: config.speech,
        version: format!("{v},{}", config.speech.as_str()),
    }))
}

/// Threads of the OCR engine, from the same cores as the vision plan:
/// `KINO_OCR_THREADS` when set; else half the cores while the vision branch
/// is on, all of them when it is off (it runs on the decode threads, one
/// frame at a time, only where the picture changed).
pub fn ocr_threads(cores: usize, vision_on: bool) -> usize {
    match std::env::var("KINO_OCR_THREADS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    {
        Some(n) if n > 0 => n,
        _ if vision_on => (cores / 2).max(1),
        _ => cores.max(1),
    }
}

/// The PP-OCR files a model folder must hold.
pub const OCR_FILES: [&str; 3] = [kino_ocr::DET_MODEL, kino_ocr::CLS_MODEL, kino_ocr::REC_MODEL];

/// Loads the on-screen text stage for `config` with `threads` threads:
/// `Ok(Err(reason))` when it is off (by configuration, or because ONNX
/// Runtime or the models are missing or broken; the reason says what to do).
pub fn screen_for(config: &Config, threads: usize) -> Result<std::result::Result<Screen, String>> {
    if config.ocr == OcrMode::Off {
        return Ok(Err("ocr = \"off\" in the configuration".into()));
    }
    let lib = config.onnxruntime_lib();
    let explicit = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty());
    if explicit.is_none() && !lib.is_file() {
        return Ok(Err(format!(
            "ONNX Runtime is not installed ({} is missing): on-screen text is not read; \
             run `kino models fetch onnxruntime ocr`, then `kino reindex --stale`",
            lib.display()
        )));
    }
    let dir = config.ocr_model_dir();
    if let Some(missing) = OCR_FILES.iter().find(|f| !dir.join(f).is_file()) {
        return Ok(Err(format!(
            "no on-screen text model at {} ({missing} missing): on-screen text is not read; \
             run `kino models fetch ocr`, then `kino reindex --stale`",
            dir.display()
        )));
    }
    if let Err(e) = kino_ocr::init_runtime(&lib) {
        return Ok(Err(format!(
            "ONNX Runtime does not load ({e}): on-screen text is not read"
        )));
    }
    // The stage version names the weights: the digests the install
    // recorded in the folder's manifest, else hashed here (a folder put
    // there by hand).
    // A file that differs from the manifest is damaged: the stage is off
    // rather than reading with weights nobody installed.
    let manifest = kino_models::manifest::Manifest::read(&dir).ok().flatten();
    let mut digests = Vec::new();
    for f in OCR_FILES {
        let path = dir.join(f);
        let d = kino_models::manifest::sha256_file(&path).with_context(|| format!("reading {}", path.display()))?;
        if let Some(expected) = manifest.as_ref().and_then(|m| m.file(f)).filter(|e| e.sha256 != d) {
            return Ok(Err(format!(
                "{}: SHA-256 {d} is not the installed {}: the file is damaged; on-screen text is not read \
                 until `kino models fetch ocr` installs it again",
                path.display(),
                expected.sha256
            )));
        }
        digests.push(d.chars().take(8).collect::<String>());
    }
    match kino_ocr::Ocr::load(&dir, threads) {
        Ok(ocr) => Ok(Ok(Screen {
            ocr,
            version: format!(
                "{}@{},side={}",
                config.ocr_model,
                digests.join("."),
                crate::pipeline::OCR_SIDE
            ),
        })),
        Err(e) => Ok(Err(format!("{e}: on-screen text is not read"))),
    }
}

/// The shapes of the fusion module for a text encoder of width `text_dim`
/// and `vision` (its visual width is the Swin's hidden size, or Swin-T's
/// without one).
pub fn fusion_config(text_dim: usize, vision: Option<&Swin>) -> kino_fusion::FusionConfig {
    kino_fusion::FusionConfig {
        text_dim,
        visual_dim: vision.map(|s| s.hidden_size()).unwrap_or(DEFAULT_VISUAL_DIM),
        heads: FUSION_HEADS,
    }
}

/// The fusion module: the weights `kino train` installed in `fusion_dir`
/// when they fit `text_dim` and `vision`, else the default weights.
pub fn fusion_for(text_dim: usize, vision: Option<&Swin>, fusion_dir: &Path) -> Result<FusionModel> {
    let config = fusion_config(text_dim, vision);
    match crate::fusion_weights::load_current(fusion_dir, config) {
        Ok(Some((name, model))) => {
            tracing::debug!(version = %name, "trained fusion weights");
            return Ok(model);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(
            error = %format!("{e:#}"),
            "the trained fusion weights do not fit these models; using the default weights              (`kino train` makes new ones)"
        ),
    }
    Ok(FusionModel::identity(config.text_dim, config.visual_dim, config.heads)?)
}

fn vision_off_reason(vdir: &Path) -> String {
    format!(
        "no vision weights at {} (config.json + model.safetensors): indexing text only; \
         `kino reindex --stale` (or a running `kino serve`, once they appear) adds vision",
        vdir.display()
    )
}

impl Engines {
    /// Loads every model the configuration names. Only the text model is
    /// required: a missing or broken vision, speech or on-screen text model
    /// turns that stage off and the reason is kept ([`Engines::stages_off`]).
    pub fn load(config: &Config) -> Result<Engines> {
        let vdir = config.vision_model_dir();
        // The two models load side by side (reading, hashing and laying out
        // a few hundred MB of weights each is mostly one thread's work).
        let (text, vision, speech) = std::thread::scope(|s| {
            let vision = s.spawn(|| load_vision(&vdir, config.precision));
            let speech = s.spawn(|| speech_for(config));
            let text = load_text(&config.text_model_dir(), config.precision.text());
            let vision = vision
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("loading the vision model panicked")));
            let speech = speech
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("loading the speech model panicked")));
            (text, vision, speech)
        });
        let text = text?;
        // A precision the vision model cannot run at is the user's to fix
        // (exit 2), not a broken model.
        let vision = match vision {
            Err(e) if crate::error::exit_code(&e) == 2 => return Err(e),
            v => v,
        };
        let (speech, speech_off_reason) = match speech? {
            Ok(s) => (Some(Arc::new(s)), None),
            Err(why) => (None, Some(why)),
        };
        // A broken vision model is not fatal: the other stages index, the
        // reason is kept (logged, and shown by `/healthz`), and the videos
        // indexed without pictures are stale once the model is repaired.
        let (vision, vision_broken) = match vision {
            Ok(v) => (v.map(Arc::new), None),
            Err(e) => (
                None,
                Some(format!(
                    "{e:#}: the vision model is broken; frames are not embedded until                      `kino models fetch vision` installs it again (then `kino reindex --stale`)"
                )),
            ),
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (screen, screen_off_reason) = match screen_for(config, ocr_threads(cores, vision.is_some()))? {
            Ok(s) => (Some(Arc::new(s)), None),
            Err(why) => (None, Some(why)),
        };
        let fusion_dir = config.fusion_dir();
        let fusion = fusion_for(text.dim(), vision.as_deref(), &fusion_dir)?;
        Ok(Engines {
            fusion_dir,
            text: Arc::new(text),
            vision_off_reason: vision
                .is_none()
                .then(|| vision_broken.unwrap_or_else(|| vision_off_reason(&vdir))),
            vision,
            fusion: Arc::new(fusion),
            speech,
            speech_off_reason,
            screen,
            screen_off_reason,
        })
    }

    /// These engines with `vision` as the vision model (`None`: off): the
    /// same text encoder, and the same fusion module unless the new model's
    /// visual width differs from the one it was built for.
    pub fn with_vision(&self, vision: Option<Arc<Swin>>) -> Result<Engines> {
        let visual_dim = vision.as_ref().map(|s| s.hidden_size()).unwrap_or(DEFAULT_VISUAL_DIM);
        let fusion = if self.fusion.config().visual_dim == visual_dim {
            self.fusion.clone()
        } else {
            Arc::new(fusion_for(self.text.dim(), vision.as_deref(), &self.fusion_dir)?)
        };
        Ok(Engines {
            fusion_dir: self.fusion_dir.clone(),
            text: self.text.clone(),
            vision_off_reason: match &vision {
                Some(_) => None,
                None => Some(
                    self.vision_off_reason
                        .clone()
                        .unwrap_or_else(|| "the vision model was turned off".into()),
                ),
            },
            vision,
            fusion,
            speech: self.speech.clone(),
            speech_off_reason: self.speech_off_reason.clone(),
            screen: self.screen.clone(),
            screen_off_reason: self.screen_off_reason.clone(),
        })
    }

    /// These engines with `fusion` as the fusion weights.
    pub fn with_fusion(&self, fusion: Arc<FusionModel>) -> Engines {
        Engines {
            fusion_dir: self.fusion_dir.clone(),
            text: self.text.clone(),
            vision: self.vision.clone(),
            fusion,
            vision_off_reason: self.vision_off_reason.clone(),
            speech: self.speech.clone(),
            speech_off_reason: self.speech_off_reason.clone(),
            screen: self.screen.clone(),
            screen_off_reason: self.screen_off_reason.clone(),
        }
    }

    /// These engines with `speech` as the speech model (`None`: off).
    pub fn with_speech(&self, speech: Option<Arc<Speech>>) -> Engines {
        Engines {
            fusion_dir: self.fusion_dir.clone(),
            text: self.text.clone(),
            vision: self.vision.clone(),
            fusion: self.fusion.clone(),
            vision_off_reason: self.vision_off_reason.clone(),
            speech_off_reason: match &speech {
                Some(_) => None,
                None => Some("the speech model was turned off".into()),
            },
            speech,
            screen: self.screen.clone(),
            screen_off_reason: self.screen_off_reason.clone(),
        }
    }

    /// These engines with `screen` as the on-screen text stage (`None`: off).
    pub fn with_screen(&self, screen: Option<Arc<Screen>>) -> Engines {
        Engines {
            fusion_dir: self.fusion_dir.clone(),
            text: self.text.clone(),
            vision: self.vision.clone(),
            fusion: self.fusion.clone(),
            vision_off_reason: self.vision_off_reason.clone(),
            speech: self.speech.clone(),
            speech_off_reason: self.speech_off_reason.clone(),
            screen_off_reason: match &screen {
                Some(_) => None,
                None => Some("the on-screen text models were turned off".into()),
            },
            screen,
        }
    }

    /// Each stage that is off, as `"stage: reason"` (empty when every stage runs).
    pub fn stages_off(&self) -> Vec<String> {
        [
            ("vision", &self.vision_off_reason),
            ("speech", &self.speech_off_reason),
            ("on-screen text", &self.screen_off_reason),
        ]
        .into_iter()
        .filter_map(|(stage, why)| why.as_ref().map(|w| format!("{stage}: {w}")))
        .collect()
    }

    /// The versions an index built now would record, with the decoder's
    /// settings `decode` (see [`crate::staleness`]).
    pub fn versions(&self, decode: &str) -> Versions {
        Versions {
            decode: decode.to_string(),
            vision: self.vision.as_deref().map(vision_version),
            speech: self.speech.as_ref().map(|s| s.version.clone()),
            ocr: self.screen.as_ref().map(|s| s.version.clone()),
            text: self.text.version(),
            fusion: self.fusion.version().to_string(),
            document: crate::pipeline::document::version(&self.text),
        }
    }
}
