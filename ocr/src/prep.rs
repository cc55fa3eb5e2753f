//! rapidocr's image preparation before detection and the way back: sides kept
//! within 30..2000 px (`resize_image_within_bounds`), black bands above and
//! below thin images (`apply_vertical_padding`), `map_boxes_to_original`.

use image::RgbImage;

use crate::db::Quad;
use crate::resize::resize_linear;

/// `Global.min_side_len` and `Global.max_side_len`.
const MIN_SIDE: f64 = 30.0;
const MAX_SIDE: f64 = 2000.0;
/// `Global.min_height` and `Global.width_height_ratio`.
const MIN_HEIGHT: u32 = 30;
const WIDTH_HEIGHT_RATIO: f64 = 8.0;

/// The image the detector sees and how to map its boxes back.
pub struct Prepared {
    /// Resized and padded image.
    pub image: RgbImage,
    ratio_w: f32,
    ratio_h: f32,
    top: f32,
    orig_w: f32,
    orig_h: f32,
}

/// `reduce_max_side` / `increase_min_side`: `img` scaled by `ratio`, sides
/// rounded to multiples of 32; the ratios back; `None` when a side rounds to 0.
fn rescale(img: &RgbImage, ratio: f64) -> Option<(RgbImage, f32, f32)> {
    let (w, h) = (img.width() as f64, img.height() as f64);
    let r32 = |v: f64| ((v * ratio).trunc() / 32.0).round_ties_even() * 32.0;
    let (rw, rh) = (r32(w), r32(h));
    if rw <= 0.0 || rh <= 0.0 {
        return None;
    }
    let out = resize_linear(img, rw as u32, rh as u32);
    Some((out, (h / rh) as f32, (w / rw) as f32))
}

impl Prepared {
    /// Prepares `img`; `None` when it cannot hold text (a side 0 or rounding to 0).
    pub fn new(img: &RgbImage) -> Option<Prepared> {
        let (ow, oh) = img.dimensions();
        if ow == 0 || oh == 0 {
            return None;
        }
        let (mut ratio_h, mut ratio_w) = (1.0f32, 1.0f32);
        let mut cur = None::<RgbImage>;
        let (w, h) = (ow as f64, oh as f64);
        if w.max(h) > MAX_SIDE {
            let ratio = if h > w { MAX_SIDE / h } else { MAX_SIDE / w };
            let (im, rh, rw) = rescale(img, ratio)?;
            (cur, ratio_h, ratio_w) = (Some(im), rh, rw);
        }
        let (w, h) = cur.as_ref().map_or((w, h), |i| (i.width() as f64, i.height() as f64));
        if w.min(h) < MIN_SIDE {
            let ratio = if h < w { MIN_SIDE / h } else { MIN_SIDE / w };
            // As rapidocr: the ratios are those of this step alone.
            let (im, rh, rw) = rescale(cur.as_ref().unwrap_or(img), ratio)?;
            (cur, ratio_h, ratio_w) = (Some(im), rh, rw);
        }
        let image = cur.unwrap_or_else(|| img.clone());
        let (w, h) = image.dimensions();
        let mut top = 0u32;
        let image = if h <= MIN_HEIGHT || w as f64 / h as f64 > WIDTH_HEIGHT_RATIO {
            let new_h = ((w as f64 / WIDTH_HEIGHT_RATIO).trunc() as u32).max(MIN_HEIGHT) * 2;
            top = new_h.abs_diff(h) / 2;
            let mut padded = RgbImage::new(w, h + 2 * top);
            image::imageops::replace(&mut padded, &image, 0, top as i64);
            padded
        } else {
            image
        };
        Some(Prepared {
            image,
            ratio_w,
            ratio_h,
            top: top as f32,
            orig_w: ow as f32,
            orig_h: oh as f32,
        })
    }

    /// A box of the prepared image in the original image's pixels.
    pub fn to_original(&self, q: &Quad) -> Quad {
        q.map(|[x, y]| {
            let (x, y) = (x * self.ratio_w, (y - self.top) * self.ratio_h);
            [x.max(0.0).min(self.orig_w), y.max(0.0).min(self.orig_h)]
        })
    }
}

/// Python's `not s.strip()`: nothing but whitespace.
pub fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_images_shrink_to_2000_and_map_back() {
        let p = Prepared::new(&RgbImage::new(7680, 4320)).unwrap();
        assert_eq!(p.image.dimensions(), (1984, 1120)); // round(2000 / 32) == 62; int(4320 * 2000 / 7680) == 1125
        let q = p.to_original(&[[0.0, 0.0], [1984.0, 0.0], [1984.0, 1120.0], [0.0, 1120.0]]);
        assert_eq!(q[2], [7680.0, 4320.0]);
    }

    #[test]
    fn tiny_and_thin_images() {
        assert_eq!(
            Prepared::new(&RgbImage::new(1, 1)).unwrap().image.dimensions(),
            (32, 32)
        );
        assert!(Prepared::new(&RgbImage::new(0, 5)).is_none());
        assert!(Prepared::new(&RgbImage::new(8000, 10)).is_none());
        // 640 × 40 is wider than 8:1: padded to max(640 / 8, 30) * 2 = 160 high.
        let p = Prepared::new(&RgbImage::new(640, 40)).unwrap();
        assert_eq!(p.image.dimensions(), (640, 160));
        assert_eq!(p.to_original(&[[10.0, 60.0]; 4])[0], [10.0, 0.0]);
    }

    #[test]
    fn blank_like_python_strip() {
        assert!(is_blank("  \t\u{3000}"));
        assert!(!is_blank(" a "));
    }
}
