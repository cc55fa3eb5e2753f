//! Parity with rapidocr 3.10 on the fixtures of
//! `scripts/fixtures/ocr_reference.py`: character error rate ≤ 1 % per image
//! and every matched box's corners within 3 px of the reference's.

mod common;

use common::{edit_distance, fixtures, load};
use serde_json::Value;

/// Largest corner distance between two boxes.
fn corner_gap(a: &[[f32; 2]; 4], b: &[[f32; 2]; 4]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (p[0] - q[0]).hypot(p[1] - q[1]))
        .fold(0.0, f32::max)
}

fn quad(v: &Value) -> [[f32; 2]; 4] {
    let p = |i: usize, j: usize| v[i][j].as_f64().unwrap() as f32;
    [
        [p(0, 0), p(0, 1)],
        [p(1, 0), p(1, 1)],
        [p(2, 0), p(2, 1)],
        [p(3, 0), p(3, 1)],
    ]
}

#[test]
fn matches_rapidocr_on_the_fixtures() {
    let ocr = load();
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    for img in reference["images"].as_array().unwrap() {
        let file = img["file"].as_str().unwrap();
        let rgb = image::open(fixtures().join(file)).unwrap().to_rgb8();
        let lines = ocr.read(&rgb).unwrap_or_else(|e| panic!("{file}: {e}"));
        let refs = img["lines"].as_array().unwrap();
        let want: String = refs.iter().map(|l| l["text"].as_str().unwrap()).collect();
        let got: String = lines.iter().map(|l| l.text.as_str()).collect();
        let dist = edit_distance(&want, &got);
        let cer = if want.is_empty() {
            dist as f64
        } else {
            dist as f64 / want.chars().count() as f64
        };
        // Match each reference line to the unused line whose box is nearest.
        let mut used = vec![false; lines.len()];
        let mut worst = 0f32;
        for r in refs {
            let rq = quad(&r["box"]);
            let best = (0..lines.len())
                .filter(|&i| !used[i])
                .min_by(|&a, &b| corner_gap(&lines[a].quad, &rq).total_cmp(&corner_gap(&lines[b].quad, &rq)));
            if let Some(i) = best {
                used[i] = true;
                worst = worst.max(corner_gap(&lines[i].quad, &rq));
            }
        }
        println!(
            "{file}: {} lines (reference {}), CER {:.2} % ({dist} edits / {} chars), worst corner gap {worst:.2} px",
            lines.len(),
            refs.len(),
            cer * 100.0,
            want.chars().count()
        );
        for (l, r) in lines.iter().zip(refs) {
            println!(
                "    {:?} {:.5} | ref {:?} {}",
                l.text,
                l.score,
                r["text"].as_str().unwrap(),
                r["score"]
            );
        }
        if cer > 0.01 || worst > 3.0 || lines.len() != refs.len() {
            failures.push(format!(
                "{file}: CER {:.2} %, corner gap {worst:.2} px, {} vs {} lines",
                cer * 100.0,
                lines.len(),
                refs.len()
            ));
        }
    }
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));
}

#[test]
fn an_8k_frame_is_read_after_downscaling() {
    let ocr = load();
    let slide = image::open(fixtures().join("slide_en.png")).unwrap().to_rgb8();
    let big = image::imageops::resize(&slide, 7680, 4320, image::imageops::FilterType::Nearest);
    let lines = ocr.read(&big).unwrap();
    let text: String = lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join(" ");
    println!("8K: {text}");
    assert!(text.contains("Quarterly results 2024"), "{text}");
    assert!(lines
        .iter()
        .all(|l| l.quad.iter().all(|p| p[0] <= 7680.0 && p[1] <= 4320.0)));
    assert!(
        lines[0].quad[2][0] > 1000.0,
        "boxes are in the 8K frame's pixels: {:?}",
        lines[0].quad
    );
}

#[test]
fn tiny_and_empty_images_give_no_lines() {
    let ocr = load();
    for (w, h) in [(1, 1), (3, 2), (0, 0), (1, 500), (8000, 10)] {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
        assert!(ocr.read(&img).unwrap().is_empty(), "{w}x{h}");
    }
}

#[test]
fn serialises_the_box_as_box() {
    let line = kino_ocr::TextLine {
        text: "a".into(),
        score: 0.5,
        quad: [[0.0, 1.0]; 4],
    };
    let v = serde_json::to_value(&line).unwrap();
    assert_eq!(v["box"][0][1], 1.0);
    assert!(v.get("quad").is_none());
}
