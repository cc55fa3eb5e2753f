//! The vision stage: workers that batch the frames of every video in flight
//! through Swin, with a circuit breaker shared between them.

use super::*;

/// A frame after the vision stage.
pub(super) struct ProcessedFrame {
    /// The frame's number in its video (replies can overtake each other).
    pub(super) seq: u64,
    pub(super) pts_ms: i64,
    pub(super) thumbnail: Vec<u8>,
    pub(super) features: Option<FrameFeatures>,
    /// What the on-screen text stage read on it (`None`: not read).
    pub(super) screen: Option<ScreenRead>,
}

pub(super) enum Reply {
    Frame(ProcessedFrame),
    /// Decoding stopped early (the frames before it are good).
    DecodeError(IngestError),
    /// What the decoder skipped or repaired (sent at the end).
    Warnings(Vec<String>),
    /// The on-screen text stage's account (sent at the end): frames read,
    /// and the first failure.
    Screen {
        reads: u64,
        warning: Option<String>,
    },
}

pub(super) struct VisionRequest {
    pub(super) seq: u64,
    pub(super) pts_ms: i64,
    pub(super) thumbnail: Vec<u8>,
    /// The frame, already resized by the model's preprocessor (on the
    /// decode thread, so the vision thread only normalises and runs it).
    pub(super) image: RgbImage,
    /// What the on-screen text stage read on it.
    pub(super) screen: Option<ScreenRead>,
    pub(super) reply: Sender<Reply>,
}

/// Opens after repeated inference failures; while open, frames pass without
/// vision features (the video is marked as needing vision).
#[derive(Debug, Default)]
pub(super) struct CircuitBreaker {
    pub(super) consecutive_failures: u32,
    pub(super) open_until: Option<Instant>,
}

const BREAKER_THRESHOLD: u32 = 3;
const BREAKER_COOLDOWN: Duration = Duration::from_secs(60);

impl CircuitBreaker {
    pub(super) fn allow(&mut self) -> bool {
        match self.open_until {
            Some(t) if Instant::now() < t => false,
            Some(_) => {
                self.open_until = None; // half-open: try once
                true
            }
            None => true,
        }
    }
    pub(super) fn record(&mut self, ok: bool) {
        if ok {
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures += 1;
            if self.consecutive_failures >= BREAKER_THRESHOLD {
                tracing::error!(
                    failures = self.consecutive_failures,
                    "vision inference keeps failing: circuit open for {}s, indexing text and thumbnails only",
                    BREAKER_COOLDOWN.as_secs()
                );
                metrics::counter!("kino_vision_circuit_opened_total").increment(1);
                self.open_until = Some(Instant::now() + BREAKER_COOLDOWN);
            }
        }
        metrics::gauge!("kino_vision_circuit_open").set(if self.open_until.is_some() { 1.0 } else { 0.0 });
    }
}

/// How the vision stage runs: `workers` threads, each taking batches of up
/// to `batch` frames and running them on a pool of `threads` threads.
///
/// Defaults (measured in docs/PERFORMANCE.md, "Vision workers"): on the CPU
/// one worker per core up to four, the cores shared out between them, and
/// batches of 4 (8 with one worker); on other devices one worker with
/// batches of 8. A forward pass split over all cores waits at the end of
/// every matrix product for the slowest core, and on a machine that also
/// decodes video some core is always slowed; passes side by side never wait
/// for each other. Four caps the frames in flight and the workspaces'
/// memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisionPlan {
    /// Vision worker threads.
    pub workers: usize,
    /// Threads of each worker's pool (CPU).
    pub threads: usize,
    /// Largest batch of one worker.
    pub batch: usize,
}

impl VisionPlan {
    /// The plan for `requested` workers and `batch` (0: pick) on `cores`.
    pub fn new(requested: usize, batch: usize, on_cpu: bool, cores: usize) -> VisionPlan {
        let cores = cores.max(1);
        let workers = match requested {
            0 if on_cpu => cores.min(4),
            0 => 1,
            n => n,
        };
        let batch = match batch {
            0 if workers > 1 => 4,
            0 => 8,
            n => n,
        };
        VisionPlan {
            workers,
            threads: (cores / workers).max(1),
            batch,
        }
    }

    /// Concurrent jobs that keep these workers fed: one video more than
    /// workers, at least two (each job decodes one video).
    pub fn jobs(&self) -> usize {
        (self.workers + 1).max(2)
    }
}

/// The shared vision stage: workers that batch frames from every video
/// being indexed.
pub(super) struct VisionService {
    pub(super) tx: Option<Sender<VisionRequest>>,
    /// The model's preprocessor, for resizing frames on the decode threads.
    pub(super) preprocessor: kino_vision::Preprocessor,
    pub(super) handles: Vec<JoinHandle<()>>,
    pub(super) plan: VisionPlan,
}

impl VisionService {
    pub(super) fn start(swin: Arc<Swin>, opts: &PipelineOptions) -> VisionService {
        let on_cpu = swin.device().is_cpu();
        let plan = VisionPlan::new(
            opts.vision_workers,
            opts.batch_size,
            on_cpu,
            rayon::current_num_threads(),
        );
        let VisionPlan {
            workers,
            threads,
            batch,
        } = plan;
        tracing::debug!(workers, threads, batch, on_cpu, "vision workers");
        let (tx, rx) = bounded::<VisionRequest>(opts.queue.max(batch * workers));
        let preprocessor = swin.preprocessor().clone();
        let breaker = Arc::new(Mutex::new(CircuitBreaker::default()));
        let handles = (0..workers)
            .map(|i| {
                let (swin, rx, breaker, timeout) = (swin.clone(), rx.clone(), breaker.clone(), opts.batch_timeout);
                // One worker uses the global pool; several get a pool each
                // of their share of the cores.
                let pool = (workers > 1)
                    .then(|| {
                        rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .thread_name(move |t| format!("kino-vision-{i}.{t}"))
                            .build()
                            .map_err(|e| tracing::warn!(error = %e, "vision worker pool: using the global pool"))
                            .ok()
                    })
                    .flatten();
                std::thread::Builder::new()
                    .name(format!("kino-vision-{i}"))
                    .spawn(move || {
                        let run = || vision_loop(&swin, &rx, batch, timeout, &breaker);
                        match pool {
                            Some(pool) => pool.install(run),
                            None => run(),
                        }
                    })
                    .expect("spawn a vision thread")
            })
            .collect();
        VisionService {
            tx: Some(tx),
            preprocessor,
            handles,
            plan,
        }
    }
}

impl Drop for VisionService {
    fn drop(&mut self) {
        self.tx.take();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

pub(super) fn vision_loop(
    swin: &Swin,
    rx: &Receiver<VisionRequest>,
    batch_size: usize,
    timeout: Duration,
    breaker: &Mutex<CircuitBreaker>,
) {
    // A panic elsewhere while holding the lock leaves a usable breaker.
    let breaker = || breaker.lock().unwrap_or_else(|p| p.into_inner());
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + timeout;
        let mut batch = vec![first];
        while batch.len() < batch_size {
            match rx.recv_deadline(deadline) {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        metrics::histogram!("kino_vision_batch_size").record(batch.len() as f64);
        metrics::gauge!("kino_queue_depth", "queue" => "vision").set(rx.len() as f64);
        let features: Vec<Option<FrameFeatures>> = if breaker().allow() {
            let images: Vec<RgbImage> = batch.iter().map(|r| r.image.clone()).collect();
            let t = Instant::now();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| swin.embed_resized(&images)));
            metrics::histogram!("kino_inference_seconds", "model" => "vision").record(t.elapsed().as_secs_f64());
            let ok = matches!(&result, Ok(Ok(f)) if f.len() == batch.len());
            breaker().record(ok);
            match result {
                Ok(Ok(f)) if ok => {
                    metrics::counter!("kino_frames_embedded_total").increment(f.len() as u64);
                    f.into_iter().map(Some).collect()
                }
                Ok(Ok(_)) => {
                    tracing::warn!("vision returned the wrong number of results");
                    metrics::counter!("kino_failures_total", "kind" => "vision").increment(1);
                    batch.iter().map(|_| None).collect()
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "vision inference failed for a batch");
                    metrics::counter!("kino_failures_total", "kind" => "vision").increment(1);
                    batch.iter().map(|_| None).collect()
                }
                Err(_) => {
                    tracing::warn!("vision inference panicked for a batch");
                    metrics::counter!("kino_failures_total", "kind" => "vision").increment(1);
                    batch.iter().map(|_| None).collect()
                }
            }
        } else {
            batch.iter().map(|_| None).collect()
        };
        for (req, f) in batch.into_iter().zip(features) {
            let _ = req.reply.send(Reply::Frame(ProcessedFrame {
                seq: req.seq,
                pts_ms: req.pts_ms,
                thumbnail: req.thumbnail,
                features: f,
                screen: req.screen,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vision_plan_shares_the_cores_between_workers() {
        // (workers, threads, batch, jobs) for (requested workers, batch, on CPU, cores).
        let p = |w, b, cpu, cores| {
            let v = VisionPlan::new(w, b, cpu, cores);
            (v.workers, v.threads, v.batch, v.jobs())
        };
        // Two cores: two workers of one thread, batches of 4, three jobs.
        assert_eq!(p(0, 0, true, 2), (2, 1, 4, 3));
        // Sixteen: four workers of four threads.
        assert_eq!(p(0, 0, true, 16), (4, 4, 4, 5));
        // One core: one worker with the usual batch of 8, two jobs.
        assert_eq!(p(0, 0, true, 1), (1, 1, 8, 2));
        // A GPU: one worker.
        assert_eq!(p(0, 0, false, 16), (1, 16, 8, 2));
        // Asked for: as asked.
        assert_eq!(p(3, 5, true, 2), (3, 1, 5, 4));
    }

    #[test]
    fn circuit_breaker_opens_after_repeated_failures_and_half_opens_after_cooldown() {
        let mut b = CircuitBreaker::default();
        assert!(b.allow());
        b.record(false);
        b.record(false);
        assert!(b.allow(), "two failures keep it closed");
        b.record(true);
        b.record(false);
        b.record(false);
        assert!(b.allow(), "a success resets the count");
        b.record(false);
        assert!(!b.allow(), "three failures in a row open it");
        // After the cool-down it lets one batch through (half-open).
        b.open_until = Some(Instant::now() - Duration::from_millis(1));
        assert!(b.allow());
        b.record(true);
        assert!(b.allow() && b.open_until.is_none(), "a success closes it");
    }
}
