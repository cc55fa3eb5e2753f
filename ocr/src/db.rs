//! Boxes from the text detector's probability map: rapidocr's `DBPostProcess`
//! (threshold, 2×2 dilation, contours, minimum-area rectangles, "fast" box
//! score, round-joined unclip offset) and `filter_det_res`.

use geo::{
    Area, Buffer, ConvexHull, Coord, Euclidean, Length, LineString, MinimumRotatedRect, MultiPoint, Point, Polygon,
};
use image::GrayImage;

/// A quadrilateral, corners as (x, y).
pub type Quad = [[f32; 2]; 4];

/// rapidocr's default DB settings (`config.yaml`, `Det:`).
#[derive(Debug, Clone, Copy)]
pub struct DbParams {
    /// Probability above which a pixel is text.
    pub thresh: f32,
    /// Least mean probability inside a kept box.
    pub box_thresh: f32,
    /// Contours looked at, at most.
    pub max_candidates: usize,
    /// How far boxes grow: area × ratio / perimeter.
    pub unclip_ratio: f64,
    /// Shortest side a box may have before growing (after: this + 2).
    pub min_size: f64,
}

impl Default for DbParams {
    fn default() -> Self {
        DbParams {
            thresh: 0.3,
            box_thresh: 0.5,
            max_candidates: 1000,
            unclip_ratio: 1.6,
            min_size: 3.0,
        }
    }
}

/// Snaps values within float noise of an integer onto it, as OpenCV's
/// rectangles of integer contours come out.
fn snap(v: f64) -> f64 {
    if (v - v.round()).abs() < 1e-4 {
        v.round()
    } else {
        v
    }
}

/// `get_mini_boxes`: the minimum-area rectangle of `points`, corners ordered
/// as rapidocr orders them, and its shorter side. `None` for degenerate input.
pub fn mini_box(points: &[[f64; 2]]) -> Option<([[f64; 2]; 4], f64)> {
    let mp: MultiPoint<f64> = points.iter().map(|p| Point::new(p[0], p[1])).collect();
    let rect = mp.minimum_rotated_rect()?;
    let ring = &rect.exterior().0;
    if ring.len() < 5 {
        return None;
    }
    let mut pts: Vec<[f64; 2]> = ring[..4].iter().map(|c| [snap(c.x), snap(c.y)]).collect();
    let d = |a: [f64; 2], b: [f64; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let sside = d(pts[0], pts[1]).min(d(pts[1], pts[2]));
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (i1, i4) = if pts[1][1] > pts[0][1] { (0, 1) } else { (1, 0) };
    let (i2, i3) = if pts[3][1] > pts[2][1] { (2, 3) } else { (3, 2) };
    Some(([pts[i1], pts[i2], pts[i3], pts[i4]], sside))
}

/// `box_score_fast`: the mean of `pred` (`w` × `h`) inside `quad`, filled as
/// `cv2.fillPoly` fills it.
pub fn box_score_fast(pred: &[f32], w: usize, h: usize, quad: &[[f64; 2]; 4]) -> f32 {
    let clampi = |v: f64, hi: usize| (v as i64).clamp(0, hi as i64 - 1) as usize;
    let xmin = clampi(quad.iter().map(|p| p[0]).fold(f64::MAX, f64::min).floor(), w);
    let xmax = clampi(quad.iter().map(|p| p[0]).fold(f64::MIN, f64::max).ceil(), w);
    let ymin = clampi(quad.iter().map(|p| p[1]).fold(f64::MAX, f64::min).floor(), h);
    let ymax = clampi(quad.iter().map(|p| p[1]).fold(f64::MIN, f64::max).ceil(), h);
    // Corners relative to the window, truncated as `astype(np.int32)` does.
    let pts: Vec<[f64; 2]> = quad
        .iter()
        .map(|p| [(p[0] - xmin as f64).trunc(), (p[1] - ymin as f64).trunc()])
        .collect();
    let (mut sum, mut n) = (0f64, 0usize);
    for r in 0..=(ymax - ymin) {
        let y = r as f64;
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for i in 0..4 {
            let (a, b) = (pts[i], pts[(i + 1) % 4]);
            if y < a[1].min(b[1]) || y > a[1].max(b[1]) {
                continue;
            }
            if a[1] == b[1] {
                lo = lo.min(a[0].min(b[0]));
                hi = hi.max(a[0].max(b[0]));
            } else {
                let x = a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
        if lo > hi {
            continue;
        }
        let x0 = (lo.round().max(0.0) as usize).min(xmax - xmin + 1);
        let x1 = hi.round().min((xmax - xmin) as f64);
        if x1 < 0.0 {
            continue;
        }
        for x in x0..=(x1 as usize) {
            sum += pred[(ymin + r) * w + xmin + x] as f64;
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        (sum / n as f64) as f32
    }
}

/// `unclip`: `quad` grown by area × `ratio` / perimeter with round joins, as
/// pyclipper does it (integer corners in, integer points out).
pub fn unclip(quad: &[[f64; 2]; 4], ratio: f64) -> Vec<[f64; 2]> {
    let exact = Polygon::new(
        LineString::from(quad.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>()),
        vec![],
    );
    let perimeter = Euclidean.length(exact.exterior());
    if perimeter <= 0.0 {
        return Vec::new();
    }
    let distance = exact.unsigned_area() * ratio / perimeter;
    let ints: Vec<Coord<f64>> = quad
        .iter()
        .map(|p| Coord {
            x: p[0].trunc(),
            y: p[1].trunc(),
        })
        .collect();
    let poly = Polygon::new(LineString::from(ints), vec![]).convex_hull();
    if distance <= 0.0 || poly.unsigned_area() <= 0.0 {
        return Vec::new();
    }
    poly.buffer(distance)
        .0
        .iter()
        .flat_map(|p| p.exterior().0.iter().map(|c| [c.x.round(), c.y.round()]))
        .collect()
}

/// `order_points_clockwise`: tl, tr, br, bl by x then y, stable.
pub fn order_clockwise(pts: &[[f32; 2]; 4]) -> Quad {
    let mut xs = *pts;
    xs.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (mut left, mut right) = ([xs[0], xs[1]], [xs[2], xs[3]]);
    left.sort_by(|a, b| a[1].total_cmp(&b[1]));
    right.sort_by(|a, b| a[1].total_cmp(&b[1]));
    [left[0], right[0], right[1], left[1]]
}

/// Boxes and their scores from the `w` × `h` map `pred`, in the coordinates of
/// the `dest_w` × `dest_h` image the map was computed for, filtered as
/// `filter_det_res` does (not yet in reading order).
pub fn boxes_from_map(
    pred: &[f32],
    w: usize,
    h: usize,
    dest_w: usize,
    dest_h: usize,
    p: &DbParams,
) -> Vec<(Quad, f32)> {
    if w == 0 || h == 0 {
        return Vec::new();
    }
    // Threshold, then dilate with a 2×2 kernel anchored at its (1, 1) corner.
    let bin: Vec<bool> = pred.iter().map(|&v| v > p.thresh).collect();
    let mask = GrayImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let hit = bin[y * w + x]
            || (x > 0 && bin[y * w + x - 1])
            || (y > 0 && bin[(y - 1) * w + x])
            || (x > 0 && y > 0 && bin[(y - 1) * w + x - 1]);
        image::Luma([if hit { 255 } else { 0 }])
    });
    let contours = imageproc::contours::find_contours::<i32>(&mask);
    let mut out = Vec::new();
    for contour in contours.iter().take(p.max_candidates) {
        let pts: Vec<[f64; 2]> = contour.points.iter().map(|q| [q.x as f64, q.y as f64]).collect();
        let Some((quad, sside)) = mini_box(&pts) else { continue };
        if sside < p.min_size {
            continue;
        }
        let score = box_score_fast(pred, w, h, &quad);
        if p.box_thresh > score {
            continue;
        }
        let grown = unclip(&quad, p.unclip_ratio);
        let Some((quad, sside)) = mini_box(&grown) else {
            continue;
        };
        if sside < p.min_size + 2.0 {
            continue;
        }
        let scale =
            |v: f64, from: usize, to: usize| (v / from as f64 * to as f64).round_ties_even().clamp(0.0, to as f64);
        let mapped = quad.map(|q| [scale(q[0], w, dest_w) as f32, scale(q[1], h, dest_h) as f32]);
        // filter_det_res: order, clip to the image, drop boxes 3 px or thinner.
        let clip = |v: f32, hi: usize| v.max(0.0).min(hi as f32 - 1.0).trunc();
        let ordered = order_clockwise(&mapped).map(|q| [clip(q[0], dest_w), clip(q[1], dest_h)]);
        let norm = |a: [f32; 2], b: [f32; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt() as i64;
        if norm(ordered[0], ordered[1]) <= 3 || norm(ordered[0], ordered[3]) <= 3 {
            continue;
        }
        out.push((ordered, score));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mini_box_orders_corners_and_measures_short_side() {
        let pts = [[2.0, 3.0], [12.0, 3.0], [12.0, 8.0], [2.0, 8.0], [7.0, 3.0]];
        let (quad, sside) = mini_box(&pts).unwrap();
        assert_eq!(quad, [[2.0, 3.0], [12.0, 3.0], [12.0, 8.0], [2.0, 8.0]]);
        assert!((sside - 5.0).abs() < 1e-9);
    }

    #[test]
    fn unclip_grows_like_pyclipper() {
        // pyclipper, JT_ROUND, distance 2 on [[0.7,0.7],[10.9,0.7],[10.9,5.9],[0.7,5.9]]
        // gives points spanning x -2..12, y -2..7; cv2.minAreaRect of them is 14 × 9.
        let quad = [[0.7, 0.7], [10.9, 0.7], [10.9, 5.9], [0.7, 5.9]];
        // area 53.04 × ratio / perimeter 30.8 = 2 → ratio 2 × 30.8 / 53.04.
        let grown = unclip(&quad, 2.0 * 30.8 / 53.04);
        let (quad, sside) = mini_box(&grown).unwrap();
        assert_eq!(quad, [[-2.0, -2.0], [12.0, -2.0], [12.0, 7.0], [-2.0, 7.0]]);
        assert!((sside - 9.0).abs() < 1e-9);
    }

    #[test]
    fn map_to_boxes() {
        // One 40 × 8 bar of probability 0.9 in a 64 × 32 map, mapped to 128 × 64.
        let (w, h) = (64, 32);
        let mut pred = vec![0.0f32; w * h];
        for y in 10..18 {
            for x in 10..50 {
                pred[y * w + x] = 0.9;
            }
        }
        let boxes = boxes_from_map(&pred, w, h, 128, 64, &DbParams::default());
        assert_eq!(boxes.len(), 1);
        // rapidocr's DBPostProcess on the same map: [[10,10],[110,10],[110,46],[10,46]], 0.78049.
        let (q, score) = boxes[0];
        assert!((score - 0.780_487_8).abs() < 1e-5, "{score}");
        assert_eq!(q, [[10.0, 10.0], [110.0, 10.0], [110.0, 46.0], [10.0, 46.0]]);
    }

    #[test]
    fn order_clockwise_sorts_corners() {
        let q = order_clockwise(&[[10.0, 5.0], [0.0, 0.0], [0.0, 5.0], [10.0, 0.0]]);
        assert_eq!(q, [[0.0, 0.0], [10.0, 0.0], [10.0, 5.0], [0.0, 5.0]]);
    }
}
