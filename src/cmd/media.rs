//! `kino probe`, `kino frames`, `kino subtitles` (the ingest crate).

use std::path::Path;

use anyhow::{Context, Result};
use kino_ingest::{FrameSampler, IngestError, SampleOptions};

use crate::cli::SampleMode;
use crate::error::usage;

/// Maps an ingest error to exit code 2 (bad input) or 1 (machine trouble).
fn classify(err: IngestError) -> anyhow::Error {
    if err.is_bad_input() {
        usage(err.to_string())
    } else {
        anyhow::Error::new(err)
    }
}

/// `kino probe FILE`.
pub fn probe(file: &Path, json: bool) -> Result<()> {
    let info = kino_ingest::probe(file).map_err(classify)?;
    if json {
        out!("{}", serde_json::to_string(&info)?);
    } else {
        out!("file:       {}", file.display());
        out!("container:  {}", info.container);
        out!("duration:   {:.3} s", info.duration_ms as f64 / 1000.0);
        if info.has_video {
            out!(
                "video:      {} {}x{} (displayed {}x{}, rotation {}°) {:.3} fps",
                info.video_codec.as_deref().unwrap_or("?"),
                info.width,
                info.height,
                info.display_width,
                info.display_height,
                info.rotation,
                info.fps
            );
        } else {
            out!("video:      none");
        }
        out!("audio:      {}", info.audio_codec.as_deref().unwrap_or("none"));
        for s in &info.subtitle_streams {
            out!(
                "subtitles:  stream {} {} {}{}",
                s.index,
                s.codec,
                s.language.as_deref().unwrap_or("und"),
                if s.text { "" } else { " (bitmap, not read)" }
            );
        }
    }
    Ok(())
}

/// `kino frames FILE --fps F --out DIR`.
pub fn frames(file: &Path, fps: f64, sample: SampleMode, out: &Path, json: bool) -> Result<()> {
    if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
        return Err(usage(format!("--fps must be in (0, 1000], got {fps}")));
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create output folder", out.display()))?;
    let opts = SampleOptions {
        fps,
        mode: match sample {
            SampleMode::Fps => kino_ingest::SampleMode::Fps,
            SampleMode::Keyframes => kino_ingest::SampleMode::Keyframes,
        },
        thumbnail_width: 0,
        ..SampleOptions::default()
    };
    let mut sampler = FrameSampler::open(file, &opts).map_err(classify)?;
    let mut written = Vec::new();
    for frame in sampler.by_ref() {
        let frame = frame.map_err(classify)?;
        let name = format!("{:09}.png", frame.pts_ms.max(0));
        let path = out.join(&name);
        kino_ingest::write_png(&frame.image, &path).map_err(anyhow::Error::new)?;
        if !json {
            out!("{}", path.display());
        }
        written.push(serde_json::json!({"pts_ms": frame.pts_ms, "file": path}));
    }
    for w in sampler.warnings() {
        say!("warning: {}: {w}", file.display());
    }
    if json {
        out!("{}", serde_json::Value::Array(written));
    }
    Ok(())
}

/// `kino subtitles FILE`.
pub fn subtitles(file: &Path, json: bool) -> Result<()> {
    let set = kino_ingest::subtitles::read_cues(file).map_err(classify)?;
    for w in &set.warnings {
        say!("warning: {w}");
    }
    if json {
        out!(
            "{}",
            serde_json::to_string(&serde_json::json!({"cues": set.cues, "warnings": set.warnings}))?
        );
    } else {
        for c in &set.cues {
            out!(
                "{} --> {}  [{}] {}",
                fmt_ms(c.start_ms),
                fmt_ms(c.end_ms),
                c.origin,
                c.text.replace('\n', " / ")
            );
        }
    }
    Ok(())
}

fn fmt_ms(ms: i64) -> String {
    let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        h,
        rem / 60_000,
        (rem % 60_000) / 1000,
        rem % 1000
    )
}
