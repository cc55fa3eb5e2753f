//! On-screen text: PP-OCR (text detection, line orientation, recognition)
//! through ONNX Runtime, with the pre- and post-processing of the Python
//! package `rapidocr` 3.10 and its default configuration, so that kino reads
//! frames as rapidocr does.
//!
//! ```no_run
//! # fn main() -> Result<(), kino_ocr::OcrError> {
//! let models = std::path::Path::new("/home/me/.local/share/kino/models");
//! kino_ocr::init_runtime(&models.join("onnxruntime/1.32.0/libonnxruntime.so"))?;
//! let ocr = kino_ocr::Ocr::load(&models.join("rapidocr/PP-OCRv6"), 2)?;
//! let frame = image::RgbImage::new(1280, 720);
//! for line in ocr.read(&frame)? {
//!     println!("{} {:.3} {:?}", line.text, line.score, line.quad);
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

use std::path::Path;
use std::sync::Mutex;

use image::RgbImage;
use ort::session::Session;

mod cls;
mod crop;
pub mod db;
mod det;
mod error;
mod prep;
mod rec;
pub mod resize;
mod runtime;

pub use error::OcrError;
pub use runtime::init_runtime;

/// The text detector's file in the models folder.
pub const DET_MODEL: &str = "PP-OCRv6_det_small.onnx";
/// The recogniser's file in the models folder.
pub const REC_MODEL: &str = "PP-OCRv6_rec_small.onnx";
/// The orientation classifier's file in the models folder.
pub const CLS_MODEL: &str = "ch_ppocr_mobile_v2.0_cls_mobile.onnx";

/// Lines scoring below this are dropped (`Global.text_score`).
const TEXT_SCORE: f32 = 0.5;

/// One line of text read in an image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TextLine {
    /// The text, as the recogniser reads it.
    pub text: String,
    /// Mean probability of its characters, 0 to 1.
    pub score: f32,
    /// Its box in the image's pixels: top-left, top-right, bottom-right,
    /// bottom-left corners as (x, y).
    #[serde(rename = "box")]
    pub quad: [[f32; 2]; 4],
}

/// The three PP-OCR models, loaded; safe to share between threads (each
/// model runs one call at a time).
pub struct Ocr {
    det: Mutex<Session>,
    cls: Mutex<Session>,
    rec: Mutex<Session>,
    table: Vec<String>,
}

impl Ocr {
    /// Loads the detector, classifier and recogniser from `dir`
    /// ([`DET_MODEL`], [`CLS_MODEL`], [`REC_MODEL`]) with `threads` intra-op
    /// threads each (0: ONNX Runtime's default). Needs [`init_runtime`] first.
    pub fn load(dir: &Path, threads: usize) -> Result<Ocr, OcrError> {
        let det = runtime::session(&dir.join(DET_MODEL), threads)?;
        let cls = runtime::session(&dir.join(CLS_MODEL), threads)?;
        let rec_path = dir.join(REC_MODEL);
        let rec = runtime::session(&rec_path, threads)?;
        let meta = rec
            .metadata()
            .ok()
            .and_then(|m| m.custom("character"))
            .ok_or_else(|| OcrError::MissingCharacters { path: rec_path.clone() })?;
        let table = rec::character_table(&meta);
        Ok(Ocr {
            det: Mutex::new(det),
            cls: Mutex::new(cls),
            rec: Mutex::new(rec),
            table,
        })
    }

    /// Reads an RGB image: its lines in reading order, filtered as rapidocr
    /// filters them (empty texts and scores under 0.5 dropped). An image too
    /// small or too thin to hold text gives no lines.
    pub fn read(&self, image: &RgbImage) -> Result<Vec<TextLine>, OcrError> {
        let Some(pre) = prep::Prepared::new(image) else {
            return Ok(Vec::new());
        };
        let boxes = det::detect(&self.det, &pre.image)?;
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let mut crops: Vec<RgbImage> = boxes.iter().map(|(q, _)| crop::rotate_crop(&pre.image, q)).collect();
        cls::orient(&self.cls, &mut crops)?;
        let texts = rec::recognise(&self.rec, &self.table, &crops)?;
        Ok(boxes
            .iter()
            .zip(texts)
            .filter(|(_, (text, score))| !prep::is_blank(text) && *score >= TEXT_SCORE)
            .map(|((q, _), (text, score))| TextLine {
                text,
                score,
                quad: pre.to_original(q),
            })
            .collect())
    }
}

/// `Ocr` is shared between pipeline threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Ocr>();
};
