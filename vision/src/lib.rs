//! kino-vision: frames in, visual features out.
//!
//! A Swin Transformer (v1) written with candle that loads Hugging Face
//! transformers checkpoints (`SwinModel` / `SwinForImageClassification`:
//! `config.json` + `model.safetensors` + `preprocessor_config.json`, such as
//! `microsoft/swin-tiny-patch4-window7-224`) and matches transformers'
//! outputs (see `tests/parity.rs`), the image processor those checkpoints
//! name (Pillow-exact resampling), and a defensive image loader.
//!
//! ```no_run
//! use kino_vision::{load_image, Swin};
//! let model = Swin::load("models/microsoft/swin-tiny-patch4-window7-224".as_ref(), &candle_core::Device::Cpu)?;
//! let img = load_image("frame.png".as_ref())?.to_rgb8();
//! let feats = model.embed(&[img])?;
//! println!("{} dims, top label {:?}", feats[0].pooled.len(), feats[0].labels.first());
//! # Ok::<(), kino_vision::VisionError>(())
//! ```

pub mod config;
pub mod error;
pub mod ops;
pub mod preprocess;
pub mod swin;

use std::io::{BufReader, Read, Seek};
use std::path::Path;

pub use config::{Activation, OneOrPair, SwinConfig};
pub use error::{Result, VisionError};
pub use preprocess::{resize_like_pil, Preprocessor, Resample, ResizeTo, IMAGENET_MEAN, IMAGENET_STD};
pub use swin::{is_model_dir, Accuracy, Calibration, FrameFeatures, Int8Swin, Swin, SwinOutput, DEFAULT_TOP_K};

/// The largest image [`load_image`] decodes, in pixels: Pillow's
/// `MAX_IMAGE_PIXELS` (about 9459 x 9459). Larger images are refused as
/// likely decompression bombs.
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Reads and decodes an image file (PNG, JPEG including CMYK, WebP, BMP,
/// GIF, TIFF; 8- or 16-bit; gray, RGB, RGBA), refusing images over
/// [`MAX_IMAGE_PIXELS`] before decoding them, and turning truncated or corrupt
/// files into a [`VisionError::Decode`] naming the file. Never panics.
pub fn load_image(path: &Path) -> Result<image::DynamicImage> {
    let file = std::fs::File::open(path).map_err(|source| VisionError::Io {
        path: path.into(),
        source,
    })?;
    decode_image(BufReader::new(file), path)
}

/// [`load_image`] for bytes already in memory (`name` is used in errors).
pub fn decode_image_bytes(bytes: &[u8], name: &Path) -> Result<image::DynamicImage> {
    decode_image(std::io::Cursor::new(bytes), name)
}

fn decode_image<R: Read + Seek + std::io::BufRead>(reader: R, path: &Path) -> Result<image::DynamicImage> {
    let derr = |msg: String| VisionError::Decode { path: path.into(), msg };
    let mut reader = image::ImageReader::new(reader)
        .with_guessed_format()
        .map_err(|e| derr(e.to_string()))?;
    if reader.format().is_none() {
        return Err(derr("not a known image format".into()));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(2 * 1024 * 1024 * 1024);
    reader.limits(limits);
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let decoder = reader.into_decoder()?;
        let (width, height) = image::ImageDecoder::dimensions(&decoder);
        if width as u64 * height as u64 > MAX_IMAGE_PIXELS {
            return Ok(Err((width, height)));
        }
        if width == 0 || height == 0 {
            return Err(image::ImageError::IoError(std::io::Error::other("image has no pixels")));
        }
        image::DynamicImage::from_decoder(decoder).map(Ok)
    }));
    match run {
        Ok(Ok(Ok(img))) => Ok(img),
        Ok(Ok(Err((width, height)))) => Err(VisionError::TooLarge {
            path: path.into(),
            width,
            height,
            limit: MAX_IMAGE_PIXELS,
        }),
        Ok(Err(e)) => Err(derr(e.to_string())),
        Err(_) => Err(derr("the decoder failed on this file".into())),
    }
}

/// candle's device type, re-exported so that callers need not depend on candle.
pub use candle_core::Device;
