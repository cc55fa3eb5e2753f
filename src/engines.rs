//! The models, loaded once and shared by every pipeline stage and request.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use kino_fusion::FusionModel;
use kino_language::SentenceEncoder;
use kino_vision::Swin;

use crate::config::Config;
use crate::error::usage;

/// Width of a Swin-T last-stage token; the fusion module's visual width when
/// the vision branch is off.
const DEFAULT_VISUAL_DIM: usize = 768;
/// Attention heads of the default fusion module (divides 384).
const FUSION_HEADS: usize = 6;

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
}

/// Model versions of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// Text model.
    pub text: String,
    /// Vision model (`None`: vision branch off).
    pub vision: Option<String>,
    /// Fusion module.
    pub fusion: String,
}

impl Versions {
    /// One string for segment rows and stored queries.
    pub fn combined(&self) -> String {
        format!(
            "{}|{}|{}",
            self.text,
            self.vision.as_deref().unwrap_or("no-vision"),
            self.fusion
        )
    }
}

/// Loads the text encoder only (queries need nothing else).
pub fn load_text(dir: &Path) -> Result<SentenceEncoder> {
    if !dir.join("model.safetensors").is_file() {
        return Err(usage(format!(
            "{}: no text model here (model.safetensors missing); run `kino models fetch` or scripts/setup",
            dir.display()
        )));
    }
    SentenceEncoder::load(dir).map_err(|e| {
        if e.is_bad_input() {
            usage(e.to_string())
        } else {
            anyhow::Error::from(e).context(format!("loading the text model from {}", dir.display()))
        }
    })
}

impl Engines {
    /// Loads every model the configuration names. A missing vision model is
    /// not an error: the vision branch is off and the reason is kept.
    pub fn load(config: &Config) -> Result<Engines> {
        let vdir = config.vision_model_dir();
        // The two models load side by side (reading, hashing and laying out
        // a few hundred MB of weights each is mostly one thread's work).
        let (text, vision) = std::thread::scope(|s| {
            let vision = s.spawn(|| -> Result<Option<Swin>> {
                if !kino_vision::is_model_dir(&vdir) {
                    return Ok(None);
                }
                let swin = Swin::load(&vdir, &candle_core::Device::Cpu)
                    .with_context(|| format!("loading the vision model from {}", vdir.display()))?;
                Ok(Some(swin))
            });
            let text = load_text(&config.text_model_dir());
            let vision = vision
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("loading the vision model panicked")));
            (text, vision)
        });
        let text = text?;
        let (vision, vision_off_reason) = match vision? {
            Some(swin) => (Some(Arc::new(swin)), None),
            None => {
                let why = format!(
                    "no vision weights at {} (config.json + model.safetensors): indexing text only; \
                     `kino reindex --stale` adds vision once they are there",
                    vdir.display()
                );
                (None, Some(why))
            }
        };
        let visual_dim = vision.as_ref().map(|s| s.hidden_size()).unwrap_or(DEFAULT_VISUAL_DIM);
        let fusion = FusionModel::identity(text.dim(), visual_dim, FUSION_HEADS)?;
        Ok(Engines {
            text: Arc::new(text),
            vision,
            fusion: Arc::new(fusion),
            vision_off_reason,
        })
    }

    /// The versions an index built now would carry.
    pub fn versions(&self) -> Versions {
        Versions {
            text: self.text.version(),
            vision: self.vision.as_ref().map(|v| v.version()),
            fusion: self.fusion.version().to_string(),
        }
    }
}
