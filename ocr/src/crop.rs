//! The text crop of rapidocr's `get_rotate_crop_image`: a perspective warp of
//! the box onto an upright rectangle (bicubic, edge pixels repeated), turned a
//! quarter counter-clockwise when it is at least 1.5 times taller than wide.

use image::RgbImage;
use imageproc::geometric_transformations::Projection;

/// OpenCV's sub-pixel steps of a warp's source coordinates (`INTER_TAB_SIZE`).
const TAB: f32 = 32.0;
/// OpenCV's fixed-point scale of the bicubic weights (`INTER_REMAP_COEF_SCALE`).
const REMAP_SCALE: f32 = 32768.0;

/// Euclidean distance of two corners.
fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// OpenCV's bicubic weights (A = -0.75) for a fractional offset `x`.
fn cubic(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let c0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [c0, c1, c2, 1.0 - c0 - c1 - c2]
}

/// OpenCV's 4×4 fixed-point bicubic kernel for sub-pixel steps `(tx, ty)` of
/// [`TAB`]: products of the 1-D weights, rounded to 15 bits, summing to the scale.
fn kernel(tx: i64, ty: i64) -> [[i32; 4]; 4] {
    let (wx, wy) = (cubic(tx as f32 / TAB), cubic(ty as f32 / TAB));
    let mut k = [[0i32; 4]; 4];
    for (j, row) in k.iter_mut().enumerate() {
        for (i, v) in row.iter_mut().enumerate() {
            *v = (wy[j] * wx[i] * REMAP_SCALE).round() as i32;
        }
    }
    let diff: i32 = k.iter().flatten().sum::<i32>() - REMAP_SCALE as i32;
    k[1][1] -= diff;
    k
}

/// The region of `img` inside `quad` (tl, tr, br, bl), warped upright.
pub fn rotate_crop(img: &RgbImage, quad: &[[f32; 2]; 4]) -> RgbImage {
    let width = dist(quad[0], quad[1]).max(dist(quad[2], quad[3])) as u32;
    let height = dist(quad[0], quad[3]).max(dist(quad[1], quad[2])) as u32;
    if width == 0 || height == 0 || img.width() == 0 || img.height() == 0 {
        return RgbImage::new(width.max(1), height.max(1));
    }
    let (w, h) = (width as f32, height as f32);
    let to_src = Projection::from_control_points([(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)], quad.map(|p| (p[0], p[1])));
    let Some(to_src) = to_src else {
        return RgbImage::new(width, height);
    };
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    let raw = img.as_raw();
    let mut out = RgbImage::new(width, height);
    for (x, y, px) in out.enumerate_pixels_mut() {
        let (sx, sy) = to_src * (x as f32, y as f32);
        let (fx, fy) = ((sx * TAB).round() as i64, (sy * TAB).round() as i64);
        let (ix, iy) = (fx.div_euclid(TAB as i64), fy.div_euclid(TAB as i64));
        let k = kernel(fx.rem_euclid(TAB as i64), fy.rem_euclid(TAB as i64));
        let mut acc = [0i32; 3];
        for (j, row) in k.iter().enumerate() {
            let yy = (iy + j as i64 - 1).clamp(0, ih - 1) as usize;
            for (i, &wgt) in row.iter().enumerate() {
                let xx = (ix + i as i64 - 1).clamp(0, iw - 1) as usize;
                let o = (yy * iw as usize + xx) * 3;
                for (c, a) in acc.iter_mut().enumerate() {
                    *a += raw[o + c] as i32 * wgt;
                }
            }
        }
        px.0 = acc.map(|a| ((a + (1 << 14)) >> 15).clamp(0, 255) as u8);
    }
    if height as f32 / width as f32 >= 1.5 {
        image::imageops::rotate270(&out)
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_aligned_crop_copies_pixels() {
        let img = RgbImage::from_fn(20, 10, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        let crop = rotate_crop(&img, &[[2.0, 3.0], [12.0, 3.0], [12.0, 8.0], [2.0, 8.0]]);
        assert_eq!(crop.dimensions(), (10, 5));
        for (x, y, p) in crop.enumerate_pixels() {
            assert_eq!(p, img.get_pixel(x + 2, y + 3), "at {x},{y}");
        }
    }

    #[test]
    fn tall_crop_turns_counter_clockwise() {
        let img = RgbImage::from_fn(10, 30, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let crop = rotate_crop(&img, &[[0.0, 0.0], [4.0, 0.0], [4.0, 20.0], [0.0, 20.0]]);
        assert_eq!(crop.dimensions(), (20, 4));
        // np.rot90: the top-right source pixel lands top-left.
        assert_eq!(crop.get_pixel(0, 0).0, [3, 0, 0]);
        assert_eq!(crop.get_pixel(19, 3).0, [0, 19, 0]);
    }
}
