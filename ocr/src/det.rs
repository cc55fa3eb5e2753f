//! The text detector (DB): rapidocr's `TextDetector` — resize so the shorter
//! side is at least 736 px, both sides multiples of 32, normalise, run, boxes
//! from the map ([`crate::db`]), reading order (`sorted_boxes`).

use std::sync::Mutex;

use image::RgbImage;
use ort::session::Session;

use crate::db::{boxes_from_map, DbParams, Quad};
use crate::resize::resize_linear;
use crate::{runtime, OcrError};

/// `limit_side_len` of rapidocr's config with `limit_type: min`.
const LIMIT_SIDE_LEN: f64 = 736.0;
/// Longest detector input side kino accepts. rapidocr has no such limit and
/// runs out of memory on images thinner than about 1:20 (a 1 × 500 image
/// becomes 736 × 345 184); kino scales those down to this instead.
const MAX_DET_SIDE: f64 = 8000.0;
/// Boxes whose top-left corners differ by less than this in y share a line.
const SORT_Y_THRESHOLD: f32 = 10.0;

/// `DetPreProcess.resize`'s target size for an image `w` × `h`: `None` when a
/// side would round to 0.
pub fn target_size(w: u32, h: u32) -> Option<(u32, u32)> {
    let (wf, hf) = (w as f64, h as f64);
    let ratio = if wf.min(hf) < LIMIT_SIDE_LEN {
        if h < w {
            LIMIT_SIDE_LEN / hf
        } else {
            LIMIT_SIDE_LEN / wf
        }
    } else {
        1.0
    };
    let ratio = ratio.min(MAX_DET_SIDE / wf.max(hf));
    let round32 = |v: f64| ((v * ratio).trunc() / 32.0).round_ties_even() * 32.0;
    let (rw, rh) = (round32(wf), round32(hf));
    (rw > 0.0 && rh > 0.0).then_some((rw as u32, rh as u32))
}

/// Planar float tensor data (N=1, C=3, H, W) of `img`, channels in OpenCV's BGR
/// order, each value `(v / 255 - mean) / std`.
pub fn to_tensor(img: &RgbImage, mean: f32, std: f32, out: &mut Vec<f32>) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let base = out.len();
    out.resize(base + 3 * w * h, 0.0);
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            // Tensor channel c is BGR's c: RGB's 2 - c.
            out[base + c * w * h + i] = (p.0[2 - c] as f32 / 255.0 - mean) / std;
        }
    }
}

/// rapidocr's `sorted_boxes`: stable by the top-left corner's y, then boxes
/// on one line (successive y steps under 10 px) left to right.
pub fn sort_boxes(boxes: Vec<(Quad, f32)>) -> Vec<(Quad, f32)> {
    let mut by_y = boxes;
    by_y.sort_by(|a, b| a.0[0][1].total_cmp(&b.0[0][1]));
    let mut line = 0usize;
    let mut keyed: Vec<(usize, (Quad, f32))> = Vec::with_capacity(by_y.len());
    for (i, b) in by_y.into_iter().enumerate() {
        if i > 0 && b.0[0][1] - keyed[i - 1].1 .0[0][1] >= SORT_Y_THRESHOLD {
            line += 1;
        }
        keyed.push((line, b));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1 .0[0][0].total_cmp(&b.1 .0[0][0])));
    keyed.into_iter().map(|(_, b)| b).collect()
}

/// Text boxes of `img` in its own coordinates, in reading order.
pub fn detect(session: &Mutex<Session>, img: &RgbImage) -> Result<Vec<(Quad, f32)>, OcrError> {
    let Some((w, h)) = target_size(img.width(), img.height()) else {
        return Ok(Vec::new());
    };
    let resized = resize_linear(img, w, h);
    let mut data = Vec::new();
    to_tensor(&resized, 0.5, 0.5, &mut data);
    let (shape, pred) = runtime::run(session, "detection", [1, 3, h as usize, w as usize], &data)?;
    let (mh, mw) = match shape[..] {
        [_, _, mh, mw] => (mh, mw),
        _ => {
            return Err(OcrError::Inference {
                stage: "detection",
                reason: format!("output shape {shape:?}"),
            })
        }
    };
    let map = &pred[..mh * mw];
    let boxes = boxes_from_map(
        map,
        mw,
        mh,
        img.width() as usize,
        img.height() as usize,
        &DbParams::default(),
    );
    Ok(sort_boxes(boxes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_sizes_like_rapidocr() {
        assert_eq!(target_size(1280, 720), Some((1312, 736)));
        assert_eq!(target_size(2000, 1120), Some((1984, 1120))); // round(62.5) == 62
        assert_eq!(target_size(32, 32), Some((736, 736)));
        assert_eq!(target_size(480, 160), Some((2208, 736)));
        // Not rapidocr's 736 × 345 184: capped at 8000 on the long side.
        assert_eq!(target_size(32, 15008), Some((32, 8000)));
    }

    #[test]
    fn boxes_sort_into_lines_then_left_to_right() {
        let q = |x: f32, y: f32| [[x, y], [x + 5.0, y], [x + 5.0, y + 5.0], [x, y + 5.0]];
        let boxes = vec![
            (q(50.0, 12.0), 1.0),
            (q(10.0, 14.0), 2.0),
            (q(0.0, 40.0), 3.0),
            (q(90.0, 8.0), 4.0),
        ];
        let order: Vec<f32> = sort_boxes(boxes).into_iter().map(|b| b.1).collect();
        // y 8, 12, 14 are one line (steps 4, 2 < 10): x 10, 50, 90; then y 40.
        assert_eq!(order, [2.0, 1.0, 4.0, 3.0]);
    }
}
