//! The text-line orientation classifier: rapidocr's `TextClassifier` — lines
//! in batches of 6 by aspect ratio, each resized to 48 px high (at most 192
//! wide, zero-padded), turned 180° when the model says so with score > 0.9.

use std::sync::Mutex;

use image::RgbImage;
use ort::session::Session;

use crate::resize::resize_linear;
use crate::{runtime, OcrError};

/// Input height and width of the classifier (`cls_image_shape` of PP-OCRv4).
const H: usize = 48;
const W: usize = 192;
/// Lines per batch (`cls_batch_num`).
const BATCH: usize = 6;
/// Least score for a turn (`cls_thresh`).
const THRESH: f32 = 0.9;

/// `resize_norm_img` of `img` into a `channels × h × w` zero-padded block of
/// `out` (BGR order, `(v / 255 - 0.5) / 0.5`) for a resize `resized_w` wide.
pub(crate) fn put_normalised(img: &RgbImage, h: usize, w: usize, resized_w: usize, out: &mut [f32]) {
    let resized = resize_linear(img, resized_w as u32, h as u32);
    for (x, y, p) in resized.enumerate_pixels() {
        for c in 0..3 {
            out[c * h * w + y as usize * w + x as usize] = (p.0[2 - c] as f32 / 255.0 - 0.5) / 0.5;
        }
    }
}

/// Width of a line `w` × `h` resized to height `target_h`, at most `max_w`
/// (`min(ceil(target_h * w / h), max_w)`).
pub(crate) fn resized_width(w: u32, h: u32, target_h: usize, max_w: usize) -> usize {
    let ratio = w as f64 / h as f64;
    let want = (target_h as f64 * ratio).ceil();
    if want > max_w as f64 {
        max_w
    } else {
        want as usize
    }
}

/// Indices of `imgs` by ascending aspect ratio (stable, as numpy's argsort is on
/// the small arrays rapidocr sees).
pub(crate) fn by_aspect(imgs: &[RgbImage]) -> Vec<usize> {
    let ratio = |i: usize| imgs[i].width() as f64 / imgs[i].height() as f64;
    let mut idx: Vec<usize> = (0..imgs.len()).collect();
    idx.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)));
    idx
}

/// Turns the lines the classifier reads as upside down.
pub fn orient(session: &Mutex<Session>, imgs: &mut [RgbImage]) -> Result<(), OcrError> {
    let order = by_aspect(imgs);
    for chunk in order.chunks(BATCH) {
        let mut data = vec![0f32; chunk.len() * 3 * H * W];
        for (k, &i) in chunk.iter().enumerate() {
            let rw = resized_width(imgs[i].width(), imgs[i].height(), H, W);
            put_normalised(&imgs[i], H, W, rw, &mut data[k * 3 * H * W..(k + 1) * 3 * H * W]);
        }
        let (shape, probs) = runtime::run(session, "orientation", [chunk.len(), 3, H, W], &data)?;
        let classes = shape.get(1).copied().unwrap_or(0);
        if classes < 2 || probs.len() < chunk.len() * classes {
            return Err(OcrError::Inference {
                stage: "orientation",
                reason: format!("output shape {shape:?}"),
            });
        }
        for (k, &i) in chunk.iter().enumerate() {
            let row = &probs[k * classes..(k + 1) * classes];
            // numpy's argmax: the first maximum.
            let best = (0..classes).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            if best == 1 && row[1] > THRESH {
                image::imageops::rotate180_in_place(&mut imgs[i]);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_aspect_ratio_up_to_the_limit() {
        assert_eq!(resized_width(100, 50, 48, 192), 96);
        assert_eq!(resized_width(1000, 50, 48, 192), 192);
        assert_eq!(resized_width(10, 30, 48, 192), 16);
    }
}
