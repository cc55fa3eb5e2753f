//! OpenCV's `cv2.resize(..., INTER_LINEAR)` on 8-bit RGB: half-pixel centres,
//! edge pixels repeated, no antialiasing, 11-bit fixed-point weights and the
//! rounding of its SIMD vertical pass, so results match OpenCV's to the unit.

use image::RgbImage;

/// Fixed-point scale of the interpolation weights (`INTER_RESIZE_COEF_SCALE`).
const COEF_SCALE: f32 = 2048.0;

/// Source index and the two fixed-point weights for each destination index
/// along one axis of `src` pixels resized to `dst`.
fn taps(src: u32, dst: u32) -> Vec<(usize, i32, i32)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = (d as f64 + 0.5) * scale - 0.5;
            let mut s = f.floor() as i64;
            let mut frac = (f - s as f64) as f32;
            if s < 0 {
                s = 0;
                frac = 0.0;
            }
            if s >= src as i64 - 1 {
                s = src as i64 - 1;
                frac = 0.0;
            }
            let w0 = ((1.0 - frac) * COEF_SCALE).round() as i32;
            let w1 = (frac * COEF_SCALE).round() as i32;
            (s as usize, w0, w1)
        })
        .collect()
}

/// `src` resized to `width` × `height` as `cv2.resize` with INTER_LINEAR does.
/// A same-size resize is a copy; either target side 0 gives an empty image.
pub fn resize_linear(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    if width == 0 || height == 0 || src.width() == 0 || src.height() == 0 {
        return RgbImage::new(width, height);
    }
    if (width, height) == src.dimensions() {
        return src.clone();
    }
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let xs = taps(src.width(), width);
    let ys = taps(src.height(), height);
    let raw = src.as_raw();
    let row_w = width as usize * 3;
    // Horizontal pass of one source row, kept by row index (two rows live).
    let hrow = |y: usize, out: &mut Vec<i32>| {
        out.clear();
        let row = &raw[y * sw * 3..(y + 1) * sw * 3];
        for &(s, w0, w1) in &xs {
            let s1 = (s + 1).min(sw - 1);
            for c in 0..3 {
                out.push(row[s * 3 + c] as i32 * w0 + row[s1 * 3 + c] as i32 * w1);
            }
        }
    };
    let mut out = vec![0u8; row_w * height as usize];
    let (mut r0, mut r1) = (Vec::with_capacity(row_w), Vec::with_capacity(row_w));
    let (mut have0, mut have1) = (usize::MAX, usize::MAX);
    for (dy, &(sy, b0, b1)) in ys.iter().enumerate() {
        let sy1 = (sy + 1).min(sh - 1);
        if have0 != sy {
            if have1 == sy {
                std::mem::swap(&mut r0, &mut r1);
                have1 = have0;
            } else {
                hrow(sy, &mut r0);
            }
            have0 = sy;
        }
        if have1 != sy1 {
            hrow(sy1, &mut r1);
            have1 = sy1;
        }
        let dst = &mut out[dy * row_w..(dy + 1) * row_w];
        for x in 0..row_w {
            // VResizeLinearVec_32s8u: ((S0>>4)*b0 >> 16) + ((S1>>4)*b1 >> 16), rounded by 2 bits.
            let v = (((r0[x] >> 4) * b0) >> 16) + (((r1[x] >> 4) * b1) >> 16);
            dst[x] = ((v + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer sized to the image")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy_and_constant_stays_constant() {
        let img = RgbImage::from_pixel(7, 5, image::Rgb([10, 200, 255]));
        assert_eq!(resize_linear(&img, 7, 5), img);
        let up = resize_linear(&img, 23, 11);
        assert!(up.pixels().all(|p| p.0 == [10, 200, 255]));
        let down = resize_linear(&img, 3, 2);
        assert!(down.pixels().all(|p| p.0 == [10, 200, 255]));
    }

    #[test]
    fn half_pixel_centres_like_opencv() {
        // cv2.resize(np.array([[0, 100, 200, 255]], np.uint8), (8, 1)) ==
        // [0, 25, 75, 125, 175, 214, 241, 255]
        let src = RgbImage::from_fn(4, 1, |x, _| {
            let v = [0u8, 100, 200, 255][x as usize];
            image::Rgb([v, v, v])
        });
        let up: Vec<u8> = resize_linear(&src, 8, 1).pixels().map(|p| p.0[0]).collect();
        assert_eq!(up, [0, 25, 75, 125, 175, 214, 241, 255]);
        // cv2.resize(..., (2, 1)) == [50, 228]: the mean of each pair, no wider filter.
        let down: Vec<u8> = resize_linear(&src, 2, 1).pixels().map(|p| p.0[0]).collect();
        assert_eq!(down, [50, 228]);
    }

    #[test]
    fn zero_target_is_empty() {
        let img = RgbImage::new(4, 4);
        assert_eq!(resize_linear(&img, 0, 3).dimensions(), (0, 3));
    }
}
