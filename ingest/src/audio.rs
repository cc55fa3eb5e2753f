//! Audio decoding for the speech stage: the best audio stream of a file, decoded with
//! FFmpeg (ffmpeg-next) and resampled with swresample to mono 16 kHz `f32`, streamed in
//! chunks that carry their start time.
//!
//! [`AudioDecoder`] reads one packet at a time and hands out a chunk as soon as it is
//! full, so memory holds about one chunk (plus FFmpeg's own buffers) whatever the length
//! of the file.
//!
//! Timeline: times are milliseconds. In a file with video they are on the same timeline
//! as [`FrameSampler`](crate::FrameSampler) frames and embedded subtitle cues (from the
//! best video stream's start time); in an audio-only file they start at the file's start
//! time, as players show it. The first chunk starts at the first decoded audio frame's
//! timestamp, so audio that starts late (an offset audio track) is placed where it
//! plays. Samples then follow each other at
//! 16 kHz; a gap in the audio's timestamps up to [`MAX_FILLED_GAP_MS`] is filled with
//! silence, a longer one ends the chunk and the next chunk starts at the audio after the
//! gap. Chunk start times never go backwards.
//!
//! Downmixing: swresample's standard matrix for known channel layouts (centre kept,
//! front and surround channels mixed at −3 dB, LFE left out, the result normalised so
//! it cannot clip); streams whose layout is unknown get every channel at equal weight.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg::format::context::Input;
use ffmpeg::media::Type as MediaType;
use ffmpeg::util::frame::audio::Audio as AudioFrame;
use ffmpeg_next as ffmpeg;

use crate::media;
use crate::IngestError;

/// The sample rate of the decoded audio, in Hz (what Whisper takes).
pub const SAMPLE_RATE: u32 = 16_000;

/// The longest gap in the audio's timestamps that is filled with silence; a longer gap
/// ends the current chunk and the next one starts after the gap.
pub const MAX_FILLED_GAP_MS: i64 = 1_000;

/// Gaps shorter than this (timestamp rounding, codec framing) are ignored.
const MIN_GAP_S: f64 = 0.02;

/// Gaps at least this long are reported in the warnings (lost packets, damaged pages).
const REPORTED_GAP_S: f64 = 0.1;

/// The longest chunk [`AudioOptions::chunk_ms`] may ask for (10 minutes).
pub const MAX_CHUNK_MS: u32 = 600_000;

/// How to decode and hand over the audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioOptions {
    /// Length of a chunk in milliseconds (default 30 000, Whisper's window). Every chunk
    /// but the last one of a stretch of continuous audio holds exactly this much.
    /// Must be in `1..=MAX_CHUNK_MS`.
    pub chunk_ms: u32,
    /// Wall-clock limit for opening and decoding. `None`: 60 s plus 10 × the file's
    /// duration (one hour when the duration is unknown).
    pub max_wall: Option<Duration>,
}

impl Default for AudioOptions {
    fn default() -> Self {
        AudioOptions {
            chunk_ms: 30_000,
            max_wall: None,
        }
    }
}

/// A run of decoded audio: mono, [`SAMPLE_RATE`] Hz, `f32` in `[-1, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioChunk {
    /// Time of the first sample in milliseconds (see the module documentation for the
    /// timeline). It can be slightly negative where a file's audio starts before its
    /// video (codec priming in some MP4 files).
    pub start_ms: i64,
    /// The samples, packed mono at [`SAMPLE_RATE`] Hz.
    pub samples: Vec<f32>,
}

impl AudioChunk {
    /// Duration of the chunk in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        self.samples.len() as f64 * 1000.0 / SAMPLE_RATE as f64
    }

    /// Time just after the last sample, in milliseconds (rounded).
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.duration_ms().round() as i64
    }
}

/// Facts about the audio stream being decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioStreamInfo {
    /// Stream index in the container.
    pub index: usize,
    /// FFmpeg codec name (e.g. `aac`, `mp3`, `pcm_s16le`).
    pub codec: String,
    /// Sample rate of the source, in Hz.
    pub sample_rate: u32,
    /// Number of channels of the source.
    pub channels: u16,
    /// Duration of the file in milliseconds as declared (0 when unknown).
    pub duration_ms: i64,
}

/// Streams the best audio stream of a file as mono 16 kHz chunks; see the module
/// documentation.
///
/// ```no_run
/// # use kino_ingest::{AudioDecoder, AudioOptions};
/// match AudioDecoder::open("talk.mkv".as_ref(), &AudioOptions::default())? {
///     None => println!("no audio stream"),
///     Some(decoder) => {
///         for chunk in decoder {
///             let chunk = chunk?;
///             println!("{} ms: {} samples", chunk.start_ms, chunk.samples.len());
///         }
///     }
/// }
/// # Ok::<(), kino_ingest::IngestError>(())
/// ```
pub struct AudioDecoder {
    path: PathBuf,
    info: AudioStreamInfo,
    input: Input,
    stream_index: usize,
    decoder: ffmpeg::decoder::Audio,
    /// Seconds per tick of the stream time base.
    tick: f64,
    /// Start of the timeline in seconds (stream time, the video stream's start).
    origin_s: f64,
    declared_s: f64,
    resampler: Option<Resampler>,
    /// Time of output sample 0 of the current run of continuous audio.
    anchor_s: Option<f64>,
    /// Output samples produced in the current run.
    run_out: u64,
    /// Expected time of the next input sample.
    next_in_s: f64,
    chunk_samples: usize,
    buf: Vec<f32>,
    buf_start_s: f64,
    out_scratch: Vec<f32>,
    scratch: AudioFrame,
    ready: VecDeque<AudioChunk>,
    last_start_ms: i64,
    done: bool,
    eof_sent: bool,
    pending_error: Option<IngestError>,
    warnings: Vec<String>,
    decoded: u64,
    packets: u64,
    decode_errors: u64,
    consecutive_errors: u64,
    bogus_timestamps: u64,
    backwards: u64,
    gaps: u64,
    started: Instant,
    deadline: Arc<AtomicU64>,
    max_wall: Duration,
}

impl AudioDecoder {
    /// Opens `path` and prepares to decode its best audio stream.
    ///
    /// Returns `Ok(None)` when the file has no audio stream (a silent video is not an
    /// error). Errors: missing, unreadable, empty or non-media files, invalid options, no
    /// decoder for the audio codec, and a budget exceeded while opening; every error
    /// names the file.
    pub fn open(path: &Path, opts: &AudioOptions) -> Result<Option<AudioDecoder>, IngestError> {
        if opts.chunk_ms == 0 || opts.chunk_ms > MAX_CHUNK_MS {
            return Err(IngestError::InvalidOptions {
                path: path.to_owned(),
                detail: format!("chunk_ms must be in 1..={MAX_CHUNK_MS}, got {}", opts.chunk_ms),
            });
        }
        media::init();
        media::check_file(path)?;
        let base = Instant::now();
        let open_wall = opts.max_wall.unwrap_or(media::OPEN_TIMEOUT).min(media::OPEN_TIMEOUT);
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
        let Some(stream) = input.streams().best(MediaType::Audio) else {
            return Ok(None);
        };
        let stream_index = stream.index();
        let tb = stream.time_base();
        let tick = if tb.denominator() > 0 && tb.numerator() > 0 {
            f64::from(tb)
        } else {
            1e-6
        };
        let origin_s = match media::best_video(&input) {
            Some(v) if v.start_time() != ffmpeg::ffi::AV_NOPTS_VALUE => {
                v.start_time() as f64 * f64::from(v.time_base())
            }
            Some(_) => 0.0,
            // Audio only: the file's own start, as players show it (an MP3's first
            // audible sample is at 0, not after the encoder delay it skips).
            None => match unsafe { (*input.as_ptr()).start_time } {
                ffmpeg::ffi::AV_NOPTS_VALUE => 0.0,
                us => us as f64 / 1e6,
            },
        };
        let declared_s = if input.duration() > 0 {
            input.duration() as f64 / 1e6
        } else if stream.duration() > 0 {
            stream.duration() as f64 * tick
        } else {
            0.0
        };
        let codec_name = stream.parameters().id().name().to_string();
        let ctx =
            ffmpeg::codec::context::Context::from_parameters(stream.parameters()).map_err(|e| IngestError::Ffmpeg {
                path: path.to_owned(),
                context: "reading audio codec parameters",
                source: e,
            })?;
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(tb);
        let decoder = dec.audio().map_err(|e| match e {
            ffmpeg::Error::DecoderNotFound => IngestError::NotMedia {
                path: path.to_owned(),
                detail: format!("no decoder for audio codec {codec_name}"),
            },
            e => IngestError::Ffmpeg {
                path: path.to_owned(),
                context: "opening the audio decoder",
                source: e,
            },
        })?;
        let info = AudioStreamInfo {
            index: stream_index,
            codec: codec_name,
            sample_rate: decoder.rate(),
            channels: decoder.channels(),
            duration_ms: (declared_s * 1000.0).round() as i64,
        };
        let max_wall = opts.max_wall.unwrap_or(if declared_s > 0.0 {
            Duration::from_secs_f64(60.0 + 10.0 * declared_s)
        } else {
            Duration::from_secs(3600)
        });
        deadline.store(max_wall.as_nanos() as u64, Ordering::Relaxed);
        let chunk_samples = (opts.chunk_ms as u64 * SAMPLE_RATE as u64 / 1000).max(1) as usize;
        Ok(Some(AudioDecoder {
            path: path.to_owned(),
            info,
            input,
            stream_index,
            decoder,
            tick,
            origin_s,
            declared_s,
            resampler: None,
            anchor_s: None,
            run_out: 0,
            next_in_s: 0.0,
            chunk_samples,
            buf: Vec::new(),
            buf_start_s: 0.0,
            out_scratch: Vec::new(),
            scratch: AudioFrame::empty(),
            ready: VecDeque::new(),
            last_start_ms: i64::MIN,
            done: false,
            eof_sent: false,
            pending_error: None,
            warnings: Vec::new(),
            decoded: 0,
            packets: 0,
            decode_errors: 0,
            consecutive_errors: 0,
            bogus_timestamps: 0,
            backwards: 0,
            gaps: 0,
            started: base,
            deadline,
            max_wall,
        }))
    }

    /// Facts about the audio stream being decoded.
    pub fn info(&self) -> &AudioStreamInfo {
        &self.info
    }

    /// Problems met so far that did not stop decoding (corrupt packets skipped, an early
    /// end, timestamps out of order).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Number of audio frames (FFmpeg's units of a few ms each) decoded so far.
    pub fn decoded_frames(&self) -> u64 {
        self.decoded
    }

    fn check_budget(&self) -> Result<(), IngestError> {
        if self.started.elapsed() > self.max_wall {
            return Err(IngestError::BudgetExceeded {
                path: self.path.clone(),
                detail: format!("decoding audio took longer than {:.1} s", self.max_wall.as_secs_f64()),
            });
        }
        Ok(())
    }

    /// Reads one packet (or drains at the end) and queues any chunks completed.
    fn step(&mut self) -> Result<(), IngestError> {
        self.check_budget()?;
        if self.eof_sent {
            return self.finish();
        }
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(&mut self.input) {
            Ok(()) => {
                if packet.stream() != self.stream_index {
                    return Ok(());
                }
                self.packets += 1;
                match self.decoder.send_packet(&packet) {
                    Ok(()) => {}
                    Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                        self.receive_frames()?;
                        if let Err(e) = self.decoder.send_packet(&packet) {
                            self.decode_error(e)?;
                        }
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

    fn end_of_input(&mut self, err: Option<ffmpeg::Error>) -> Result<(), IngestError> {
        if let Some(e) = err {
            self.warnings.push(format!("reading stopped early: {e}"));
        }
        let _ = self.decoder.send_eof();
        self.eof_sent = true;
        self.receive_frames()?;
        self.finish()
    }

    fn decode_error(&mut self, e: ffmpeg::Error) -> Result<(), IngestError> {
        self.decode_errors += 1;
        self.consecutive_errors += 1;
        if self.decode_errors <= 5 {
            self.warnings.push(format!("skipped a corrupt audio packet: {e}"));
        }
        if self.consecutive_errors > 200 {
            return Err(IngestError::Corrupt {
                path: self.path.clone(),
                detail: format!(
                    "{} audio packets in a row failed to decode ({e})",
                    self.consecutive_errors
                ),
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

    fn on_frame(&mut self) -> Result<(), IngestError> {
        let n = self.scratch.samples();
        let rate = self.scratch.rate();
        let channels = self.scratch.channels();
        if n == 0 {
            return Ok(());
        }
        if rate == 0 || channels == 0 {
            self.decode_error(ffmpeg::Error::InvalidData)?;
            return Ok(());
        }
        let ts = self.scratch.timestamp().or(self.scratch.pts());
        let t = match ts {
            Some(ts) => ts as f64 * self.tick - self.origin_s,
            None => self.next_in_s,
        };
        // A timestamp far outside the declared duration is damage, not audio.
        if self.declared_s > 0.0 && (t > self.declared_s + 10.0 || t < -10.0) {
            self.bogus_timestamps += 1;
            if self.bogus_timestamps == 1 {
                self.warnings
                    .push(format!("skipped audio with an impossible timestamp ({t:.3} s)"));
            }
            return Ok(());
        }
        match self.anchor_s {
            None => self.start_run(t),
            Some(_) => {
                let drift = t - self.next_in_s;
                if drift >= REPORTED_GAP_S {
                    self.gaps += 1;
                    if self.gaps <= 3 {
                        let what = if drift * 1000.0 > MAX_FILLED_GAP_MS as f64 {
                            "the next chunk starts after it"
                        } else {
                            "filled with silence"
                        };
                        self.warnings.push(format!(
                            "gap in the audio from {:.3} s to {t:.3} s ({drift:.3} s missing; {what})",
                            self.next_in_s
                        ));
                    }
                }
                if drift * 1000.0 > MAX_FILLED_GAP_MS as f64 {
                    // A long gap: close this run; the next chunk starts after the gap.
                    self.flush_resampler()?;
                    self.close_chunk();
                    self.resampler = None;
                    self.start_run(t);
                } else if drift > MIN_GAP_S {
                    let zeros = (drift * SAMPLE_RATE as f64).round() as usize;
                    self.out_scratch.clear();
                    self.out_scratch.resize(zeros, 0.0);
                    self.push_scratch();
                    self.next_in_s = t;
                } else if drift < -0.1 {
                    self.backwards += 1;
                    if self.backwards == 1 {
                        self.warnings.push(format!(
                            "audio timestamps go backwards at {t:.3} s (expected {:.3} s); samples kept in order",
                            self.next_in_s
                        ));
                    }
                }
            }
        }
        let key = FormatKey {
            format: self.scratch.format(),
            layout: self.scratch.channel_layout().bits(),
            channels,
            rate,
        };
        if self.resampler.as_ref().map(|r| r.key) != Some(key) {
            self.flush_resampler()?;
            self.resampler = Some(Resampler::new(&self.path, key, &self.scratch)?);
        }
        let resampler = self.resampler.as_mut().expect("set above");
        let frame = &self.scratch;
        resampler.convert(&self.path, Some(frame), &mut self.out_scratch)?;
        self.push_scratch();
        self.next_in_s += n as f64 / rate as f64;
        Ok(())
    }

    fn start_run(&mut self, t: f64) {
        self.anchor_s = Some(t);
        self.run_out = 0;
        self.next_in_s = t;
    }

    /// Drains the resampler's delayed samples into the output.
    fn flush_resampler(&mut self) -> Result<(), IngestError> {
        if let Some(r) = self.resampler.as_mut() {
            r.convert(&self.path, None, &mut self.out_scratch)?;
            self.push_scratch();
        }
        Ok(())
    }

    /// Appends `out_scratch` to the chunk being filled, queueing full chunks.
    fn push_scratch(&mut self) {
        let anchor = self.anchor_s.unwrap_or(0.0);
        let scratch = std::mem::take(&mut self.out_scratch);
        let mut rest = &scratch[..];
        while !rest.is_empty() {
            if self.buf.is_empty() {
                self.buf_start_s = anchor + self.run_out as f64 / SAMPLE_RATE as f64;
                if self.buf.capacity() < self.chunk_samples {
                    self.buf.reserve_exact(self.chunk_samples);
                }
            }
            let take = (self.chunk_samples - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            self.run_out += take as u64;
            rest = &rest[take..];
            if self.buf.len() == self.chunk_samples {
                let samples = std::mem::take(&mut self.buf);
                self.queue(samples);
            }
        }
        self.out_scratch = scratch;
        self.out_scratch.clear();
    }

    /// Queues the partly filled chunk, if any.
    fn close_chunk(&mut self) {
        if !self.buf.is_empty() {
            let samples = std::mem::take(&mut self.buf);
            self.queue(samples);
        }
    }

    fn queue(&mut self, samples: Vec<f32>) {
        let start_ms = ((self.buf_start_s * 1000.0).round() as i64).max(self.last_start_ms);
        self.last_start_ms = start_ms;
        self.ready.push_back(AudioChunk { start_ms, samples });
    }

    /// At the end of the stream: the resampler's tail, the last chunk, warnings.
    fn finish(&mut self) -> Result<(), IngestError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        self.flush_resampler()?;
        self.close_chunk();
        if self.anchor_s.is_some() && self.declared_s > 0.0 && self.next_in_s + 1.0 < self.declared_s * 0.9 {
            self.warnings.push(format!(
                "audio ends at {:.1} s but the file declares {:.1} s (truncated?)",
                self.next_in_s, self.declared_s
            ));
        }
        if self.decode_errors > 5 {
            self.warnings
                .push(format!("{} corrupt audio packets skipped in all", self.decode_errors));
        }
        if self.gaps > 3 {
            self.warnings.push(format!("{} gaps in the audio in all", self.gaps));
        }
        if self.backwards > 1 {
            self.warnings
                .push(format!("audio timestamps went backwards {} times", self.backwards));
        }
        if self.bogus_timestamps > 1 {
            self.warnings.push(format!(
                "{} audio frames with impossible timestamps skipped",
                self.bogus_timestamps
            ));
        }
        if self.anchor_s.is_none() && (self.decode_errors > 0 || self.packets > 0) {
            // Packets came but no sample: the stream is damaged beyond use.
            let detail = match self.warnings.first() {
                Some(w) => format!("no audio could be decoded from {} packets ({w})", self.packets),
                None => format!("no audio could be decoded from {} packets", self.packets),
            };
            return Err(IngestError::Corrupt {
                path: self.path.clone(),
                detail,
            });
        }
        if self.packets == 0 && self.declared_s > 1.0 {
            self.warnings.push(format!(
                "the audio stream holds no data although the file declares {:.1} s",
                self.declared_s
            ));
        }
        Ok(())
    }
}

impl Drop for AudioDecoder {
    fn drop(&mut self) {
        // Make any pending I/O in FFmpeg give up at once.
        self.deadline.store(0, Ordering::Relaxed);
    }
}

impl Iterator for AudioDecoder {
    type Item = Result<AudioChunk, IngestError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Some(Ok(c));
            }
            if let Some(e) = self.pending_error.take() {
                return Some(Err(e));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.step() {
                // Chunks completed before the error come first; the error is the last
                // item. The partly filled chunk is handed over too.
                self.close_chunk();
                self.done = true;
                self.pending_error = Some(e);
            }
        }
    }
}

/// What a resampler was set up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FormatKey {
    format: ffmpeg::format::Sample,
    layout: u64,
    channels: u16,
    rate: u32,
}

/// A swresample context converting one input format to mono 16 kHz packed `f32`.
struct Resampler {
    ptr: *mut ffmpeg::ffi::SwrContext,
    key: FormatKey,
}

// SAFETY: a SwrContext is plain heap state with no thread affinity; the decoder owns it
// and uses it from one thread at a time (`&mut self`).
unsafe impl Send for Resampler {}

impl Resampler {
    /// A resampler for `frame`'s format (summarised by `key`).
    fn new(path: &Path, key: FormatKey, frame: &AudioFrame) -> Result<Resampler, IngestError> {
        use ffmpeg::ffi;
        let err = |e: i32| IngestError::Ffmpeg {
            path: path.to_owned(),
            context: "setting up the audio resampler",
            source: if e == 0 {
                ffmpeg::Error::Unknown
            } else {
                ffmpeg::Error::from(e)
            },
        };
        let n = key.channels as i32;
        // SAFETY: the layouts are plain structs set up and released by libavutil; the
        // frame's layout is only read; swr copies the layouts it is given.
        unsafe {
            let mut in_layout: ffi::AVChannelLayout = std::mem::zeroed();
            let src = &(*frame.as_ptr()).ch_layout;
            if src.order == ffi::AVChannelOrder::AV_CHANNEL_ORDER_NATIVE && src.nb_channels == n {
                let e = ffi::av_channel_layout_copy(&mut in_layout, src);
                if e < 0 {
                    return Err(err(e));
                }
            } else {
                // Unknown or unusual: the standard layout for this many channels, if any.
                ffi::av_channel_layout_default(&mut in_layout, n);
            }
            let custom = in_layout.order != ffi::AVChannelOrder::AV_CHANNEL_ORDER_NATIVE;
            let mut out_layout: ffi::AVChannelLayout = std::mem::zeroed();
            ffi::av_channel_layout_default(&mut out_layout, 1);
            let mut ptr = std::ptr::null_mut();
            let e = ffi::swr_alloc_set_opts2(
                &mut ptr,
                &mut out_layout,
                ffi::AVSampleFormat::AV_SAMPLE_FMT_FLT,
                SAMPLE_RATE as i32,
                &mut in_layout,
                key.format.into(),
                key.rate as i32,
                0,
                std::ptr::null_mut(),
            );
            ffi::av_channel_layout_uninit(&mut in_layout);
            ffi::av_channel_layout_uninit(&mut out_layout);
            if e < 0 || ptr.is_null() {
                if !ptr.is_null() {
                    ffi::swr_free(&mut ptr);
                }
                return Err(err(e));
            }
            let r = Resampler { ptr, key };
            if custom {
                // No standard layout for this many channels: every channel at equal weight.
                let matrix = vec![1.0 / n as f64; n as usize];
                let e = ffi::swr_set_matrix(r.ptr, matrix.as_ptr(), n);
                if e < 0 {
                    return Err(err(e));
                }
            }
            let e = ffi::swr_init(r.ptr);
            if e < 0 {
                return Err(err(e));
            }
            Ok(r)
        }
    }

    /// Converts `frame` (or drains the delayed samples when `None`) into `out`
    /// (appended).
    fn convert(&mut self, path: &Path, frame: Option<&AudioFrame>, out: &mut Vec<f32>) -> Result<(), IngestError> {
        use ffmpeg::ffi;
        let in_n = frame.map(|f| f.samples() as i32).unwrap_or(0);
        loop {
            let cap = unsafe { ffi::swr_get_out_samples(self.ptr, in_n) }.max(0) as usize + 32;
            let old = out.len();
            out.resize(old + cap, 0.0);
            let mut out_ptr = unsafe { out.as_mut_ptr().add(old) } as *mut u8;
            let got = unsafe {
                match frame {
                    Some(f) => ffi::swr_convert(
                        self.ptr,
                        &mut out_ptr,
                        cap as i32,
                        (*f.as_ptr()).extended_data as *mut *const u8,
                        in_n,
                    ),
                    None => ffi::swr_convert(self.ptr, &mut out_ptr, cap as i32, std::ptr::null_mut(), 0),
                }
            };
            if got < 0 {
                out.truncate(old);
                return Err(IngestError::Ffmpeg {
                    path: path.to_owned(),
                    context: "resampling audio",
                    source: ffmpeg::Error::from(got),
                });
            }
            out.truncate(old + got as usize);
            // With input, one call takes it all; when draining, repeat until empty.
            if frame.is_some() || got == 0 {
                return Ok(());
            }
        }
    }
}

impl Drop for Resampler {
    fn drop(&mut self) {
        unsafe { ffmpeg::ffi::swr_free(&mut self.ptr) };
    }
}
