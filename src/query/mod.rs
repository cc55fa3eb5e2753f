//! The query side: search and ask over the store with the fusion crate's
//! scoring and extractive answers. The same engine serves the CLI and the
//! web API (it implements [`kino_web::QueryEngine`]).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use kino_fusion::score::{self, Candidate, Weights};
use kino_fusion::Moment as FusionMoment;
use kino_language::SentenceEncoder;
use kino_store::Store;
use kino_web::{moment_sources, Answer, BoxFuture, Citation, Moment, QueryEngine};

mod grow;
mod videos;

/// How many segments the approximate index shortlists on a large library
/// (each scored exactly), and how many of the best are ranked into
/// moments (with the segments the best of them grow into: see
/// [`GROWN_SEEDS`]). `kino bench index` measures recall and latency for
/// other sizes beside it: at a million segments 50 finds 0.97 of the
/// exact top 10 (100: 0.98) in two thirds of the time, and the moments
/// grow past it (`docs/PERFORMANCE.md`, eighth session). Below the
/// shortlists' walk floor (`expansion_search` 64 in
/// `kino_store::ShortlistConfig`) the graph is still walked 64 wide.
pub(crate) const PRESELECT: usize = 50;

/// Per moment asked, how many of the best candidates have the segments
/// beside them in time read and scored, so their moments grow as far as
/// the ranking's rule lets them, past the shortlist ([`grow`]).
const GROWN_SEEDS: usize = 2;

thread_local! {
    /// The one-thread pool a request thread encodes its queries on (none
    /// when the pool cannot be made: the global pool then).
    static QUERY_POOL: Option<rayon::ThreadPool> = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .thread_name(|_| "kino-query".to_string())
        .build()
        .ok();
}

/// Videos whose best windows an answer reads (besides the top moments).
const ANSWER_VIDEOS: usize = 3;
/// Windows read per video.
const ANSWER_WINDOWS: usize = 2;

/// What `POST /api/reindex` runs: `(video, stale)` → summary.
type ReindexFn = Box<dyn Fn(Option<i64>, bool) -> Result<serde_json::Value> + Send + Sync>;

/// Search and ask over one store.
pub struct Engine {
    store: Store,
    text: Arc<SentenceEncoder>,
    weights: Weights,
    /// Called for `POST /api/reindex` (set by `kino serve`).
    reindex: Option<ReindexFn>,
    /// Reports the indexing stages that are off (set by `kino serve`).
    stages_off: Option<Box<dyn Fn() -> Vec<String> + Send + Sync>>,
}

impl Engine {
    /// An engine over `store` that embeds queries with `text`.
    pub fn new(store: Store, text: Arc<SentenceEncoder>) -> Engine {
        Engine {
            store,
            text,
            weights: Weights::default(),
            reindex: None,
            stages_off: None,
        }
    }

    /// Sets what reports the indexing stages that are off (`/healthz`).
    pub fn with_stages_off(mut self, f: impl Fn() -> Vec<String> + Send + Sync + 'static) -> Engine {
        self.stages_off = Some(Box::new(f));
        self
    }

    /// Sets what `reindex` does.
    pub fn with_reindex(
        mut self,
        f: impl Fn(Option<i64>, bool) -> Result<serde_json::Value> + Send + Sync + 'static,
    ) -> Engine {
        self.reindex = Some(Box::new(f));
        self
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let text = text.trim();
        if text.is_empty() {
            return Err(crate::error::usage("the query is empty"));
        }
        let encode = || {
            self.text
                .encode_whole(&[text])
                .map(|mut v| v.pop().unwrap_or_default())
                .map_err(|e| anyhow!(e).context("encoding the query"))
        };
        // One query is a few milliseconds of work: splitting it over every
        // core costs more in hand-offs than it saves when many searches
        // arrive at once, so each request thread encodes on a pool of one
        // thread of its own (measured in docs/PERFORMANCE.md).
        QUERY_POOL.with(|pool| match pool {
            Some(pool) => pool.install(encode),
            None => encode(),
        })
    }

    /// Ranked fusion moments for an embedded query.
    pub async fn moments(&self, q: &[f32], k: usize, video: Option<i64>) -> Result<Vec<FusionMoment>> {
        Ok(self.moments_and_segments(q, k, video).await?.0)
    }

    /// Ranked moments plus the thumbnails of the candidate segments they were built from.
    async fn moments_and_segments(
        &self,
        q: &[f32],
        k: usize,
        video: Option<i64>,
    ) -> Result<(Vec<FusionMoment>, HashMap<i64, Option<String>>)> {
        let w = self.weights;
        let unit = kino_fusion::vecmath::normalized(q);
        // The shortlist is scored once, on the index's (memory-mapped)
        // vectors, keeping each score's parts: ranking needs only those and
        // the candidates' times, so no vector is copied or scored twice.
        let mut parts: HashMap<i64, score::Scores> = HashMap::new();
        let opts = score::RankOptions::default();
        let hits: Vec<kino_store::SearchHit> = self
            .store
            .with_index(|idx| {
                let mut scorer = |e: &kino_store::SegmentView<'_>| {
                    let v = score::SegmentVectors {
                        fused: e.fused,
                        text: e.text,
                        visual: e.visual,
                    };
                    let s = score::score_unit_parts(&unit, &v, (e.segment_id, e.video_id), &w).ok()?;
                    parts.insert(e.segment_id, s);
                    Some(s.score)
                };
                let mut hits = idx.search_shortlisted(&unit, PRESELECT.max(k * 4), video, &mut scorer);
                // Rows that cannot be read leave the moments as the shortlist makes them.
                if let Err(e) = grow::grow_past_shortlist(idx, &mut hits, GROWN_SEEDS * k, &opts, &mut scorer) {
                    tracing::warn!(error = %e, "moments not grown past the shortlist");
                }
                hits
            })
            .await?;
        // Ranking reads only times and scores: the words (and thumbnails)
        // are read for the segments the top moments are made of, not for
        // every candidate.
        let (mut candidates, scored): (Vec<Candidate>, Vec<score::Scores>) = hits
            .into_iter()
            .filter_map(|h| {
                let s = parts.get(&h.segment_id).copied()?;
                let c = Candidate {
                    segment_id: h.segment_id,
                    video_id: h.video_id,
                    start_ms: h.start_ms,
                    end_ms: h.end_ms,
                    fused: Vec::new(),
                    text: None,
                    visual: None,
                    transcript: String::new(),
                    tags: Vec::new(),
                };
                Some((c, s))
            })
            .unzip();
        let ranking = score::plan_scored(&candidates, scored, k, &opts);
        let mut members: Vec<usize> = ranking.members().collect();
        members.sort_unstable();
        members.dedup();
        let ids: Vec<i64> = members.iter().map(|&i| candidates[i].segment_id).collect();
        let mut words: HashMap<i64, kino_store::SegmentWords> = self
            .store
            .segment_words_by_id(&ids)
            .await?
            .into_iter()
            .map(|w| (w.id, w))
            .collect();
        let thumbs: HashMap<i64, Option<String>> = words.values().map(|w| (w.id, w.thumbnail.clone())).collect();
        for &i in &members {
            if let Some(w) = words.remove(&candidates[i].segment_id) {
                candidates[i].transcript = w.text;
                candidates[i].tags = w.tags;
            }
        }
        // A moment with a segment deleted since the search is left out.
        let moments = ranking
            .moments(&candidates)
            .into_iter()
            .filter(|m| m.segment_ids.iter().all(|id| thumbs.contains_key(id)))
            .collect();
        Ok((moments, thumbs))
    }

    async fn to_web(&self, moments: Vec<FusionMoment>, thumbs: &HashMap<i64, Option<String>>) -> Result<Vec<Moment>> {
        let mut out = Vec::with_capacity(moments.len());
        let spans: Vec<(i64, i64, i64)> = moments.iter().map(|m| (m.video_id, m.start_ms, m.end_ms)).collect();
        let cue_sources = self.store.cue_sources(&spans).await?;
        let mut videos: Vec<i64> = moments.iter().map(|m| m.video_id).collect();
        videos.sort_unstable();
        videos.dedup();
        let paths = self.store.video_paths(&videos).await?;
        for (m, cue_sources) in moments.into_iter().zip(cue_sources) {
            let sources = moment_sources(cue_sources, matched_on_pictures(&m));
            let first = m.segment_ids.first().copied();
            let thumb = first.and_then(|id| thumbs.get(&id).cloned().flatten());
            out.push(Moment {
                video_id: m.video_id,
                path: paths.get(&m.video_id).cloned().unwrap_or_default(),
                start_ms: m.start_ms,
                end_ms: m.end_ms,
                score: m.score,
                text: m.text,
                tags: m.tags,
                thumbnail: thumb.and(first.map(|id| format!("/thumbnails/{id}"))),
                segment_id: first,
                sources,
            });
        }
        Ok(out)
    }

    /// `kino search`: moments for a query.
    pub async fn search_moments(&self, query: &str, k: usize, video: Option<i64>) -> Result<Vec<Moment>> {
        let q = self.embed(query)?;
        let (moments, thumbs) = self.moments_and_segments(&q, k.max(1), video).await?;
        self.to_web(moments, &thumbs).await
    }

    /// `kino ask`: an extractive answer with citations.
    pub async fn answer(&self, question: &str) -> Result<Answer> {
        let q = self.embed(question)?;
        let moments = self.moments(&q, 5, None).await?;
        // Beyond the top moments: the best windows of the best videos'
        // whole text, sentence by sentence, each with its own time (read
        // first, so a sentence found in both is cited at its own time).
        let mut pool = self.answer_windows(&q, ANSWER_VIDEOS, ANSWER_WINDOWS).await?;
        pool.extend(moments.iter().cloned());
        let text = self.text.clone();
        let embedder = move |t: &[&str]| -> Result<Vec<Vec<f32>>> { text.encode_whole(t).map_err(|e| anyhow!(e)) };
        let opts = kino_fusion::answer::AnswerOptions {
            moments: pool.len(),
            ..Default::default()
        };
        let a = kino_fusion::answer::extract_with(&q, &pool, &embedder, &opts)?;
        let spans: Vec<(i64, i64, i64)> = a.citations.iter().map(|c| (c.video_id, c.start_ms, c.end_ms)).collect();
        let cue_sources = self.store.cue_sources(&spans).await?;
        let videos: Vec<i64> = a.citations.iter().map(|c| c.video_id).collect();
        let paths = self.store.video_paths(&videos).await?;
        let mut citations = Vec::new();
        for (c, cue_sources) in a.citations.into_iter().zip(cue_sources) {
            // A cited sentence comes from one of the moments: it is visual when that moment is.
            let visual = moments
                .iter()
                .filter(|m| {
                    m.video_id == c.video_id && m.start_ms < c.end_ms.max(c.start_ms + 1) && m.end_ms > c.start_ms
                })
                .any(matched_on_pictures);
            let path = paths.get(&c.video_id).cloned().unwrap_or_default();
            citations.push(Citation {
                video_id: c.video_id,
                path,
                start_ms: c.start_ms,
                end_ms: c.end_ms,
                text: c.text,
                sources: moment_sources(cue_sources, visual),
            });
        }
        Ok(Answer {
            answer: a.answer,
            citations,
        })
    }
}

/// Whether a moment matched on pictures: its segments carry visual tags, or
/// its visual-only similarity is positive and at least its text-only one
/// (or it has no text).
fn matched_on_pictures(m: &FusionMoment) -> bool {
    !m.tags.is_empty()
        || m.visual_score
            .is_some_and(|v| v > 0.0 && m.text_score.is_none_or(|t| v >= t))
}

impl QueryEngine for Engine {
    fn search(&self, query: &str, k: usize, video: Option<i64>) -> BoxFuture<'_, Result<Vec<Moment>>> {
        let query = query.to_string();
        Box::pin(async move { self.search_moments(&query, k, video).await })
    }

    fn search_videos(&self, query: &str, k: usize) -> BoxFuture<'_, Result<Vec<kino_web::VideoResult>>> {
        let query = query.to_string();
        Box::pin(async move { self.search_videos(&query, k).await })
    }

    fn ask(&self, question: &str) -> BoxFuture<'_, Result<Answer>> {
        let question = question.to_string();
        Box::pin(async move { self.answer(&question).await })
    }

    fn reindex(&self, video: Option<i64>, stale: bool) -> BoxFuture<'_, Result<serde_json::Value>> {
        Box::pin(async move {
            match &self.reindex {
                Some(f) => f(video, stale),
                None => Err(anyhow!("reindexing is not available here")),
            }
        })
    }

    fn model_version(&self) -> String {
        self.text.version()
    }

    fn stages_off(&self) -> Vec<String> {
        self.stages_off.as_ref().map(|f| f()).unwrap_or_default()
    }
}
