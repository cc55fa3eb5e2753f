//! kino-web: the pages people use (Search with Ask, Library, History, a page
//! per video with its transcript) and the JSON API scripts use, served by axum.
//!
//! - [`serve`] listens (127.0.0.1 by default; any other address needs a token)
//!   until the shutdown future resolves. [`router`] builds the same app for tests.
//! - The web layer talks to the [`kino_store::Store`] and to a [`QueryEngine`]
//!   that the `kino` binary provides (fusion scoring and extractive answers).
//! - Media and thumbnails are served by id only, from inside the library roots
//!   and the thumbnails folder (see [`files`]); everything untrusted is escaped.
//! - Errors answer as JSON `{"error","status"}` ([`error::ApiError`]); requests
//!   have a timeout and body and query-string length limits; `/metrics` exposes
//!   Prometheus text from the process-wide recorder ([`install_metrics`]).
//! - Connections have a deadline for their request head and a cap on their
//!   number ([`listen`]); cross-site writes and token guessing are refused
//!   ([`guard`]).

pub mod api;
pub mod auth;
pub mod engine;
pub mod error;
pub mod feedback;
pub mod files;
pub mod gate;
pub mod guard;
pub mod history;
pub mod listen;
pub mod pages;
pub mod video_page;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kino_store::Store;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

pub use engine::{
    moment_sources, Answer, AskResponse, BestMoment, BoxFuture, Citation, Moment, QueryEngine, SearchResponse,
    VideoResult, VideoSearchResponse, VISUAL_SOURCE,
};
pub use error::{ApiError, ServeError};

/// Largest accepted request body, bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest accepted query string, bytes.
pub const MAX_QUERY_STRING_BYTES: usize = 4096;

/// How the web server is set up.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub bind: SocketAddr,
    /// Access token; required for any non-loopback address.
    pub token: Option<String>,
    /// Folders media may be served from (videos outside them answer 404).
    pub library_roots: Vec<PathBuf>,
    /// Folder holding segment thumbnails (`segments.thumbnail` names files in it).
    pub thumbnails_dir: Option<PathBuf>,
    /// Time allowed to produce a response's head.
    pub request_timeout: Duration,
    /// Searches and questions answered at once; more wait their turn in
    /// the order they came (see [`gate`]). Default: twice the cores (a
    /// search also waits on the store, and its core should not idle then).
    pub search_concurrency: usize,
}

/// [`WebConfig::search_concurrency`]'s default: twice the cores.
pub fn default_search_concurrency() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            library_roots: vec![],
            thumbnails_dir: None,
            request_timeout: Duration::from_secs(30),
            search_concurrency: default_search_concurrency(),
        }
    }
}

/// Shared state of every handler.
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The query engine.
    pub engine: Arc<dyn QueryEngine>,
    /// Access token, if any.
    pub token: Option<String>,
    /// Canonical library roots.
    pub library_roots: Vec<PathBuf>,
    /// Canonical thumbnails folder.
    pub thumbnails_dir: Option<PathBuf>,
    /// Sessions (by id hash) found valid in the store, with their expiry
    /// (Unix ms): a cache in front of the store's `sessions` table.
    pub sessions: Mutex<HashMap<String, i64>>,
    /// The writer of the search history.
    pub history: history::History,
    /// Prometheus handle for `/metrics`.
    pub metrics: PrometheusHandle,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Wrong tokens per client address (see [`guard`]).
    pub failures: guard::Failures,
    /// The turns searches and questions take (see [`gate`]).
    pub searches: gate::SearchGate,
}

impl AppState {
    /// Builds the state: canonicalises the library roots and thumbnails folder
    /// (roots that do not exist are skipped with a warning) and installs the
    /// metrics recorder if none is installed yet.
    pub fn new(config: &WebConfig, store: Store, engine: Arc<dyn QueryEngine>) -> AppState {
        let canon = |p: &PathBuf| match std::fs::canonicalize(p) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("{}: not served from: {e}", p.display());
                None
            }
        };
        AppState {
            store,
            engine,
            token: config.token.clone().filter(|t| !t.is_empty()),
            library_roots: config.library_roots.iter().filter_map(canon).collect(),
            thumbnails_dir: config.thumbnails_dir.as_ref().and_then(canon),
            sessions: Mutex::new(HashMap::new()),
            history: history::History::default(),
            metrics: install_metrics(),
            request_timeout: config.request_timeout,
            failures: guard::Failures::default(),
            searches: gate::SearchGate::new(config.search_concurrency),
        }
    }
}

/// Installs the process-wide Prometheus recorder once and returns its handle.
/// The pipeline's own `metrics::…!` calls land in the same recorder. If some
/// other recorder was installed first, `/metrics` shows an empty registry.
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("metrics recorder not installed ({e}); /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        })
        .clone()
}

/// Refuses a non-loopback address without a token, and an empty token.
pub fn check_bind(config: &WebConfig) -> Result<(), ServeError> {
    match config.token.as_deref() {
        Some("") => Err(ServeError::EmptyToken),
        None if !config.bind.ip().is_loopback() => Err(ServeError::NeedsToken(config.bind)),
        _ => Ok(()),
    }
}

/// Listens on `config.bind` and serves until `shutdown` resolves.
///
/// Errors: [`ServeError::NeedsToken`] for a non-loopback address without a
/// token, [`ServeError::Bind`] when the address cannot be bound.
pub async fn serve(
    config: WebConfig,
    store: Store,
    engine: Arc<dyn QueryEngine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    check_bind(&config)?;
    let listener = listen::bind(config.bind).map_err(|source| ServeError::Bind {
        addr: config.bind,
        source,
    })?;
    serve_on(listener, config, store, engine, shutdown).await
}

/// Like [`serve`], on a listener the caller bound (tests bind port 0).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: WebConfig,
    store: Store,
    engine: Arc<dyn QueryEngine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let config = WebConfig { bind: addr, ..config };
    check_bind(&config)?;
    let state = Arc::new(AppState::new(&config, store, engine));
    tracing::info!("web UI and API on http://{addr}/");
    listen::run(listener, router(state), shutdown)
        .await
        .map_err(ServeError::Io)?;
    Ok(())
}

/// Serves only `GET /metrics` (the process-wide recorder's Prometheus text)
/// on `listener` until `shutdown`: a process without the web UI, such as
/// `kino worker --metrics ADDR`, exports its own metrics this way.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handle = install_metrics();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        handle.render(),
                    )
                }
            }),
        )
        .fallback(not_found);
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    listen::run(listener, app, shutdown).await.map_err(ServeError::Io)?;
    Ok(())
}

const APP_CSS: &str = include_str!("../static/app.css");
const APP_JS: &str = include_str!("../static/app.js");

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no such page: {}", req.uri().path()))
}

async fn limit_query(req: Request, next: Next) -> Response {
    let len = req.uri().query().map_or(0, str::len);
    if len > MAX_QUERY_STRING_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("query string of {len} bytes is longer than {MAX_QUERY_STRING_BYTES}"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Answers 408 with a JSON error when the handler has not produced a response
/// head within the configured time (a media body may stream for longer).
async fn timeout(axum::extract::State(limit): axum::extract::State<Duration>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!("{path}: no answer within {limit:?}");
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("no answer within {} ms", limit.as_millis()),
            )
            .into_response()
        }
    }
}

async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("kino_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("kino_http_request_duration_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    res
}

/// The whole app: pages, API, media, metrics, with auth, limits, timeout,
/// tracing and (except for media) compression.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.request_timeout;
    let app = Router::new()
        .route("/", get(pages::search))
        .route("/library", get(pages::library))
        .route("/history", get(pages::history))
        .route("/videos/{id}", get(video_page::video))
        .route("/login", get(auth::login_page).post(auth::login))
        .route(
            "/static/app.css",
            get(|| async { static_file("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async { static_file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route("/api/search", get(api::search))
        .route("/api/ask", post(api::ask))
        .route("/api/feedback", post(feedback::feedback))
        .route("/api/videos", get(api::videos))
        .route("/api/videos/{id}", get(api::video))
        .route("/api/videos/{id}/language", post(api::set_language))
        .route("/api/jobs", get(api::jobs))
        .route("/api/reindex", post(api::reindex))
        .route("/api/openapi.json", get(api::openapi_json))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics_text))
        .fallback(not_found)
        .layer(CompressionLayer::new());
    // Media is not compressed: byte ranges must address the file itself.
    let media = Router::new()
        .route("/media/{video_id}", get(files::media))
        .route("/thumbnails/{segment_id}", get(files::thumbnail));
    app.merge(media)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .layer(middleware::from_fn_with_state(state.clone(), guard::shield))
        .layer(middleware::from_fn(limit_query))
        .layer(middleware::from_fn(track))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(limit, timeout))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
