//! The streaming indexing pipeline of one process.
//!
//! ```text
//!  decode thread (FrameSampler) ──► vision service (W workers, each batches
//!       │ bounded                    frames across videos: size N or timeout T;
//!       │                            shared circuit breaker) ──► per-video reply channel (bounded,
//!       └── (vision off) ─────────────────────────────────┘      reordered by frame number)
//!  job thread: subtitles ─► text encoder ─► SegmentBuilder ◄─ frames ─► fusion ─► segments
//!                                                                         │
//!                              store: replace the video's segments in one transaction
//! ```
//!
//! Every queue is a bounded crossbeam channel: a slow stage blocks the one
//! before it, so memory is bounded by channel capacities (and one video's
//! finished segments), never by the length of a video.
//!
//! On the CPU the vision workers each run whole forward passes on their own
//! share of the cores (on two cores: two workers of one thread), so no core
//! waits for another at the end of every matrix product; a video's frames
//! can then come back out of order, and its job puts them back in order.
//!
//! Stages and their contracts (one module each where it has grown past a
//! few lines):
//! - [`decode`]: a thread per video, `FrameSampler` → `VisionRequest`s to
//!   the vision service (or `Reply::Frame` without features when vision is
//!   off) → the video's bounded `Reply` channel; `InOrder` restores frame
//!   order on the job's side.
//! - [`vision`]: `VisionService` workers take `VisionRequest`s from one
//!   bounded queue, batch them, run Swin and answer `Reply::Frame` with
//!   features (none while the circuit breaker is open).
//! - this module: the job itself (cues, text embeddings, segments, fusion,
//!   checkpoints and the atomic replace) and the models it runs with.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use image::RgbImage;
use kino_fusion::align::Segmenter;
use kino_fusion::{AlignedSegment, FrameVisual, FusionError, SegmentInputs, TimedText, VisualGrid};
use kino_ingest::{FrameSampler, IngestError, SampleOptions};
use kino_store::{IndexVersions, NewSegment, Store, Video};
use kino_vision::{FrameFeatures, Swin};

use crate::engines::{Engines, Speech, Versions};
use crate::staleness;

/// Tunables of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Frames sampled per second of video.
    pub fps: f64,
    /// Largest batch of one vision worker; 0 picks (see [`VisionPlan`];
    /// `KINO_VISION_BATCH` sets it).
    pub batch_size: usize,
    /// How long the vision service waits to fill a batch.
    pub batch_timeout: Duration,
    /// Capacity of each frame queue.
    pub queue: usize,
    /// Vision workers; 0 picks by device and cores (see [`VisionPlan`];
    /// `KINO_VISION_WORKERS` sets it).
    pub vision_workers: usize,
    /// Videos indexed at once by one process; 0 picks (see
    /// [`Pipeline::jobs`]; `KINO_JOBS` sets it).
    pub jobs: usize,
    /// Decoded frames are scaled so the longer side is at most this (the
    /// vision preprocessing then resizes to the model's input).
    pub max_side: u32,
    /// How the timeline is cut.
    pub segmenter: Segmenter,
    /// Where segment thumbnails are written.
    pub thumbnails: PathBuf,
    /// A running job checkpoints its finished segments every this many ms
    /// of video, so a crash does not redo a whole film (`KINO_CHECKPOINT_SECS`).
    pub checkpoint_every_ms: i64,
    /// Where the visual features of each video are kept for `kino train`
    /// and re-fusion (`None`: not kept; see [`features`]).
    pub features: Option<PathBuf>,
    /// Cap of the `features` folder, bytes.
    pub features_max_bytes: u64,
}

impl PipelineOptions {
    /// Defaults (see docs/PERFORMANCE.md for the batch size and timeout).
    pub fn new(thumbnails: PathBuf) -> Self {
        PipelineOptions {
            fps: 1.0,
            batch_size: env_usize("KINO_VISION_BATCH"),
            batch_timeout: Duration::from_millis(50),
            queue: 16,
            vision_workers: env_usize("KINO_VISION_WORKERS"),
            jobs: env_usize("KINO_JOBS"),
            max_side: 448,
            segmenter: Segmenter::default(),
            thumbnails,
            checkpoint_every_ms: std::env::var("KINO_CHECKPOINT_SECS")
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .map(|s| s.max(1) * 1000)
                .unwrap_or(300_000),
            features: None,
            features_max_bytes: 20_000_000_000,
        }
    }
}

/// Why indexing a video stopped.
#[derive(Debug)]
pub enum IndexError {
    /// The file is bad input: do not retry.
    BadInput(String),
    /// Something a retry may cure (database down, …).
    Transient(anyhow::Error),
    /// Stopped by shutdown or a lost lease.
    Cancelled,
}

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexError::BadInput(m) => f.write_str(m),
            IndexError::Transient(e) => write!(f, "{e:#}"),
            IndexError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl From<anyhow::Error> for IndexError {
    fn from(e: anyhow::Error) -> Self {
        IndexError::Transient(e)
    }
}

/// Progress of one video.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The video.
    pub video_id: i64,
    /// Timeline position reached, ms.
    pub done_ms: i64,
    /// Duration, ms (0 when unknown).
    pub duration_ms: i64,
    /// Frames through the pipeline so far.
    pub frames: u64,
}

/// What indexing produced.
#[derive(Debug, Clone)]
pub struct IndexOutcome {
    /// Segments written.
    pub segments: usize,
    /// Frames sampled.
    pub frames: u64,
    /// Cues read.
    pub cues: usize,
    /// Problems that did not stop indexing.
    pub warnings: Vec<String>,
    /// Indexed without vision (branch off or circuit open).
    pub needs_vision: bool,
    /// The versions the run used (the models of the pipeline when it
    /// started; a model swapped in meanwhile did not take part; boxed:
    /// it is most of the outcome's size).
    pub versions: Box<Versions>,
}

mod cues;
mod decode;
pub(crate) mod document;
pub(crate) mod features;
mod feed;
mod refresh;
mod refuse;
pub(crate) mod screen;
pub(crate) mod speech;
mod vision;

use decode::{decode_loop, InOrder};
use feed::CueFeed;
pub(crate) use screen::OCR_SIDE;
use screen::{ScreenCues, ScreenRead, ScreenReader};
use vision::{ProcessedFrame, Reply, VisionService};

/// The decode stage's version: the sampling settings that shape a video's
/// frames and segments (see [`crate::staleness`]).
pub fn decode_version(opts: &PipelineOptions) -> String {
    let mut v = format!(
        "fps={},side={},seg={}",
        opts.fps, opts.max_side, opts.segmenter.window_ms
    );
    if opts.segmenter.snap_to_shots {
        v.push_str(&format!(",shots={}", opts.segmenter.shot_threshold));
    }
    v
}

/// A positive number from the environment variable `name`, else 0 (pick).
fn env_usize(name: &str) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The models and the vision service running them, swapped together.
struct Loaded {
    engines: Arc<Engines>,
    vision: Option<VisionService>,
    versions: Versions,
    /// The speech stage's threads (see [`speech_threads`]); `None`: rayon's
    /// global pool (no speech model, or the pool could not be made).
    speech_pool: Option<rayon::ThreadPool>,
}

/// Threads of the speech stage, from the same cores as the vision plan:
/// `KINO_SPEECH_THREADS` when set; else half the cores while the vision
/// branch is on (Swin's workers keep the rest busy with other videos' frames),
/// all of them when it is off.
pub fn speech_threads(cores: usize, vision_on: bool) -> usize {
    match env_usize("KINO_SPEECH_THREADS") {
        0 if vision_on => (cores / 2).max(1),
        0 => cores.max(1),
        n => n,
    }
}

/// The pipeline: models, the vision service, the store.
///
/// The models can be swapped while jobs run ([`Pipeline::set_vision`]): each
/// job takes a snapshot of them when it starts and uses it to the end, so a
/// job finishes with the models it started with; the old vision service
/// stops (its threads are joined) when the last job using it ends.
pub struct Pipeline {
    store: Store,
    rt: tokio::runtime::Handle,
    loaded: RwLock<Arc<Loaded>>,
    opts: PipelineOptions,
    label_cache: Mutex<HashMap<String, Vec<f32>>>,
}

impl Pipeline {
    /// Starts the pipeline's shared stages.
    pub fn new(store: Store, rt: tokio::runtime::Handle, engines: Arc<Engines>, opts: PipelineOptions) -> Pipeline {
        if let Some(why) = &engines.vision_off_reason {
            tracing::warn!("vision branch off: {why}");
        }
        if let Some(why) = &engines.speech_off_reason {
            tracing::warn!("speech off: {why}");
        }
        if let Some(why) = &engines.screen_off_reason {
            tracing::warn!("on-screen text off: {why}");
        }
        let loaded = Self::load(engines, &opts);
        Pipeline {
            store,
            rt,
            loaded: RwLock::new(Arc::new(loaded)),
            opts,
            label_cache: Mutex::new(HashMap::new()),
        }
    }

    fn load(engines: Arc<Engines>, opts: &PipelineOptions) -> Loaded {
        let vision = engines.vision.clone().map(|swin| VisionService::start(swin, opts));
        let versions = engines.versions(&decode_version(opts));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let speech_pool = engines.speech.as_ref().and_then(|_| {
            let threads = speech_threads(cores, vision.is_some());
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("kino-speech-{i}"))
                .build()
                .map_err(|e| tracing::warn!("speech threads: {e}; using the shared pool"))
                .ok()
        });
        Loaded {
            engines,
            vision,
            versions,
            speech_pool,
        }
    }

    /// The models now (a job holds on to this for its whole run).
    fn snapshot(&self) -> Arc<Loaded> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps in `vision` as the vision model (`None`: off), with a fusion
    /// module of its width, and starts its vision service; returns the new
    /// versions. Jobs that already started finish with the models they
    /// started with; jobs starting from now on use the new ones.
    pub fn set_vision(&self, vision: Option<Arc<Swin>>) -> Result<Versions> {
        let engines = Arc::new(self.snapshot().engines.with_vision(vision)?);
        Ok(self.swap(engines))
    }

    /// Swaps in `speech` as the speech model (`None`: off); returns the new
    /// versions. Jobs already running finish with the model they started with.
    pub fn set_speech(&self, speech: Option<Arc<Speech>>) -> Versions {
        let engines = Arc::new(self.snapshot().engines.with_speech(speech));
        self.swap(engines)
    }

    /// Swaps in `screen` as the on-screen text stage (`None`: off); returns
    /// the new versions. Jobs already running finish as they started.
    pub fn set_screen(&self, screen: Option<Arc<crate::engines::Screen>>) -> Versions {
        let engines = Arc::new(self.snapshot().engines.with_screen(screen));
        self.swap(engines)
    }

    /// Swaps in `fusion` as the fusion weights (`kino train` installed new
    /// ones); returns the new versions. Jobs already running finish with the
    /// weights they started with.
    pub fn set_fusion(&self, fusion: Arc<kino_fusion::FusionModel>) -> Versions {
        let engines = Arc::new(self.snapshot().engines.with_fusion(fusion));
        self.swap(engines)
    }

    /// The fusion weights now.
    pub fn fusion(&self) -> Arc<kino_fusion::FusionModel> {
        self.snapshot().engines.fusion.clone()
    }

    fn swap(&self, engines: Arc<Engines>) -> Versions {
        let loaded = Arc::new(Self::load(engines, &self.opts));
        let versions = loaded.versions.clone();
        let old = {
            let mut guard = self.loaded.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *guard, loaded)
        };
        // Outside the lock: when no job holds the old models this joins their
        // vision threads (idle, so at once).
        drop(old);
        tracing::info!(
            vision = versions.vision.as_deref().unwrap_or("off"),
            speech = versions.speech.as_deref().unwrap_or("off"),
            ocr = versions.ocr.as_deref().unwrap_or("off"),
            fusion = %versions.fusion,
            "models swapped"
        );
        versions
    }

    /// Concurrent jobs (videos) that keep the vision workers fed: as
    /// configured, else 2 without vision, else [`VisionPlan::jobs`].
    pub fn jobs(&self) -> usize {
        match self.opts.jobs {
            0 => self.snapshot().vision.as_ref().map_or(2, |v| v.plan.jobs()),
            n => n,
        }
    }

    /// The versions an index built now would record.
    pub fn versions(&self) -> Versions {
        self.snapshot().versions.clone()
    }

    /// The stages that are off now, each with its reason (see [`Engines::stages_off`]).
    pub fn stages_off(&self) -> Vec<String> {
        self.snapshot().engines.stages_off()
    }

    /// The shared text encoder.
    pub fn text_encoder(&self) -> Arc<kino_language::SentenceEncoder> {
        self.snapshot().engines.text.clone()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Indexes one video and replaces its segments atomically.
    ///
    /// `resume_ms`: the timeline position of the job's last checkpoint (its
    /// staged segments are kept and decoding starts there). `checkpoint` is
    /// called with the new position after each checkpoint is staged and
    /// returns false when the job's lease was lost.
    pub fn index_video(
        &self,
        video: &Video,
        resume_ms: Option<i64>,
        cancel: &AtomicBool,
        progress: &dyn Fn(Progress),
        checkpoint: &dyn Fn(i64) -> bool,
    ) -> Result<IndexOutcome, IndexError> {
        let path = PathBuf::from(&video.path);
        let started = Instant::now();
        // The models of this whole run, whatever is swapped in meanwhile.
        let loaded = self.snapshot();
        let engines = &loaded.engines;
        let model_version = loaded.versions.combined();
        let db = |e: kino_store::StoreError| IndexError::Transient(anyhow::Error::from(e));
        // Resume from a checkpoint only when its staged segments are there
        // and were made with the same models.
        let mut resume_from = 0i64;
        if let Some(done) = resume_ms.filter(|d| *d > 0) {
            let staged = self.rt.block_on(self.store.staged_segments(video.id)).map_err(db)?;
            if staged.iter().any(|s| s.end_ms == done) && staged.iter().all(|s| s.model_version == model_version) {
                resume_from = done;
                tracing::info!(video = %path.display(), "resuming from its checkpoint at {} s", done / 1000);
            }
        }
        if resume_from == 0 {
            self.rt.block_on(self.store.clear_staged(video.id)).map_err(db)?;
        }
        let info = kino_ingest::probe(&path).map_err(|e| IndexError::BadInput(e.to_string()))?;
        let facts = kino_store::MediaFacts {
            duration_ms: Some(info.duration_ms),
            width: Some(info.display_width as i64),
            height: Some(info.display_height as i64),
            fps: Some(info.fps),
            video_codec: info.video_codec.clone(),
            audio_codec: info.audio_codec.clone(),
        };
        self.rt
            .block_on(self.store.set_video_facts(video.id, &facts))
            .map_err(anyhow::Error::from)?;

        // Only the document stale: rebuilt from the stored cues.
        if resume_from == 0 && staleness::only_document_stale(video, &loaded.versions) {
            return self.refresh_document(video, &loaded);
        }
        // Stale for its fusion weights alone: re-fused from the kept features.
        if resume_from == 0 && self.can_refuse(video, &loaded) {
            return self.refuse(video, &loaded, started);
        }
        // Refresh only what speech changes, when nothing else is stale.
        if resume_from == 0 && self.can_refresh_speech(video, &loaded) {
            return self.refresh_speech(video, &path, &info, &loaded, cancel, progress, started);
        }
        let (mut timed, mut warnings) =
            self.gather_cues(video, &path, &info, &loaded, resume_from, resume_from, cancel, progress)?;
        let bad = |e: kino_fusion::FusionError| IndexError::BadInput(format!("{}: {e}", path.display()));

        let mut builder = self
            .opts
            .segmenter
            .builder(Some(info.duration_ms))
            .map_err(|e| IndexError::Transient(anyhow!(e)))?;
        // On-screen text is found as the frames pass: the subtitle and
        // speech cues then go to the segment builder in step with it (in
        // start order), else all at once.
        let screen = engines.screen.clone().filter(|_| info.has_video);
        let mut feed = CueFeed {
            next: 0,
            texts: timed.len(),
            screen: screen
                .as_ref()
                .map(|_| ScreenCues::new(self.opts.segmenter.window_ms, resume_from)),
            last_embedding: None,
            stored_screen: 0,
        };
        let mut finished: Vec<AlignedSegment> = Vec::new();
        if feed.screen.is_none() {
            finished.extend(feed.texts_until(&mut builder, &timed, i64::MAX).map_err(bad)?);
            finished.extend(builder.end_cues());
        }

        let mut state = VideoState {
            video_id: video.id,
            frames: HashMap::new(),
            segments: Vec::new(),
            needs_vision: loaded.vision.is_none(),
            thumbs_dir: self.opts.thumbnails.join(video.id.to_string()),
            resume_from,
            checkpointed_ms: resume_from,
            staged: 0,
            model_version,
            engines: engines.clone(),
        };
        self.finish_segments(&mut state, finished, &timed)?;
        // The frames' features are kept for training and re-fusion (a
        // resumed job does not see its first frames again: it keeps none).
        let mut sink = match (&self.opts.features, &loaded.vision) {
            (Some(dir), Some(_)) if resume_from == 0 && info.has_video => {
                Some(features::FeatureSink::new(dir, video.id, self.opts.features_max_bytes))
            }
            _ => None,
        };
        let expected_frames = (info.duration_ms.max(0) as f64 / 1000.0 * self.opts.fps).ceil() as u64;

        let mut frames_seen = 0u64;
        let mut last_pts = resume_from;
        if info.has_video {
            let (reply_tx, reply_rx) = bounded::<Reply>(self.opts.queue);
            let sample = SampleOptions {
                fps: self.opts.fps,
                // OCR reads the same frames, at a size where slide text is
                // legible; the vision preprocessor scales its copy down.
                max_side: Some(match screen {
                    Some(_) => self.opts.max_side.max(OCR_SIDE),
                    None => self.opts.max_side,
                }),
                thumbnail_width: 320,
                start_ms: resume_from,
                // With the vision branch on, Swin keeps every core busy and
                // one decoder thread per video keeps ahead of it (threaded
                // decoding would only add CPU time); without it, decoding is
                // the bottleneck and gets all cores.
                threads: if loaded.vision.is_some() { 1 } else { 0 },
                ..SampleOptions::default()
            };
            let vision = loaded
                .vision
                .as_ref()
                .and_then(|v| Some((v.tx.clone()?, v.preprocessor.clone())));
            let reader = screen.clone().map(ScreenReader::new);
            let decode_path = path.clone();
            let stop_decode = Arc::new(AtomicBool::new(false));
            let stop_flag = stop_decode.clone();
            let decode = std::thread::Builder::new()
                .name(format!("kino-decode-{}", video.id))
                .spawn(move || decode_loop(&decode_path, &sample, vision, reader, reply_tx, &stop_flag))
                .context("spawning a decode thread")?;
            let mut pending = InOrder::default();
            let mut decode_error: Option<IngestError> = None;
            for reply in reply_rx.iter() {
                if cancel.load(Ordering::Relaxed) {
                    break;
                }
                match reply {
                    Reply::DecodeError(e) => decode_error = Some(e),
                    Reply::Warnings(w) => warnings.extend(w),
                    Reply::Screen { reads, warning } => {
                        tracing::debug!(video = %path.display(), frames_read = reads, "on-screen text read");
                        warnings.extend(warning);
                    }
                    Reply::Frame(f) => {
                        // Vision workers can finish a later batch first:
                        // frames go on in their order (at most the frames in
                        // flight wait here).
                        pending.push(f.seq, f);
                        while let Some(f) = pending.next() {
                            let index = f.seq as usize;
                            frames_seen += 1;
                            last_pts = last_pts.max(f.pts_ms);
                            metrics::counter!("kino_frames_decoded_total").increment(1);
                            if f.features.is_none() {
                                state.needs_vision = true;
                            }
                            if let Some(sink) = sink.as_mut() {
                                sink.push(f.pts_ms, f.features.as_ref(), expected_frames)?;
                            }
                            let fv = frame_visual(&f);
                            let mut done = builder.push_frame_with_index(index, &fv).map_err(bad)?;
                            if feed.screen.is_some() {
                                done.extend(self.feed_screen(
                                    &mut feed,
                                    &mut builder,
                                    &mut timed,
                                    &state,
                                    f.pts_ms,
                                    f.screen.as_ref(),
                                )?);
                            }
                            progress(Progress {
                                video_id: video.id,
                                done_ms: f.pts_ms,
                                duration_ms: info.duration_ms,
                                frames: frames_seen,
                            });
                            state.frames.insert(index, f);
                            self.finish_segments(&mut state, done, &timed)?;
                            self.maybe_checkpoint(&mut state, &mut feed, checkpoint)?;
                        }
                    }
                }
            }
            stop_decode.store(true, Ordering::Relaxed);
            drop(reply_rx); // unblocks the decode thread if we stopped early
            let _ = decode.join();
            if cancel.load(Ordering::Relaxed) {
                return Err(IndexError::Cancelled);
            }
            if let Some(e) = decode_error {
                if frames_seen == 0 && timed.is_empty() {
                    return Err(IndexError::BadInput(e.to_string()));
                }
                let w = format!("decoding stopped early, indexed what decoded: {e}");
                tracing::warn!(video = %path.display(), "{w}");
                warnings.push(w);
            }
        }
        // The text on screen at the end lasts to the end.
        if let Some(sc) = feed.screen.as_mut() {
            let end = if info.duration_ms > 0 {
                info.duration_ms
            } else {
                last_pts + (1000.0 / self.opts.fps.max(0.001)) as i64
            };
            let pieces = sc.finish(end);
            let mut done = Vec::new();
            for p in pieces {
                done.extend(self.push_screen_piece(&mut feed, &mut builder, &mut timed, &state, p)?);
            }
            done.extend(feed.texts_until(&mut builder, &timed, i64::MAX).map_err(bad)?);
            done.extend(builder.end_cues());
            self.finish_segments(&mut state, done, &timed)?;
            self.store_screen_cues(&mut feed, video.id, true)?;
        }
        let rest = builder.finish();
        self.finish_segments(&mut state, rest, &timed)?;
        if cancel.load(Ordering::Relaxed) {
            return Err(IndexError::Cancelled);
        }

        // Every stage that ran records its version (vision only when it saw
        // every frame), in the transaction that replaces the segments.
        let versions: IndexVersions = loaded
            .versions
            .recorded_for(!state.needs_vision, video.language.as_deref());
        if let Some(sink) = sink.take() {
            let kept = sink.finish()?;
            tracing::debug!(video = %path.display(), kept, "visual features");
        }
        let t = Instant::now();
        // Everything checkpointed (this run's and earlier runs') plus the rest.
        let mut all: Vec<NewSegment> = if state.checkpointed_ms > 0 {
            let staged = self.rt.block_on(self.store.staged_segments(video.id)).map_err(db)?;
            staged
                .into_iter()
                .filter(|s| s.end_ms <= state.checkpointed_ms)
                .collect()
        } else {
            Vec::new()
        };
        all.append(&mut state.segments);
        let total = all.len();
        // Every cue is stored by now (on-screen text included): the
        // document is built from them and written with the segments.
        let document = self.document_of(video.id, &engines.text)?;
        self.rt
            .block_on(
                self.store
                    .replace_segments_and_document(video.id, &all, &versions, document.as_ref()),
            )
            .map_err(db)?;
        tracing::debug!(video = %path.display(), segments = total, staged_this_run = state.staged, "index replaced");
        metrics::histogram!("kino_stage_seconds", "stage" => "store").record(t.elapsed().as_secs_f64());
        metrics::histogram!("kino_stage_seconds", "stage" => "video").record(started.elapsed().as_secs_f64());
        for w in &warnings {
            tracing::warn!(video = %path.display(), "{w}");
        }
        self.rt
            .block_on(self.store.set_video_warnings(video.id, &warnings))
            .map_err(db)?;
        Ok(IndexOutcome {
            segments: total,
            frames: frames_seen,
            cues: feed.texts + feed.screen.as_ref().map_or(0, |s| s.records().len()),
            warnings,
            needs_vision: state.needs_vision,
            versions: Box::new(loaded.versions.clone()),
        })
    }

    /// Stages the finished segments once enough video has passed since the
    /// last checkpoint, and records the new position in the job.
    fn maybe_checkpoint(
        &self,
        state: &mut VideoState,
        feed: &mut CueFeed,
        checkpoint: &dyn Fn(i64) -> bool,
    ) -> Result<(), IndexError> {
        let Some(last_end) = state.segments.last().map(|s| s.end_ms) else {
            return Ok(());
        };
        if last_end - state.checkpointed_ms < self.opts.checkpoint_every_ms {
            return Ok(());
        }
        self.rt
            .block_on(self.store.stage_segments(state.video_id, &state.segments))
            .map_err(|e| IndexError::Transient(anyhow::Error::from(e)))?;
        state.staged += state.segments.len();
        tracing::debug!(
            video = state.video_id,
            at_s = last_end / 1000,
            segments = state.segments.len(),
            "checkpoint staged"
        );
        state.segments.clear();
        state.checkpointed_ms = last_end;
        // The on-screen text found so far, before the job records the new
        // position (a resumed job keeps what is stored before it).
        self.store_screen_cues(feed, state.video_id, false)?;
        metrics::counter!("kino_checkpoints_total").increment(1);
        if !checkpoint(last_end) {
            return Err(IndexError::Cancelled);
        }
        Ok(())
    }

    fn finish_segments(
        &self,
        state: &mut VideoState,
        segs: Vec<AlignedSegment>,
        cues: &[TimedText],
    ) -> Result<(), IndexError> {
        for seg in segs {
            let max_index = seg.frame_indices.iter().copied().max();
            if seg.start_ms < state.resume_from {
                continue; // staged by an earlier run
            }
            let built = self.build_segment(state, &seg, cues)?;
            if let Some(s) = built {
                state.segments.push(s);
            }
            if let Some(m) = max_index {
                state.frames.retain(|i, _| *i > m);
            }
        }
        Ok(())
    }

    fn build_segment(
        &self,
        state: &VideoState,
        seg: &AlignedSegment,
        cues: &[TimedText],
    ) -> Result<Option<NewSegment>, IndexError> {
        let text: Vec<Vec<f32>> = seg.cues.iter().map(|(i, _)| cues[*i].embedding.clone()).collect();
        let text_weights: Vec<f32> = seg.cues.iter().map(|(_, w)| *w).collect();
        let frames: Vec<&ProcessedFrame> = seg.frame_indices.iter().filter_map(|i| state.frames.get(i)).collect();
        let grids: Vec<VisualGrid> = frames
            .iter()
            .filter_map(|f| f.features.as_ref())
            .map(|f| VisualGrid {
                tokens: f.grid_tokens,
                hidden: f.hidden,
                data: f.grid.clone(),
            })
            .collect();
        let labels = if seg.label_text.is_empty() {
            None
        } else {
            Some(self.embed_label(&state.engines, &seg.label_text)?)
        };
        let pooled = mean_pooled(
            frames
                .iter()
                .filter_map(|f| f.features.as_ref())
                .map(|f| f.pooled.as_slice()),
        );
        let fused = match state.engines.fusion.fuse(&SegmentInputs {
            text,
            text_weights,
            grids,
            labels,
            pooled,
        }) {
            Ok(f) => f,
            // Nothing searchable: no cue here, and no label (the vision branch
            // is off, or its model has no classifier head) nor fused grid.
            Err(FusionError::NothingToFuse) => return Ok(None),
            Err(e) => return Err(IndexError::Transient(anyhow!(e).context("fusing a segment"))),
        };
        let thumbnail = match frames.get(frames.len() / 2) {
            Some(f) if !f.thumbnail.is_empty() => {
                std::fs::create_dir_all(&state.thumbs_dir)
                    .with_context(|| format!("creating {}", state.thumbs_dir.display()))?;
                let name = format!("{}.jpg", seg.start_ms);
                let file = state.thumbs_dir.join(&name);
                std::fs::write(&file, &f.thumbnail).with_context(|| format!("writing {}", file.display()))?;
                Some(format!("{}/{}", state.video_id, name))
            }
            _ => None,
        };
        Ok(Some(NewSegment {
            start_ms: seg.start_ms,
            end_ms: seg.end_ms,
            text: seg.text.clone(),
            tags: seg.tags.clone(),
            fused: fused.fused,
            text_emb: fused.text,
            visual_emb: fused.visual,
            model_version: state.model_version.clone(),
            thumbnail,
        }))
    }

    fn embed_label(&self, engines: &Engines, label_text: &str) -> Result<Vec<f32>, IndexError> {
        if let Some(v) = self.label_cache.lock().ok().and_then(|c| c.get(label_text).cloned()) {
            return Ok(v);
        }
        let v = engines
            .text
            .encode_one(label_text)
            .map_err(|e| IndexError::Transient(anyhow!(e).context("encoding visual labels")))?;
        if let Ok(mut c) = self.label_cache.lock() {
            if c.len() > 10_000 {
                c.clear();
            }
            c.insert(label_text.to_string(), v.clone());
        }
        Ok(v)
    }
}

pub(super) struct VideoState {
    video_id: i64,
    frames: HashMap<usize, ProcessedFrame>,
    segments: Vec<NewSegment>,
    needs_vision: bool,
    thumbs_dir: PathBuf,
    /// Segments before this were staged by an earlier run.
    resume_from: i64,
    /// Position of the last checkpoint (all segments before it are staged).
    checkpointed_ms: i64,
    /// Segments staged by this run.
    staged: usize,
    /// Model versions written with each segment (computed once per video).
    model_version: String,
    /// The models of this run.
    engines: Arc<Engines>,
}

/// The mean of a segment's frames' pooled vectors (`None` without any).
pub(crate) fn mean_pooled<'a>(vectors: impl Iterator<Item = &'a [f32]>) -> Option<Vec<f32>> {
    let mut sum: Option<Vec<f32>> = None;
    let mut n = 0usize;
    for v in vectors {
        match sum.as_mut() {
            Some(s) if s.len() == v.len() => s.iter_mut().zip(v).for_each(|(a, b)| *a += b),
            Some(_) => continue,
            None => sum = Some(v.to_vec()),
        }
        n += 1;
    }
    sum.map(|mut s| {
        s.iter_mut().for_each(|x| *x /= n as f32);
        s
    })
}

fn frame_visual(f: &ProcessedFrame) -> FrameVisual {
    match &f.features {
        Some(x) => FrameVisual {
            pts_ms: f.pts_ms,
            pooled: x.pooled.clone(),
            grid: Vec::new(), // grids stay in the frame buffer; alignment needs times, pooled and labels
            grid_tokens: x.grid_tokens,
            hidden: x.hidden,
            labels: x.labels.clone(),
        },
        None => FrameVisual {
            pts_ms: f.pts_ms,
            pooled: Vec::new(),
            grid: Vec::new(),
            grid_tokens: 0,
            hidden: 0,
            labels: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_gets_half_the_cores_beside_vision_and_all_without() {
        std::env::remove_var("KINO_SPEECH_THREADS");
        assert_eq!(speech_threads(2, true), 1);
        assert_eq!(speech_threads(8, true), 4);
        assert_eq!(speech_threads(1, true), 1);
        assert_eq!(speech_threads(2, false), 2);
    }

    #[test]
    fn decode_version_names_the_sampling_settings() {
        let mut opts = PipelineOptions::new(PathBuf::from("/tmp/thumbs"));
        assert_eq!(decode_version(&opts), "fps=1,side=448,seg=10000");
        opts.fps = 2.5;
        opts.segmenter.snap_to_shots = true;
        assert_eq!(decode_version(&opts), "fps=2.5,side=448,seg=10000,shots=0.25");
    }
}
