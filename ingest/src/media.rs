//! Probing: open a file with FFmpeg and report its media facts.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use ffmpeg::format::context::Input;
use ffmpeg::media::Type as MediaType;
use ffmpeg_next as ffmpeg;
use serde::Serialize;

use crate::IngestError;

/// The largest width or height kino accepts; anything larger is treated as a
/// corrupt header (or a file no pipeline stage could handle) and refused.
pub const MAX_SIDE: u32 = 16384;

/// How long opening and probing a file may take before it is abandoned.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Facts about a media file, as `kino probe --json` prints them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaInfo {
    /// The file.
    pub path: PathBuf,
    /// FFmpeg's container name(s), e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    /// Duration in milliseconds (0 when unknown).
    pub duration_ms: i64,
    /// Coded width of the best video stream (before rotation), 0 without video.
    pub width: u32,
    /// Coded height of the best video stream (before rotation), 0 without video.
    pub height: u32,
    /// Width as displayed (after rotation).
    pub display_width: u32,
    /// Height as displayed (after rotation).
    pub display_height: u32,
    /// Average frame rate of the best video stream (0 when unknown).
    pub fps: f64,
    /// Clockwise rotation in degrees (0, 90, 180 or 270) that makes the picture upright.
    pub rotation: i32,
    /// Codec of the best video stream (e.g. `h264`).
    pub video_codec: Option<String>,
    /// Codec of the best audio stream (e.g. `aac`).
    pub audio_codec: Option<String>,
    /// Subtitle streams in the file.
    pub subtitle_streams: Vec<SubtitleStreamInfo>,
    /// True when the file has a video stream.
    pub has_video: bool,
    /// True when the file has an audio stream.
    pub has_audio: bool,
    /// Index of the best video stream.
    pub video_stream: Option<usize>,
    /// Number of video frames when the container says (0 when unknown).
    pub frame_count: i64,
    /// Overall bit rate in bits per second (0 when unknown).
    pub bit_rate: i64,
}

/// One subtitle stream inside a media file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubtitleStreamInfo {
    /// Stream index in the container.
    pub index: usize,
    /// FFmpeg codec name (`subrip`, `mov_text`, `webvtt`, `ass`, `hdmv_pgs_subtitle`, …).
    pub codec: String,
    /// Language tag, when present.
    pub language: Option<String>,
    /// Title tag, when present.
    pub title: Option<String>,
    /// True for text subtitles kino can read; bitmap subtitles are listed but not read.
    pub text: bool,
}

/// Initialises FFmpeg once per process and lowers its own logging to errors only.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// Checks that `path` is a readable, non-empty regular file.
pub(crate) fn check_file(path: &Path) -> Result<u64, IngestError> {
    let meta = std::fs::metadata(path).map_err(|e| IngestError::io(path, e))?;
    if meta.is_dir() {
        return Err(IngestError::NotMedia {
            path: path.to_owned(),
            detail: "it is a directory".into(),
        });
    }
    // A pipe, socket or device is an endless stream (or blocks the open
    // itself, a pipe without a writer): only regular files are read.
    if !meta.is_file() {
        return Err(IngestError::NotMedia {
            path: path.to_owned(),
            detail: "not a regular file (a pipe, socket or device is never read)".into(),
        });
    }
    // Opening tells permission problems apart from FFmpeg's vaguer errors.
    std::fs::File::open(path).map_err(|e| IngestError::io(path, e))?;
    if meta.len() == 0 {
        return Err(IngestError::Empty { path: path.to_owned() });
    }
    Ok(meta.len())
}

/// Opens `path` with FFmpeg, giving up after `timeout`.
pub(crate) fn open_input(path: &Path, timeout: Duration) -> Result<Input, IngestError> {
    init();
    check_file(path)?;
    let deadline = Instant::now() + timeout;
    match ffmpeg::format::input_with_interrupt(path, move || Instant::now() > deadline) {
        Ok(input) => Ok(input),
        Err(_) if Instant::now() > deadline => Err(IngestError::BudgetExceeded {
            path: path.to_owned(),
            detail: format!("opening took longer than {} s", timeout.as_secs()),
        }),
        Err(e) => Err(open_error(path, e)),
    }
}

/// Turns FFmpeg's failure to open `path` into a clear error: a file whose first bytes
/// look like a known container is reported as truncated or corrupt, anything else as
/// not media.
pub(crate) fn open_error(path: &Path, e: ffmpeg::Error) -> IngestError {
    if let ffmpeg::Error::Other { errno } = e {
        if errno == ffmpeg::error::EACCES {
            return IngestError::PermissionDenied { path: path.to_owned() };
        }
    }
    match sniff_container(path) {
        Some(name) => IngestError::Corrupt {
            path: path.to_owned(),
            detail: format!("the data looks like {name} but FFmpeg cannot open it ({e}); truncated download?"),
        },
        None => IngestError::NotMedia {
            path: path.to_owned(),
            detail: e.to_string(),
        },
    }
}

/// Names the container format the first bytes of `path` belong to, judged by content
/// only (not by the file name), when FFmpeg is confident.
pub(crate) fn sniff_container(path: &Path) -> Option<String> {
    use std::io::Read;
    const PROBE: usize = 64 * 1024;
    let mut buf = Vec::with_capacity(PROBE + 64);
    std::fs::File::open(path)
        .ok()?
        .take(PROBE as u64)
        .read_to_end(&mut buf)
        .ok()?;
    let n = buf.len();
    if n == 0 {
        return None;
    }
    buf.resize(n + ffmpeg::ffi::AVPROBE_PADDING_SIZE as usize, 0);
    let empty = c"";
    let pd = ffmpeg::ffi::AVProbeData {
        filename: empty.as_ptr(),
        buf: buf.as_mut_ptr(),
        buf_size: n as i32,
        mime_type: std::ptr::null(),
    };
    let mut score = 0;
    unsafe {
        let fmt = ffmpeg::ffi::av_probe_input_format2(&pd, 1, &mut score);
        if fmt.is_null() || score < 50 {
            return None;
        }
        Some(std::ffi::CStr::from_ptr((*fmt).name).to_string_lossy().into_owned())
    }
}

/// Clockwise rotation in degrees (0, 90, 180, 270) to make a stream upright,
/// from its display matrix side data, else its `rotate` tag.
pub(crate) fn stream_rotation(stream: &ffmpeg::format::stream::Stream) -> i32 {
    for sd in stream.side_data() {
        if sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix && sd.data().len() >= 36 {
            let d = sd.data();
            let m = |i: usize| i32::from_ne_bytes([d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]]) as f64;
            // FFmpeg's CLI turns the display matrix into a clockwise angle this way
            // (theta = -av_display_rotation_get(matrix)).
            let theta = m(1).atan2(m(0)).to_degrees();
            return normalise_rotation(theta);
        }
    }
    if let Some(tag) = stream.metadata().get("rotate") {
        if let Ok(v) = tag.trim().parse::<f64>() {
            return normalise_rotation(v);
        }
    }
    0
}

fn normalise_rotation(deg: f64) -> i32 {
    let r = ((deg / 90.0).round() as i64 * 90).rem_euclid(360);
    r as i32
}

/// Checks declared video dimensions.
pub(crate) fn check_dimensions(path: &Path, width: u32, height: u32) -> Result<(), IngestError> {
    if width == 0 || height == 0 {
        return Err(IngestError::Corrupt {
            path: path.to_owned(),
            detail: format!("video stream declares no picture size ({width}x{height})"),
        });
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(IngestError::AbsurdDimensions {
            path: path.to_owned(),
            width,
            height,
            max_side: MAX_SIDE,
        });
    }
    Ok(())
}

fn rational(r: ffmpeg::Rational) -> f64 {
    if r.denominator() == 0 || r.numerator() <= 0 {
        0.0
    } else {
        r.numerator() as f64 / r.denominator() as f64
    }
}

/// Frame rate of a stream: average rate, else the real base rate.
pub(crate) fn stream_fps(stream: &ffmpeg::format::stream::Stream) -> f64 {
    let avg = rational(stream.avg_frame_rate());
    if avg > 0.0 && avg < 1000.0 {
        avg
    } else {
        let r = rational(stream.rate());
        if r > 0.0 && r < 1000.0 {
            r
        } else {
            0.0
        }
    }
}

/// True for subtitle codecs whose packets hold text kino can read.
pub(crate) fn is_text_subtitle(id: ffmpeg::codec::Id) -> bool {
    use ffmpeg::codec::Id;
    matches!(
        id,
        Id::SUBRIP | Id::SRT | Id::MOV_TEXT | Id::WEBVTT | Id::ASS | Id::SSA | Id::TEXT
    )
}

/// Reports the media facts of `path`.
///
/// Errors: the file is missing, unreadable, empty, not media, has absurd
/// video dimensions, or opening takes longer than [`OPEN_TIMEOUT`]. An
/// audio-only file is not an error here (`has_video` is false).
pub fn probe(path: &Path) -> Result<MediaInfo, IngestError> {
    let input = open_input(path, OPEN_TIMEOUT)?;
    probe_input(path, &input)
}

pub(crate) fn probe_input(path: &Path, input: &Input) -> Result<MediaInfo, IngestError> {
    let duration_ms = if input.duration() > 0 {
        input.duration() / 1000
    } else {
        0
    };
    let mut info = MediaInfo {
        path: path.to_owned(),
        container: input.format().name().to_string(),
        duration_ms,
        width: 0,
        height: 0,
        display_width: 0,
        display_height: 0,
        fps: 0.0,
        rotation: 0,
        video_codec: None,
        audio_codec: None,
        subtitle_streams: Vec::new(),
        has_video: false,
        has_audio: false,
        video_stream: None,
        frame_count: 0,
        bit_rate: input.bit_rate().max(0),
    };
    if let Some(v) = best_video(input) {
        let params = v.parameters();
        let (w, h) = unsafe {
            let p = params.as_ptr();
            ((*p).width.max(0) as u32, (*p).height.max(0) as u32)
        };
        check_dimensions(path, w, h)?;
        info.has_video = true;
        info.video_stream = Some(v.index());
        info.width = w;
        info.height = h;
        info.rotation = stream_rotation(&v);
        (info.display_width, info.display_height) = if info.rotation % 180 == 90 { (h, w) } else { (w, h) };
        info.fps = stream_fps(&v);
        info.video_codec = Some(params.id().name().to_string());
        info.frame_count = v.frames().max(0);
        if info.duration_ms == 0 && v.duration() > 0 {
            info.duration_ms = (v.duration() as f64 * rational(v.time_base()) * 1000.0) as i64;
        }
    }
    if let Some(a) = input.streams().best(MediaType::Audio) {
        info.has_audio = true;
        info.audio_codec = Some(a.parameters().id().name().to_string());
    }
    for s in input.streams() {
        let params = s.parameters();
        if params.medium() == MediaType::Subtitle {
            let md = s.metadata();
            info.subtitle_streams.push(SubtitleStreamInfo {
                index: s.index(),
                codec: params.id().name().to_string(),
                language: md.get("language").map(str::to_string),
                title: md.get("title").map(str::to_string),
                text: is_text_subtitle(params.id()),
            });
        }
    }
    Ok(info)
}

/// The best video stream, ignoring attached pictures (cover art).
pub(crate) fn best_video<'a>(input: &'a Input) -> Option<ffmpeg::format::stream::Stream<'a>> {
    let attached = |s: &ffmpeg::format::stream::Stream| {
        s.disposition()
            .contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC)
    };
    match input.streams().best(MediaType::Video) {
        Some(s) if !attached(&s) => Some(s),
        _ => input
            .streams()
            .find(|s| s.parameters().medium() == MediaType::Video && !attached(s)),
    }
}
