//! The query engine the web layer calls, and the JSON shapes it answers with.
//!
//! The web crate knows no model: the `kino` binary implements [`QueryEngine`]
//! with the fusion crate's query scoring and extractive answers and hands it
//! to [`crate::serve`]. The shapes here are the CLI's `--json` shapes.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A boxed, sendable future (what [`QueryEngine`] methods return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One moment: a segment of a video that answers a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Moment {
    /// The video's id (play it from `/media/{video_id}`).
    pub video_id: i64,
    /// The video file's path.
    pub path: String,
    /// Start of the moment, ms.
    pub start_ms: i64,
    /// End of the moment, ms.
    pub end_ms: i64,
    /// Relevance score (higher is better).
    pub score: f32,
    /// Transcript text of the segment.
    pub text: String,
    /// Visual tags of the segment.
    pub tags: Vec<String>,
    /// URL of the segment's thumbnail (`/thumbnails/{segment_id}`), when it has one.
    pub thumbnail: Option<String>,
    /// The segment's id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<i64>,
    /// Where its words came from, sorted: the sources of the cues that overlap
    /// its time span (`subtitle`, `speech`, `screen`), plus `visual` when it
    /// matched on pictures (see [`VISUAL_SOURCE`]).
    #[serde(default)]
    pub sources: Vec<String>,
}

/// The source named in [`Moment::sources`] when a moment matched on pictures
/// (it has visual tags, or its visual similarity carried it) rather than on words.
pub const VISUAL_SOURCE: &str = "visual";

/// A moment's `sources`: the cue sources overlapping it (as
/// [`kino_store::Store::cue_sources`] gives them) plus [`VISUAL_SOURCE`] when
/// `visual`, sorted and without repeats.
pub fn moment_sources(cue_sources: Vec<String>, visual: bool) -> Vec<String> {
    let mut out = cue_sources;
    if visual {
        out.push(VISUAL_SOURCE.to_string());
    }
    out.sort();
    out.dedup();
    out
}

/// `GET /api/search` answer: `{"results":[…]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// Moments, best first.
    pub results: Vec<Moment>,
}

/// One of a video's best moments in a video-level result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BestMoment {
    /// Start, ms (open it at `/videos/{video_id}?t={start_ms}`).
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Its text (a segment's transcript, or a window of the video's whole text).
    pub text: String,
}

/// A video that answers a query as a whole (`GET /api/search?by=video`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VideoResult {
    /// The video's id (its page is `/videos/{video_id}`).
    pub video_id: i64,
    /// The video file's path.
    pub path: String,
    /// Relevance score (higher is better): the video's whole text and its
    /// best moments together.
    pub score: f32,
    /// Length of the video, ms, when known.
    pub duration_ms: Option<i64>,
    /// Its best moments, best first.
    pub best_moments: Vec<BestMoment>,
}

/// `GET /api/search?by=video` answer: `{"results":[…]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VideoSearchResponse {
    /// Videos, best first.
    pub results: Vec<VideoResult>,
}

/// A citation of an extractive answer: the moment a sentence comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Citation {
    /// The video's id.
    pub video_id: i64,
    /// The video file's path.
    pub path: String,
    /// Start of the cited moment, ms.
    pub start_ms: i64,
    /// End of the cited moment, ms.
    pub end_ms: i64,
    /// The cited sentence (a sentence of the answer).
    pub text: String,
    /// Where the cited moment's words came from (as [`Moment::sources`]).
    #[serde(default)]
    pub sources: Vec<String>,
}

/// What the engine answers to a question; the web layer stores it and adds
/// the query id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Answer {
    /// The extractive answer (empty when nothing in the library answers it).
    pub answer: String,
    /// The moments the answer's sentences come from, in answer order.
    pub citations: Vec<Citation>,
}

/// `POST /api/ask` answer: `{"answer","citations","query_id"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AskResponse {
    /// The extractive answer.
    pub answer: String,
    /// Its citations.
    pub citations: Vec<Citation>,
    /// Id of the stored question (see the History page).
    pub query_id: i64,
}

/// Searches and answers over the library. Implemented by the `kino` binary
/// (fusion scoring); the web tests implement it over the store's exact index.
pub trait QueryEngine: Send + Sync + 'static {
    /// Ranked moments for a query, best first, at most `k`, optionally inside one video.
    fn search(&self, query: &str, k: usize, video: Option<i64>) -> BoxFuture<'_, anyhow::Result<Vec<Moment>>>;
    /// Ranked videos for a query (each with its best moments), best first, at most `k`.
    fn search_videos(&self, query: &str, k: usize) -> BoxFuture<'_, anyhow::Result<Vec<VideoResult>>> {
        let _ = (query, k);
        Box::pin(async { Err(anyhow::anyhow!("video-level search is not available here")) })
    }
    /// An extractive answer with citations. The web layer records it in the store.
    fn ask(&self, question: &str) -> BoxFuture<'_, anyhow::Result<Answer>>;
    /// Re-embeds one video, every stale video (`stale`), or all; returns a summary.
    fn reindex(&self, video: Option<i64>, stale: bool) -> BoxFuture<'_, anyhow::Result<serde_json::Value>>;
    /// Model versions used to answer (recorded with each question).
    fn model_version(&self) -> String {
        "unknown".into()
    }
    /// Indexing stages that are off, each as `"stage: reason"` (a model that
    /// is missing or broken); `/healthz` lists them.
    fn stages_off(&self) -> Vec<String> {
        Vec::new()
    }
}
