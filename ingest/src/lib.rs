//! kino-ingest: turns files on disk into timestamped frames and text cues, and notices
//! when video files arrive, change, move or disappear.
//!
//! - [`AudioDecoder`]: the best audio stream as mono 16 kHz `f32` chunks with their
//!   start times, streamed (for the speech stage).
//! - [`probe`]: media facts of a file ([`MediaInfo`]).
//! - [`FrameSampler`]: streaming decode (FFmpeg via ffmpeg-next, threaded) and frame
//!   sampling by presentation time, with upright RGB images and JPEG thumbnails.
//! - [`subtitles::read_cues`]: sidecar and embedded text subtitles as [`Cue`]s.
//! - [`hash::content_hash`]: blake3 of a file's content, streamed.
//! - [`watch::Watcher`]: recursive folder watching with a start-up scan and settling.
//!
//! Every error is an [`IngestError`] that names the file and the problem.

pub mod audio;
pub mod decode;
mod error;
pub mod hash;
pub mod media;
pub mod subtitles;
pub mod watch;

pub use audio::{AudioChunk, AudioDecoder, AudioOptions, AudioStreamInfo};
pub use decode::{DecodeBudget, Frame, FrameSampler, SampleMode, SampleOptions};
pub use error::IngestError;
pub use media::{init, probe, MediaInfo, SubtitleStreamInfo};
pub use subtitles::{Cue, CueSet};

/// Writes an RGB image as PNG (fast compression), naming the file in errors.
pub fn write_png(image: &image::RgbImage, path: &std::path::Path) -> Result<(), IngestError> {
    use image::ImageEncoder;
    let file = std::fs::File::create(path).map_err(|e| IngestError::io(path, e))?;
    let w = std::io::BufWriter::new(file);
    image::codecs::png::PngEncoder::new_with_quality(
        w,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Sub,
    )
    .write_image(
        image.as_raw(),
        image.width(),
        image.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| IngestError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })
}
