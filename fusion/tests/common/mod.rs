//! Helpers shared by the tests that use the real default text model.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use kino_fusion::{Candidate, FrameVisual, FusionModel, SegmentInputs, Segmenter, TimedText};
use kino_language::SentenceEncoder;

/// `KINO_TEST_TEXT_MODEL`, else the default model's place under `$HOME`.
pub fn model_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KINO_TEST_TEXT_MODEL") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set");
    PathBuf::from(home).join(".local/share/kino/models/sentence-transformers/all-MiniLM-L6-v2")
}

/// The text model, loaded once; panics with a clear message when it is absent.
pub fn encoder() -> &'static SentenceEncoder {
    static ENC: OnceLock<SentenceEncoder> = OnceLock::new();
    ENC.get_or_init(|| {
        let dir = model_dir();
        assert!(
            dir.join("model.safetensors").is_file(),
            "the default text model is missing at {}: run scripts/setup or set KINO_TEST_TEXT_MODEL",
            dir.display()
        );
        SentenceEncoder::load(&dir).unwrap_or_else(|e| panic!("cannot load the text model at {}: {e}", dir.display()))
    })
}

/// Embeds with the real model.
pub fn embed(texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
    Ok(encoder().encode(texts)?)
}

/// Segments, fuses and indexes one video the way the pipeline does.
pub fn index_video(
    video_id: i64,
    duration_ms: i64,
    frames: &[FrameVisual],
    cues: &[TimedText],
    model: &FusionModel,
    out: &mut Vec<Candidate>,
) {
    let segments = Segmenter::default().segment(duration_ms, frames, cues).unwrap();
    for seg in segments.iter().filter(|s| !s.is_empty()) {
        let labels = if seg.label_text.is_empty() {
            None
        } else {
            Some(embed(&[&seg.label_text]).unwrap().remove(0))
        };
        let inputs = SegmentInputs {
            text: seg.cues.iter().map(|&(i, _)| cues[i].embedding.clone()).collect(),
            text_weights: seg.cues.iter().map(|&(_, w)| w).collect(),
            grids: vec![],
            labels,
            pooled: None,
        };
        let fused = model.fuse(&inputs).unwrap();
        out.push(Candidate {
            segment_id: out.len() as i64 + 1,
            video_id,
            start_ms: seg.start_ms,
            end_ms: seg.end_ms,
            fused: fused.fused,
            text: fused.text,
            visual: fused.visual,
            transcript: seg.text.clone(),
            tags: seg.tags.clone(),
        });
    }
}

/// Subtitle cues `(start_ms, end_ms, text)` with their real embeddings.
pub fn timed(cues: &[(i64, i64, &str)]) -> Vec<TimedText> {
    let texts: Vec<&str> = cues.iter().map(|c| c.2).collect();
    let embeddings = embed(&texts).unwrap();
    cues.iter()
        .zip(embeddings)
        .map(|(&(start_ms, end_ms, text), embedding)| TimedText {
            start_ms,
            end_ms,
            text: text.to_string(),
            source: "subtitle".into(),
            embedding,
        })
        .collect()
}
