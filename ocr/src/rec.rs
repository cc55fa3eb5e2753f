//! The text recogniser (CTC): rapidocr's `TextRecognizer` — lines in batches
//! of 6 by aspect ratio, 48 px high and as wide as the batch's widest ratio
//! (at least 320/48), greedy CTC decoding over the model's own character list.

use std::sync::Mutex;

use image::RgbImage;
use ort::session::Session;

use crate::cls::{by_aspect, put_normalised, resized_width};
use crate::{runtime, OcrError};

/// Input height and least width (`rec_img_shape`).
const H: usize = 48;
const MIN_W: usize = 320;
/// Lines per batch (`rec_batch_num`).
const BATCH: usize = 6;

/// Python's `str.splitlines()`: the line boundaries it knows, `\r\n` as one.
pub fn split_lines(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(std::mem::take(&mut cur));
            }
            '\n' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                out.push(std::mem::take(&mut cur));
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The decoder's table from the model's `character` metadata: `blank` at 0,
/// the listed characters, then a space.
pub fn character_table(meta: &str) -> Vec<String> {
    let mut table = vec!["blank".to_string()];
    table.extend(split_lines(meta));
    table.push(" ".to_string());
    table
}

/// Python's `round(v, 5)` closely enough for scores.
fn round5(v: f64) -> f64 {
    (v * 1e5).round_ties_even() / 1e5
}

/// Greedy CTC decoding of one line's `t × c` probabilities: repeats merged,
/// blanks (0) dropped; the score is the mean of the kept steps' probabilities
/// (each rounded to 5 places, as rapidocr does), 0 when none is kept.
pub fn ctc_decode(probs: &[f32], t: usize, c: usize, table: &[String]) -> (String, f32) {
    let mut text = String::new();
    let mut confs = Vec::new();
    let mut prev = usize::MAX;
    for step in 0..t {
        let row = &probs[step * c..(step + 1) * c];
        let best = (0..c).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        if best != 0 && best != prev {
            text.push_str(table.get(best).map(String::as_str).unwrap_or(""));
            confs.push(round5(row[best] as f64));
        }
        prev = best;
    }
    let score = if confs.is_empty() {
        0.0
    } else {
        confs.iter().sum::<f64>() / confs.len() as f64
    };
    (text, round5(score) as f32)
}

/// Text and score of each line, in the order given.
pub fn recognise(
    session: &Mutex<Session>,
    table: &[String],
    imgs: &[RgbImage],
) -> Result<Vec<(String, f32)>, OcrError> {
    let mut out = vec![(String::new(), 0.0f32); imgs.len()];
    let order = by_aspect(imgs);
    for chunk in order.chunks(BATCH) {
        let ratio = |i: usize| imgs[i].width() as f64 / imgs[i].height() as f64;
        let max_ratio = chunk.iter().map(|&i| ratio(i)).fold(MIN_W as f64 / H as f64, f64::max);
        let w = (H as f64 * max_ratio) as usize;
        let mut data = vec![0f32; chunk.len() * 3 * H * w];
        for (k, &i) in chunk.iter().enumerate() {
            let rw = resized_width(imgs[i].width(), imgs[i].height(), H, w);
            put_normalised(&imgs[i], H, w, rw, &mut data[k * 3 * H * w..(k + 1) * 3 * H * w]);
        }
        let (shape, probs) = runtime::run(session, "recognition", [chunk.len(), 3, H, w], &data)?;
        let (t, c) = match shape[..] {
            [n, t, c] if n == chunk.len() && c > 0 => (t, c),
            _ => {
                return Err(OcrError::Inference {
                    stage: "recognition",
                    reason: format!("output shape {shape:?}"),
                })
            }
        };
        for (k, &i) in chunk.iter().enumerate() {
            out[i] = ctc_decode(&probs[k * t * c..(k + 1) * t * c], t, c, table);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_blank_first_and_space_last() {
        let t = character_table("a\nb\r\nc\u{2028}d");
        assert_eq!(t, ["blank", "a", "b", "c", "d", " "]);
    }

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let table = character_table("a\nb");
        // steps: a a blank a b b blank
        let ids = [1, 1, 0, 1, 2, 2, 0];
        let c = 4;
        let mut probs = vec![0.0f32; ids.len() * c];
        for (s, &id) in ids.iter().enumerate() {
            probs[s * c + id] = 0.9;
            probs[s * c + (id + 1) % c] = 0.05;
        }
        probs[4 * c + 2] = 0.6; // the first b is less sure
        let (text, score) = ctc_decode(&probs, ids.len(), c, &table);
        assert_eq!(text, "aab");
        assert!((score - (0.9 + 0.9 + 0.6) / 3.0).abs() < 1e-5, "{score}");
        let (empty, zero) = ctc_decode(&[1.0, 0.0, 0.0, 0.0], 1, c, &table);
        assert_eq!((empty.as_str(), zero), ("", 0.0));
    }
}
