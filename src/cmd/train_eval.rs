//! What `kino train` measures on held-out videos: the library cut into
//! segments the way the index cuts it, each with its label embedding, mean
//! pooled vector and mean token grid (read from the kept features one grid
//! at a time), and two recalls of a candidate set of fusion weights:
//!
//! * [`visual_recall`]: text→video, each video searched by what it shows
//!   alone (segments fused from their frames, as a video without any words
//!   is indexed); every held-out cue is a query;
//! * [`cue_recall`]: every cue of a held-out segment left out of its
//!   segment, which is fused from the rest (other cues and frames), must be
//!   found in it ([`kino_fusion::train_fusion::held_out_cue_recall`]).

use std::collections::HashMap;

use anyhow::{Context, Result};
use kino_fusion::align::Segmenter;
use kino_fusion::train::TrainCue;
use kino_fusion::train_fusion::{held_out_cue_recall, FusionSegment};
use kino_fusion::vecmath::dot;
use kino_fusion::{AlignedSegment, FusionModel, TimedText};
use kino_language::SentenceEncoder;

use crate::pipeline::features::{frame_visual, segment_grids};

/// One video of the evaluation (and of stage 2's training examples).
pub struct EvalVideo {
    /// Segments cut from the frames alone, with no text: `(start, end, segment)`.
    pub wordless: Vec<(i64, i64, FusionSegment)>,
    /// Segments cut as the index cuts them, with their cues.
    pub with_text: Vec<FusionSegment>,
    /// Its cues (what counts as the same text as a query).
    pub cues: Vec<TrainCue>,
    /// Whether its cues are queries (a held-out video), or it only competes.
    pub queries: bool,
}

/// Label embeddings by label text.
pub type LabelCache = HashMap<String, Vec<f32>>;

impl EvalVideo {
    /// Reads a video's kept features (`features`) and cuts its segments.
    pub fn read(
        features: &std::path::Path,
        duration_ms: Option<i64>,
        cues: &[TrainCue],
        queries: bool,
        segmenter: &Segmenter,
        text: &SentenceEncoder,
        labels: &mut LabelCache,
    ) -> Result<EvalVideo> {
        let frames = kino_fusion::features::read_without_grids(features)
            .with_context(|| format!("reading {}", features.display()))?;
        let duration = duration_ms.filter(|d| *d > 0);
        let mut cues: Vec<TrainCue> = cues.to_vec();
        cues.sort_by_key(|c| (c.start_ms, c.end_ms));
        let timed: Vec<TimedText> = cues
            .iter()
            .map(|c| TimedText {
                start_ms: c.start_ms,
                end_ms: c.end_ms,
                // The segmenter keeps only cues with text; the text itself is not read here.
                text: "·".into(),
                source: "cue".into(),
                embedding: c.embedding.clone(),
            })
            .collect();
        // Twice through the segmenter: without the cues, and with them.
        let cut = |with_cues: bool| -> Result<Vec<AlignedSegment>> {
            let mut builder = segmenter.builder(duration)?;
            let mut aligned = Vec::new();
            if with_cues {
                for (i, c) in timed.iter().enumerate() {
                    aligned.extend(builder.push_cue_with_index(i, c)?);
                }
            }
            aligned.extend(builder.end_cues());
            for (i, f) in frames.iter().enumerate() {
                aligned.extend(builder.push_frame_with_index(i, &frame_visual(f))?);
            }
            aligned.extend(builder.finish());
            Ok(aligned)
        };
        let wordless = cut(false)?;
        let with_text = cut(true)?;
        let all: Vec<Vec<usize>> = wordless
            .iter()
            .chain(&with_text)
            .map(|s| s.frame_indices.clone())
            .collect();
        let mut grids = segment_grids(features, &all)?.into_iter();
        let mut segment = |seg: &AlignedSegment, grid: Option<kino_fusion::VisualGrid>| -> Result<FusionSegment> {
            let label = if seg.label_text.is_empty() {
                None
            } else if let Some(e) = labels.get(&seg.label_text) {
                Some(e.clone())
            } else {
                let e = text.encode_one(&seg.label_text)?;
                labels.insert(seg.label_text.clone(), e.clone());
                Some(e)
            };
            Ok(FusionSegment {
                cues: seg.cues.iter().map(|(i, _)| timed[*i].embedding.clone()).collect(),
                weights: seg.cues.iter().map(|(_, w)| *w).collect(),
                labels: label,
                pooled: crate::pipeline::mean_pooled(
                    seg.frame_indices
                        .iter()
                        .filter_map(|i| frames.get(*i))
                        .map(|f| f.pooled.as_slice()),
                ),
                grid,
            })
        };
        let mut out_wordless = Vec::with_capacity(wordless.len());
        for seg in &wordless {
            let grid = grids.next().flatten();
            out_wordless.push((seg.start_ms, seg.end_ms, segment(seg, grid)?));
        }
        let mut out_text = Vec::with_capacity(with_text.len());
        for seg in &with_text {
            let grid = grids.next().flatten();
            if !seg.cues.is_empty() {
                out_text.push(segment(seg, grid)?);
            }
        }
        Ok(EvalVideo {
            wordless: out_wordless,
            with_text: out_text,
            cues,
            queries,
        })
    }
}

/// Text→video recall@1 and @5 of `model` on the held-out videos searched
/// by what they show alone: each wordless segment (of every video given)
/// is fused from its frames, and a video scores as its best segment; each
/// held-out cue is a query; a hit is its own video or one where a cue with
/// the same text falls on a segment. Ties count against the query.
pub fn visual_recall(model: &FusionModel, videos: &[EvalVideo]) -> Result<(f64, f64)> {
    // (video, start, end, vector)
    let mut segments: Vec<(usize, i64, i64, Vec<f32>)> = Vec::new();
    for (vi, v) in videos.iter().enumerate() {
        for (start, end, seg) in &v.wordless {
            match model.fuse(&seg.inputs(None)) {
                Ok(f) => segments.push((vi, *start, *end, f.fused)),
                Err(kino_fusion::FusionError::NothingToFuse) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let all_cues: Vec<(usize, &TrainCue)> = videos
        .iter()
        .enumerate()
        .flat_map(|(vi, v)| v.cues.iter().map(move |c| (vi, c)))
        .collect();
    let queries: Vec<(usize, &TrainCue)> = all_cues.iter().filter(|(vi, _)| videos[*vi].queries).copied().collect();
    if queries.is_empty() {
        return Ok((0.0, 0.0));
    }
    let overlaps = |c: &TrainCue, s: i64, e: i64| c.start_ms < e && c.end_ms.max(c.start_ms + 1) > s;
    let (mut hit1, mut hit5) = (0usize, 0usize);
    for (vi, q) in &queries {
        // The query's cue and every cue with the same text, in any video.
        let same: Vec<(usize, &TrainCue)> = std::iter::once((*vi, *q))
            .chain(
                all_cues
                    .iter()
                    .filter(|(_, o)| dot(&o.embedding, &q.embedding) > 0.99)
                    .copied(),
            )
            .collect();
        let mut best = vec![f32::NEG_INFINITY; videos.len()];
        let mut hit = vec![false; videos.len()];
        for (svi, s, e, vector) in &segments {
            best[*svi] = best[*svi].max(dot(&q.embedding, vector));
            hit[*svi] |= same.iter().any(|(ovi, o)| ovi == svi && overlaps(o, *s, *e));
        }
        let Some(best_hit) = (0..videos.len()).filter(|&v| hit[v]).map(|v| best[v]).reduce(f32::max) else {
            continue;
        };
        let rank = 1 + (0..videos.len()).filter(|&v| !hit[v] && best[v] >= best_hit).count();
        hit1 += usize::from(rank == 1);
        hit5 += usize::from(rank <= 5);
    }
    let n = queries.len() as f64;
    Ok((hit1 as f64 / n, hit5 as f64 / n))
}

/// Held-out cue recall@1 of `model` and the number of queries (see the
/// module docs); the training videos' segments compete.
pub fn cue_recall(model: &FusionModel, videos: &[EvalVideo]) -> Result<(f64, usize)> {
    let (segments, queries): (Vec<&FusionSegment>, Vec<bool>) = videos
        .iter()
        .flat_map(|v| v.with_text.iter().map(|s| (s, v.queries)))
        .unzip();
    let (r1, _, n) = held_out_cue_recall(model, &segments, &queries)?;
    Ok((r1, n))
}

/// The training examples of stage 2: the training videos' segments with text.
pub fn training_segments(videos: &[EvalVideo]) -> Vec<FusionSegment> {
    videos
        .iter()
        .filter(|v| !v.queries)
        .flat_map(|v| v.with_text.iter().cloned())
        .collect()
}
