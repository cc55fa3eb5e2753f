//! The JSON API (same shapes as the CLI's `--json`) and its OpenAPI document.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kino_store::{Job, NewQuery, Video};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::engine::{
    Answer, AskResponse, BestMoment, Citation, Moment, SearchResponse, VideoResult, VideoSearchResponse,
};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::AppState;

/// Longest accepted query or question, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;
/// Most results one search may ask for.
pub const MAX_K: usize = 100;

/// Parameters of `GET /api/search`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The query text.
    pub q: String,
    /// How many moments (1–100, default 10).
    pub k: Option<usize>,
    /// Only moments of this video.
    pub video: Option<i64>,
    /// `moment` (default): moments, `{"results": [Moment…]}`; `video`: whole
    /// videos, each with its best moments, `{"results": [VideoResult…]}`.
    pub by: Option<String>,
}

/// Body of `POST /api/ask`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AskRequest {
    /// The question.
    pub question: String,
}

/// Body of `POST /api/reindex`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ReindexRequest {
    /// Re-embed only this video.
    #[serde(default)]
    pub video: Option<i64>,
    /// Re-embed every stale video (older models, missing vision).
    #[serde(default)]
    pub stale: bool,
}

/// A video in the library.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VideoOut {
    /// Row id.
    pub id: i64,
    /// Path of the file.
    pub path: String,
    /// File name.
    pub name: String,
    /// `queued`, `indexing`, `done`, `failed`, `missing` or `duplicate`.
    pub status: String,
    /// Why indexing failed.
    pub error: Option<String>,
    /// Duration, ms.
    pub duration_ms: Option<i64>,
    /// Width in pixels.
    pub width: Option<i64>,
    /// Height in pixels.
    pub height: Option<i64>,
    /// Number of searchable segments.
    pub segment_count: i64,
    /// Indexed without the vision branch.
    pub needs_vision: bool,
    /// Progress of a running index job (0–1), when the worker reports it.
    pub progress: Option<f64>,
    /// When the current index was committed, Unix ms.
    pub indexed_ms: Option<i64>,
}

/// A segment of a video (without its embeddings).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SegmentOut {
    /// Row id.
    pub id: i64,
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Transcript text.
    pub text: String,
    /// Visual tags.
    pub tags: Vec<String>,
    /// Thumbnail URL.
    pub thumbnail: Option<String>,
}

/// A job of the pipeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobOut {
    /// Row id.
    pub id: i64,
    /// Its video.
    pub video_id: i64,
    /// `index`, `reindex`, …
    pub kind: String,
    /// `queued`, `running`, `done`, `failed`.
    pub state: String,
    /// Claims so far.
    pub attempts: i64,
    /// Claims allowed.
    pub max_attempts: i64,
    /// Last failure.
    pub last_error: Option<String>,
    /// Progress saved by the worker (JSON text).
    pub checkpoint: Option<String>,
    /// Created, Unix ms.
    pub created_ms: i64,
    /// Updated, Unix ms.
    pub updated_ms: i64,
}

/// `GET /api/videos` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideosResponse {
    /// Every video.
    pub videos: Vec<VideoOut>,
}

/// A video's media facts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FactsOut {
    /// File size in bytes.
    pub size_bytes: i64,
    /// Duration, ms.
    pub duration_ms: Option<i64>,
    /// Width in pixels.
    pub width: Option<i64>,
    /// Height in pixels.
    pub height: Option<i64>,
    /// Frames per second.
    pub fps: Option<f64>,
    /// Codec of the main video stream.
    pub video_codec: Option<String>,
    /// Codec of the main audio stream.
    pub audio_codec: Option<String>,
}

/// One timed line of a video's transcript: a cue of any source.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TranscriptCue {
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// The text (user data: escape it).
    pub text: String,
    /// `subtitle`, `speech` or `screen`.
    pub source: String,
    /// Its language where known (e.g. `en`).
    pub language: Option<String>,
}

/// `GET /api/videos/{id}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoDetail {
    /// The video.
    pub video: VideoOut,
    /// Its media facts.
    pub facts: FactsOut,
    /// Version of what each stage of the current index used, by stage name.
    pub stage_versions: BTreeMap<String, String>,
    /// Problems of the last indexing run that did not stop it.
    pub warnings: Vec<String>,
    /// The language its speech is recognised in, set by the user (`null`: detected).
    pub language: Option<String>,
    /// Every cue of every source, in time order.
    pub transcript: Vec<TranscriptCue>,
    /// The video's summary: its most central sentences, in time order, each
    /// with the time span of the cues it came from (empty without text).
    pub summary: Vec<SummarySentenceOut>,
    /// Its whole-text document (`null` when it has no text, or was indexed
    /// before documents existed and has not been refreshed yet).
    pub document: Option<DocumentOut>,
    /// Its segments in time order.
    pub segments: Vec<SegmentOut>,
    /// Its jobs, newest first.
    pub jobs: Vec<JobOut>,
}

/// A sentence of a video's summary.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SummarySentenceOut {
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// The sentence, verbatim.
    pub text: String,
}

/// Facts of a video's whole-text document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DocumentOut {
    /// Text tokens it covers.
    pub tokens: i64,
    /// Sliding windows it was embedded in.
    pub windows: i64,
    /// True when the text was too long to cover whole.
    pub truncated: bool,
    /// What built it (text model and window settings).
    pub version: String,
}

/// Body of `POST /api/videos/{id}/language`: `{"language": "de"}`, or
/// `{"language": null}` to detect the language again.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LanguageRequest {
    /// A language code of 2–3 lowercase letters (`en`, `de`, `haw`), or `null`.
    #[schema(nullable, pattern = "^[a-z]{2,3}$")]
    pub language: Option<String>,
}

/// `POST /api/videos/{id}/language` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LanguageResponse {
    /// The video.
    pub video_id: i64,
    /// The language now set (`null`: detect).
    pub language: Option<String>,
    /// The reindex job queued for it (an already queued or running one is
    /// reused); `null` for a missing file or a duplicate, which are not indexed.
    pub job: Option<JobOut>,
}

/// `GET /api/jobs` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobsResponse {
    /// Recent jobs, newest first.
    pub jobs: Vec<JobOut>,
    /// Number of jobs per state.
    pub counts: BTreeMap<String, i64>,
}

/// `GET /healthz` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`: the store answers (indexing may still run with stages off).
    pub status: String,
    /// Indexing stages that are off, each as `"stage: reason"`: a missing or
    /// broken model names its file and what to run.
    pub stages_off: Vec<String>,
}

/// The file name of a path (the whole path when it has none).
pub fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

pub(crate) fn job_out(j: &Job) -> JobOut {
    JobOut {
        id: j.id,
        video_id: j.video_id,
        kind: j.kind.clone(),
        state: j.state.as_str().to_string(),
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        last_error: j.last_error.clone(),
        checkpoint: j.checkpoint.clone(),
        created_ms: j.created_ms,
        updated_ms: j.updated_ms,
    }
}

/// Progress (0–1) from a job checkpoint of the form `{"progress": x}` or `{"done": a, "total": b}`.
pub(crate) fn job_progress(j: &Job) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(j.checkpoint.as_deref()?).ok()?;
    if let Some(p) = v.get("progress").and_then(|p| p.as_f64()) {
        return Some(p.clamp(0.0, 1.0));
    }
    let done = v.get("done").and_then(|p| p.as_f64())?;
    let total = v.get("total").and_then(|p| p.as_f64()).filter(|t| *t > 0.0)?;
    Some((done / total).clamp(0.0, 1.0))
}

/// Segment spans per video, from the in-process index (no embeddings read from disk).
pub(crate) async fn spans_by_video(st: &AppState) -> ApiResult<HashMap<i64, Vec<(i64, i64)>>> {
    Ok(st
        .store
        .with_index(|idx| {
            let mut m: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
            for e in idx.iter() {
                m.entry(e.video_id).or_default().push((e.start_ms, e.end_ms));
            }
            m.values_mut().for_each(|v| v.sort_unstable());
            m
        })
        .await?)
}

pub(crate) fn video_out(v: &Video, segment_count: i64, progress: Option<f64>) -> VideoOut {
    VideoOut {
        id: v.id,
        path: v.path.clone(),
        name: file_name(&v.path),
        status: v.status.as_str().to_string(),
        error: v.error.clone(),
        duration_ms: v.facts.duration_ms,
        width: v.facts.width,
        height: v.facts.height,
        segment_count,
        needs_vision: v.needs_vision,
        progress,
        indexed_ms: v.indexed_ms,
    }
}

/// Progress of each video's running job.
pub(crate) async fn progress_by_video(st: &AppState) -> ApiResult<HashMap<i64, f64>> {
    let jobs = st.store.jobs(500).await?;
    Ok(jobs
        .iter()
        .filter(|j| j.state == kino_store::JobState::Running)
        .filter_map(|j| job_progress(j).map(|p| (j.video_id, p)))
        .collect())
}

/// Checks a query or question: trimmed, not empty, not too long.
pub(crate) fn check_text(raw: &str, what: &str) -> ApiResult<String> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(ApiError::bad_request(format!("the {what} is empty")));
    }
    if t.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(format!(
            "the {what} is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    Ok(t.to_string())
}

/// Runs a search through the engine (shared by the API and the page).
/// The search is stored in the history, as the CLI stores its own, unless
/// `record` is false (the page's moments beside an answer: the question is
/// stored with its answer).
pub(crate) async fn run_search(
    st: &AppState,
    q: &str,
    k: usize,
    video: Option<i64>,
    record: bool,
) -> ApiResult<Vec<Moment>> {
    let started = Instant::now();
    let results = st.searches.run(st.engine.search(q, k, video)).await??;
    metrics::histogram!("kino_search_seconds").record(started.elapsed().as_secs_f64());
    if record {
        record_search(st, q, started).await?;
    }
    Ok(results)
}

/// Stores a search (kind `search`) in the history.
async fn record_search(st: &AppState, q: &str, started: Instant) -> ApiResult<()> {
    let query = NewQuery {
        question: q.to_string(),
        kind: "search".into(),
        latency_ms: started.elapsed().as_millis() as i64,
        model_version: st.engine.model_version(),
    };
    st.history.record(&st.store, query).await?;
    Ok(())
}

/// Asks the engine and records the question with its answer (shared by the API and the page).
pub(crate) async fn run_ask(st: &AppState, question: &str) -> ApiResult<AskResponse> {
    let started = Instant::now();
    let Answer { answer, citations } = st.searches.run(st.engine.ask(question)).await??;
    let latency_ms = started.elapsed().as_millis() as i64;
    metrics::histogram!("kino_ask_seconds").record(started.elapsed().as_secs_f64());
    let q = NewQuery {
        question: question.to_string(),
        kind: "ask".into(),
        latency_ms,
        model_version: st.engine.model_version(),
    };
    let cites = serde_json::to_value(&citations).map_err(ApiError::internal)?;
    let query_id = st.store.record_query(&q, Some((&answer, &cites))).await?;
    Ok(AskResponse {
        answer,
        citations,
        query_id,
    })
}

/// Videos for a query, best first (shared by the API and the page).
pub(crate) async fn run_search_videos(st: &AppState, q: &str, k: usize) -> ApiResult<Vec<VideoResult>> {
    let started = Instant::now();
    let results = st.searches.run(st.engine.search_videos(q, k)).await??;
    metrics::histogram!("kino_search_seconds").record(started.elapsed().as_secs_f64());
    record_search(st, q, started).await?;
    Ok(results)
}

/// Moments for a query, best first; with `by=video`, whole videos
/// (`VideoSearchResponse`), each with its best moments.
#[utoipa::path(get, path = "/api/search", tag = "search", params(SearchParams),
    responses((status = 200, body = SearchResponse, description = "Moments (`by=moment`); with `by=video` a VideoSearchResponse"), (status = 400, body = ErrorBody)))]
pub async fn search(
    State(st): State<Arc<AppState>>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let q = check_text(&p.q, "query")?;
    let k = p.k.unwrap_or(10);
    if k == 0 || k > MAX_K {
        return Err(ApiError::bad_request(format!(
            "k must be between 1 and {MAX_K}, got {k}"
        )));
    }
    match p.by.as_deref().unwrap_or("moment") {
        "moment" => Ok(Json(SearchResponse {
            results: run_search(&st, &q, k, p.video, true).await?,
        })
        .into_response()),
        "video" if p.video.is_some() => Err(ApiError::bad_request(
            "by=video ranks whole videos: it takes no video filter",
        )),
        "video" => Ok(Json(VideoSearchResponse {
            results: run_search_videos(&st, &q, k).await?,
        })
        .into_response()),
        other => Err(ApiError::bad_request(format!(
            "by must be 'moment' or 'video', got '{other}'"
        ))),
    }
}

/// An extractive answer with citations; the question and answer are stored.
#[utoipa::path(post, path = "/api/ask", tag = "search", request_body = AskRequest,
    responses((status = 200, body = AskResponse), (status = 400, body = ErrorBody)))]
pub async fn ask(
    State(st): State<Arc<AppState>>,
    body: Result<Json<AskRequest>, JsonRejection>,
) -> ApiResult<Json<AskResponse>> {
    let Json(req) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let question = check_text(&req.question, "question")?;
    Ok(Json(run_ask(&st, &question).await?))
}

/// Every video with status and segment count.
#[utoipa::path(get, path = "/api/videos", tag = "library", responses((status = 200, body = VideosResponse)))]
pub async fn videos(State(st): State<Arc<AppState>>) -> ApiResult<Json<VideosResponse>> {
    let vids = st.store.videos().await?;
    let spans = spans_by_video(&st).await?;
    let progress = progress_by_video(&st).await?;
    let videos = vids
        .iter()
        .map(|v| {
            let n = spans.get(&v.id).map_or(0, |s| s.len() as i64);
            video_out(v, n, progress.get(&v.id).copied())
        })
        .collect();
    Ok(Json(VideosResponse { videos }))
}

/// The video named by a path parameter, or 404.
pub(crate) async fn video_by_raw_id(st: &AppState, raw: &str) -> ApiResult<Video> {
    let id: i64 = raw
        .parse()
        .map_err(|_| ApiError::not_found(format!("no video with id '{raw}'")))?;
    st.store
        .video(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no video with id {id}")))
}

/// Everything about one video (shared by the API and the video page).
pub(crate) async fn video_detail(st: &AppState, v: Video) -> ApiResult<VideoDetail> {
    let id = v.id;
    let segs = st.store.segments(id).await?;
    let cues = st.store.cues(id).await?;
    let document = st.store.document(id).await?;
    let jobs = st.store.jobs_of_video(id).await?;
    let progress = jobs
        .iter()
        .find(|j| j.state == kino_store::JobState::Running)
        .and_then(job_progress);
    let segments: Vec<SegmentOut> = segs
        .into_iter()
        .map(|s| SegmentOut {
            id: s.id,
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            text: s.text,
            tags: s.tags,
            thumbnail: s.thumbnail.map(|_| format!("/thumbnails/{}", s.id)),
        })
        .collect();
    let count = if v.status == kino_store::VideoStatus::Missing {
        0
    } else {
        segments.len() as i64
    };
    Ok(VideoDetail {
        video: video_out(&v, count, progress),
        facts: FactsOut {
            size_bytes: v.size_bytes,
            duration_ms: v.facts.duration_ms,
            width: v.facts.width,
            height: v.facts.height,
            fps: v.facts.fps,
            video_codec: v.facts.video_codec.clone(),
            audio_codec: v.facts.audio_codec.clone(),
        },
        stage_versions: v.stage_versions.clone(),
        warnings: v.warnings.clone(),
        language: v.language.clone(),
        transcript: cues
            .into_iter()
            .map(|c| TranscriptCue {
                start_ms: c.start_ms,
                end_ms: c.end_ms,
                text: c.text,
                source: c.source,
                language: c.language,
            })
            .collect(),
        summary: document
            .as_ref()
            .map(|d| {
                d.summary
                    .iter()
                    .map(|s| SummarySentenceOut {
                        start_ms: s.start_ms,
                        end_ms: s.end_ms,
                        text: s.text.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        document: document.map(|d| DocumentOut {
            tokens: d.tokens,
            windows: d.windows,
            truncated: d.truncated,
            version: d.version,
        }),
        segments,
        jobs: jobs.iter().map(job_out).collect(),
    })
}

/// One video: facts, status, per-stage versions, warnings, language override,
/// transcript (cues of every source), segments and jobs.
#[utoipa::path(get, path = "/api/videos/{id}", tag = "library", params(("id" = i64, Path, description = "Video id")),
    responses((status = 200, body = VideoDetail), (status = 404, body = ErrorBody)))]
pub async fn video(State(st): State<Arc<AppState>>, Path(raw): Path<String>) -> ApiResult<Json<VideoDetail>> {
    let v = video_by_raw_id(&st, &raw).await?;
    Ok(Json(video_detail(&st, v).await?))
}

/// Checks a language code: 2–3 lowercase ASCII letters.
pub fn check_language(code: &str) -> Result<(), String> {
    let ok = (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "language must be a code of 2–3 lowercase letters (such as \"en\" or \"de\") or null, got {}",
            serde_json::Value::String(code.chars().take(40).collect())
        ))
    }
}

/// Sets the language a video's speech is recognised in (`null`: detect it)
/// and queues the video for reindexing.
#[utoipa::path(post, path = "/api/videos/{id}/language", tag = "library",
    params(("id" = i64, Path, description = "Video id")), request_body = LanguageRequest,
    responses((status = 200, body = LanguageResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_language(
    State(st): State<Arc<AppState>>,
    Path(raw): Path<String>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> ApiResult<Json<LanguageResponse>> {
    let v = video_by_raw_id(&st, &raw).await?;
    let Json(body) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let language = match body.as_object().and_then(|o| o.get("language")) {
        None => {
            return Err(ApiError::bad_request(
                "expected a JSON object {\"language\": \"de\"} or {\"language\": null}",
            ))
        }
        Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(code)) => {
            check_language(code).map_err(ApiError::bad_request)?;
            Some(code.clone())
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "language must be a string of 2–3 lowercase letters or null, got {other}"
            )))
        }
    };
    if !st.store.set_video_language(v.id, language.as_deref()).await? {
        return Err(ApiError::not_found(format!("no video with id {}", v.id)));
    }
    let job = if matches!(
        v.status,
        kino_store::VideoStatus::Missing | kino_store::VideoStatus::Duplicate
    ) {
        None
    } else {
        Some(job_out(&st.store.enqueue_job(v.id, "reindex").await?))
    };
    tracing::info!(video = v.id, language = ?language, "speech language set; reindex queued");
    Ok(Json(LanguageResponse {
        video_id: v.id,
        language,
        job,
    }))
}

/// Recent jobs and counts per state.
#[utoipa::path(get, path = "/api/jobs", tag = "library", responses((status = 200, body = JobsResponse)))]
pub async fn jobs(State(st): State<Arc<AppState>>) -> ApiResult<Json<JobsResponse>> {
    let jobs = st.store.jobs(200).await?;
    let counts = st.store.job_counts().await?.into_iter().collect();
    Ok(Json(JobsResponse {
        jobs: jobs.iter().map(job_out).collect(),
        counts,
    }))
}

/// Re-embeds one video (`video`), the stale ones (`stale`), or all.
#[utoipa::path(post, path = "/api/reindex", tag = "library", request_body = ReindexRequest,
    responses((status = 200, description = "Summary from the pipeline"), (status = 404, body = ErrorBody)))]
pub async fn reindex(
    State(st): State<Arc<AppState>>,
    body: Result<Json<ReindexRequest>, JsonRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Json(req) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if let Some(id) = req.video {
        st.store
            .video(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no video with id {id}")))?;
    }
    Ok(Json(st.engine.reindex(req.video, req.stale).await?))
}

/// Liveness and store reachability.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn healthz(State(st): State<Arc<AppState>>) -> ApiResult<Json<Health>> {
    st.store
        .ping()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("store unreachable: {e}")))?;
    Ok(Json(Health {
        status: "ok".into(),
        stages_off: st.engine.stages_off(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text")))]
pub async fn metrics_text(State(st): State<Arc<AppState>>) -> Response {
    // The search index as it stands now.
    let shortlists = st.store.shortlist_status();
    metrics::gauge!("kino_index_segments").set(st.store.loaded_segments().unwrap_or(0) as f64);
    metrics::gauge!("kino_index_approximate").set(if shortlists.in_use { 1.0 } else { 0.0 });
    metrics::gauge!("kino_index_shortlisted_segments").set(shortlists.segments as f64);
    metrics::gauge!("kino_index_shortlists_loaded").set(if shortlists.source == Some("loaded") { 1.0 } else { 0.0 });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        st.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kino",
        description = "Search a video library by meaning: moments, answers, library, transcripts, jobs."
    ),
    paths(
        search,
        ask,
        videos,
        video,
        set_language,
        crate::feedback::feedback,
        jobs,
        reindex,
        healthz,
        metrics_text,
        openapi_json,
        crate::files::media,
        crate::files::thumbnail
    ),
    components(schemas(
        SearchResponse,
        Moment,
        VideoSearchResponse,
        VideoResult,
        BestMoment,
        SummarySentenceOut,
        DocumentOut,
        AskRequest,
        AskResponse,
        Citation,
        ReindexRequest,
        VideosResponse,
        VideoOut,
        VideoDetail,
        FactsOut,
        TranscriptCue,
        LanguageRequest,
        LanguageResponse,
        crate::feedback::FeedbackRequest,
        crate::feedback::FeedbackResponse,
        SegmentOut,
        JobOut,
        JobsResponse,
        Health,
        ErrorBody
    ))
)]
pub struct ApiDoc;

/// This document, as JSON.
#[utoipa::path(get, path = "/api/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
