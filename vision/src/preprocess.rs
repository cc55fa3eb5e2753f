//! Image preprocessing as the checkpoint's `preprocessor_config.json` says:
//! resize (with Pillow's resampling filters, reimplemented to the bit),
//! optional center crop, rescale and normalize, channels first.
//!
//! transformers' image processors resize with Pillow (`Image.resize`), which
//! resamples in two separable passes (horizontal, then vertical) with 8-bit
//! intermediate rounding and fixed-point weights. [`resize_like_pil`] does the
//! same arithmetic, so kino's resized pixels equal the reference's; rescale and
//! normalize are done in the same float order as transformers' NumPy code.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};
use serde::Deserialize;

use crate::error::{Result, VisionError};

/// ImageNet mean (the default when the preprocessor config gives none).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation (the default when the preprocessor config gives none).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A Pillow resampling filter (`resample` in `preprocessor_config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// 0: nearest neighbour.
    Nearest,
    /// 1: Lanczos (a = 3).
    Lanczos,
    /// 2: bilinear (triangle).
    Bilinear,
    /// 3: bicubic (Keys, a = -0.5).
    Bicubic,
    /// 4: box.
    Box,
    /// 5: Hamming.
    Hamming,
}

impl Resample {
    /// From Pillow's integer code.
    pub fn from_code(code: u32) -> Option<Resample> {
        Some(match code {
            0 => Resample::Nearest,
            1 => Resample::Lanczos,
            2 => Resample::Bilinear,
            3 => Resample::Bicubic,
            4 => Resample::Box,
            5 => Resample::Hamming,
            _ => return None,
        })
    }

    fn support(self) -> f64 {
        match self {
            Resample::Nearest | Resample::Box => 0.5,
            Resample::Bilinear | Resample::Hamming => 1.0,
            Resample::Bicubic => 2.0,
            Resample::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                1.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x
            }
        }
        match self {
            Resample::Nearest | Resample::Box => {
                if (-0.5..0.5).contains(&x) {
                    1.0
                } else {
                    0.0
                }
            }
            Resample::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Resample::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let xp = x * std::f64::consts::PI;
                    xp.sin() / xp * (0.54 + 0.46 * xp.cos())
                }
            }
            Resample::Bicubic => {
                let a = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
            Resample::Lanczos => {
                if -3.0 < x && x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: for each output
/// pixel, the first input pixel, the count, and fixed-point weights.
fn coefficients(in_size: usize, out_size: usize, filter: Resample) -> (Vec<(usize, usize)>, Vec<i32>, usize) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut total = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            *wx = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            total += *wx;
        }
        for x in 0..n {
            let v = if total != 0.0 { w[x] / total } else { w[x] };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            kk[xx * ksize + x] = if v < 0.0 { (f - 0.5) as i32 } else { (f + 0.5) as i32 };
        }
        bounds.push((xmin, n));
    }
    (bounds, kk, ksize)
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an RGB image exactly as Pillow's `Image.resize((width, height),
/// resample)` does for an 8-bit RGB image.
pub fn resize_like_pil(img: &RgbImage, width: u32, height: u32, filter: Resample) -> RgbImage {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (width as usize, height as usize);
    if (iw, ih) == (ow, oh) {
        return img.clone();
    }
    if filter == Resample::Nearest {
        return resize_nearest(img, width, height);
    }
    let src = img.as_raw();
    let (hb, hk, hks) = coefficients(iw, ow, filter);
    let (vb, vk, vks) = coefficients(ih, oh, filter);
    // Horizontal pass over the rows the vertical pass needs.
    let (tmp, tmp_w, row0) = if iw != ow {
        let first = vb[0].0;
        let last = vb[oh - 1].0 + vb[oh - 1].1;
        let rows = last - first;
        let mut out = vec![0u8; rows * ow * 3];
        for y in 0..rows {
            let srow = &src[(y + first) * iw * 3..(y + first + 1) * iw * 3];
            let drow = &mut out[y * ow * 3..(y + 1) * ow * 3];
            for xx in 0..ow {
                let (xmin, n) = hb[xx];
                let k = &hk[xx * hks..xx * hks + n];
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                for (x, &kx) in k.iter().enumerate() {
                    let p = &srow[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    acc[0] += p[0] as i32 * kx;
                    acc[1] += p[1] as i32 * kx;
                    acc[2] += p[2] as i32 * kx;
                }
                drow[xx * 3] = clip8(acc[0]);
                drow[xx * 3 + 1] = clip8(acc[1]);
                drow[xx * 3 + 2] = clip8(acc[2]);
            }
        }
        (out, ow, first)
    } else {
        (src.to_vec(), iw, 0)
    };
    if ih == oh {
        return RgbImage::from_raw(width, height, tmp).expect("buffer size matches");
    }
    let stride = tmp_w * 3;
    let mut out = vec![0u8; oh * stride];
    for yy in 0..oh {
        let (ymin, n) = vb[yy];
        let ymin = ymin - row0;
        let k = &vk[yy * vks..yy * vks + n];
        let drow = &mut out[yy * stride..(yy + 1) * stride];
        for (xc, d) in drow.iter_mut().enumerate() {
            let mut acc = 1i32 << (PRECISION_BITS - 1);
            for (y, &ky) in k.iter().enumerate() {
                acc += tmp[(ymin + y) * stride + xc] as i32 * ky;
            }
            *d = clip8(acc);
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer size matches")
}

fn resize_nearest(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (iw, ih) = (img.width() as f64, img.height() as f64);
    let sx = iw / width as f64;
    let sy = ih / height as f64;
    RgbImage::from_fn(width, height, |x, y| {
        let src_x = (((x as f64 + 0.5) * sx) as u32).min(img.width() - 1);
        let src_y = (((y as f64 + 0.5) * sy) as u32).min(img.height() - 1);
        *img.get_pixel(src_x, src_y)
    })
}

/// The target size of the resize step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTo {
    /// Exactly `height` x `width` (aspect ratio not kept), the Swin/ViT default.
    Exact {
        /// Output height.
        height: u32,
        /// Output width.
        width: u32,
    },
    /// The short side becomes this many pixels, the aspect ratio is kept.
    ShortestEdge(u32),
}

#[derive(Debug, Default, Deserialize)]
struct SizeJson {
    height: Option<u32>,
    width: Option<u32>,
    shortest_edge: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeField {
    Int(u32),
    Dict(SizeJson),
}

#[derive(Debug, Default, Deserialize)]
struct PreprocessorJson {
    do_resize: Option<bool>,
    size: Option<SizeField>,
    resample: Option<u32>,
    do_center_crop: Option<bool>,
    crop_size: Option<SizeField>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<MeanStd>,
    image_std: Option<MeanStd>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MeanStd {
    One(f32),
    Three([f32; 3]),
}

impl MeanStd {
    fn get(&self) -> [f32; 3] {
        match *self {
            MeanStd::One(v) => [v; 3],
            MeanStd::Three(v) => v,
        }
    }
}

/// The image processor of a checkpoint (transformers' `ViTImageProcessor`
/// semantics, which Swin checkpoints use).
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessor {
    /// Whether to resize.
    pub do_resize: bool,
    /// Resize target.
    pub size: ResizeTo,
    /// Resampling filter.
    pub resample: Resample,
    /// Center crop to `(height, width)` after the resize, when set.
    pub center_crop: Option<(u32, u32)>,
    /// Multiply 0..255 values by this (`None`: keep 0..255).
    pub rescale_factor: Option<f64>,
    /// `(x - mean) / std` per channel (`None`: no normalization).
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

impl Preprocessor {
    /// The defaults for a model whose input is `height` x `width`: bicubic
    /// resize to that size, rescale by 1/255, ImageNet mean and std.
    pub fn imagenet(height: u32, width: u32) -> Preprocessor {
        Preprocessor {
            do_resize: true,
            size: ResizeTo::Exact { height, width },
            resample: Resample::Bicubic,
            center_crop: None,
            rescale_factor: Some(1.0 / 255.0),
            normalize: Some((IMAGENET_MEAN, IMAGENET_STD)),
        }
    }

    /// Reads `dir/preprocessor_config.json`; when it is absent, the
    /// [`Preprocessor::imagenet`] defaults at `dir/config.json`'s image size
    /// (224 when that is absent too).
    pub fn from_dir(dir: &Path) -> Result<Preprocessor> {
        let path = dir.join("preprocessor_config.json");
        let (h, w) = match crate::config::SwinConfig::from_file(&dir.join("config.json")) {
            Ok(c) => c.image_size.hw(),
            Err(_) => (224, 224),
        };
        if !path.exists() {
            return Ok(Preprocessor::imagenet(h as u32, w as u32));
        }
        Preprocessor::from_file(&path, (h as u32, w as u32))
    }

    /// Reads a `preprocessor_config.json`; fields it lacks take the
    /// [`Preprocessor::imagenet`] defaults at `default_size` (height, width).
    pub fn from_file(path: &Path, default_size: (u32, u32)) -> Result<Preprocessor> {
        let bad = |msg: String| VisionError::Config { path: path.into(), msg };
        let text = std::fs::read_to_string(path).map_err(|source| VisionError::Io {
            path: path.into(),
            source,
        })?;
        let j: PreprocessorJson = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut p = Preprocessor::imagenet(default_size.0, default_size.1);
        p.do_resize = j.do_resize.unwrap_or(true);
        let exact = |s: &SizeField, what: &str| -> Result<ResizeTo> {
            match s {
                SizeField::Int(n) => Ok(ResizeTo::Exact { height: *n, width: *n }),
                SizeField::Dict(SizeJson {
                    height: Some(h),
                    width: Some(w),
                    ..
                }) => Ok(ResizeTo::Exact { height: *h, width: *w }),
                SizeField::Dict(SizeJson {
                    shortest_edge: Some(n), ..
                }) => Ok(ResizeTo::ShortestEdge(*n)),
                SizeField::Dict(_) => Err(bad(format!("{what} needs height and width, or shortest_edge"))),
            }
        };
        if let Some(s) = &j.size {
            p.size = exact(s, "size")?;
        }
        if let Some(code) = j.resample {
            p.resample = Resample::from_code(code).ok_or_else(|| bad(format!("unknown resample filter {code}")))?;
        }
        if j.do_center_crop.unwrap_or(false) {
            match j.crop_size.as_ref().map(|s| exact(s, "crop_size")).transpose()? {
                Some(ResizeTo::Exact { height, width }) => p.center_crop = Some((height, width)),
                Some(ResizeTo::ShortestEdge(_)) => return Err(bad("crop_size needs height and width".into())),
                None => p.center_crop = Some((224, 224)),
            }
        }
        let factor = j.rescale_factor.unwrap_or(1.0 / 255.0);
        p.rescale_factor = if j.do_rescale.unwrap_or(true) {
            Some(factor)
        } else {
            None
        };
        if j.do_normalize.unwrap_or(true) {
            let mean = j.image_mean.as_ref().map_or(IMAGENET_MEAN, MeanStd::get);
            let std = j.image_std.as_ref().map_or(IMAGENET_STD, MeanStd::get);
            if std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
                return Err(bad(format!("image_std {std:?} has a zero or non-finite value")));
            }
            p.normalize = Some((mean, std));
        } else {
            p.normalize = None;
        }
        let zero = match p.size {
            ResizeTo::Exact { height, width } => height == 0 || width == 0,
            ResizeTo::ShortestEdge(n) => n == 0,
        };
        if zero || p.center_crop.is_some_and(|(h, w)| h == 0 || w == 0) {
            return Err(bad("size and crop_size must be positive".into()));
        }
        Ok(p)
    }

    /// The `(height, width)` of the resize step for an input of `(height, width)`.
    pub fn resize_target(&self, height: u32, width: u32) -> (u32, u32) {
        match self.size {
            ResizeTo::Exact { height, width } => (height, width),
            ResizeTo::ShortestEdge(n) => {
                // transformers' get_resize_output_image_size(default_to_square=False).
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                let new_long = (n as u64 * long as u64 / short.max(1) as u64) as u32;
                if width <= height {
                    (new_long, n)
                } else {
                    (n, new_long)
                }
            }
        }
    }

    /// Resize and center crop (the 8-bit part of the pipeline).
    pub fn resize(&self, img: &RgbImage) -> Result<RgbImage> {
        if img.width() == 0 || img.height() == 0 {
            return Err(VisionError::Input("image has no pixels".into()));
        }
        let mut out = if self.do_resize {
            let (h, w) = self.resize_target(img.height(), img.width());
            resize_like_pil(img, w, h, self.resample)
        } else {
            img.clone()
        };
        if let Some((ch, cw)) = self.center_crop {
            out = center_crop(&out, ch, cw);
        }
        Ok(out)
    }

    /// Rescale and normalize an 8-bit image into channels-first floats (3 x H x W).
    pub fn to_chw(&self, img: &RgbImage) -> Vec<f32> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let plane = w * h;
        let mut out = vec![0f32; 3 * plane];
        let (mean, std) = self.normalize.unwrap_or(([0.0; 3], [1.0; 3]));
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                // transformers: float64 multiply, cast to float32, then float32 (x - mean) / std.
                let v = match self.rescale_factor {
                    Some(f) => (p.0[c] as f64 * f) as f32,
                    None => p.0[c] as f32,
                };
                out[c * plane + i] = if self.normalize.is_some() {
                    (v - mean[c]) / std[c]
                } else {
                    v
                };
            }
        }
        out
    }

    /// Preprocesses one image into a `(3, H, W)` f32 tensor on the CPU.
    pub fn preprocess(&self, img: &DynamicImage) -> Result<Tensor> {
        let rgb = img.to_rgb8();
        self.preprocess_rgb(&rgb, &Device::Cpu)
    }

    /// Preprocesses one RGB image into a `(3, H, W)` f32 tensor on `device`.
    pub fn preprocess_rgb(&self, img: &RgbImage, device: &Device) -> Result<Tensor> {
        let r = self.resize(img)?;
        let (h, w) = (r.height() as usize, r.width() as usize);
        Ok(Tensor::from_vec(self.to_chw(&r), (3, h, w), device)?)
    }

    /// Preprocesses a batch into a `(B, 3, H, W)` tensor on `device`. All
    /// images must come out the same size (always true with an exact `size`).
    pub fn batch(&self, imgs: &[RgbImage], device: &Device) -> Result<Tensor> {
        self.batch_with(imgs, device, true)
    }

    /// As [`Preprocessor::batch`] for images already through
    /// [`Preprocessor::resize`] (for example on the threads that decode them):
    /// only rescaling and normalisation are left.
    pub fn batch_resized(&self, imgs: &[RgbImage], device: &Device) -> Result<Tensor> {
        self.batch_with(imgs, device, false)
    }

    fn batch_with(&self, imgs: &[RgbImage], device: &Device, resize: bool) -> Result<Tensor> {
        if imgs.is_empty() {
            return Err(VisionError::Input("empty batch".into()));
        }
        let mut data = Vec::new();
        let mut dims = None;
        for (i, img) in imgs.iter().enumerate() {
            let resized;
            let r = if resize {
                resized = self.resize(img)?;
                &resized
            } else {
                img
            };
            let d = (r.height() as usize, r.width() as usize);
            if *dims.get_or_insert(d) != d {
                return Err(VisionError::Input(format!(
                    "image {i} preprocesses to {}x{}, unlike the first image's {}x{}",
                    d.1,
                    d.0,
                    dims.unwrap().1,
                    dims.unwrap().0
                )));
            }
            data.extend(self.to_chw(r));
        }
        let (h, w) = dims.expect("non-empty");
        Ok(Tensor::from_vec(data, (imgs.len(), 3, h, w), device)?)
    }
}

fn center_crop(img: &RgbImage, height: u32, width: u32) -> RgbImage {
    // Pads with zeros when the crop is larger than the image, as transformers does.
    let top = (img.height() as i64 - height as i64) / 2;
    let left = (img.width() as i64 - width as i64) / 2;
    RgbImage::from_fn(width, height, |x, y| {
        let sx = x as i64 + left;
        let sy = y as i64 + top;
        if sx >= 0 && sy >= 0 && (sx as u32) < img.width() && (sy as u32) < img.height() {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}
