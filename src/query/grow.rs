//! Growing the best moments past the shortlist.
//!
//! A moment grows from its seed through the segments beside it in time that
//! score within `merge_margin` of the seed ([`kino_fusion::score::plan_scored`]). The
//! ranking sees only the candidates the search scored, so on a large
//! library a neighbour just below the shortlist's cut could not join its
//! moment. Before ranking, the segments beside the best candidates are read
//! and scored, walking outwards from each while they could still join its
//! moment: every segment a top moment could grow through is then among the
//! candidates, however short the shortlist.

use std::collections::HashMap;

use kino_fusion::score::RankOptions;
use kino_store::{SearchHit, SegmentView, VectorIndex};

/// Adds to `hits` (best first, as search gives them) the segments that the
/// first `seeds` of them could grow into as moments under `opts`, each
/// scored by `score`; returns how many were added. Segments scored already
/// are not read again.
pub(crate) fn grow_past_shortlist(
    idx: &VectorIndex,
    hits: &mut Vec<SearchHit>,
    seeds: usize,
    opts: &RankOptions,
    score: &mut impl FnMut(&SegmentView<'_>) -> Option<f32>,
) -> kino_store::Result<usize> {
    let mut known: HashMap<i64, SearchHit> = hits.iter().map(|h| (h.segment_id, *h)).collect();
    let best: Vec<SearchHit> = hits.iter().take(seeds).copied().collect();
    let before = hits.len();
    let mut scratch = Vec::new();
    for seed in best {
        let floor = seed.score - opts.merge_margin;
        for later in [false, true] {
            let mut edge = seed;
            while let Some(id) = idx.beside(edge.segment_id, later) {
                let next = match known.get(&id) {
                    Some(h) => *h,
                    None => match idx.score_one(id, &mut scratch, |e| score(e))? {
                        Some(h) => {
                            known.insert(id, h);
                            hits.push(h);
                            h
                        }
                        None => break,
                    },
                };
                let (gap, span) = if later {
                    (next.start_ms - edge.end_ms, next.end_ms - seed.start_ms)
                } else {
                    (edge.start_ms - next.end_ms, seed.end_ms - next.start_ms)
                };
                if next.score < floor || gap > opts.max_gap_ms || span > opts.max_moment_ms {
                    break;
                }
                edge = next;
            }
        }
    }
    Ok(hits.len() - before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kino_fusion::score;
    use kino_store::IndexedSegment;

    /// One video of ten 10-second segments whose fused vectors score
    /// `scores[i]` against the query [1, 0].
    fn video(scores: &[f32]) -> VectorIndex {
        let mut idx = VectorIndex::default();
        for (i, s) in scores.iter().enumerate() {
            let i = i as i64;
            idx.insert(IndexedSegment {
                segment_id: 100 + i,
                video_id: 1,
                start_ms: i * 10_000,
                end_ms: (i + 1) * 10_000,
                fused: vec![*s, (1.0 - s * s).max(0.0).sqrt()],
                text: None,
                visual: None,
            })
            .expect("insert");
        }
        idx
    }

    fn scorer(e: &SegmentView<'_>) -> Option<f32> {
        Some(e.fused[0])
    }

    #[test]
    fn a_seeds_neighbours_within_the_margin_join_whatever_the_shortlist() {
        // Segment 104 is the best; 103, 105 and 106 are within 0.05 of it,
        // 102 and 107 are not.
        let idx = video(&[0.1, 0.2, 0.5, 0.88, 0.9, 0.87, 0.86, 0.3, 0.2, 0.1]);
        let opts = RankOptions::default();
        let mut hits = vec![idx
            .score_one(104, &mut Vec::new(), scorer)
            .expect("read")
            .expect("scored")];
        let added = grow_past_shortlist(&idx, &mut hits, 1, &opts, &mut scorer).expect("grow");
        let mut ids: Vec<i64> = hits.iter().map(|h| h.segment_id).collect();
        ids.sort();
        // Each side's walk stops at (and keeps) the first that cannot join.
        assert_eq!(ids, vec![102, 103, 104, 105, 106, 107]);
        assert_eq!(added, 5);
        let s = |id: i64| hits.iter().find(|h| h.segment_id == id).map(|h| h.score);
        assert!((s(106).unwrap_or(0.0) - 0.86).abs() < 1e-6);

        // The planner then grows the moment over all of them.
        let candidates: Vec<score::Candidate> = hits
            .iter()
            .map(|h| score::Candidate {
                segment_id: h.segment_id,
                video_id: h.video_id,
                start_ms: h.start_ms,
                end_ms: h.end_ms,
                fused: vec![h.score, (1.0 - h.score * h.score).max(0.0).sqrt()],
                text: None,
                visual: None,
                transcript: String::new(),
                tags: Vec::new(),
            })
            .collect();
        let moments = score::rank_with(&[1.0, 0.0], &candidates, 1, &score::Weights::default(), &opts).expect("rank");
        assert_eq!((moments[0].start_ms, moments[0].end_ms), (30_000, 70_000));
    }

    #[test]
    fn known_segments_are_not_read_again_and_the_walk_keeps_to_the_longest_moment() {
        let idx = video(&[0.9; 10]);
        let opts = RankOptions {
            max_moment_ms: 30_000,
            ..RankOptions::default()
        };
        let mut hits: Vec<SearchHit> = [104, 105]
            .iter()
            .map(|&id| {
                idx.score_one(id, &mut Vec::new(), scorer)
                    .expect("read")
                    .expect("scored")
            })
            .collect();
        let mut reads = 0;
        let mut counting = |e: &SegmentView<'_>| {
            reads += 1;
            scorer(e)
        };
        grow_past_shortlist(&idx, &mut hits, 2, &opts, &mut counting).expect("grow");
        let mut ids: Vec<i64> = hits.iter().map(|h| h.segment_id).collect();
        ids.sort();
        // From 104: back to 102 (30 s from 102 to 104's end), then 101 is
        // too far; forward to 106, then 107 ends the walk. From 105: 103…108.
        assert_eq!(ids, vec![101, 102, 103, 104, 105, 106, 107, 108]);
        assert_eq!(reads, 6, "each new segment is read once");
    }

    #[test]
    fn no_seeds_no_reads() {
        let idx = video(&[0.9; 3]);
        let mut hits = vec![idx
            .score_one(101, &mut Vec::new(), scorer)
            .expect("read")
            .expect("scored")];
        let added = grow_past_shortlist(&idx, &mut hits, 0, &RankOptions::default(), &mut scorer).expect("grow");
        assert_eq!((added, hits.len()), (0, 1));
    }
}
