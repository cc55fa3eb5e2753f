//! The sentence encoder's int8 calibration, stored: each linear layer's
//! input ranges recorded on sample sentences (the user's own, through `kino
//! models quantize`), written beside the weights as
//! [`TextCalibration::FILE`]. Loading at [`Precision::Int8`] uses them when
//! the file is there (its id then ends the version), else calibrates on
//! fixed sentences at each load.

use std::collections::HashMap;
use std::path::Path;

use kino_kernels::ChannelRanges;
use safetensors::tensor::{Dtype, TensorView};

use crate::cpu::Precision;
use crate::encoder::SentenceEncoder;
use crate::error::LanguageError;

/// Each linear layer's calibrated input ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct TextCalibration {
    ranges: Vec<Vec<f32>>,
    sentences: usize,
    id: String,
    /// The f32 model's version it was recorded with.
    f32_version: Option<String>,
}

impl TextCalibration {
    /// The file it is stored in, in the model's folder.
    pub const FILE: &'static str = "model.int8.safetensors";

    fn new(ranges: Vec<Vec<f32>>, sentences: usize) -> TextCalibration {
        let mut h = blake3::Hasher::new();
        for r in &ranges {
            h.update(&(r.len() as u64).to_le_bytes());
            for v in r {
                h.update(&v.to_le_bytes());
            }
        }
        TextCalibration {
            ranges,
            sentences,
            id: h.finalize().to_hex()[..12].to_string(),
            f32_version: None,
        }
    }

    /// The f32 model's version the stored file says it was recorded with.
    pub fn f32_version(&self) -> Option<&str> {
        self.f32_version.as_deref()
    }

    /// A short hash of the ranges (part of the int8 model's version).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sentences it was recorded on.
    pub fn sentences(&self) -> usize {
        self.sentences
    }

    /// Per layer, the ranges (a percentile of each input channel's |x|).
    pub fn ranges(&self) -> &[Vec<f32>] {
        &self.ranges
    }

    /// Writes it to `dir/`[`TextCalibration::FILE`] (a temporary file
    /// renamed), with `meta` in the file's metadata and the f32 version it
    /// was recorded with (`f32_version`, unless `meta` gives one).
    pub fn save(&self, dir: &Path, meta: &HashMap<String, String>) -> Result<(), LanguageError> {
        let path = dir.join(Self::FILE);
        let bytes: Vec<Vec<u8>> = self
            .ranges
            .iter()
            .map(|r| r.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let invalid = |msg: String| LanguageError::Invalid {
            path: path.clone(),
            msg,
        };
        let views = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                TensorView::new(Dtype::F32, vec![b.len() / 4], b)
                    .map(|v| (format!("{i}.range"), v))
                    .map_err(|e| invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut meta = meta.clone();
        meta.insert("sentences".into(), self.sentences.to_string());
        meta.insert("kino_int8_id".into(), self.id.clone());
        if let Some(v) = &self.f32_version {
            meta.entry("f32_version".into()).or_insert_with(|| v.clone());
        }
        let data = safetensors::serialize(views, Some(meta)).map_err(|e| invalid(e.to_string()))?;
        let tmp = path.with_extension("safetensors.tmp");
        let io = |source| LanguageError::Io {
            path: path.clone(),
            source,
        };
        std::fs::write(&tmp, data).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Reads `dir/`[`TextCalibration::FILE`]; `None` when there is none.
    pub fn load(dir: &Path) -> Result<Option<TextCalibration>, LanguageError> {
        let path = dir.join(Self::FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LanguageError::Io { path, source }),
        };
        let invalid = |msg: String| LanguageError::Invalid {
            path: path.clone(),
            msg: format!("{msg}; `kino models quantize` writes it again"),
        };
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| invalid(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let sentences = meta.get("sentences").and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut ranges = Vec::new();
        while let Ok(t) = st.tensor(&format!("{}.range", ranges.len())) {
            if t.dtype() != Dtype::F32 {
                return Err(invalid(format!("range {} is not f32", ranges.len())));
            }
            let r: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if r.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(invalid(format!(
                    "range {} holds a negative or non-finite value",
                    ranges.len()
                )));
            }
            ranges.push(r);
        }
        if ranges.is_empty() {
            return Err(invalid("no ranges in the file".into()));
        }
        let mut cal = TextCalibration::new(ranges, sentences);
        cal.f32_version = meta.get("f32_version").cloned();
        Ok(Some(cal))
    }
}

impl SentenceEncoder {
    /// Records each linear layer's input ranges on `texts` and the fixed
    /// calibration sentences (the `percentile` of each channel's |x| over
    /// their tokens), running this encoder, which must be f32. The fixed
    /// sentences (short, long, odd, other languages) keep queries unlike
    /// the library's sentences covered.
    pub fn calibrate(&self, texts: &[&str], percentile: f64) -> Result<TextCalibration, LanguageError> {
        if self.precision() != Precision::F32 {
            return Err(LanguageError::Argument(
                "calibration runs the f32 model; load it at Precision::F32".into(),
            ));
        }
        let mut ranges: Vec<ChannelRanges> = self
            .model()
            .linear_inputs()
            .into_iter()
            .map(ChannelRanges::new)
            .collect();
        let all: Vec<&str> = texts.iter().chain(crate::cpu::CALIBRATION).copied().collect();
        for chunk in all.chunks(self.batch_size().max(1)) {
            let seqs = self.token_ids(chunk)?;
            let refs: Vec<&[u32]> = seqs.iter().map(|s| &s[..]).collect();
            self.model()
                .observe(&refs, &mut ranges)
                .map_err(LanguageError::Inference)?;
        }
        let mut cal = TextCalibration::new(ranges.iter().map(|r| r.percentile(percentile)).collect(), texts.len());
        cal.f32_version = Some(self.f32_version());
        Ok(cal)
    }

    /// This encoder with its linear layers turned to int8, smoothed with
    /// `cal` (whether or not it is stored): no second load from disk.
    ///
    /// # Errors
    /// If this encoder is not f32 (its f32 weights are gone), or `cal` is
    /// for a model of other layers.
    pub fn quantized(mut self, cal: &TextCalibration) -> Result<SentenceEncoder, LanguageError> {
        if self.precision() != Precision::F32 {
            return Err(LanguageError::Argument("only an f32 encoder can be quantized".into()));
        }
        self.check_calibration(cal)?;
        self.set_int8(cal);
        Ok(self)
    }
}
