//! Text→video recall: everything that does not depend on the projection is computed once, so the trainer can
//! evaluate often.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::batch::project;
use super::{Projection, TrainVideo};
use crate::FusionError;

/// Cosine above which two cues count as the same text.
const SAME_TEXT: f32 = 0.99;
/// Queries scored per matrix product (bounds memory on large held-out sets).
const QUERY_CHUNK: usize = 1024;

/// The fixed part of a recall evaluation over some videos.
pub(super) struct Evaluator {
    /// Raw pooled vectors of all frames that fall in a segment, `F × V`, row-major.
    frames: Vec<f32>,
    visual_dim: usize,
    /// The segment of each frame.
    segment_of: Vec<u32>,
    segments: usize,
    /// The video of each segment.
    video_of: Vec<u32>,
    /// Number of videos.
    videos: usize,
    /// Query embeddings, `Q × D`, row-major.
    queries: Vec<f32>,
    text_dim: usize,
    /// Per query, the videos that count as a hit (ascending, never empty).
    relevant: Vec<Vec<u32>>,
}

fn floor_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b)
}

impl Evaluator {
    /// Prepares recall over `videos` with segments of `segment_ms`: the cues of the first `query_videos` videos are
    /// the queries, the segments of all of them the candidates (the rest are distractors, whose cues only count
    /// for the same-text rule). Queries whose relevant segments hold no frame are left out (no projection could
    /// find them).
    pub fn new(videos: &[&TrainVideo], query_videos: usize, segment_ms: i64) -> Result<Self, FusionError> {
        let seg = segment_ms.max(1);
        let visual_dim = videos
            .iter()
            .flat_map(|v| &v.frames)
            .map(|f| f.pooled.len())
            .next()
            .unwrap_or(0);
        let text_dim = videos
            .iter()
            .flat_map(|v| &v.cues)
            .map(|c| c.embedding.len())
            .next()
            .unwrap_or(0);
        let mut ids: HashMap<(usize, i64), u32> = HashMap::new();
        let (mut frames, mut segment_of, mut video_of) = (Vec::new(), Vec::new(), Vec::new());
        for (vi, v) in videos.iter().enumerate() {
            for f in &v.frames {
                let next = ids.len() as u32;
                let id = *ids.entry((vi, floor_div(f.pts_ms, seg))).or_insert_with(|| {
                    video_of.push(vi as u32);
                    next
                });
                frames.extend_from_slice(&f.pooled);
                segment_of.push(id);
            }
        }
        // The segments each cue overlaps, and all cues in one flat list.
        let mut overlaps: Vec<Vec<u32>> = Vec::new();
        let mut embeddings: Vec<f32> = Vec::new();
        for (vi, v) in videos.iter().enumerate() {
            for c in &v.cues {
                let (s, e) = (c.start_ms, c.end_ms.max(c.start_ms + 1));
                let segs = (floor_div(s, seg)..=floor_div(e - 1, seg)).filter_map(|k| ids.get(&(vi, k)).copied());
                overlaps.push(segs.collect());
                embeddings.extend_from_slice(&c.embedding);
            }
        }
        let m = overlaps.len();
        let query_cues: usize = videos
            .iter()
            .take(query_videos)
            .map(|v| v.cues.len())
            .sum::<usize>()
            .min(m);
        let mut relevant: Vec<Vec<u32>> = overlaps.clone();
        if m > 0 && text_dim > 0 {
            // Near-identical cues (repeated subtitles) share their relevant segments, within and across videos.
            let all = Tensor::from_slice(&embeddings, (m, text_dim), &Device::Cpu)?;
            let all_t = all.t()?;
            for start in (0..query_cues).step_by(QUERY_CHUNK) {
                let len = QUERY_CHUNK.min(query_cues - start);
                let sims = all.narrow(0, start, len)?.matmul(&all_t)?.to_vec2::<f32>()?;
                for (r, row) in sims.iter().enumerate() {
                    let q = start + r;
                    for (other, &s) in row.iter().enumerate() {
                        if s > SAME_TEXT && other != q && !overlaps[other].is_empty() {
                            relevant[q].extend_from_slice(&overlaps[other]);
                        }
                    }
                }
            }
        }
        let mut queries = Vec::new();
        let mut kept = Vec::new();
        for (q, rel) in relevant.into_iter().enumerate().take(query_cues) {
            if rel.is_empty() {
                continue;
            }
            // Relevant segments → their videos.
            let mut rel: Vec<u32> = rel.iter().map(|&s| video_of[s as usize]).collect();
            rel.sort_unstable();
            rel.dedup();
            queries.extend_from_slice(&embeddings[q * text_dim..(q + 1) * text_dim]);
            kept.push(rel);
        }
        Ok(Self {
            frames,
            visual_dim,
            segment_of,
            segments: ids.len(),
            video_of,
            videos: videos.len(),
            queries,
            text_dim,
            relevant: kept,
        })
    }

    /// Number of queries that can be scored.
    pub fn queries(&self) -> usize {
        self.relevant.len()
    }

    /// (recall@1, recall@5) of `p`; (0, 0) without queries.
    pub fn evaluate(&self, p: &Projection) -> Result<(f64, f64), FusionError> {
        let q = self.queries();
        if q == 0 || self.segments == 0 {
            return Ok((0.0, 0.0));
        }
        for (context, expected, got) in [
            (
                "recall: frame width against the projection",
                p.visual_dim,
                self.visual_dim,
            ),
            ("recall: cue width against the projection", p.text_dim, self.text_dim),
        ] {
            if expected != got {
                return Err(FusionError::Dimension {
                    context: context.into(),
                    expected,
                    got,
                });
            }
        }
        let dev = Device::Cpu;
        let (d, v) = (self.text_dim, self.visual_dim);
        let x = Tensor::from_slice(&self.frames, (self.segment_of.len(), v), &dev)?;
        let w = Tensor::from_slice(&p.weight, (d, v), &dev)?;
        let b = Tensor::from_slice(&p.bias, d, &dev)?;
        let y = project(&x, &w, &b)?.to_vec2::<f32>()?;
        let mut segs = vec![0f32; self.segments * d];
        for (row, &s) in y.iter().zip(&self.segment_of) {
            let acc = &mut segs[s as usize * d..(s as usize + 1) * d];
            acc.iter_mut().zip(row).for_each(|(a, x)| *a += x);
        }
        segs.chunks_mut(d).for_each(crate::vecmath::normalize);
        let segs_t = Tensor::from_vec(segs, (self.segments, d), &dev)?.t()?;
        let queries = Tensor::from_slice(&self.queries, (q, d), &dev)?;
        let (mut hit1, mut hit5) = (0usize, 0usize);
        for start in (0..q).step_by(QUERY_CHUNK) {
            let len = QUERY_CHUNK.min(q - start);
            let scores = queries.narrow(0, start, len)?.matmul(&segs_t)?.to_vec2::<f32>()?;
            for (r, row) in scores.iter().enumerate() {
                // A video scores as its best segment.
                let mut by_video = vec![f32::NEG_INFINITY; self.videos];
                for (s, &score) in row.iter().enumerate() {
                    let v = self.video_of[s] as usize;
                    by_video[v] = by_video[v].max(score);
                }
                let rel = &self.relevant[start + r];
                let best = rel
                    .iter()
                    .map(|&v| by_video[v as usize])
                    .fold(f32::NEG_INFINITY, f32::max);
                let above = by_video
                    .iter()
                    .enumerate()
                    .filter(|&(v, &s)| s > best && rel.binary_search(&(v as u32)).is_err())
                    .count();
                hit1 += usize::from(above < 1);
                hit5 += usize::from(above < 5);
            }
        }
        Ok((hit1 as f64 / q as f64, hit5 as f64 / q as f64))
    }
}
