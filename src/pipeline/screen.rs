//! The on-screen text stage: sampled frames → PP-OCR → timed cues with
//! `source = "screen"`.
//!
//! In: the decode pass's frames (at most [`OCR_SIDE`] px on the long side
//! while OCR is on; the vision preprocessor scales its own copy down), the
//! OCR engine ([`Screen`]). Out: per frame, on the decode thread, either
//! the text read now (with the time its picture started to change) or
//! nothing when the picture did not change enough to read it again
//! ([`ChangeGate`]); on the job's thread, [`ScreenCues`] turns those into
//! cues: identical consecutive texts are one cue spanning their time, cut
//! into pieces of at most one segment window so segments never wait long
//! for them.
//!
//! Nothing here fails a job: a frame OCR cannot read is a warning and the
//! video is indexed from everything else.

use image::RgbImage;
use kino_fusion::TimedText;
use kino_store::CueRecord;

use crate::engines::Screen;

/// The source of the cues this stage makes.
pub(crate) const SOURCE: &str = "screen";
/// Frames are decoded at most this large (long side) while OCR is on, so
/// slide text stays legible.
pub(crate) const OCR_SIDE: u32 = 960;

/// Tiles across and down the picture the change test compares.
const TILES_X: usize = 16;
const TILES_Y: usize = 9;
/// Each tile's signature: this many × this many grey levels (area means).
const CELL: usize = 8;
/// A tile changed when one of its cells moved by more than this (0–255).
const CELL_THRESHOLD: i16 = 12;
/// A tile that (or a neighbour of which) changed this often in the last
/// [`MOTION_WINDOW`] comparisons is motion (a presenter, a video inset), not
/// a slide.
const MOTION_CHANGES: u32 = 3;
const MOTION_WINDOW: u32 = 10;
/// When at least this share of the tiles differ from the last read picture
/// (a moving camera), read again once this long has passed since the last.
const WIDE_CHANGE: f32 = 0.5;
const WIDE_CHANGE_EVERY_MS: i64 = 10_000;

/// A frame's grey signature: `TILES_Y × TILES_X` tiles of `CELL × CELL`
/// area means, row-major over the whole `W × H` grid of cells.
#[derive(Debug, Clone, PartialEq)]
struct Signature(Vec<u8>);

const SIG_W: usize = TILES_X * CELL;
const SIG_H: usize = TILES_Y * CELL;

impl Signature {
    fn of(image: &RgbImage) -> Signature {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let mut sums = vec![0u32; SIG_W * SIG_H];
        let mut counts = vec![0u32; SIG_W * SIG_H];
        if w == 0 || h == 0 {
            return Signature(vec![0; SIG_W * SIG_H]);
        }
        for (y, row) in image.as_raw().chunks_exact(w * 3).enumerate() {
            let sy = y * SIG_H / h;
            for (x, px) in row.chunks_exact(3).enumerate() {
                let sx = x * SIG_W / w;
                // Rec. 601 luma, integer.
                let grey = (299 * px[0] as u32 + 587 * px[1] as u32 + 114 * px[2] as u32) / 1000;
                sums[sy * SIG_W + sx] += grey;
                counts[sy * SIG_W + sx] += 1;
            }
        }
        // Pictures smaller than the grid leave cells empty: they take the
        // nearest filled cell to their left or above (no false changes).
        let mut cells: Vec<u8> = sums
            .iter()
            .zip(&counts)
            .map(|(s, c)| if *c > 0 { (s / c) as u8 } else { 0 })
            .collect();
        for i in 0..cells.len() {
            if counts[i] == 0 {
                let (y, x) = (i / SIG_W, i % SIG_W);
                let sy = (y * h / SIG_H).min(h - 1) * SIG_H / h;
                let sx = (x * w / SIG_W).min(w - 1) * SIG_W / w;
                cells[i] = cells[sy * SIG_W + sx];
            }
        }
        Signature(cells)
    }

    /// Per tile: whether a cell of it differs from `other`'s by more than
    /// the threshold.
    fn changed_tiles(&self, other: &Signature) -> [bool; TILES_X * TILES_Y] {
        let mut out = [false; TILES_X * TILES_Y];
        for (i, (a, b)) in self.0.iter().zip(&other.0).enumerate() {
            if (*a as i16 - *b as i16).abs() > CELL_THRESHOLD {
                let (y, x) = (i / SIG_W, i % SIG_W);
                out[(y / CELL) * TILES_X + x / CELL] = true;
            }
        }
        out
    }
}

/// Decides, frame by frame, whether the picture changed enough since the
/// last frame read to read it again: a cheap test on a 128 × 72 grey
/// signature in 16 × 9 tiles.
///
/// A frame is read when a tile differs from the last read frame, has
/// settled (it is the same as in the frame before, so a transition is not
/// read half-way), and is either not motion (neither it nor a neighbour
/// changed 3 times in the last 10 frames: a presenter walking beside a
/// slide does not cause reads) or holds text read last time (burned-in
/// captions). A picture that differs almost everywhere (a moving camera)
/// is read once in each 10 s of the timeline (a fixed grid, so a resumed
/// job reads the frames an uninterrupted run reads). The first frame is
/// always read. A read is dated from the first frame at which its change
/// was seen.
#[derive(Debug, Default)]
pub(crate) struct ChangeGate {
    read: Option<Signature>,
    prev: Option<Signature>,
    history: Vec<u32>,
    text_tiles: Vec<bool>,
    last_read_ms: i64,
    change_seen_ms: Option<i64>,
}

impl ChangeGate {
    /// Whether the frame at `pts_ms` must be read; `Some(since_ms)`: read it,
    /// its text dates from `since_ms` (≤ `pts_ms`).
    pub(crate) fn check(&mut self, pts_ms: i64, image: &RgbImage) -> Option<i64> {
        let sig = Signature::of(image);
        let tiles = TILES_X * TILES_Y;
        if self.history.len() != tiles {
            self.history = vec![0; tiles];
            self.text_tiles = vec![false; tiles];
        }
        let Some(read) = &self.read else {
            self.read = Some(sig.clone());
            self.prev = Some(sig);
            self.last_read_ms = pts_ms;
            return Some(pts_ms);
        };
        let since_read = sig.changed_tiles(read);
        let since_prev = match &self.prev {
            Some(p) => sig.changed_tiles(p),
            None => [false; TILES_X * TILES_Y],
        };
        let mut eligible_change = false;
        let mut settled_change = false;
        let mut wide = 0usize;
        // Motion: a tile or one of its neighbours changed often lately, this
        // comparison included (a presenter moves into tiles it has not yet
        // touched).
        for (h, changed) in self.history.iter_mut().zip(since_prev) {
            *h = (*h << 1) | changed as u32;
        }
        let counts: Vec<u32> = self
            .history
            .iter()
            .map(|h| (h & ((1 << MOTION_WINDOW) - 1)).count_ones())
            .collect();
        for t in 0..tiles {
            let (tx, ty) = (t % TILES_X, t / TILES_X);
            let mut busiest = 0;
            for ny in ty.saturating_sub(1)..=(ty + 1).min(TILES_Y - 1) {
                for nx in tx.saturating_sub(1)..=(tx + 1).min(TILES_X - 1) {
                    busiest = busiest.max(counts[ny * TILES_X + nx]);
                }
            }
            let motion = busiest >= MOTION_CHANGES;
            if !since_read[t] {
                continue;
            }
            wide += 1;
            if !motion || self.text_tiles[t] {
                eligible_change = true;
                if !since_prev[t] {
                    settled_change = true;
                }
            }
        }
        self.prev = Some(sig.clone());
        if eligible_change {
            self.change_seen_ms.get_or_insert(pts_ms);
        } else {
            self.change_seen_ms = None;
        }
        // On a fixed 10-s grid of the timeline (not 10 s after the last read),
        // so a job resumed from a checkpoint reads the frames an uninterrupted
        // run reads.
        let wide_change = wide as f32 >= WIDE_CHANGE * tiles as f32
            && pts_ms.div_euclid(WIDE_CHANGE_EVERY_MS) > self.last_read_ms.div_euclid(WIDE_CHANGE_EVERY_MS);
        if !(settled_change || wide_change) {
            return None;
        }
        let since = self.change_seen_ms.take().unwrap_or(pts_ms).min(pts_ms);
        self.read = Some(sig);
        self.last_read_ms = pts_ms;
        Some(since)
    }

    /// The boxes of the text read last, in the frame's pixels (`width` ×
    /// `height`): their tiles count as text for the next decisions.
    pub(crate) fn set_text_boxes(&mut self, width: u32, height: u32, boxes: &[[[f32; 2]; 4]]) {
        self.text_tiles.iter_mut().for_each(|t| *t = false);
        if width == 0 || height == 0 || self.text_tiles.is_empty() {
            return;
        }
        for quad in boxes {
            let xs = quad.iter().map(|p| p[0]);
            let ys = quad.iter().map(|p| p[1]);
            let tile_x = |x: f32| ((x.max(0.0) / width as f32 * TILES_X as f32) as usize).min(TILES_X - 1);
            let tile_y = |y: f32| ((y.max(0.0) / height as f32 * TILES_Y as f32) as usize).min(TILES_Y - 1);
            let (x0, x1) = (
                tile_x(xs.clone().fold(f32::MAX, f32::min)),
                tile_x(xs.fold(0.0, f32::max)),
            );
            let (y0, y1) = (
                tile_y(ys.clone().fold(f32::MAX, f32::min)),
                tile_y(ys.fold(0.0, f32::max)),
            );
            for ty in y0..=y1 {
                for tx in x0..=x1 {
                    self.text_tiles[ty * TILES_X + tx] = true;
                }
            }
        }
    }
}

/// What the decode thread says about one frame's screen text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScreenRead {
    /// The lines read, in reading order, joined by spaces ("" when none).
    pub text: String,
    /// When the picture read started to show it.
    pub since_ms: i64,
}

/// Reads the text on a decoded frame when [`ChangeGate`] says it changed.
pub(crate) struct ScreenReader {
    screen: std::sync::Arc<Screen>,
    gate: ChangeGate,
    /// Frames read so far (OCR calls).
    pub(crate) reads: u64,
    /// The first failure, kept as a warning for the video.
    pub(crate) warning: Option<String>,
}

impl ScreenReader {
    pub(crate) fn new(screen: std::sync::Arc<Screen>) -> ScreenReader {
        ScreenReader {
            screen,
            gate: ChangeGate::default(),
            reads: 0,
            warning: None,
        }
    }

    /// The frame at `pts_ms`: `Some` when it was read.
    pub(crate) fn frame(&mut self, pts_ms: i64, image: &RgbImage) -> Option<ScreenRead> {
        let (since_ms, lines) = match self.read_lines(pts_ms, image)? {
            Ok(read) => read,
            Err(e) => {
                self.warning
                    .get_or_insert_with(|| format!("on-screen text not read at {} s: {e}", pts_ms / 1000));
                return None;
            }
        };
        Some(ScreenRead {
            text: join_lines(lines.iter().map(|l| l.text.as_str())),
            since_ms,
        })
    }

    /// The frame at `pts_ms` through the change test and, when it changed,
    /// OCR: `None` when not read, else the time its text dates from and its
    /// lines (or why OCR failed). `kino ocr` prints these lines.
    pub(crate) fn read_lines(
        &mut self,
        pts_ms: i64,
        image: &RgbImage,
    ) -> Option<Result<(i64, Vec<kino_ocr::TextLine>), kino_ocr::OcrError>> {
        let since_ms = self.gate.check(pts_ms, image)?;
        self.reads += 1;
        let t = std::time::Instant::now();
        let lines = match self.screen.ocr.read(image) {
            Ok(lines) => lines,
            Err(e) => return Some(Err(e)),
        };
        metrics::histogram!("kino_inference_seconds", "model" => "ocr").record(t.elapsed().as_secs_f64());
        metrics::counter!("kino_ocr_frames_total").increment(1);
        let boxes: Vec<[[f32; 2]; 4]> = lines.iter().map(|l| l.quad).collect();
        self.gate.set_text_boxes(image.width(), image.height(), &boxes);
        Some(Ok((since_ms, lines)))
    }
}

/// The lines of a frame as one text: trimmed, whitespace collapsed, joined
/// by spaces.
pub(crate) fn join_lines<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    lines.flat_map(|l| l.split_whitespace()).collect::<Vec<_>>().join(" ")
}

/// Turns the frames' reads into timed screen cues, on the job's thread.
///
/// Frames come in order: [`ScreenCues::frame`] with the read (when the
/// frame was read) returns the pieces it completed. The text on screen is
/// open until a read shows other text; an open text is cut into pieces at
/// every multiple of `max_piece_ms` (the segment window) so the segment
/// builder never waits long for it.
/// [`ScreenCues::records`] gives the stored cues: consecutive pieces of the
/// same text merged into one.
#[derive(Debug)]
pub(crate) struct ScreenCues {
    max_piece_ms: i64,
    open: Option<(i64, String)>,
    /// No piece from now on starts before this.
    floor: i64,
    records: Vec<CueRecord>,
}

impl ScreenCues {
    pub(crate) fn new(max_piece_ms: i64, start_ms: i64) -> ScreenCues {
        ScreenCues {
            max_piece_ms: max_piece_ms.max(1),
            open: None,
            floor: start_ms,
            records: Vec::new(),
        }
    }

    /// The frame at `pts_ms` passed, with what was read on it (`None`: not
    /// read, the picture is as before).
    pub(crate) fn frame(&mut self, pts_ms: i64, read: Option<&ScreenRead>) -> Vec<TimedText> {
        let mut out = Vec::new();
        if let Some(r) = read {
            let floor = self.watermark();
            let since = r.since_ms.clamp(floor, pts_ms.max(floor));
            let same = self.open.as_ref().is_some_and(|(_, t)| *t == r.text);
            if !same {
                // A text replaced at the instant it was opened did not last.
                if self.open.as_ref().is_some_and(|(start, _)| since > *start) {
                    self.close_at(since, &mut out);
                }
                self.open = (!r.text.is_empty()).then(|| (since, r.text.clone()));
                self.floor = since;
            }
        }
        // An open text is cut on the segment window's grid (each piece lies
        // in one fixed window, so a window never holds the same text twice).
        while let Some((start, text)) = &self.open {
            let cut = (start.div_euclid(self.max_piece_ms) + 1) * self.max_piece_ms;
            if cut > pts_ms {
                break;
            }
            let text = text.clone();
            self.close_at(cut, &mut out);
            self.open = Some((cut, text));
        }
        if self.open.is_none() {
            self.floor = self.floor.max(pts_ms);
        }
        out
    }

    /// No screen cue pushed from now on starts before this.
    pub(crate) fn watermark(&self) -> i64 {
        match &self.open {
            Some((start, _)) => *start,
            None => self.floor,
        }
    }

    /// The video ended at `end_ms`: the open text's last piece.
    pub(crate) fn finish(&mut self, end_ms: i64) -> Vec<TimedText> {
        let mut out = Vec::new();
        self.close_at(end_ms, &mut out);
        out
    }

    fn close_at(&mut self, end_ms: i64, out: &mut Vec<TimedText>) {
        let Some((start, text)) = self.open.take() else {
            return;
        };
        let end = end_ms.max(start + 1);
        match self.records.last_mut() {
            Some(last) if last.text == text && last.end_ms == start => last.end_ms = end,
            _ => self.records.push(CueRecord {
                start_ms: start,
                end_ms: end,
                text: text.clone(),
                source: SOURCE.into(),
                language: None,
            }),
        }
        out.push(TimedText {
            start_ms: start,
            end_ms: end,
            text,
            source: SOURCE.into(),
            embedding: Vec::new(),
        });
    }

    /// The cues to store: identical consecutive texts merged.
    pub(crate) fn records(&self) -> &[CueRecord] {
        &self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn slide(text_rows: &[u32], presenter_x: Option<u32>) -> RgbImage {
        let mut img = RgbImage::from_pixel(960, 540, Rgb([255, 255, 255]));
        for &row in text_rows {
            for y in row..row + 20 {
                for x in (40..600).step_by(9) {
                    for dx in 0..5 {
                        img.put_pixel(x + dx, y, Rgb([0, 0, 0]));
                    }
                }
            }
        }
        if let Some(px) = presenter_x {
            for y in 200..500 {
                for x in px..px + 80 {
                    img.put_pixel(x, y, Rgb([200, 60, 40]));
                }
            }
        }
        img
    }

    #[test]
    fn static_slides_are_read_once_each_whatever_the_presenter_does() {
        let mut gate = ChangeGate::default();
        let mut reads = Vec::new();
        for s in 0..60i64 {
            let rows: &[u32] = if s < 20 {
                &[40, 100]
            } else if s < 45 {
                &[40, 160, 220]
            } else {
                &[300]
            };
            // A presenter walking to and fro on the right third.
            let px = 660 + ((s * 37) % 200) as u32;
            if let Some(since) = gate.check(s * 1000, &slide(rows, Some(px))) {
                reads.push((s * 1000, since));
            }
        }
        let times: Vec<i64> = reads.iter().map(|r| r.1).collect();
        assert_eq!(times, [0, 20_000, 45_000], "reads: {reads:?}");
        // Read one frame after the change (it had to settle), dated from it.
        assert_eq!(reads[1].0, 21_000);
    }

    #[test]
    fn a_new_bullet_on_a_blank_part_of_the_slide_is_read() {
        let mut gate = ChangeGate::default();
        let mut n = 0;
        for s in 0..10i64 {
            let rows: &[u32] = if s < 5 { &[40] } else { &[40, 200] };
            n += gate.check(s * 1000, &slide(rows, None)).is_some() as u32;
        }
        assert_eq!(n, 2);
    }

    #[test]
    fn compression_noise_is_not_a_change() {
        let mut gate = ChangeGate::default();
        let base = slide(&[40, 100], None);
        let mut n = 0;
        for s in 0..20i64 {
            let mut img = base.clone();
            for (i, p) in img.pixels_mut().enumerate() {
                let d = ((i as i64 * 7 + s * 13) % 9) as u8;
                p.0[0] = p.0[0].saturating_sub(d);
                p.0[1] = p.0[1].saturating_sub(d);
            }
            n += gate.check(s * 1000, &img).is_some() as u32;
        }
        assert_eq!(n, 1);
    }

    #[test]
    fn a_moving_camera_is_read_every_ten_seconds_at_most() {
        let mut gate = ChangeGate::default();
        let mut n = 0;
        for s in 0..60i64 {
            let mut img = RgbImage::new(320, 180);
            for (x, y, p) in img.enumerate_pixels_mut() {
                let v = ((x as i64 * 5 + y as i64 * 3 + s * 40) % 256) as u8;
                *p = Rgb([v, v, v]);
            }
            n += gate.check(s * 1000, &img).is_some() as u32;
        }
        assert!((2..=7).contains(&n), "{n} reads");
    }

    #[test]
    fn tiny_frames_do_not_panic() {
        let mut gate = ChangeGate::default();
        assert_eq!(gate.check(0, &RgbImage::new(1, 1)), Some(0));
        assert_eq!(gate.check(1000, &RgbImage::new(1, 1)), None);
        gate.set_text_boxes(1, 1, &[[[0.0, 0.0], [5.0, 0.0], [5.0, 5.0], [0.0, 5.0]]]);
        assert_eq!(gate.check(2000, &RgbImage::new(0, 0)), None);
    }

    fn read(text: &str, since_ms: i64) -> ScreenRead {
        ScreenRead {
            text: text.into(),
            since_ms,
        }
    }

    #[test]
    fn identical_texts_are_one_cue_cut_into_window_pieces() {
        let mut cues = ScreenCues::new(10_000, 0);
        let mut pieces = Vec::new();
        for s in 0..40i64 {
            let r = match s {
                0 => Some(read("Intro", 0)),
                12 => Some(read("Intro", 12_000)), // read again, same text
                25 => Some(read("Results 42%", 24_000)),
                33 => Some(read("", 33_000)),
                _ => None,
            };
            pieces.extend(cues.frame(s * 1000, r.as_ref()));
            assert!(cues.watermark() <= s * 1000);
        }
        pieces.extend(cues.finish(40_000));
        let spans: Vec<(i64, i64, &str)> = pieces.iter().map(|p| (p.start_ms, p.end_ms, p.text.as_str())).collect();
        assert_eq!(
            spans,
            [
                (0, 10_000, "Intro"),
                (10_000, 20_000, "Intro"),
                (20_000, 24_000, "Intro"),
                (24_000, 30_000, "Results 42%"),
                (30_000, 33_000, "Results 42%"),
            ]
        );
        let records: Vec<(i64, i64, &str)> = cues
            .records()
            .iter()
            .map(|c| (c.start_ms, c.end_ms, c.text.as_str()))
            .collect();
        assert_eq!(records, [(0, 24_000, "Intro"), (24_000, 33_000, "Results 42%")]);
        // Pieces come in start order and never before the watermark.
        assert!(pieces.windows(2).all(|w| w[0].start_ms <= w[1].start_ms));
    }

    #[test]
    fn joined_lines_collapse_whitespace() {
        assert_eq!(
            join_lines(["  Hello  world ", "", "2 x"].into_iter()),
            "Hello world 2 x"
        );
    }
}
