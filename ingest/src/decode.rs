//! Decoding and frame sampling by presentation time (ffmpeg-next).
//!
//! [`FrameSampler`] demuxes the best video stream of a file, decodes it with
//! FFmpeg's threading and yields sampled frames one by one: memory holds one
//! decoded frame (plus FFmpeg's own reference frames), whatever the length of
//! the video.
//!
//! Sampling semantics ([`SampleMode::Fps`]): sample points are
//! `t = 0, 1/f, 2/f, …` seconds, measured from the video stream's start time;
//! for each point the sampler takes the latest decoded frame whose PTS is at
//! or before `t` (points before the first frame take the first frame; points
//! after the end of the last frame are not emitted). A frame that spans
//! several points is emitted once per point, with the point's time in
//! [`Frame::pts_ms`] and its own PTS in [`Frame::frame_pts_ms`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg::format::context::Input;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use crate::media::{self, MediaInfo};
use crate::IngestError;

/// How frames are picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SampleMode {
    /// Fixed times `t = 0, 1/f, 2/f, …`; the latest frame at or before each.
    #[default]
    Fps,
    /// Every keyframe and nothing else (non-key packets are not decoded): fast first passes.
    Keyframes,
}

/// Limits that keep a bad file from hanging a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeBudget {
    /// Wall-clock limit for opening and decoding. `None`: 60 s plus 10 × the video's duration
    /// (one hour when the duration is unknown).
    pub max_wall: Option<Duration>,
    /// Limit on decoded frames. `None`: 1000 plus 4 × the frames the duration and frame rate
    /// announce (ten million when unknown).
    pub max_frames: Option<u64>,
}

/// What to sample and how to hand it over.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOptions {
    /// Samples per second in [`SampleMode::Fps`] (default 1).
    pub fps: f64,
    /// Fixed times or keyframes.
    pub mode: SampleMode,
    /// Scale so that the longer side of the (upright) image is at most this many pixels,
    /// keeping the aspect ratio; never upscales. `None`: native size.
    pub max_side: Option<u32>,
    /// Width of the JPEG thumbnail in pixels (default 320; 0: no thumbnail).
    pub thumbnail_width: u32,
    /// Resume point in milliseconds: sample points before it are skipped (default 0).
    pub start_ms: i64,
    /// Time and frame limits.
    pub decode_budget: DecodeBudget,
    /// Decode every frame, even those no sample point needs (default false).
    ///
    /// By default, in [`SampleMode::Fps`] on constant-frame-rate H.264, the
    /// decoder skips non-reference pictures (`nal_ref_idc` 0: no other
    /// picture is predicted from them) whose display interval is not near a
    /// sample point. No kept picture depends on a skipped one, so the sampled
    /// frames are the same pixels; at 1 fps from 25-30 fps video with B-frames
    /// about half the decoding work goes away.
    pub decode_all: bool,
    /// Decoder threads (default 0: FFmpeg's choice, one per core, as its CLI).
    /// 1 when other stages keep the cores busy: frame threading costs about
    /// 10 % more CPU time per frame.
    pub threads: usize,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            fps: 1.0,
            mode: SampleMode::Fps,
            max_side: None,
            thumbnail_width: 320,
            start_ms: 0,
            decode_budget: DecodeBudget::default(),
            decode_all: false,
            threads: 0,
        }
    }
}

/// One sampled frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The time this frame stands for, in ms from the stream start: the sample point in
    /// [`SampleMode::Fps`], the frame's own PTS in [`SampleMode::Keyframes`].
    pub pts_ms: i64,
    /// The decoded frame's own presentation time in ms from the stream start.
    pub frame_pts_ms: i64,
    /// The picture, upright (rotation applied), RGB 8-bit.
    pub image: RgbImage,
    /// A JPEG thumbnail about [`SampleOptions::thumbnail_width`] pixels wide (empty when 0).
    pub thumbnail_jpeg: Vec<u8>,
}

/// Streams sampled frames of a video; see the module documentation for the semantics.
///
/// ```no_run
/// # use kino_ingest::{FrameSampler, SampleOptions};
/// let sampler = FrameSampler::open("movie.mp4".as_ref(), &SampleOptions::default())?;
/// for frame in sampler {
///     let frame = frame?;
///     println!("{} ms: {}x{}", frame.pts_ms, frame.image.width(), frame.image.height());
/// }
/// # Ok::<(), kino_ingest::IngestError>(())
/// ```
pub struct FrameSampler {
    path: PathBuf,
    info: MediaInfo,
    input: Input,
    stream_index: usize,
    decoder: ffmpeg::decoder::Video,
    opts: SampleOptions,
    /// Seconds per tick of the stream time base.
    tick: f64,
    start_ticks: i64,
    rotation: i32,
    /// Target size before rotation.
    out_size: (u32, u32),
    thumb_size: (u32, u32),
    scaler: Option<Scaler>,
    thumb_scaler: Option<Scaler>,
    scratch: VideoFrame,
    held: Option<Held>,
    /// Conversion cache for a frame emitted at several points.
    converted: Option<(u64, RgbImage, Vec<u8>)>,
    next_point: u64,
    ready: VecDeque<Frame>,
    done: bool,
    eof_sent: bool,
    started: Instant,
    deadline: Arc<AtomicU64>,
    max_wall: Duration,
    max_frames: u64,
    decoded: u64,
    emitted: u64,
    decode_errors: u64,
    consecutive_errors: u64,
    serial: u64,
    bogus_timestamps: u64,
    warnings: Vec<String>,
    /// Whether unneeded non-reference pictures may be skipped (see
    /// [`SampleOptions::decode_all`]).
    may_skip: bool,
    /// Whether the decoder is set to skip non-reference pictures now.
    skipping: bool,
    /// An error to yield once the frames queued before it are out.
    pending_error: Option<IngestError>,
}

struct Held {
    frame: VideoFrame,
    t: f64,
    dur: f64,
    serial: u64,
}

const EPS: f64 = 1e-6;

impl FrameSampler {
    /// Opens `path` and prepares to sample its best video stream.
    ///
    /// Errors: missing, unreadable, empty or non-media files, files without a video stream
    /// (`NoVideo`, audio-only included), absurd dimensions, invalid options, and a budget
    /// exceeded while opening.
    pub fn open(path: &Path, opts: &SampleOptions) -> Result<FrameSampler, IngestError> {
        if !(opts.fps.is_finite() && opts.fps > 0.0 && opts.fps <= 1000.0) {
            return Err(IngestError::InvalidOptions {
                path: path.to_owned(),
                detail: format!("fps must be in (0, 1000], got {}", opts.fps),
            });
        }
        if opts.max_side == Some(0) {
            return Err(IngestError::InvalidOptions {
                path: path.to_owned(),
                detail: "max_side must be > 0".into(),
            });
        }
        media::init();
        media::check_file(path)?;
        let base = Instant::now();
        let open_wall = opts
            .decode_budget
            .max_wall
            .unwrap_or(media::OPEN_TIMEOUT)
            .min(media::OPEN_TIMEOUT);
        let deadline = Arc::new(AtomicU64::new(open_wall.as_nanos() as u64));
        let dl = deadline.clone();
        let input = match ffmpeg::format::input_with_interrupt(path, move || {
            base.elapsed().as_nanos() as u64 > dl.load(Ordering::Relaxed)
        }) {
            Ok(i) => i,
            Err(e) => {
                if base.elapsed() > open_wall {
                    return Err(IngestError::BudgetExceeded {
                        path: path.to_owned(),
                        detail: format!("opening took longer than {:.1} s", open_wall.as_secs_f64()),
                    });
                }
                return Err(media::open_error(path, e));
            }
        };
        let info = media::probe_input(path, &input)?;
        let Some(stream) = media::best_video(&input) else {
            return Err(IngestError::NoVideo {
                path: path.to_owned(),
                audio_only: info.has_audio,
            });
        };
        let stream_index = stream.index();
        let tb = stream.time_base();
        let tick = if tb.denominator() > 0 {
            tb.numerator() as f64 / tb.denominator() as f64
        } else {
            1e-6
        };
        let start_ticks = if stream.start_time() != ffmpeg::ffi::AV_NOPTS_VALUE {
            stream.start_time()
        } else {
            0
        };
        let rotation = info.rotation;

        let mut ctx =
            ffmpeg::codec::context::Context::from_parameters(stream.parameters()).map_err(|e| IngestError::Ffmpeg {
                path: path.to_owned(),
                context: "reading codec parameters",
                source: e,
            })?;
        // As FFmpeg's CLI does: frame and slice threading (the context's default types), one
        // thread per core (count 0 = auto) unless the caller asks for a number.
        unsafe {
            (*ctx.as_mut_ptr()).thread_count = opts.threads.min(64) as i32;
        }
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(tb);
        if opts.mode == SampleMode::Keyframes {
            dec.skip_frame(ffmpeg::codec::discard::Discard::NonKey);
        }
        let decoder = dec.video().map_err(|e| match e {
            ffmpeg::Error::DecoderNotFound => IngestError::NotMedia {
                path: path.to_owned(),
                detail: format!(
                    "no decoder for video codec {}",
                    info.video_codec.clone().unwrap_or_default()
                ),
            },
            e => IngestError::Ffmpeg {
                path: path.to_owned(),
                context: "opening the video decoder",
                source: e,
            },
        })?;

        // Skipping is exact only where a picture's interval is its packet's
        // duration (constant frame rate) and "non-reference" means no picture
        // refers to it (H.264's nal_ref_idc; other codecs' notions differ).
        let (r, avg) = (stream.rate(), stream.avg_frame_rate());
        let may_skip = !opts.decode_all
            && opts.mode == SampleMode::Fps
            && decoder.id() == ffmpeg::codec::Id::H264
            && r.numerator() > 0
            && r.denominator() > 0
            && (r.numerator() as i64) * (avg.denominator() as i64)
                == (avg.numerator() as i64) * (r.denominator() as i64);

        let (w, h) = (info.width, info.height);
        let out_size = match opts.max_side {
            Some(m) if w.max(h) > m => {
                let s = m as f64 / w.max(h) as f64;
                (
                    ((w as f64 * s).round() as u32).max(1),
                    ((h as f64 * s).round() as u32).max(1),
                )
            }
            _ => (w, h),
        };
        let thumb_size = if opts.thumbnail_width == 0 {
            (0, 0)
        } else {
            // The thumbnail width is measured upright.
            let (dw, dh) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
            let tw = opts.thumbnail_width.min(dw);
            let th = ((dh as f64 * tw as f64 / dw as f64).round() as u32).max(1);
            if rotation % 180 == 90 {
                (th, tw)
            } else {
                (tw, th)
            }
        };

        let duration_s = info.duration_ms as f64 / 1000.0;
        let max_wall = opts.decode_budget.max_wall.unwrap_or(if duration_s > 0.0 {
            Duration::from_secs_f64(60.0 + 10.0 * duration_s)
        } else {
            Duration::from_secs(3600)
        });
        let max_frames = opts
            .decode_budget
            .max_frames
            .unwrap_or(if duration_s > 0.0 && info.fps > 0.0 {
                1000 + (4.0 * duration_s * info.fps.min(240.0)) as u64
            } else {
                10_000_000
            });
        deadline.store(max_wall.as_nanos() as u64, Ordering::Relaxed);

        let mut sampler = FrameSampler {
            path: path.to_owned(),
            info,
            input,
            stream_index,
            decoder,
            opts: opts.clone(),
            tick,
            start_ticks,
            rotation,
            out_size,
            thumb_size,
            scaler: None,
            thumb_scaler: None,
            scratch: VideoFrame::empty(),
            held: None,
            converted: None,
            next_point: 0,
            ready: VecDeque::new(),
            done: false,
            eof_sent: false,
            started: base,
            deadline,
            max_wall,
            max_frames,
            decoded: 0,
            emitted: 0,
            decode_errors: 0,
            consecutive_errors: 0,
            serial: 0,
            bogus_timestamps: 0,
            may_skip,
            skipping: false,
            pending_error: None,
            warnings: Vec::new(),
        };
        if opts.start_ms > 0 {
            sampler.next_point = (opts.start_ms as f64 * opts.fps / 1000.0 - EPS).ceil().max(0.0) as u64;
            sampler.seek(opts.start_ms);
        }
        Ok(sampler)
    }

    /// Media facts of the file being sampled.
    pub fn info(&self) -> &MediaInfo {
        &self.info
    }

    /// Problems met so far that did not stop decoding (corrupt packets skipped, early end).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Number of frames decoded so far (sampled or not).
    pub fn decoded_frames(&self) -> u64 {
        self.decoded
    }

    fn seek(&mut self, start_ms: i64) {
        let container_start = unsafe { (*self.input.as_ptr()).start_time };
        let stream_start_us = (self.start_ticks as f64 * self.tick * 1e6) as i64;
        let origin = if container_start != ffmpeg::ffi::AV_NOPTS_VALUE {
            stream_start_us
        } else {
            0
        };
        let ts = origin + start_ms * 1000;
        if self.input.seek(ts, ..ts).is_err() {
            // Not seekable: decode from the start and drop the early points instead.
            self.warnings
                .push(format!("could not seek to {start_ms} ms; decoding from the start"));
        }
        self.decoder.flush();
    }

    fn point(&self, k: u64) -> f64 {
        k as f64 / self.opts.fps
    }

    fn check_budget(&self) -> Result<(), IngestError> {
        let wall = self.started.elapsed();
        if wall > self.max_wall {
            return Err(IngestError::BudgetExceeded {
                path: self.path.clone(),
                detail: format!("decoding took longer than {:.1} s", self.max_wall.as_secs_f64()),
            });
        }
        if self.decoded > self.max_frames || self.emitted > self.max_frames {
            return Err(IngestError::BudgetExceeded {
                path: self.path.clone(),
                detail: format!("more than {} frames decoded", self.max_frames),
            });
        }
        Ok(())
    }

    /// Reads one packet (or drains at the end) and queues any frames due.
    fn step(&mut self) -> Result<(), IngestError> {
        self.check_budget()?;
        if self.eof_sent {
            self.finish();
            return Ok(());
        }
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut self.input) {
            Ok(()) => {
                if packet.stream() != self.stream_index {
                    return Ok(());
                }
                if self.opts.mode == SampleMode::Keyframes && !packet.is_key() {
                    return Ok(());
                }
                if self.may_skip {
                    let skip = !self.packet_needed(&packet);
                    if skip != self.skipping {
                        self.decoder.skip_frame(if skip {
                            ffmpeg::codec::discard::Discard::NonReference
                        } else {
                            ffmpeg::codec::discard::Discard::Default
                        });
                        self.skipping = skip;
                    }
                }
                match self.decoder.send_packet(&packet) {
                    Ok(()) => {}
                    Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                        self.receive_frames()?;
                        let _ = self.decoder.send_packet(&packet);
                    }
                    Err(e) => self.decode_error(e)?,
                }
                self.receive_frames()
            }
            Err(ffmpeg::Error::Eof) => self.end_of_input(None),
            Err(e) => {
                if self.started.elapsed() > self.max_wall {
                    return self.check_budget();
                }
                self.end_of_input(Some(e))
            }
        }
    }

    /// Whether the picture in `packet` may be the one shown at a sample
    /// point: its interval `[t, t + d)`, widened by one interval on each side
    /// (timestamp rounding), holds a point. Packets
    /// without timing, and those before the first frame, are always needed.
    fn packet_needed(&self, packet: &ffmpeg::Packet) -> bool {
        let (Some(pts), d) = (packet.pts(), packet.duration()) else {
            return true;
        };
        if d <= 0 || self.held.is_none() {
            return true;
        }
        let t = (pts - self.start_ticks) as f64 * self.tick;
        let d = d as f64 * self.tick;
        let (lo, hi) = (t - d, t + 2.0 * d);
        let k = (lo * self.opts.fps).ceil().max(0.0);
        self.point(k as u64) <= hi + EPS
    }

    fn end_of_input(&mut self, err: Option<ffmpeg::Error>) -> Result<(), IngestError> {
        if let Some(e) = err {
            self.warnings.push(format!("reading stopped early: {e}"));
        }
        let _ = self.decoder.send_eof();
        self.eof_sent = true;
        self.receive_frames()?;
        self.finish();
        Ok(())
    }

    fn decode_error(&mut self, e: ffmpeg::Error) -> Result<(), IngestError> {
        self.decode_errors += 1;
        self.consecutive_errors += 1;
        if self.decode_errors <= 5 {
            self.warnings.push(format!("skipped a corrupt packet: {e}"));
        }
        if self.consecutive_errors > 200 {
            return Err(IngestError::Corrupt {
                path: self.path.clone(),
                detail: format!("{} packets in a row failed to decode ({e})", self.consecutive_errors),
            });
        }
        Ok(())
    }

    fn receive_frames(&mut self) -> Result<(), IngestError> {
        loop {
            match self.decoder.receive_frame(&mut self.scratch) {
                Ok(()) => {
                    self.decoded += 1;
                    self.consecutive_errors = 0;
                    self.on_frame()?;
                    self.check_budget()?;
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => return Ok(()),
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => {
                    self.decode_error(e)?;
                    return Ok(());
                }
            }
        }
    }

    fn frame_time(&self) -> Option<f64> {
        let ts = self.scratch.timestamp().or(self.scratch.pts())?;
        Some((ts - self.start_ticks) as f64 * self.tick)
    }

    fn on_frame(&mut self) -> Result<(), IngestError> {
        let (fw, fh) = (self.scratch.width(), self.scratch.height());
        if fw == 0 || fh == 0 || fw > media::MAX_SIDE || fh > media::MAX_SIDE {
            return media::check_dimensions(&self.path, fw, fh);
        }
        let t = match self.frame_time() {
            Some(t) => t,
            // No timestamp at all: assume the frame follows the previous one.
            None => self.held.as_ref().map(|h| h.t + h.dur).unwrap_or(0.0),
        };
        // A timestamp far beyond the declared duration is damage, not video.
        let declared = self.info.duration_ms as f64 / 1000.0;
        if declared > 0.0 && (t > declared + 10.0 || t < -10.0) {
            self.bogus_timestamps += 1;
            if self.bogus_timestamps == 1 {
                self.warnings
                    .push(format!("skipped a frame with an impossible timestamp ({t:.3} s)"));
            }
            return Ok(());
        }
        let dur = {
            let d = unsafe { (*self.scratch.as_ptr()).pkt_duration };
            match &self.held {
                _ if d > 0 => d as f64 * self.tick,
                // Variable frame rate: the last interval is the best guess.
                Some(h) if t > h.t => t - h.t,
                _ if self.info.fps > 0.0 => 1.0 / self.info.fps,
                _ => 1.0 / self.opts.fps,
            }
        };
        match self.opts.mode {
            SampleMode::Keyframes => {
                self.serial += 1;
                let frame = std::mem::replace(&mut self.scratch, VideoFrame::empty());
                self.held = Some(Held {
                    frame,
                    t,
                    dur,
                    serial: self.serial,
                });
                if t * 1000.0 + EPS >= self.opts.start_ms as f64 {
                    let ms = (t * 1000.0).round() as i64;
                    self.emit(ms)?;
                }
            }
            SampleMode::Fps => {
                // Points strictly before this frame belong to the held frame (or, before the
                // first frame, to this one).
                while self.point(self.next_point) < t - EPS {
                    if self.held.is_none() {
                        break;
                    }
                    let ms = (self.point(self.next_point) * 1000.0).round() as i64;
                    self.emit(ms)?;
                    self.next_point += 1;
                }
                self.serial += 1;
                let first = self.held.is_none();
                match &mut self.held {
                    Some(h) => {
                        std::mem::swap(&mut h.frame, &mut self.scratch);
                        h.t = t;
                        h.dur = dur;
                        h.serial = self.serial;
                    }
                    None => {
                        let frame = std::mem::replace(&mut self.scratch, VideoFrame::empty());
                        self.held = Some(Held {
                            frame,
                            t,
                            dur,
                            serial: self.serial,
                        });
                    }
                }
                if first {
                    // Points before the first frame take the first frame.
                    while self.point(self.next_point) < t - EPS {
                        let ms = (self.point(self.next_point) * 1000.0).round() as i64;
                        self.emit(ms)?;
                        self.next_point += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// At the end of the stream: the held frame covers the points up to its end.
    fn finish(&mut self) {
        if self.done {
            return;
        }
        if self.opts.mode == SampleMode::Fps {
            if let Some((t, dur)) = self.held.as_ref().map(|h| (h.t, h.dur)) {
                let end = t + dur;
                while self.point(self.next_point) < end - EPS {
                    let ms = (self.point(self.next_point) * 1000.0).round() as i64;
                    if let Err(e) = self.emit(ms) {
                        self.warnings.push(e.to_string());
                        break;
                    }
                    self.next_point += 1;
                }
            }
        }
        if let Some(h) = &self.held {
            let declared = self.info.duration_ms as f64 / 1000.0;
            let end = h.t + h.dur;
            if declared > 0.0 && end + 1.0 < declared * 0.9 {
                self.warnings.push(format!(
                    "video ends at {:.1} s but the file declares {:.1} s (truncated?)",
                    end, declared
                ));
            }
        }
        if self.decode_errors > 5 {
            self.warnings
                .push(format!("{} corrupt packets skipped in all", self.decode_errors));
        }
        self.done = true;
    }

    fn emit(&mut self, pts_ms: i64) -> Result<(), IngestError> {
        let held = self.held.as_ref().expect("emit needs a held frame");
        let serial = held.serial;
        let frame_pts_ms = (held.t * 1000.0).round() as i64;
        if !matches!(&self.converted, Some((s, _, _)) if *s == serial) {
            let image = self.convert_held()?;
            let thumb = self.thumbnail_held()?;
            self.converted = Some((serial, image, thumb));
        }
        let (_, image, thumb) = self.converted.as_ref().expect("converted above");
        self.ready.push_back(Frame {
            pts_ms,
            frame_pts_ms,
            image: image.clone(),
            thumbnail_jpeg: thumb.clone(),
        });
        self.emitted += 1;
        Ok(())
    }

    fn convert_held(&mut self) -> Result<RgbImage, IngestError> {
        let (w, h) = self.out_size;
        let img = scale_to_rgb(&self.path, &mut self.scaler, &self.held.as_ref().unwrap().frame, w, h)?;
        Ok(rotate(img, self.rotation))
    }

    fn thumbnail_held(&mut self) -> Result<Vec<u8>, IngestError> {
        let (w, h) = self.thumb_size;
        if w == 0 {
            return Ok(Vec::new());
        }
        let img = scale_to_rgb(
            &self.path,
            &mut self.thumb_scaler,
            &self.held.as_ref().unwrap().frame,
            w,
            h,
        )?;
        let img = rotate(img, self.rotation);
        let mut out = Vec::with_capacity(16 * 1024);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&img)
            .map_err(|e| IngestError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?;
        Ok(out)
    }
}

impl Drop for FrameSampler {
    fn drop(&mut self) {
        // Nothing blocks in FFmpeg after drop; make any pending I/O give up at once.
        self.deadline.store(0, Ordering::Relaxed);
    }
}

/// A swscale context with the input it was made for.
struct Scaler(scaling::Context, ffmpeg::format::Pixel, u32, u32);

// SAFETY: an SwsContext is plain heap state with no thread affinity; the sampler owns it
// and uses it from one thread at a time (`&mut self`), like the other FFmpeg contexts
// ffmpeg-next already marks `Send`.
unsafe impl Send for Scaler {}

/// Converts a decoded frame into an RGB image of `w`×`h` with swscale, honouring the
/// frame's colour matrix and range.
fn scale_to_rgb(
    path: &Path,
    slot: &mut Option<Scaler>,
    frame: &VideoFrame,
    w: u32,
    h: u32,
) -> Result<RgbImage, IngestError> {
    let (fmt, fw, fh) = (frame.format(), frame.width(), frame.height());
    let stale = !matches!(slot, Some(Scaler(_, f, sw, sh)) if *f == fmt && *sw == fw && *sh == fh);
    if stale {
        let ctx = scaling::Context::get(
            fmt,
            fw,
            fh,
            ffmpeg::format::Pixel::RGB24,
            w,
            h,
            scaling::Flags::BILINEAR,
        )
        .map_err(|e| IngestError::Ffmpeg {
            path: path.to_owned(),
            context: "creating the colour converter",
            source: e,
        })?;
        *slot = Some(Scaler(ctx, fmt, fw, fh));
    }
    let Scaler(ctx, _, _, _) = slot.as_mut().expect("set above");
    set_colorspace(ctx, frame);
    let mut rgb = VideoFrame::empty();
    ctx.run(frame, &mut rgb).map_err(|e| IngestError::Ffmpeg {
        path: path.to_owned(),
        context: "converting a frame to RGB",
        source: e,
    })?;
    let stride = rgb.stride(0);
    let data = rgb.data(0);
    let row = w as usize * 3;
    let mut buf = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        buf.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(RgbImage::from_raw(w, h, buf).expect("buffer sized to w*h*3"))
}

fn set_colorspace(ctx: &mut scaling::Context, frame: &VideoFrame) {
    use ffmpeg::ffi;
    let cs = match frame.color_space() {
        ffmpeg::color::Space::BT709 => ffi::SWS_CS_ITU709,
        ffmpeg::color::Space::FCC => ffi::SWS_CS_FCC,
        ffmpeg::color::Space::SMPTE240M => ffi::SWS_CS_SMPTE240M,
        ffmpeg::color::Space::BT2020NCL | ffmpeg::color::Space::BT2020CL => ffi::SWS_CS_BT2020,
        _ => ffi::SWS_CS_DEFAULT,
    };
    let full = frame.color_range() == ffmpeg::color::Range::JPEG
        || matches!(
            frame.format(),
            ffmpeg::format::Pixel::YUVJ420P | ffmpeg::format::Pixel::YUVJ422P | ffmpeg::format::Pixel::YUVJ444P
        );
    unsafe {
        let mut inv_table: *mut i32 = std::ptr::null_mut();
        let mut table: *mut i32 = std::ptr::null_mut();
        let (mut src_range, mut dst_range, mut brightness, mut contrast, mut saturation) = (0, 0, 0, 0, 0);
        let c = ctx.as_mut_ptr();
        if ffi::sws_getColorspaceDetails(
            c,
            &mut inv_table,
            &mut src_range,
            &mut table,
            &mut dst_range,
            &mut brightness,
            &mut contrast,
            &mut saturation,
        ) < 0
        {
            return;
        }
        let coeffs = ffi::sws_getCoefficients(cs);
        ffi::sws_setColorspaceDetails(
            c,
            coeffs,
            full as i32,
            table,
            dst_range,
            brightness,
            contrast,
            saturation,
        );
    }
}

fn rotate(img: RgbImage, rotation: i32) -> RgbImage {
    match rotation {
        90 => image::imageops::rotate90(&img),
        180 => image::imageops::rotate180(&img),
        270 => image::imageops::rotate270(&img),
        _ => img,
    }
}

impl Iterator for FrameSampler {
    type Item = Result<Frame, IngestError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Some(Ok(f));
            }
            if let Some(e) = self.pending_error.take() {
                return Some(Err(e));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.step() {
                // Frames queued before the error come first; the error is
                // the last item.
                self.done = true;
                self.pending_error = Some(e);
                continue;
            }
            if self.done && self.ready.is_empty() && self.decoded == 0 {
                let detail = match self.warnings.first() {
                    Some(w) => format!("no video frame could be decoded ({w})"),
                    None => "no video frame could be decoded".to_string(),
                };
                return Some(Err(IngestError::Corrupt {
                    path: self.path.clone(),
                    detail,
                }));
            }
        }
    }
}
