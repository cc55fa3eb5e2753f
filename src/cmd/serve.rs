//! `kino serve`: watcher + workers + web server in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kino_ingest::watch::{WatchEvent, WatchOptions, Watcher};
use kino_store::{Store, VideoStatus};

use crate::config::Config;
use crate::engines::Versions;
use crate::error::usage;
use crate::library::{self, Registration};
use crate::query::Engine;
use crate::worker::{self, WorkerEvent, WorkerOptions};

/// Missing videos are purged after this long.
const MISSING_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// `kino serve`.
pub fn serve(config: &Config, libraries: &[PathBuf], bind: &str, token: Option<String>) -> Result<()> {
    let bind: SocketAddr = bind
        .parse()
        .map_err(|e| usage(format!("--bind {bind}: not an address like 127.0.0.1:8080 ({e})")))?;
    let web_config = kino_web::WebConfig {
        bind,
        token: token.filter(|t| !t.is_empty()),
        library_roots: libraries.to_vec(),
        thumbnails_dir: Some(config.home.join("thumbnails")),
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
    let (store, pipeline) = super::index::start_pipeline(config, &rt)?;
    let stop = super::index::install_shutdown_flag();
    rt.block_on(worker::reclaim_dead_local_leases(&store))?;

    let reindex_store = store.clone();
    let handle = rt.handle().clone();
    let engine = Engine::new(store.clone(), pipeline.text_encoder()).with_reindex(move |video, stale| {
        let store = reindex_store.clone();
        handle.block_on(async move { enqueue_reindex(&store, video, stale).await })
    });
    let engine: Arc<dyn kino_web::QueryEngine> = Arc::new(engine);

    let web_stop = stop.clone();
    let shutdown = async move {
        while !web_stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let web = rt.spawn(kino_web::serve(web_config, store.clone(), engine, shutdown));

    std::thread::scope(|s| -> Result<()> {
        // Watcher: new, changed, moved and deleted files.
        if !libraries.is_empty() {
            let (watcher, events) = Watcher::start(libraries, WatchOptions::default())?;
            let store = store.clone();
            let handle = rt.handle().clone();
            let stop = &stop;
            let current = pipeline.versions();
            let roots: Vec<PathBuf> = libraries.iter().filter_map(|l| std::fs::canonicalize(l).ok()).collect();
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match events.recv_timeout(Duration::from_millis(200)) {
                        Ok(ev) => {
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
            let needs = reg.needs_index(current, false);
            match &reg {
                Registration::Moved { from, .. } => tracing::info!(from, to = %v.path, "video moved; index kept"),
                Registration::Duplicate { of, .. } => tracing::info!(path = %v.path, of, "duplicate of a known video"),
                _ => {}
            }
            if needs {
                store.enqueue_job(v.id, "index").await?;
                tracing::info!(path = %v.path, "queued for indexing");
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
            tracing::info!(missing = gone, "library scan complete");
        }
    }
    Ok(())
}

/// Queues reindex jobs (for the web's reindex buttons).
pub async fn enqueue_reindex(store: &Store, video: Option<i64>, stale: bool) -> Result<serde_json::Value> {
    let mut n = 0;
    for v in store.videos().await? {
        if matches!(v.status, VideoStatus::Missing | VideoStatus::Duplicate) {
            continue;
        }
        let pick = match video {
            Some(id) => v.id == id,
            None => !stale || v.needs_vision || v.status != VideoStatus::Done,
        };
        if pick {
            store.enqueue_job(v.id, "reindex").await?;
            n += 1;
        }
    }
    Ok(serde_json::json!({ "queued": n }))
}
