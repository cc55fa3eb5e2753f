//! Job workers: claim a job, hold its lease with heartbeats, index, record
//! the outcome. Several workers (threads here, or `kino worker` processes
//! elsewhere against one Postgres) share the queue; the store's claim makes
//! sure each job goes to exactly one of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use kino_store::{Job, JobState, Store, VideoStatus};

use crate::engines::Versions;
use crate::pipeline::{IndexError, IndexOutcome, Pipeline, Progress};
use crate::staleness::{self, Ask};

/// What a worker reports while it works.
#[derive(Debug, Clone)]
pub enum WorkerEvent {
    /// A job was claimed.
    Started {
        /// The job.
        job: Job,
        /// The video's path.
        path: String,
    },
    /// Progress on a video.
    Progress(Progress),
    /// A job ended.
    Finished {
        /// The job.
        job: Job,
        /// The video's path.
        path: String,
        /// The outcome, or the error.
        result: Result<IndexOutcome, String>,
    },
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Lease length; heartbeats renew it every third of it.
    pub lease: Duration,
    /// Leave when the queue is empty (for `kino ingest` / `reindex`).
    pub exit_when_idle: bool,
    /// Pause between polls of an empty queue.
    pub poll: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        let lease = std::env::var("KINO_LEASE_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(60));
        WorkerOptions {
            lease,
            exit_when_idle: false,
            poll: Duration::from_millis(500),
        }
    }
}

/// A unique lease owner name for this process and thread: `host:pid:n`.
pub fn owner_name(n: usize) -> String {
    format!("{}:{}:{n}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Expires the leases of running jobs whose owner was a process on this
/// host that no longer exists (a `kill -9`ed kino), so they resume now
/// instead of after the lease runs out.
pub async fn reclaim_dead_local_leases(store: &Store) -> Result<usize> {
    let host = hostname();
    let mut n = 0;
    for job in store.running_jobs().await? {
        let Some(owner) = job.lease_owner.as_deref() else {
            continue;
        };
        let mut parts = owner.split(':');
        let (Some(h), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        if h != host {
            continue;
        }
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            && store.expire_lease(job.id, owner).await?
        {
            tracing::info!(job = job.id, owner, "reclaimed the lease of a dead local worker");
            n += 1;
        }
    }
    Ok(n)
}

/// Queues video `id` for reindexing when the staleness rule calls it stale
/// against `current`: for a job that ended with models swapped out while it
/// ran (it started with the old ones and finished with them). Returns
/// whether it was queued.
pub async fn requeue_if_stale(store: &Store, id: i64, current: &Versions) -> Result<bool> {
    let Some(video) = store.video(id).await? else {
        return Ok(false);
    };
    let Some(stage) = staleness::stale_stage(&video, current, Ask::default()) else {
        return Ok(false);
    };
    if store
        .enqueue_job_unless_indexed_since(&video, "reindex")
        .await?
        .is_none()
    {
        return Ok(false);
    }
    tracing::info!(path = %video.path, stale_from = stage.name(), "indexed with superseded models: queued again");
    Ok(true)
}

/// Claims that fail in a row before a worker with `exit_when_idle` gives
/// up (a long-running worker keeps trying): a full disk, or any other error.
const GIVE_UP_DISK_FULL: u32 = 3;
const GIVE_UP_OTHER: u32 = 10;

/// Runs jobs until `stop` is set (or the queue is empty with
/// `exit_when_idle`). With `exit_when_idle`, a store that keeps refusing to
/// hand out jobs (a full disk, a database gone for minutes) ends the run:
/// the reason is returned, and the jobs left resume on the next run.
pub fn run_worker(
    pipeline: &Pipeline,
    rt: &tokio::runtime::Handle,
    owner: &str,
    opts: &WorkerOptions,
    stop: &AtomicBool,
    events: &(dyn Fn(WorkerEvent) + Sync),
) -> Option<String> {
    let store = pipeline.store().clone();
    let mut backoff = Duration::from_millis(250);
    let mut failures = 0;
    while !stop.load(Ordering::Relaxed) {
        let job = match rt.block_on(store.claim_job(owner, opts.lease)) {
            Ok(j) => {
                backoff = Duration::from_millis(250);
                failures = 0;
                j
            }
            Err(e) => {
                failures += 1;
                let e = store.disk_full_or(e);
                let limit = if e.is_disk_full() {
                    GIVE_UP_DISK_FULL
                } else {
                    GIVE_UP_OTHER
                };
                if opts.exit_when_idle && failures >= limit {
                    tracing::error!(error = %e, "cannot claim a job; giving up after {failures} tries");
                    return Some(e.to_string());
                }
                tracing::warn!(error = %e, "cannot claim a job; retrying in {:?}", backoff);
                metrics::counter!("kino_failures_total", "kind" => "store").increment(1);
                sleep_unless(stop, backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let Some(job) = job else {
            // Leave only when nothing is left to do: a job waiting out a
            // retry backoff, or running elsewhere, may still come back.
            if opts.exit_when_idle {
                match rt.block_on(store.job_counts()) {
                    Ok(c) if !c.iter().any(|(s, n)| *n > 0 && (s == "queued" || s == "running")) => break,
                    _ => {}
                }
            }
            sleep_unless(stop, opts.poll);
            continue;
        };
        if let Some(why) = run_job(pipeline, rt, &store, owner, opts, stop, events, job) {
            if opts.exit_when_idle {
                return Some(why);
            }
        }
    }
    None
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !stop.load(Ordering::Relaxed) && left > Duration::ZERO {
        let s = left.min(step);
        std::thread::sleep(s);
        left = left.saturating_sub(s);
    }
}

/// Retries a store call with backoff while the database is unreachable.
/// Runs a store write, retrying what a retry may cure. A full disk is not
/// cured in seconds: after three tries the write is dropped (the job keeps
/// its state and is taken again once space returns) and the reason is put
/// in `refused`, for a run that should stop.
fn with_retry<T>(
    what: &str,
    refused: &std::cell::RefCell<Option<String>>,
    mut f: impl FnMut() -> kino_store::Result<T>,
) -> Option<T> {
    let mut backoff = Duration::from_millis(250);
    for attempt in 0..12 {
        match f() {
            Ok(v) => return Some(v),
            Err(e) if e.is_disk_full() && attempt >= 2 => {
                tracing::error!(error = %e, "{what} failed: the disk is full");
                refused.replace(Some(e.to_string()));
                return None;
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "{what}: database unavailable, retrying in {:?}", backoff);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                tracing::error!(error = %e, "{what} failed");
                return None;
            }
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn run_job(
    pipeline: &Pipeline,
    rt: &tokio::runtime::Handle,
    store: &Store,
    owner: &str,
    opts: &WorkerOptions,
    stop: &AtomicBool,
    events: &(dyn Fn(WorkerEvent) + Sync),
    job: Job,
) -> Option<String> {
    // Why a store write had to be dropped (a full disk), if one was.
    let refused = std::cell::RefCell::new(None);
    let video = match rt.block_on(store.video(job.video_id)) {
        Ok(Some(v)) => v,
        Ok(None) => {
            let _ = rt.block_on(store.fail_job(
                job.id,
                owner,
                "the video is no longer in the library",
                false,
                Duration::ZERO,
            ));
            return None;
        }
        Err(e) => {
            let _ = rt.block_on(store.fail_job(job.id, owner, &e.to_string(), true, Duration::from_secs(5)));
            return None;
        }
    };
    events(WorkerEvent::Started {
        job: job.clone(),
        path: video.path.clone(),
    });
    let _ = rt.block_on(store.set_video_status(video.id, VideoStatus::Indexing, None));
    metrics::gauge!("kino_jobs_running").increment(1.0);

    // Heartbeats: renew the lease; a lost lease or a shutdown cancels the work.
    let cancel = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let result = std::thread::scope(|s| {
        let hb_cancel = cancel.clone();
        let hb_done = done.clone();
        let hb_store = store.clone();
        let job_id = job.id;
        s.spawn(move || {
            let every = opts.lease / 3;
            while !hb_done.load(Ordering::Relaxed) {
                let mut waited = Duration::ZERO;
                while waited < every && !hb_done.load(Ordering::Relaxed) {
                    if stop.load(Ordering::Relaxed) {
                        hb_cancel.store(true, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    waited += Duration::from_millis(50);
                }
                if hb_done.load(Ordering::Relaxed) {
                    break;
                }
                match rt.block_on(hb_store.heartbeat_job(job_id, owner, opts.lease)) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = job_id, "lost the lease: stopping this job");
                        hb_cancel.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => tracing::warn!(job = job_id, error = %e, "heartbeat failed; will retry"),
                }
            }
        });
        let resume = job
            .checkpoint
            .as_deref()
            .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .and_then(|v| v["done_ms"].as_i64());
        let save = |done_ms: i64| {
            let cp = serde_json::json!({ "done_ms": done_ms }).to_string();
            with_retry("saving a checkpoint", &refused, || {
                rt.block_on(store.checkpoint_job(job_id, owner, &cp))
            })
            .unwrap_or(false)
        };
        let r = pipeline.index_video(&video, resume, &cancel, &|p| events(WorkerEvent::Progress(p)), &save);
        done.store(true, Ordering::Relaxed);
        r
    });
    metrics::gauge!("kino_jobs_running").decrement(1.0);

    let finished = match result {
        Ok(outcome) => {
            with_retry("completing a job", &refused, || {
                rt.block_on(store.complete_job(job.id, owner))
            });
            metrics::counter!("kino_jobs_total", "state" => "done").increment(1);
            // New models, or the video's speech language changed while it
            // ran: queued again when that leaves it stale.
            let language_changed = rt
                .block_on(store.video(video.id))
                .ok()
                .flatten()
                .is_some_and(|v| v.language != video.language);
            if *outcome.versions != pipeline.versions() || language_changed {
                if let Err(e) = rt.block_on(requeue_if_stale(store, video.id, &pipeline.versions())) {
                    tracing::warn!(video = video.id, error = %e, "could not queue the video again");
                }
            }
            Ok(outcome)
        }
        Err(IndexError::Cancelled) => {
            if stop.load(Ordering::Relaxed) {
                with_retry("releasing a job", &refused, || {
                    rt.block_on(store.release_job(job.id, owner))
                });
                let _ = rt.block_on(store.set_video_status(video.id, VideoStatus::Queued, None));
            }
            Err("cancelled".to_string())
        }
        Err(IndexError::BadInput(msg)) => {
            with_retry("failing a job", &refused, || {
                rt.block_on(store.fail_job(job.id, owner, &msg, false, Duration::ZERO))
            });
            let _ = rt.block_on(store.set_video_status(video.id, VideoStatus::Failed, Some(&msg)));
            metrics::counter!("kino_failures_total", "kind" => "bad_input").increment(1);
            metrics::counter!("kino_jobs_total", "state" => "failed").increment(1);
            Err(msg)
        }
        Err(IndexError::Transient(e)) => {
            let msg = format!("{e:#}");
            let backoff = Duration::from_secs(2u64.pow(job.attempts.clamp(0, 6) as u32));
            let state = with_retry("failing a job", &refused, || {
                rt.block_on(store.fail_job(job.id, owner, &msg, true, backoff))
            })
            .flatten();
            metrics::counter!("kino_failures_total", "kind" => "transient").increment(1);
            if state == Some(JobState::Failed) {
                let _ = rt.block_on(store.set_video_status(video.id, VideoStatus::Failed, Some(&msg)));
            } else {
                let _ = rt.block_on(store.set_video_status(video.id, VideoStatus::Queued, Some(&msg)));
            }
            Err(msg)
        }
    };
    events(WorkerEvent::Finished {
        job,
        path: video.path,
        result: finished,
    });
    refused.into_inner()
}
