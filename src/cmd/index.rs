//! `kino ingest`, `kino reindex`, `kino worker`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kino_store::{Store, VideoStatus};
use serde_json::json;

use crate::config::Config;
use crate::engines::Engines;
use crate::library::{self, Registration};
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::staleness::{self, Ask};
use crate::worker::{self, WorkerEvent, WorkerOptions};

/// Sets a flag on SIGINT / SIGTERM (graceful shutdown: stop taking jobs,
/// release the ones in flight). A second signal exits at once.
pub fn install_shutdown_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if s.swap(true, Ordering::SeqCst) {
            say!("kino: stopping now");
            std::process::exit(130);
        }
        say!("kino: stopping: finishing up (press Ctrl-C again to stop at once)");
    });
    stop
}

/// Opens the store and loads the models into a pipeline.
pub fn start_pipeline(config: &Config, rt: &tokio::runtime::Runtime) -> Result<(Store, Arc<Pipeline>)> {
    kino_ingest::init();
    let store = rt.block_on(Store::open(&config.db))?;
    let engines = Arc::new(Engines::load(config)?);
    let mut opts = PipelineOptions::new(config.home.join("thumbnails"));
    opts.features = Some(config.features_dir());
    opts.features_max_bytes = config.features_max_bytes;
    let pipeline = Arc::new(Pipeline::new(store.clone(), rt.handle().clone(), engines, opts));
    Ok((store, pipeline))
}

/// Runs `jobs` workers until the queue is empty (or `stop`), reporting
/// events to `on_event`. Returns why the workers gave up before the queue
/// was empty (the store kept refusing to hand out jobs), if they did.
pub fn drain_queue(
    pipeline: &Arc<Pipeline>,
    rt: &tokio::runtime::Runtime,
    jobs: usize,
    stop: &AtomicBool,
    on_event: &(dyn Fn(WorkerEvent) + Sync),
) -> Option<String> {
    let opts = WorkerOptions {
        exit_when_idle: true,
        ..WorkerOptions::default()
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs.max(1))
            .map(|n| {
                let opts = opts.clone();
                let handle = rt.handle().clone();
                s.spawn(move || {
                    let owner = worker::owner_name(n);
                    worker::run_worker(pipeline, &handle, &owner, &opts, stop, on_event)
                })
            })
            .collect();
        workers.into_iter().filter_map(|w| w.join().ok().flatten()).next()
    })
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    per_video: Mutex<HashMap<i64, ProgressBar>>,
}

impl Bars {
    fn new(total: u64, quiet: bool) -> Bars {
        let multi = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let overall = multi.add(ProgressBar::new(total));
        overall.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} videos, {elapsed} elapsed, ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        overall.set_prefix("overall");
        Bars {
            multi,
            overall,
            per_video: Mutex::new(HashMap::new()),
        }
    }

    fn on_event(&self, ev: &WorkerEvent) {
        match ev {
            WorkerEvent::Started { job, path } => {
                let bar = self.multi.add(ProgressBar::new(1));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>8} [{bar:30}] {percent:>3}% {msg} (ETA {eta})")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_prefix(format!("#{}", job.video_id));
                bar.set_message(short_name(path));
                if let Ok(mut m) = self.per_video.lock() {
                    m.insert(job.video_id, bar);
                }
            }
            WorkerEvent::Progress(p) => {
                if let Ok(m) = self.per_video.lock() {
                    if let Some(bar) = m.get(&p.video_id) {
                        bar.set_length(p.duration_ms.max(1) as u64);
                        bar.set_position(p.done_ms.clamp(0, p.duration_ms.max(1)) as u64);
                        if p.frames % 5 == 0 {
                            let secs = bar.elapsed().as_secs_f64().max(1e-3);
                            bar.set_message(format!("{} frames, {:.1} frames/s", p.frames, p.frames as f64 / secs));
                        }
                    }
                }
            }
            WorkerEvent::Finished { job, path, result } => {
                if let Ok(mut m) = self.per_video.lock() {
                    if let Some(bar) = m.remove(&job.video_id) {
                        bar.finish_and_clear();
                    }
                }
                match result {
                    Ok(o) => {
                        let _ = self.multi.println(format!(
                            "  indexed {} ({} segments, {} frames, {} cues{})",
                            short_name(path),
                            o.segments,
                            o.frames,
                            o.cues,
                            if o.needs_vision { ", without vision" } else { "" }
                        ));
                        for w in &o.warnings {
                            let _ = self.multi.println(format!("    warning: {w}"));
                        }
                    }
                    Err(e) if e == "cancelled" => {}
                    Err(e) => {
                        let _ = self.multi.println(format!("  FAILED  {}: {e}", short_name(path)));
                    }
                }
                self.overall.inc(1);
            }
        }
    }
}

fn short_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.into())
}

/// `kino ingest PATH...`
pub fn ingest(config: &Config, paths: &[PathBuf], json_out: bool, quiet: bool) -> Result<()> {
    let files = library::collect_files(paths)?;
    if files.is_empty() {
        return Err(crate::error::usage(format!(
            "no video files found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let rt = super::runtime()?;
    let (store, pipeline) = start_pipeline(config, &rt)?;
    let stop = install_shutdown_flag();
    rt.block_on(worker::reclaim_dead_local_leases(&store))?;

    // Register every file; queue what needs indexing.
    let mut rows: Vec<(i64, String, &'static str)> = Vec::new();
    let mut queued = HashSet::new();
    let current = pipeline.versions();
    for f in &files {
        let reg = match rt.block_on(library::register(&store, f)) {
            Ok(r) => r,
            // A full disk fails every file alike: stop here, saying where.
            Err(e)
                if e.downcast_ref::<kino_store::StoreError>()
                    .is_some_and(|s| s.is_disk_full()) =>
            {
                let why = match e.downcast::<kino_store::StoreError>() {
                    Ok(s) => store.disk_full_or(s).to_string(),
                    Err(e) => format!("{e:#}"),
                };
                rt.block_on(store.close());
                anyhow::bail!("{}: not registered: {why}", f.display());
            }
            Err(e) => {
                say!("kino: {}: {e:#}", f.display());
                rows.push((-1, f.display().to_string(), "failed"));
                continue;
            }
        };
        let v = reg.video().clone();
        let stale = reg.stale_stage(&current, true);
        let label = match &reg {
            Registration::New(_) => "new",
            Registration::Changed(_) => "changed",
            Registration::Unchanged(_) => "unchanged",
            Registration::Moved { .. } => "moved",
            Registration::Duplicate { .. } => "duplicate",
        };
        if let Some(stage) = stale {
            tracing::debug!(path = %v.path, stage = stage.name(), "stale: queued for indexing");
            if rt
                .block_on(store.enqueue_job_unless_indexed_since(&v, "index"))?
                .is_some()
            {
                queued.insert(v.id);
            }
        }
        rows.push((v.id, v.path.clone(), label));
    }

    let bars = Bars::new(queued.len() as u64, quiet || json_out);
    let started = Instant::now();
    let frames = std::sync::atomic::AtomicU64::new(0);
    let gave_up = drain_queue(&pipeline, &rt, pipeline.jobs(), &stop, &|ev| {
        if let WorkerEvent::Finished { result: Ok(o), .. } = &ev {
            frames.fetch_add(o.frames, Ordering::Relaxed);
        }
        bars.on_event(&ev);
    });
    bars.overall.finish_and_clear();
    let elapsed = started.elapsed();

    // Report from the store: the truth after the run.
    let mut failed = Vec::new();
    let mut summary: HashMap<&str, usize> = HashMap::new();
    for (id, path, label) in &rows {
        let video = if *id >= 0 { rt.block_on(store.video(*id))? } else { None };
        let (status, error, segments) = match &video {
            Some(v) => {
                let n = rt.block_on(store.segment_count_of(v.id))? as usize;
                (v.status.as_str().to_string(), v.error.clone(), n)
            }
            None => ("failed".to_string(), Some("could not be registered".to_string()), 0),
        };
        let status = if !queued.contains(id) && status == "done" {
            "unchanged".to_string()
        } else {
            status
        };
        let status = if *label == "duplicate" {
            "duplicate".to_string()
        } else {
            status
        };
        if status == "failed" {
            failed.push((path.clone(), error.clone().unwrap_or_default()));
        }
        *summary
            .entry(match status.as_str() {
                "done" => "indexed",
                "unchanged" => "unchanged",
                "duplicate" => "duplicates",
                "failed" => "failed",
                _ => "not finished",
            })
            .or_default() += 1;
        if json_out {
            let mut o = json!({"id": id, "path": path, "status": status, "segments": segments});
            if let Some(e) = error.filter(|_| status == "failed") {
                o["error"] = json!(e);
            }
            if *label == "moved" {
                o["moved"] = json!(true);
            }
            if let Some(w) = video.as_ref().map(|v| &v.warnings).filter(|w| !w.is_empty()) {
                o["warnings"] = json!(w);
            }
            out!("{o}");
        }
    }
    if !json_out && !quiet {
        let mut parts: Vec<String> = summary.iter().map(|(k, v)| format!("{v} {k}")).collect();
        parts.sort();
        say!(
            "kino: {} in {:.1}s ({:.1} frames/s)",
            parts.join(", "),
            elapsed.as_secs_f64(),
            frames.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64().max(1e-3)
        );
        for (p, e) in &failed {
            say!("  failed: {p}: {e}");
        }
    }
    rt.block_on(store.close());
    if stop.load(Ordering::Relaxed) {
        anyhow::bail!("interrupted: unfinished videos are queued and resume on the next run");
    }
    if let Some(why) = gave_up {
        let left = summary.get("not finished").copied().unwrap_or(0);
        anyhow::bail!("{left} videos not finished: {why}; they resume on the next run");
    }
    if !failed.is_empty() {
        anyhow::bail!("{} of {} files failed", failed.len(), rows.len());
    }
    Ok(())
}

/// `kino reindex --all | --stale | --video ID`
pub fn reindex(config: &Config, all: bool, stale: bool, video: Option<i64>, json_out: bool) -> Result<()> {
    if !all && !stale && video.is_none() {
        return Err(crate::error::usage("say what to reindex: --all, --stale or --video ID"));
    }
    let rt = super::runtime()?;
    let (store, pipeline) = start_pipeline(config, &rt)?;
    let stop = install_shutdown_flag();
    rt.block_on(worker::reclaim_dead_local_leases(&store))?;
    let current = pipeline.versions();
    let videos = rt.block_on(store.videos())?;
    let mut chosen = Vec::new();
    for v in videos {
        if matches!(v.status, VideoStatus::Missing | VideoStatus::Duplicate) {
            continue;
        }
        let pick = match video {
            Some(id) => v.id == id,
            None if all => true,
            // An explicit command: failed videos are retried too.
            None => staleness::stale_stage(
                &v,
                &current,
                Ask {
                    content_changed: false,
                    retry_failed: true,
                },
            )
            .is_some(),
        };
        if pick {
            chosen.push(v.id);
        }
    }
    if let Some(id) = video {
        if chosen.is_empty() {
            return Err(crate::error::usage(format!(
                "no video with id {id} (or it is missing / a duplicate)"
            )));
        }
    }
    for id in &chosen {
        rt.block_on(store.enqueue_job(*id, "reindex"))?;
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let bars = Bars::new(chosen.len() as u64, json_out);
    let gave_up = drain_queue(&pipeline, &rt, pipeline.jobs(), &stop, &|ev| {
        if let WorkerEvent::Finished { result, .. } = &ev {
            match result {
                Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                Err(_) => failed.fetch_add(1, Ordering::Relaxed),
            };
        }
        bars.on_event(&ev);
    });
    bars.overall.finish_and_clear();
    let summary = json!({
        "selected": chosen.len(),
        "reindexed": done.load(Ordering::Relaxed),
        "failed": failed.load(Ordering::Relaxed),
    });
    if json_out {
        out!("{summary}");
    } else {
        say!(
            "kino: reindexed {} of {} videos ({} failed)",
            summary["reindexed"],
            summary["selected"],
            summary["failed"]
        );
    }
    rt.block_on(store.close());
    if let Some(why) = gave_up {
        anyhow::bail!("not every video was reindexed: {why}; run `kino reindex` again once it is cured");
    }
    if failed.load(Ordering::Relaxed) > 0 {
        anyhow::bail!("{} videos failed to reindex", failed.load(Ordering::Relaxed));
    }
    Ok(())
}

/// `kino worker`: workers only, until SIGINT/SIGTERM.
pub fn worker(config: &Config, metrics: Option<&str>) -> Result<()> {
    let rt = super::runtime()?;
    // The metrics endpoint first: bad or busy addresses fail before the
    // models load, and the pipeline's metrics land in its recorder.
    let metrics = match metrics {
        Some(addr) => {
            let addr: std::net::SocketAddr = addr.parse().map_err(|e| {
                crate::error::usage(format!("--metrics {addr}: not an address like 127.0.0.1:9101 ({e})"))
            })?;
            kino_web::install_metrics();
            let listener = rt
                .block_on(tokio::net::TcpListener::bind(addr))
                .with_context(|| format!("--metrics {addr}: cannot listen there"))?;
            Some(listener)
        }
        None => None,
    };
    let (store, pipeline) = start_pipeline(config, &rt)?;
    let stop = install_shutdown_flag();
    if let Some(listener) = metrics {
        let stop = stop.clone();
        let shutdown = async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        };
        rt.spawn(async move {
            if let Err(e) = kino_web::serve_metrics(listener, shutdown).await {
                tracing::warn!(error = %format!("{e:#}"), "the metrics endpoint stopped");
            }
        });
    }
    rt.block_on(worker::reclaim_dead_local_leases(&store))?;
    tracing::info!("worker started; waiting for jobs");
    let opts = WorkerOptions::default();
    std::thread::scope(|s| {
        for n in 0..pipeline.jobs() {
            let opts = opts.clone();
            let handle = rt.handle().clone();
            let pipeline = &pipeline;
            let stop = &stop;
            s.spawn(move || {
                let owner = worker::owner_name(n);
                worker::run_worker(pipeline, &handle, &owner, &opts, stop, &|ev| {
                    if let WorkerEvent::Finished { path, result, .. } = &ev {
                        match result {
                            Ok(o) => tracing::info!(path, segments = o.segments, frames = o.frames, "indexed"),
                            Err(e) => tracing::warn!(path, error = %e, "job failed"),
                        }
                    }
                });
            });
        }
    });
    rt.block_on(store.close());
    Ok(())
}
