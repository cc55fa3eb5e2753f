//! Query scoring: segments ranked against a query embedding, neighbouring matches merged into moments.
//!
//! A segment's score is the weighted mean of the cosine similarities between the query and the segment's fused,
//! text-only and visual-only vectors, over the vectors the segment has ([`Weights`]; a segment without text is
//! scored on its fused and visual vectors alone, renormalised, so that a silent shot of a cat can rank first for
//! "a cat").
//!
//! Moments are built greedily from the best segment down: a seed takes in the neighbouring segments of the same
//! video (gap at most [`RankOptions::max_gap_ms`]) whose score is within [`RankOptions::merge_margin`] of its own,
//! up to [`RankOptions::max_moment_ms`]; the moment's score is its seed's. Each segment is in at most one moment.

use std::collections::HashMap;

use crate::FusionError;

/// Weights of the three similarities. Defaults: fused 0.5, text 0.3, visual 0.2 — the fused vector carries both
/// sides already; the text-only similarity sharpens matches on what is said, the visual-only one on what is seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Weight of the similarity to the fused vector.
    pub fused: f32,
    /// Weight of the similarity to the text-only vector.
    pub text: f32,
    /// Weight of the similarity to the visual-only vector.
    pub visual: f32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            fused: 0.5,
            text: 0.3,
            visual: 0.2,
        }
    }
}

/// How segments merge into moments. Defaults: merge_margin 0.05, max_gap_ms 1000, max_moment_ms 60 000,
/// min_score −1 (no floor).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankOptions {
    /// A neighbour joins a moment when its score is at least the seed's minus this.
    pub merge_margin: f32,
    /// Largest gap between two segments that still counts as neighbouring, in ms.
    pub max_gap_ms: i64,
    /// A moment stops growing at this length, in ms.
    pub max_moment_ms: i64,
    /// Segments scoring below this start no moment.
    pub min_score: f32,
}

impl Default for RankOptions {
    fn default() -> Self {
        Self {
            merge_margin: 0.05,
            max_gap_ms: 1_000,
            max_moment_ms: 60_000,
            min_score: -1.0,
        }
    }
}

/// A stored segment, as the query side sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Segment id.
    pub segment_id: i64,
    /// Video id.
    pub video_id: i64,
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Fused vector (may be empty when a segment has none).
    pub fused: Vec<f32>,
    /// Text-only vector.
    pub text: Option<Vec<f32>>,
    /// Visual-only vector.
    pub visual: Option<Vec<f32>>,
    /// Transcript text.
    pub transcript: String,
    /// Visual tags, best first.
    pub tags: Vec<String>,
}

/// One segment's part of a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// The segment.
    pub segment_id: i64,
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Its transcript.
    pub text: String,
    /// Its tags.
    pub tags: Vec<String>,
}

/// A ranked stretch of one video.
#[derive(Debug, Clone, PartialEq)]
pub struct Moment {
    /// Video id.
    pub video_id: i64,
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Score (that of its best segment).
    pub score: f32,
    /// Transcript of the moment (text repeated across segment boundaries appears once).
    pub text: String,
    /// Tags of its segments, best segment's first, without repeats.
    pub tags: Vec<String>,
    /// Its segments, in time order.
    pub segment_ids: Vec<i64>,
    /// Its segments' transcripts and tags, in time order (for citations).
    pub passages: Vec<Passage>,
    /// Best text-only similarity among its segments (`None` when none has text).
    pub text_score: Option<f32>,
    /// Best visual-only similarity among its segments (`None` when none has visual concepts).
    pub visual_score: Option<f32>,
}

/// One candidate's score and the similarities it is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// The weighted mean of the similarities the segment has.
    pub score: f32,
    /// Its text-only similarity (`None` without a text vector).
    pub text: Option<f32>,
    /// Its visual-only similarity (`None` without a visual vector).
    pub visual: Option<f32>,
}

fn sim(query: &[f32], v: &[f32], ids: (i64, i64), what: &str) -> Result<f32, FusionError> {
    if v.len() != query.len() {
        return Err(FusionError::Dimension {
            context: format!("{what} vector of segment {} (video {})", ids.0, ids.1),
            expected: query.len(),
            got: v.len(),
        });
    }
    // `query` is unit length (see `score_parts`): the dot product and the norm in one pass.
    let (d, sq) = crate::vecmath::dot_and_squares(query, v);
    let n = sq.sqrt();
    Ok(if n > 0.0 && n.is_finite() { d / n } else { 0.0 })
}

/// Scores one candidate: the weighted mean of the similarities it has.
pub fn score(query: &[f32], c: &Candidate, w: &Weights) -> Result<f32, FusionError> {
    Ok(score_parts(query, c, w)?.score)
}

fn score_parts(query: &[f32], c: &Candidate, w: &Weights) -> Result<Scores, FusionError> {
    let q = crate::vecmath::normalized(query);
    score_unit(&q, c, w)
}

fn score_unit(query: &[f32], c: &Candidate, w: &Weights) -> Result<Scores, FusionError> {
    let v = SegmentVectors {
        fused: &c.fused,
        text: c.text.as_deref(),
        visual: c.visual.as_deref(),
    };
    score_unit_parts(query, &v, (c.segment_id, c.video_id), w)
}

/// Borrowed vectors of one segment, for scoring without copying them (e.g. straight from an index).
#[derive(Debug, Clone, Copy)]
pub struct SegmentVectors<'a> {
    /// Fused vector (may be empty).
    pub fused: &'a [f32],
    /// Text-only vector.
    pub text: Option<&'a [f32]>,
    /// Visual-only vector.
    pub visual: Option<&'a [f32]>,
}

/// [`score`] for borrowed vectors and a query that is already unit length (normalise it once per query with
/// [`crate::vecmath::normalized`]). `ids` (segment, video) only name the segment in errors.
pub fn score_unit_vectors(
    unit_query: &[f32],
    v: &SegmentVectors<'_>,
    ids: (i64, i64),
    w: &Weights,
) -> Result<f32, FusionError> {
    Ok(score_unit_parts(unit_query, v, ids, w)?.score)
}

/// [`score_unit_vectors`] with the similarities the score is made of, for
/// [`plan_scored`].
pub fn score_unit_parts(
    query: &[f32],
    v: &SegmentVectors<'_>,
    ids: (i64, i64),
    w: &Weights,
) -> Result<Scores, FusionError> {
    let mut sum = 0.0;
    let mut total = 0.0;
    if !v.fused.is_empty() {
        sum += w.fused * sim(query, v.fused, ids, "fused")?;
        total += w.fused;
    }
    let text = v.text.map(|t| sim(query, t, ids, "text")).transpose()?;
    let visual = v.visual.map(|x| sim(query, x, ids, "visual")).transpose()?;
    if let Some(s) = text {
        sum += w.text * s;
        total += w.text;
    }
    if let Some(s) = visual {
        sum += w.visual * s;
        total += w.visual;
    }
    let score = if total > 0.0 { sum / total } else { 0.0 };
    Ok(Scores { score, text, visual })
}

/// The best `k` moments for `query` under the default [`Weights`] and [`RankOptions`].
pub fn rank(query: &[f32], candidates: &[Candidate], k: usize) -> Result<Vec<Moment>, FusionError> {
    rank_with(query, candidates, k, &Weights::default(), &RankOptions::default())
}

/// The best `k` moments for `query`. Fails when a candidate's vectors differ in width from the query (an index
/// built with another text model).
pub fn rank_with(
    query: &[f32],
    candidates: &[Candidate],
    k: usize,
    weights: &Weights,
    opts: &RankOptions,
) -> Result<Vec<Moment>, FusionError> {
    Ok(plan_with(query, candidates, k, weights, opts)?.moments(candidates))
}

/// The moments [`rank_with`] builds, before they are built: which candidates each one joins. Ranking reads only
/// the candidates' times and vectors, so a caller can rank candidates whose words it has not read yet, read the
/// words of [`Ranking::members`] only, and then build the [`Ranking::moments`].
#[derive(Debug, Clone)]
pub struct Ranking {
    scored: Vec<Scores>,
    /// Per moment, best first: its seed and its members in time order (candidate indices).
    plans: Vec<(usize, Vec<usize>)>,
}

impl Ranking {
    /// The candidates (indices into the ranked slice) the moments are made of.
    pub fn members(&self) -> impl Iterator<Item = usize> + '_ {
        self.plans.iter().flat_map(|(_, members)| members.iter().copied())
    }

    /// The moments, best first, built from `candidates` (the slice that was ranked, with the members' words
    /// filled in).
    pub fn moments(&self, candidates: &[Candidate]) -> Vec<Moment> {
        self.plans
            .iter()
            .map(|(seed, members)| build_moment(candidates, &self.scored, members, *seed))
            .collect()
    }
}

/// [`rank_with`] up to the point where words are needed: see [`Ranking`].
pub fn plan_with(
    query: &[f32],
    candidates: &[Candidate],
    k: usize,
    weights: &Weights,
    opts: &RankOptions,
) -> Result<Ranking, FusionError> {
    let q = crate::vecmath::normalized(query);
    let scored: Vec<Scores> = candidates
        .iter()
        .map(|c| score_unit(&q, c, weights))
        .collect::<Result<_, _>>()?;
    Ok(plan_scored(candidates, scored, k, opts))
}

/// [`plan_with`] for candidates scored already (`scored[i]` is
/// `candidates[i]`'s, from [`score_unit_parts`]): their vectors are not
/// read, so they may be left empty. A caller that scored the candidates
/// while shortlisting them need not copy their vectors or score them twice.
///
/// # Panics
/// If `scored` and `candidates` differ in length.
pub fn plan_scored(candidates: &[Candidate], scored: Vec<Scores>, k: usize, opts: &RankOptions) -> Ranking {
    assert_eq!(scored.len(), candidates.len(), "one score per candidate");
    // Each video's segments in time order, and every candidate's place in that order.
    let mut by_video: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, c) in candidates.iter().enumerate() {
        by_video.entry(c.video_id).or_default().push(i);
    }
    let mut place = vec![0usize; candidates.len()];
    for list in by_video.values_mut() {
        list.sort_by_key(|&i| (candidates[i].start_ms, candidates[i].end_ms));
        for (p, &i) in list.iter().enumerate() {
            place[i] = p;
        }
    }

    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        scored[b].score.total_cmp(&scored[a].score).then_with(|| {
            (candidates[a].video_id, candidates[a].start_ms).cmp(&(candidates[b].video_id, candidates[b].start_ms))
        })
    });

    let mut used = vec![false; candidates.len()];
    let mut plans = Vec::new();
    for seed in order {
        if plans.len() >= k || scored[seed].score < opts.min_score {
            break;
        }
        if used[seed] {
            continue;
        }
        let list = &by_video[&candidates[seed].video_id];
        let floor = scored[seed].score - opts.merge_margin;
        let (mut lo, mut hi) = (place[seed], place[seed]);
        used[seed] = true;
        loop {
            let span = candidates[list[hi]].end_ms - candidates[list[lo]].start_ms;
            let joins = |i: usize, gap: i64| {
                !used[i] && scored[i].score >= floor && gap <= opts.max_gap_ms && span < opts.max_moment_ms
            };
            // Grow towards the better neighbour first.
            let left = (lo > 0).then(|| list[lo - 1]).filter(|&i| {
                joins(i, candidates[list[lo]].start_ms - candidates[i].end_ms)
                    && candidates[list[hi]].end_ms - candidates[i].start_ms <= opts.max_moment_ms
            });
            let right = list.get(hi + 1).copied().filter(|&i| {
                joins(i, candidates[i].start_ms - candidates[list[hi]].end_ms)
                    && candidates[i].end_ms - candidates[list[lo]].start_ms <= opts.max_moment_ms
            });
            match (left, right) {
                (Some(l), Some(r)) if scored[l].score >= scored[r].score => {
                    used[l] = true;
                    lo -= 1;
                }
                (_, Some(r)) => {
                    used[r] = true;
                    hi += 1;
                }
                (Some(l), None) => {
                    used[l] = true;
                    lo -= 1;
                }
                (None, None) => break,
            }
        }
        plans.push((seed, list[lo..=hi].to_vec()));
    }
    Ranking { scored, plans }
}

fn build_moment(candidates: &[Candidate], scored: &[Scores], members: &[usize], seed: usize) -> Moment {
    let first = &candidates[members[0]];
    let last = &candidates[members[members.len() - 1]];
    let mut text = String::new();
    let mut tags: Vec<String> = candidates[seed].tags.clone();
    let mut passages = Vec::new();
    for &i in members {
        let c = &candidates[i];
        append_without_overlap(&mut text, &c.transcript);
        for t in &c.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        passages.push(Passage {
            segment_id: c.segment_id,
            start_ms: c.start_ms,
            end_ms: c.end_ms,
            text: c.transcript.clone(),
            tags: c.tags.clone(),
        });
    }
    let best = |f: fn(&Scores) -> Option<f32>| members.iter().filter_map(|&i| f(&scored[i])).reduce(f32::max);
    Moment {
        video_id: first.video_id,
        start_ms: first.start_ms,
        end_ms: last.end_ms,
        score: scored[seed].score,
        text,
        tags,
        segment_ids: members.iter().map(|&i| candidates[i].segment_id).collect(),
        passages,
        text_score: best(|s| s.text),
        visual_score: best(|s| s.visual),
    }
}

/// Appends `next` to `acc`, leaving out the longest run of words that ends `acc` and starts `next` (a cue across
/// a segment boundary is in both transcripts).
fn append_without_overlap(acc: &mut String, next: &str) {
    let next = next.trim();
    if next.is_empty() {
        return;
    }
    let a: Vec<&str> = acc.split_whitespace().collect();
    let b: Vec<&str> = next.split_whitespace().collect();
    let max = a.len().min(b.len()).min(400);
    let overlap = (1..=max).rev().find(|&n| a[a.len() - n..] == b[..n]).unwrap_or(0);
    let rest = b[overlap..].join(" ");
    if rest.is_empty() {
        return;
    }
    if !acc.is_empty() {
        acc.push(' ');
    }
    acc.push_str(&rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: i64, video: i64, start: i64, v: &[f32], transcript: &str) -> Candidate {
        Candidate {
            segment_id: id,
            video_id: video,
            start_ms: start,
            end_ms: start + 10_000,
            fused: v.to_vec(),
            text: Some(v.to_vec()),
            visual: None,
            transcript: transcript.to_string(),
            tags: vec![],
        }
    }

    #[test]
    fn a_plan_ranked_without_words_builds_the_moments_rank_does() {
        let q = [1.0, 0.0];
        let v = |a: f32| [a.cos(), a.sin()];
        let full: Vec<Candidate> = (0..40)
            .map(|i| {
                let mut c = cand(
                    i,
                    i % 3,
                    (i / 3) * 10_000,
                    &v(i as f32 * 0.37 % 1.6),
                    &format!("words {i}"),
                );
                c.tags = vec![format!("tag{}", i % 4)];
                c
            })
            .collect();
        let want = rank(&q, &full, 5).unwrap();
        let mut bare: Vec<Candidate> = full
            .iter()
            .map(|c| Candidate {
                transcript: String::new(),
                tags: vec![],
                ..c.clone()
            })
            .collect();
        let plan = plan_with(&q, &bare, 5, &Weights::default(), &RankOptions::default()).unwrap();
        let members: Vec<usize> = plan.members().collect();
        assert!(members.len() < full.len(), "only the moments' members need words");
        for i in members {
            bare[i].transcript = full[i].transcript.clone();
            bare[i].tags = full[i].tags.clone();
        }
        assert_eq!(plan.moments(&bare), want);
    }

    #[test]
    fn a_plan_from_scores_given_needs_no_vectors_and_builds_the_same_moments() {
        let q = [0.6, 0.8];
        let v = |a: f32| vec![a.cos(), a.sin()];
        let w = Weights::default();
        let full: Vec<Candidate> = (0..30)
            .map(|i| {
                let mut c = cand(i, i % 2, (i / 2) * 10_000, &v(i as f32 * 0.29 % 1.5), &format!("w{i}"));
                c.visual = (i % 3 == 0).then(|| v(i as f32 * 0.11));
                c
            })
            .collect();
        let want = rank_with(&q, &full, 4, &w, &RankOptions::default()).unwrap();
        let unit = crate::vecmath::normalized(&q);
        let scores: Vec<Scores> = full
            .iter()
            .map(|c| {
                let sv = SegmentVectors {
                    fused: &c.fused,
                    text: c.text.as_deref(),
                    visual: c.visual.as_deref(),
                };
                score_unit_parts(&unit, &sv, (c.segment_id, c.video_id), &w).unwrap()
            })
            .collect();
        assert!(scores.iter().any(|s| s.visual.is_some()) && scores.iter().any(|s| s.visual.is_none()));
        let bare: Vec<Candidate> = full
            .iter()
            .map(|c| Candidate {
                fused: Vec::new(),
                text: None,
                visual: None,
                ..c.clone()
            })
            .collect();
        let plan = plan_scored(&bare, scores, 4, &RankOptions::default());
        assert_eq!(plan.moments(&bare), want);
    }

    #[test]
    fn neighbours_merge_and_distant_or_weak_segments_do_not() {
        let q = [1.0, 0.0];
        let strong = [1.0, 0.0];
        let near = [0.99, 0.141];
        let weak = [0.0, 1.0];
        let cands = vec![
            cand(1, 7, 0, &weak, "intro"),
            cand(2, 7, 10_000, &strong, "we plant the seeds."),
            cand(3, 7, 20_000, &near, "the seeds. Then we water them"),
            cand(4, 7, 40_000, &strong, "later again"), // gap of 10 s: a moment of its own
            cand(5, 8, 0, &near, "other video"),
        ];
        let m = rank(&q, &cands, 10).unwrap();
        assert_eq!(m[0].segment_ids, vec![2, 3]);
        assert_eq!((m[0].start_ms, m[0].end_ms), (10_000, 30_000));
        assert_eq!(m[0].text, "we plant the seeds. Then we water them");
        assert!((m[0].score - 1.0).abs() < 1e-5);
        assert_eq!(m[1].segment_ids, vec![4]);
        assert_eq!(m[2].video_id, 8);
        assert_eq!(m.last().unwrap().segment_ids, vec![1]);
        assert_eq!(m.len(), 4);
        let top1 = rank(&q, &cands, 1).unwrap();
        assert_eq!(top1.len(), 1);
    }

    #[test]
    fn missing_vectors_renormalise_and_bad_widths_fail() {
        let q = [0.0, 1.0];
        let mut silent_cat = cand(1, 1, 0, &[0.0, 1.0], "");
        silent_cat.text = None;
        silent_cat.visual = Some(vec![0.0, 1.0]);
        let talk = cand(2, 2, 0, &[1.0, 0.2], "unrelated");
        let m = rank(&q, &[talk.clone(), silent_cat], 2).unwrap();
        assert_eq!(m[0].video_id, 1);
        assert!(
            (m[0].score - 1.0).abs() < 1e-5,
            "no text: fused and visual only, renormalised"
        );
        assert_eq!(m[0].text_score, None);
        let err = rank(&[1.0, 0.0, 0.0], &[talk], 1).unwrap_err();
        assert!(err.to_string().contains("segment 2"), "{err}");
    }

    #[test]
    fn moments_stop_growing_at_max_length() {
        let q = [1.0, 0.0];
        let cands: Vec<Candidate> = (0..20).map(|i| cand(i, 1, i * 10_000, &[1.0, 0.0], "same")).collect();
        let m = rank(&q, &cands, 100).unwrap();
        assert!(m.iter().all(|m| m.end_ms - m.start_ms <= 60_000));
        let covered: usize = m.iter().map(|m| m.segment_ids.len()).sum();
        assert_eq!(covered, 20, "every segment lands in exactly one moment");
        assert_eq!(
            m[0].text, "same",
            "a transcript repeated across a boundary appears once"
        );
    }
}
