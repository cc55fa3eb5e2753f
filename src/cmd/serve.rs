//! `kino serve`: watcher + workers + web server in one process.
//!
//! It also watches the vision model's folder: weights that appear (or
//! change) while it runs are loaded, swapped into the running pipeline, and
//! every video the staleness rule then calls stale is queued for reindexing
//! in the background. Search stays available throughout, and jobs that
//! already started finish with the models they started with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use kino_ingest::watch::{WatchEvent, WatchOptions, Watcher};
use kino_store::{JobState, Store, VideoStatus};

use crate::config::Config;
use crate::engines::{self, Versions};
use crate::error::usage;
use crate::library::{self, Registration};
use crate::pipeline::Pipeline;
use crate::query::Engine;
use crate::staleness::{self, Ask};
use crate::worker::{self, WorkerEvent, WorkerOptions};

/// Missing videos are purged after this long.
const MISSING_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often the vision and speech models' folders are looked at (`KINO_MODEL_POLL_MS`).
const MODEL_POLL: Duration = Duration::from_secs(3);

/// The files of a model folder whose change means a new model.
const MODEL_FILES: [&str; 6] = [
    "config.json",
    "model.safetensors",
    engines::VISION_INT8_FILE,
    "model.bin",
    "preprocessor_config.json",
    "kino-manifest.json",
];

/// A cheap fingerprint of a model folder: presence, size and modification
/// time of each of [`MODEL_FILES`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelFingerprint(Vec<Option<(u64, Option<SystemTime>)>>);

impl ModelFingerprint {
    fn of(dir: &Path) -> ModelFingerprint {
        Self::of_paths(MODEL_FILES.iter().map(|f| dir.join(f)))
    }

    fn of_paths(paths: impl Iterator<Item = PathBuf>) -> ModelFingerprint {
        ModelFingerprint(
            paths
                .map(|p| {
                    let m = std::fs::metadata(p).ok().filter(|m| m.is_file())?;
                    Some((m.len(), m.modified().ok()))
                })
                .collect(),
        )
    }

    /// The on-screen text stage's files: its three models, their manifest
    /// and ONNX Runtime's library.
    fn of_ocr(config: &Config) -> ModelFingerprint {
        let dir = config.ocr_model_dir();
        let files = engines::OCR_FILES
            .iter()
            .chain(&["kino-manifest.json"])
            .map(|f| dir.join(f));
        Self::of_paths(files.chain([config.onnxruntime_lib()]))
    }
}

/// How often the index looks for other processes' changes without being
/// told (`KINO_SYNC_POLL_MS`): Postgres notifies at once, so its timer is
/// only a safety net; SQLite has only the timer.
fn sync_poll(store: &Store) -> Duration {
    let default = match store.backend() {
        kino_store::Backend::Postgres => 5_000,
        kino_store::Backend::Sqlite => 1_000,
    };
    let ms = std::env::var("KINO_SYNC_POLL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .unwrap_or(default);
    Duration::from_millis(ms)
}

/// The search index kept under `$KINO_HOME/index` (vectors memory-mapped,
/// a snapshot opened on the next start), with approximate shortlists from
/// `KINO_ANN_MIN_SEGMENTS` segments (default 50,000; below, the exact scan
/// is as fast), on huge pages unless `KINO_HUGE_PAGES=off`.
fn shortlist_config(config: &Config) -> Result<kino_store::ShortlistConfig> {
    let mut c = kino_store::ShortlistConfig {
        dir: Some(config.home.join("index")),
        mix: super::shortlist_mix(),
        huge_pages: super::huge_pages()?,
        ..Default::default()
    };
    if let Some(n) = std::env::var("KINO_ANN_MIN_SEGMENTS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        c.min_segments = n;
    }
    Ok(c)
}

/// `KINO_SEARCH_CONCURRENCY`: searches answered at once (default: twice the cores).
fn search_concurrency() -> Result<usize> {
    match std::env::var("KINO_SEARCH_CONCURRENCY") {
        Err(_) => Ok(kino_web::default_search_concurrency()),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(usage(format!(
                "KINO_SEARCH_CONCURRENCY={v}: expected a whole number of searches, at least 1"
            ))),
        },
    }
}

/// `kino serve`.
pub fn serve(config: &Config, libraries: &[PathBuf], bind: &str, token: Option<String>) -> Result<()> {
    let bind: SocketAddr = bind
        .parse()
        .map_err(|e| usage(format!("--bind {bind}: not an address like 127.0.0.1:8080 ({e})")))?;
    // Read (and checked) before anything starts.
    let shortlists = shortlist_config(config)?;
    let web_config = kino_web::WebConfig {
        bind,
        token: token.filter(|t| !t.is_empty()),
        library_roots: libraries.to_vec(),
        thumbnails_dir: Some(config.home.join("thumbnails")),
        search_concurrency: search_concurrency()?,
        ..kino_web::WebConfig::default()
    };
    kino_web::check_bind(&web_config).map_err(|e| usage(e.to_string()))?;
    for l in libraries {
        if !l.is_dir() {
            return Err(usage(format!("--library {}: not a folder", l.display())));
        }
    }
    std::fs::create_dir_all(config.home.join("thumbnails"))
        .with_context(|| format!("creating {}", config.home.join("thumbnails").display()))?;

    // The recorder first, so the pipeline's metrics reach /metrics.
    kino_web::install_metrics();
    let rt = super::runtime()?;
    // Taken before loading, so weights that change during the load are seen.
    let vision_dir = config.vision_model_dir();
    let vision_files = ModelFingerprint::of(&vision_dir);
    let speech_dir = config.speech_model_dir();
    let speech_files = ModelFingerprint::of(&speech_dir);
    let ocr_files = ModelFingerprint::of_ocr(config);
    let fusion_dir = config.fusion_dir();
    let fusion_files = ModelFingerprint::of_paths(std::iter::once(crate::fusion_weights::current_file(&fusion_dir)));
    let (store, pipeline) = super::index::start_pipeline(config, &rt)?;
    let stop = super::index::install_shutdown_flag();
    rt.block_on(worker::reclaim_dead_local_leases(&store))?;

    let reindex_store = store.clone();
    let reindex_pipeline = pipeline.clone();
    let handle = rt.handle().clone();
    let engine = Engine::new(store.clone(), pipeline.text_encoder()).with_reindex(move |video, stale| {
        let store = reindex_store.clone();
        let current = reindex_pipeline.versions();
        handle.block_on(async move { enqueue_reindex(&store, &current, video, stale).await })
    });
    let stages_pipeline = pipeline.clone();
    let engine = engine.with_stages_off(move || stages_pipeline.stages_off());
    let engine: Arc<dyn kino_web::QueryEngine> = Arc::new(engine);

    let web_stop = stop.clone();
    let shutdown = async move {
        while !web_stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let web = rt.spawn(kino_web::serve(web_config, store.clone(), engine, shutdown));
    // Other processes' writes (workers, other replicas) reach the index.
    let follow_stop = stop.clone();
    let follower = store.clone();
    let follow_every = sync_poll(&store);
    rt.spawn(async move {
        let stop = async move {
            while !follow_stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        follower.follow_changes(follow_every, stop).await;
    });
    // The index is loaded now rather than on the first search (from its
    // snapshot when there is one); on a large library its approximate
    // shortlists follow in the background (search is exact until they are
    // ready). It is saved every minute it changed.
    store.enable_shortlists(shortlists);
    let loader = store.clone();
    rt.spawn(async move {
        let started = std::time::Instant::now();
        match loader.load_index().await {
            Ok(()) => {
                let segments = loader.with_index(|i| i.len()).await.unwrap_or(0);
                let secs = started.elapsed().as_secs_f32();
                tracing::info!(segments, secs, "search index loaded");
            }
            Err(e) => tracing::warn!(error = %e, "search index not loaded; the first search loads it"),
        }
    });
    let save_stop = stop.clone();
    let saver = store.clone();
    rt.spawn(async move {
        let stop = async move {
            while !save_stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        saver.keep_index_saved(Duration::from_secs(60), stop).await;
    });

    std::thread::scope(|s| -> Result<()> {
        // Watcher: new, changed, moved and deleted files.
        if !libraries.is_empty() {
            let (watcher, events) = Watcher::start(libraries, WatchOptions::default())?;
            let store = store.clone();
            let handle = rt.handle().clone();
            let stop = &stop;
            let pipeline = &pipeline;
            let roots: Vec<PathBuf> = libraries.iter().filter_map(|l| std::fs::canonicalize(l).ok()).collect();
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match events.recv_timeout(Duration::from_millis(200)) {
                        Ok(ev) => {
                            // The versions now: a model may have been swapped in.
                            let current = pipeline.versions();
                            if let Err(e) = handle.block_on(on_watch_event(&store, &roots, &current, ev)) {
                                tracing::warn!(error = %format!("{e:#}"), "library change not recorded");
                            }
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(_) => break,
                    }
                }
                watcher.stop();
            });
        }
        // The vision and speech models' folders: new weights are loaded and
        // swapped in.
        let poll = std::env::var("KINO_MODEL_POLL_MS")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|ms| Duration::from_millis(ms.max(10)))
            .unwrap_or(MODEL_POLL);
        {
            let (pipeline, store, handle, stop) = (&pipeline, store.clone(), rt.handle().clone(), &stop);
            let (dir, seen) = (vision_dir.clone(), vision_files);
            s.spawn(move || {
                watch_model(
                    || ModelFingerprint::of(&dir),
                    seen,
                    poll,
                    stop,
                    || vision_changed(pipeline, &store, &handle, &dir, config.precision),
                )
            });
        }
        if config.speech != crate::config::SpeechMode::Off {
            let (pipeline, store, handle, stop) = (&pipeline, store.clone(), rt.handle().clone(), &stop);
            let (dir, seen) = (speech_dir.clone(), speech_files);
            s.spawn(move || {
                watch_model(
                    || ModelFingerprint::of(&dir),
                    seen,
                    poll,
                    stop,
                    || speech_changed(pipeline, &store, &handle, config),
                )
            });
        }
        if config.ocr != crate::config::OcrMode::Off {
            let (pipeline, store, handle, stop) = (&pipeline, store.clone(), rt.handle().clone(), &stop);
            s.spawn(move || {
                watch_model(
                    || ModelFingerprint::of_ocr(config),
                    ocr_files,
                    poll,
                    stop,
                    || screen_changed(pipeline, &store, &handle, config),
                )
            });
        }
        // `kino train` (or its --rollback) installed other fusion weights.
        {
            let (pipeline, store, handle, stop) = (&pipeline, store.clone(), rt.handle().clone(), &stop);
            let dir = fusion_dir.clone();
            s.spawn(move || {
                watch_model(
                    || ModelFingerprint::of_paths(std::iter::once(crate::fusion_weights::current_file(&dir))),
                    fusion_files,
                    poll,
                    stop,
                    || fusion_changed(pipeline, &store, &handle, &dir),
                )
            });
        }
        // Housekeeping: purge videos missing for longer than the grace period.
        {
            let store = store.clone();
            let handle = rt.handle().clone();
            let stop = &stop;
            s.spawn(move || {
                let mut tick = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    tick += 1;
                    if tick % 7200 == 1 {
                        let cutoff = kino_store::now_ms() - MISSING_GRACE.as_millis() as i64;
                        match handle.block_on(store.purge_missing(cutoff)) {
                            Ok(n) if n > 0 => tracing::info!(purged = n, "purged videos missing for over a week"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "purging missing videos failed"),
                        }
                    }
                    if let Ok(counts) = handle.block_on(store.job_counts()) {
                        for state in ["queued", "running", "done", "failed"] {
                            let n = counts.iter().find(|(s, _)| s == state).map(|(_, n)| *n).unwrap_or(0);
                            metrics::gauge!("kino_jobs", "state" => state).set(n as f64);
                        }
                    }
                }
            });
        }
        // Workers.
        for n in 0..pipeline.jobs() {
            let pipeline = &pipeline;
            let handle = rt.handle().clone();
            let stop = &stop;
            s.spawn(move || {
                let owner = worker::owner_name(n);
                worker::run_worker(pipeline, &handle, &owner, &WorkerOptions::default(), stop, &|ev| {
                    if let WorkerEvent::Finished { path, result, .. } = &ev {
                        match result {
                            Ok(o) => tracing::info!(path, segments = o.segments, frames = o.frames, "indexed"),
                            Err(e) => tracing::warn!(path, error = %e, "indexing failed"),
                        }
                    }
                });
            });
        }
        // The web server ends on shutdown (or on its own error).
        let r = rt.block_on(web);
        stop.store(true, Ordering::SeqCst);
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("web server task failed: {e}")),
        }
    })?;
    rt.block_on(store.close());
    Ok(())
}

async fn on_watch_event(store: &Store, roots: &[PathBuf], current: &Versions, ev: WatchEvent) -> Result<()> {
    match ev {
        WatchEvent::Stable { path, .. } => {
            let reg = library::register(store, &path).await?;
            let v = reg.video();
            let stale = reg.stale_stage(current, false);
            match &reg {
                Registration::Moved { from, .. } => tracing::info!(from, to = %v.path, "video moved; index kept"),
                Registration::Duplicate { of, .. } => tracing::info!(path = %v.path, of, "duplicate of a known video"),
                _ => {}
            }
            if let Some(stage) = stale {
                if store.enqueue_job_unless_indexed_since(v, "index").await?.is_some() {
                    tracing::info!(path = %v.path, stale_from = stage.name(), "queued for indexing");
                }
            }
        }
        WatchEvent::Removed { path } => {
            let p = path.display().to_string();
            if let Some(v) = store.video_by_path(&p).await? {
                // A move shows up as Removed + Stable(new path): the hash match in
                // `register` then restores it under the new path.
                store.mark_video_missing(v.id).await?;
                tracing::info!(path = p, "video missing; hidden from search");
            }
        }
        WatchEvent::ScanComplete => {
            // Files deleted while kino was down: known, under a watched root, gone.
            let mut gone = 0;
            for v in store.videos().await? {
                let p = std::path::Path::new(&v.path);
                if v.status != VideoStatus::Missing && roots.iter().any(|r| p.starts_with(r)) && !p.exists() {
                    store.mark_video_missing(v.id).await?;
                    gone += 1;
                }
            }
            // Videos left queued without a job (an enqueue that failed while
            // registering, a crash between the two) get one now.
            let mut orphans = 0;
            for v in store.videos().await? {
                if v.status == VideoStatus::Queued
                    && !store
                        .jobs_of_video(v.id)
                        .await?
                        .iter()
                        .any(|j| matches!(j.state, JobState::Queued | JobState::Running))
                    && store.enqueue_job_unless_indexed_since(&v, "index").await?.is_some()
                {
                    orphans += 1;
                }
            }
            tracing::info!(missing = gone, requeued = orphans, "library scan complete");
        }
    }
    Ok(())
}

/// Queues reindex jobs (for the web's reindex buttons): one video, every
/// video (`stale` false), or the videos the staleness rule calls stale
/// (failed ones included: the button is an explicit request).
pub async fn enqueue_reindex(
    store: &Store,
    current: &Versions,
    video: Option<i64>,
    stale: bool,
) -> Result<serde_json::Value> {
    let mut n = 0;
    for v in store.videos().await? {
        if matches!(v.status, VideoStatus::Missing | VideoStatus::Duplicate) {
            continue;
        }
        let pick = match video {
            Some(id) => v.id == id,
            None if !stale => true,
            None => staleness::stale_stage(
                &v,
                current,
                Ask {
                    content_changed: false,
                    retry_failed: true,
                },
            )
            .is_some(),
        };
        if pick {
            store.enqueue_job(v.id, "reindex").await?;
            n += 1;
        }
    }
    Ok(serde_json::json!({ "queued": n }))
}

/// After a model swap: queues a reindex job for every video the staleness
/// rule calls stale against `current`, except those whose job is already
/// waiting (it will start with the new models) or running (a job that ends
/// with superseded models queues its video again, see
/// [`worker::requeue_if_stale`]). Returns the jobs queued.
pub async fn queue_stale(store: &Store, current: &Versions) -> Result<usize> {
    let mut n = 0;
    for v in store.videos().await? {
        let Some(stage) = staleness::stale_stage(&v, current, Ask::default()) else {
            continue;
        };
        if matches!(v.status, VideoStatus::Queued | VideoStatus::Indexing)
            && store
                .jobs_of_video(v.id)
                .await?
                .iter()
                .any(|j| matches!(j.state, JobState::Queued | JobState::Running))
        {
            continue;
        }
        if store.enqueue_job_unless_indexed_since(&v, "reindex").await?.is_none() {
            continue;
        }
        tracing::debug!(path = %v.path, stale_from = stage.name(), "queued for reindexing");
        n += 1;
    }
    Ok(n)
}

/// Polls a model's folder every `poll` until `stop`. A change (new,
/// replaced or removed files; acted on once the files have stayed the same
/// for one more poll, so a copy in progress is not loaded) calls `changed`.
fn watch_model(
    fingerprint: impl Fn() -> ModelFingerprint,
    mut seen: ModelFingerprint,
    poll: Duration,
    stop: &AtomicBool,
    mut changed: impl FnMut(),
) {
    let mut settling: Option<ModelFingerprint> = None;
    while !stop.load(Ordering::Relaxed) {
        let step = Duration::from_millis(50).min(poll);
        let mut waited = Duration::ZERO;
        while waited < poll && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(step);
            waited += step;
        }
        let now = fingerprint();
        if now == seen {
            settling = None;
            continue;
        }
        if settling.as_ref() != Some(&now) {
            settling = Some(now);
            continue;
        }
        settling = None;
        seen = now;
        changed();
    }
}

/// Queues the videos the `current` versions make stale, and says so.
fn requeue(store: &Store, rt: &tokio::runtime::Handle, current: &Versions, what: &str) {
    match rt.block_on(queue_stale(store, current)) {
        Ok(n) => tracing::info!(queued = n, "{what}; reindexing the videos now stale"),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "queueing stale videos failed"),
    }
}

/// The vision model's folder changed: load the model, swap it into
/// `pipeline`, queue the videos it makes stale.
fn vision_changed(
    pipeline: &Pipeline,
    store: &Store,
    rt: &tokio::runtime::Handle,
    dir: &Path,
    precision: crate::cli::PrecisionArg,
) {
    match engines::load_vision(dir, precision) {
        Ok(Some(swin)) if pipeline.versions().vision == Some(engines::vision_version(&swin)) => {
            tracing::debug!("the vision model's files were touched but its weights are the same");
        }
        Ok(Some(swin)) => {
            let version = swin.version();
            match pipeline.set_vision(Some(Arc::new(swin))) {
                Ok(current) => requeue(
                    store,
                    rt,
                    &current,
                    &format!("vision model loaded from {} ({version})", dir.display()),
                ),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "the new vision model cannot be used; keeping the current models")
                }
            }
        }
        Ok(None) => {
            if pipeline.versions().vision.is_some() {
                tracing::info!(
                    "the vision weights in {} are gone; the loaded model stays in use until kino restarts",
                    dir.display()
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "the vision model does not load; keeping the current models")
        }
    }
}

/// The fusion weights in use changed (`kino train`, `kino train
/// --rollback`): load them, swap them into `pipeline`, queue the videos
/// fused with other weights (re-fused from their kept features).
fn fusion_changed(pipeline: &Pipeline, store: &Store, rt: &tokio::runtime::Handle, dir: &Path) {
    let config = pipeline.fusion().config();
    let model = match crate::fusion_weights::load_current(dir, config) {
        Ok(Some((_, m))) => m,
        Ok(None) => match kino_fusion::FusionModel::identity(config.text_dim, config.visual_dim, config.heads) {
            Ok(m) => m,
            Err(e) => return tracing::warn!(error = %e, "default fusion weights"),
        },
        Err(e) => {
            return tracing::warn!(error = %format!("{e:#}"), "the new fusion weights do not load; keeping the current ones")
        }
    };
    if model.version() == pipeline.fusion().version() {
        return;
    }
    let version = model.version().to_string();
    let current = pipeline.set_fusion(Arc::new(model));
    requeue(store, rt, &current, &format!("fusion weights loaded ({version})"));
}

/// The speech model's folder changed: check and load the model, swap it
/// into `pipeline`, queue the videos not heard with it.
fn speech_changed(pipeline: &Pipeline, store: &Store, rt: &tokio::runtime::Handle, config: &Config) {
    match engines::speech_for(config) {
        Ok(Ok(speech)) if pipeline.versions().speech.as_deref() == Some(speech.version.as_str()) => {
            tracing::debug!("the speech model's files were touched but its weights are the same");
        }
        Ok(Ok(speech)) => {
            let version = speech.version.clone();
            let current = pipeline.set_speech(Some(Arc::new(speech)));
            requeue(store, rt, &current, &format!("speech model loaded ({version})"));
        }
        Ok(Err(why)) => {
            if pipeline.versions().speech.is_some() {
                tracing::info!("{why}; the loaded speech model stays in use until kino restarts");
            } else {
                tracing::warn!("speech still off: {why}");
            }
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "the speech model does not load; keeping the current models")
        }
    }
}

/// The on-screen text stage's files changed: load it, swap it into
/// `pipeline`, queue the videos it makes stale.
fn screen_changed(pipeline: &Pipeline, store: &Store, rt: &tokio::runtime::Handle, config: &Config) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = engines::ocr_threads(cores, pipeline.versions().vision.is_some());
    match engines::screen_for(config, threads) {
        Ok(Ok(screen)) if pipeline.versions().ocr.as_deref() == Some(screen.version.as_str()) => {
            tracing::debug!("the on-screen text models' files were touched but they are the same");
        }
        Ok(Ok(screen)) => {
            let version = screen.version.clone();
            let current = pipeline.set_screen(Some(Arc::new(screen)));
            requeue(
                store,
                rt,
                &current,
                &format!("on-screen text models loaded ({version})"),
            );
        }
        Ok(Err(why)) => {
            if pipeline.versions().ocr.is_some() {
                tracing::info!("{why}; the loaded on-screen text models stay in use until kino restarts");
            } else {
                tracing::warn!("on-screen text still off: {why}");
            }
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "the on-screen text models do not load; keeping the current models")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_fingerprint_changes_with_the_files_and_only_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let empty = ModelFingerprint::of(&d.join("nowhere"));
        assert_eq!(ModelFingerprint::of(d), empty, "no files: same as no folder");
        std::fs::write(d.join("config.json"), "{}").unwrap();
        let config = ModelFingerprint::of(d);
        assert_ne!(config, empty);
        std::fs::write(d.join("model.safetensors"), [0u8; 8]).unwrap();
        let weights = ModelFingerprint::of(d);
        assert_ne!(weights, config);
        assert_eq!(ModelFingerprint::of(d), weights, "nothing changed");
        std::fs::write(d.join("unrelated.txt"), "x").unwrap();
        assert_eq!(ModelFingerprint::of(d), weights, "other files do not count");
        std::fs::write(d.join("model.safetensors"), [0u8; 16]).unwrap();
        assert_ne!(ModelFingerprint::of(d), weights, "a size change counts");
        let before = ModelFingerprint::of(d);
        std::fs::write(d.join("kino-manifest.json"), "{}").unwrap();
        assert_ne!(ModelFingerprint::of(d), before, "the manifest counts");
    }
}
