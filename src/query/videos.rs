//! Video-level search: "which video is about …". A video's score combines
//! its whole-video document (the pooled vector of its whole text, and its
//! best window) with its best moment (today's segment scoring), so a talk
//! whose subject no single 10-second segment states is still found, and a
//! video without words is still found by what it shows.
//!
//! Also the windows an answer reads beyond the top moments
//! ([`Engine::answer_windows`]): the best windows of the best videos, cut
//! into sentences, each with the time span of the cues it came from.

use std::collections::HashMap;

use anyhow::Result;
use kino_fusion::score::Passage;
use kino_fusion::Moment as FusionMoment;
use kino_store::DocumentHit;
use kino_web::{BestMoment, VideoResult};

use super::Engine;
use crate::pipeline::document::sentence_spans;

/// Weight of the document's pooled vector in a video's score.
const W_DOCUMENT: f32 = 0.5;
/// Weight of the best window.
const W_WINDOW: f32 = 0.2;
/// Weight of the best moment.
const W_MOMENT: f32 = 0.3;
/// Best moments per video result.
const MOMENTS_PER_VIDEO: usize = 3;
/// Moments ranked over the whole library to find each video's best one.
const LIBRARY_MOMENTS: usize = 100;

/// How a video matched: its document (when it has one) and its best moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoScore {
    /// Cosine of the query with the document's pooled vector.
    pub document: Option<f32>,
    /// Cosine with its best window.
    pub window: Option<f32>,
    /// Score of its best moment.
    pub moment: Option<f32>,
}

impl VideoScore {
    /// The combined score: the weighted sum of what it has; a video with
    /// no text is ranked by its best moment alone.
    pub fn combined(&self) -> f32 {
        match (self.document, self.window, self.moment) {
            (Some(d), w, m) => {
                let w = w.unwrap_or(d);
                let m = m.unwrap_or(w);
                W_DOCUMENT * d + W_WINDOW * w + W_MOMENT * m
            }
            (None, _, Some(m)) => m,
            (None, Some(w), None) => w,
            (None, None, None) => f32::NEG_INFINITY,
        }
    }
}

impl Engine {
    /// `kino search --by video`: the `k` videos that best answer `query`,
    /// each with its best moments.
    pub async fn search_videos(&self, query: &str, k: usize) -> Result<Vec<VideoResult>> {
        let q = self.embed(query)?;
        let k = k.max(1);
        let unit = kino_fusion::vecmath::normalized(&q);
        let docs: HashMap<i64, DocumentHit> = self
            .store
            .with_documents(|d| d.scores(&unit, 1))
            .await?
            .into_iter()
            .map(|h| (h.video_id, h))
            .collect();
        let library = self.moments(&q, LIBRARY_MOMENTS, None).await?;
        let mut moments: HashMap<i64, Vec<FusionMoment>> = HashMap::new();
        for m in library {
            moments.entry(m.video_id).or_default().push(m);
        }
        // Candidates: every video with a document or a moment; the best by
        // document that had no moment in the library's top list get their
        // own moments (a per-video scan) so their score is complete.
        let mut ids: Vec<i64> = docs.keys().chain(moments.keys()).copied().collect();
        ids.sort_unstable();
        ids.dedup();
        let score_of = |id: i64, moments: &HashMap<i64, Vec<FusionMoment>>| VideoScore {
            document: docs.get(&id).map(|h| h.document),
            window: docs.get(&id).and_then(|h| h.windows.first().map(|w| w.3)),
            moment: moments.get(&id).and_then(|m| m.first().map(|m| m.score)),
        };
        let mut by_document: Vec<i64> = docs.keys().copied().filter(|id| !moments.contains_key(id)).collect();
        by_document.sort_by(|a, b| docs[b].document.total_cmp(&docs[a].document));
        for id in by_document.into_iter().take(k * 2) {
            let own = self.moments(&q, MOMENTS_PER_VIDEO, Some(id)).await?;
            if !own.is_empty() {
                moments.insert(id, own);
            }
        }
        let mut ranked: Vec<(f32, i64)> = ids.iter().map(|&id| (score_of(id, &moments).combined(), id)).collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.truncate(k);

        let mut out = Vec::with_capacity(ranked.len());
        for (score, id) in ranked {
            let Some(video) = self.store.video(id).await? else {
                continue;
            };
            let mut best: Vec<(f32, BestMoment)> = moments
                .get(&id)
                .map(|ms| {
                    ms.iter()
                        .take(MOMENTS_PER_VIDEO)
                        .map(|m| {
                            (
                                m.score,
                                BestMoment {
                                    start_ms: m.start_ms,
                                    end_ms: m.end_ms,
                                    text: m.text.clone(),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            // The best window of its whole text, unless a moment already
            // covers its start.
            if let Some(&(idx, start, end, s)) = docs.get(&id).and_then(|h| h.windows.first()) {
                let covered = best
                    .iter()
                    .any(|(_, m)| m.start_ms <= start && start < m.end_ms && end <= m.end_ms);
                if !covered {
                    if let Some(w) = self.store.document_windows(id, &[idx]).await?.into_iter().next() {
                        best.push((
                            s,
                            BestMoment {
                                start_ms: start,
                                end_ms: end,
                                text: w.text,
                            },
                        ));
                    }
                }
            }
            best.sort_by(|a, b| b.0.total_cmp(&a.0));
            best.truncate(MOMENTS_PER_VIDEO);
            out.push(VideoResult {
                video_id: id,
                path: video.path,
                score,
                duration_ms: video.facts.duration_ms,
                best_moments: best.into_iter().map(|(_, m)| m).collect(),
            });
        }
        Ok(out)
    }

    /// The best windows of the best videos for the query vector `q`, as
    /// moments whose passages are the windows' sentences, each with the
    /// time span of the cues it came from (what an answer cites).
    pub(super) async fn answer_windows(&self, q: &[f32], videos: usize, windows: usize) -> Result<Vec<FusionMoment>> {
        let unit = kino_fusion::vecmath::normalized(q);
        let mut hits = self.store.with_documents(|d| d.scores(&unit, windows)).await?;
        hits.sort_by(|a, b| {
            let best = |h: &DocumentHit| W_DOCUMENT * h.document + W_WINDOW * h.windows.first().map_or(0.0, |w| w.3);
            best(b).total_cmp(&best(a))
        });
        let mut out = Vec::new();
        for hit in hits.into_iter().take(videos) {
            let Some(doc) = self.store.document(hit.video_id).await? else {
                continue;
            };
            let idxs: Vec<i64> = hit.windows.iter().map(|w| w.0).collect();
            let stored = self.store.document_windows(hit.video_id, &idxs).await?;
            for (w, (_, start, end, score)) in stored.iter().zip(&hit.windows) {
                let (from, to) = (w.start_byte.max(0) as usize, w.end_byte.max(0) as usize);
                let Some(body) = doc.text.get(from..to) else { continue };
                let passages: Vec<Passage> = sentence_spans(body)
                    .into_iter()
                    .filter_map(|(s, e)| {
                        let (start_ms, end_ms) = doc.span_of(from + s, from + e)?;
                        Some(Passage {
                            segment_id: -1,
                            start_ms,
                            end_ms,
                            text: body[s..e].to_string(),
                            tags: Vec::new(),
                        })
                    })
                    .collect();
                out.push(FusionMoment {
                    video_id: hit.video_id,
                    start_ms: *start,
                    end_ms: *end,
                    score: *score,
                    text: w.text.clone(),
                    tags: Vec::new(),
                    segment_ids: Vec::new(),
                    passages,
                    text_score: Some(*score),
                    visual_score: None,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_carries_the_score_and_a_video_without_text_is_ranked_by_its_moment() {
        let about = VideoScore {
            document: Some(0.6),
            window: Some(0.5),
            moment: Some(0.4),
        };
        let one_line = VideoScore {
            document: Some(0.3),
            window: Some(0.45),
            moment: Some(0.55),
        };
        assert!(about.combined() > one_line.combined());
        let pictures = VideoScore {
            document: None,
            window: None,
            moment: Some(0.3),
        };
        assert!((pictures.combined() - 0.3).abs() < 1e-6);
        let nothing = VideoScore {
            document: None,
            window: None,
            moment: None,
        };
        assert_eq!(nothing.combined(), f32::NEG_INFINITY);
    }
}
