//! `kino ocr`: the on-screen text stage on one image or video.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use kino_ocr::TextLine;
use serde_json::json;

use crate::config::{Config, OcrMode};
use crate::engines::{ocr_threads, screen_for, Screen};
use crate::error::usage;
use crate::pipeline::screen::{join_lines, ScreenReader};
use crate::pipeline::OCR_SIDE;

/// A line read, with the span its text was on screen (videos only).
type TimedLine = (TextLine, Option<(i64, i64)>);

/// Extensions read as still images; anything else is decoded as a video.
const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"];

/// `kino ocr FILE [--model DIR] [--json]`: the text of an image, or of a
/// video's frames sampled as the pipeline samples them (1 per second, read
/// only where the picture changed; lines carry the time span their text was
/// on screen).
pub fn ocr(config: &Config, file: &Path, model: Option<&Path>, json: bool, quiet: bool) -> Result<()> {
    if !file.exists() {
        return Err(usage(format!("{}: no such file", file.display())));
    }
    let mut config = config.clone();
    // This command was asked to read, whatever `ocr` says for the pipeline.
    config.ocr = OcrMode::Auto;
    if let Some(dir) = model {
        config.ocr_model = dir.display().to_string();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let screen = screen_for(&config, ocr_threads(cores, false))?.map_err(anyhow::Error::msg)?;
    let is_image = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    let lines: Vec<TimedLine> = if is_image {
        let image = kino_vision::load_image(file)
            .map_err(|e| usage(e.to_string()))?
            .to_rgb8();
        screen
            .ocr
            .read(&image)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
            .into_iter()
            .map(|l| (l, None))
            .collect()
    } else {
        read_video(Arc::new(screen), file, quiet)?
    };
    if json {
        let lines: Vec<_> = lines
            .iter()
            .map(|(l, span)| {
                let mut v = json!({"text": l.text, "score": l.score, "box": l.quad});
                if let Some((s, e)) = span {
                    v["start_ms"] = json!(s);
                    v["end_ms"] = json!(e);
                }
                v
            })
            .collect();
        out!("{}", json!({ "lines": lines }));
    } else {
        for (l, span) in &lines {
            match span {
                Some((s, e)) => out!("{:>9} --> {:<9}  {}", secs(*s), secs(*e), l.text),
                None => out!("{}", l.text),
            }
        }
    }
    Ok(())
}

fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Reads a video's frames where the picture changed: each read's lines,
/// with the span their frame's text stayed on screen (identical
/// consecutive texts are one span).
fn read_video(screen: Arc<Screen>, file: &Path, quiet: bool) -> Result<Vec<TimedLine>> {
    let info = kino_ingest::probe(file).map_err(|e| usage(e.to_string()))?;
    if !info.has_video {
        return Err(usage(format!(
            "{}: no video stream: no picture to read",
            file.display()
        )));
    }
    let opts = kino_ingest::SampleOptions {
        fps: 1.0,
        max_side: Some(OCR_SIDE),
        thumbnail_width: 0,
        ..kino_ingest::SampleOptions::default()
    };
    let mut sampler = kino_ingest::FrameSampler::open(file, &opts).map_err(|e| usage(e.to_string()))?;
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(info.duration_ms.max(1) as u64)
    };
    let mut reader = ScreenReader::new(screen);
    // (since, text, lines) of each read whose text differs from the one before.
    let mut reads: Vec<(i64, String, Vec<TextLine>)> = Vec::new();
    let mut frames = 0u64;
    let mut last_pts = 0;
    for frame in sampler.by_ref() {
        let frame = match frame {
            Ok(f) => f,
            Err(e) if frames == 0 => return Err(usage(e.to_string())),
            Err(e) => {
                say!("warning: {}: decoding stopped early: {e}", file.display());
                break;
            }
        };
        frames += 1;
        last_pts = frame.pts_ms;
        bar.set_position(frame.pts_ms.max(0) as u64);
        let Some(read) = reader.read_lines(frame.pts_ms, &frame.image) else {
            continue;
        };
        let (since, lines) =
            read.map_err(|e| anyhow::anyhow!("{} at {} s: {e}", file.display(), frame.pts_ms / 1000))?;
        let text = join_lines(lines.iter().map(|l| l.text.as_str()));
        if reads.last().is_none_or(|r| r.1 != text) {
            reads.push((since, text, lines));
        }
    }
    let calls = reader.reads;
    bar.finish_and_clear();
    for w in sampler.warnings() {
        say!("warning: {}: {w}", file.display());
    }
    say!(
        "{}: {frames} frames sampled, {calls} read (the rest unchanged)",
        file.display()
    );
    let end = if info.duration_ms > 0 {
        info.duration_ms
    } else {
        last_pts + 1000
    };
    let mut out = Vec::new();
    for (i, (since, _, lines)) in reads.iter().enumerate() {
        let until = reads.get(i + 1).map_or(end, |r| r.0);
        out.extend(lines.iter().cloned().map(|l| (l, Some((*since, until)))));
    }
    Ok(out)
}
