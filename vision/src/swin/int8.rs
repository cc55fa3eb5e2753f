//! Swin's linear layers in int8: calibration, quantization, the accuracy
//! check against f32, and the stored form.
//!
//! Every linear layer of the blocks (q·k·v as one, the attention output, the
//! two MLP layers) and of patch merging runs in int8 through
//! [`kino_kernels::Int8Linear`]: weights per output column, activations per
//! row at run time, outlier input channels smoothed with ranges calibrated on
//! sample images ([`Calibration`], a percentile of each channel's |x|). The
//! patch embedding, the classifier, attention and the layer norms stay f32.
//! Calibrating runs the f32 model on the CPU.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use kino_kernels::{cosine, ChannelRanges, Int8Linear};
use safetensors::tensor::{Dtype, TensorView};

use super::cpu::Linears;
use super::{Swin, SwinOutput};
use crate::error::{Result, VisionError};

/// The percentile of each channel's |x| taken as its range by default.
pub const DEFAULT_PERCENTILE: f64 = 0.9999;
/// An input channel whose calibrated range is over this many times the
/// layer's median channel's is an outlier, computed in f32 (at most one
/// channel in 32, or 4).
pub const OUTLIER_FACTOR: f32 = 6.0;
/// The accuracy bound: the pooled vectors' cosine to f32, each image.
pub const MIN_COSINE: f32 = 0.99;
/// The accuracy bound: the share of f32's top-5 labels int8 also puts in
/// its top 5 (models with a classifier).
pub const MIN_TOP5_AGREEMENT: f32 = 0.95;

/// Swin's linear layers quantized to int8, in the order the forward pass
/// meets them (see [`Swin::linear_shapes`]).
#[derive(Debug, Clone)]
pub struct Int8Swin {
    pub(super) layers: Vec<Int8Linear>,
    id: String,
    /// The version of the f32 weights it was made from.
    made_from: String,
}

impl Int8Swin {
    /// `layers` with the id hashed from their parts (`parts[i]` is
    /// `layers[i]`'s stored form: read from a file, or made once).
    fn new(layers: Vec<Int8Linear>, parts: &[kino_kernels::Int8Parts], made_from: String) -> Int8Swin {
        let mut h = blake3::Hasher::new();
        for (l, p) in layers.iter().zip(parts) {
            h.update(&(l.inp() as u64).to_le_bytes());
            h.update(&(l.out() as u64).to_le_bytes());
            h.update(&p.q.iter().map(|v| *v as u8).collect::<Vec<u8>>());
            for v in p.scales.iter().chain(&p.smooth).chain(&p.outlier_w) {
                h.update(&v.to_le_bytes());
            }
            for o in &p.outliers {
                h.update(&o.to_le_bytes());
            }
        }
        Int8Swin {
            layers,
            id: h.finalize().to_hex()[..12].to_string(),
            made_from,
        }
    }

    /// The version of the f32 weights it was made from (empty when a
    /// stored file does not say).
    pub fn made_from(&self) -> &str {
        &self.made_from
    }

    /// The model's version with these layers: the f32 weights' version
    /// and `+int8:<id>`.
    pub fn version(&self) -> String {
        format!("{}+int8:{}", self.made_from, self.id)
    }

    /// Per layer, the input channels computed in f32 (the outliers).
    pub fn f32_channels(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.outliers().len()).collect()
    }

    /// A short hash of the quantized weights (part of the model version).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Writes the int8 layers to `path` (safetensors: per layer `N.q`, the
    /// int8 weights `in × out`, `N.scales`, `N.smooth` and, when it has
    /// outlier channels, `N.outliers` and their f32 weights `N.outlier_w`),
    /// with `meta` as
    /// the file's metadata, atomically (a temporary file renamed).
    pub fn save(&self, path: &Path, meta: &HashMap<String, String>) -> Result<()> {
        let io = |source| VisionError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let p = l.parts();
            let (inp, out) = (l.inp(), l.out());
            bufs.push((
                format!("{i}.q"),
                Dtype::I8,
                vec![inp, out],
                p.q.iter().map(|v| *v as u8).collect(),
            ));
            bufs.push((format!("{i}.scales"), Dtype::F32, vec![out], f32_bytes(&p.scales)));
            bufs.push((format!("{i}.smooth"), Dtype::F32, vec![inp], f32_bytes(&p.smooth)));
            if !p.outliers.is_empty() {
                let k = p.outliers.len();
                let idx = p.outliers.iter().flat_map(|v| v.to_le_bytes()).collect();
                bufs.push((format!("{i}.outliers"), Dtype::U32, vec![k], idx));
                bufs.push((
                    format!("{i}.outlier_w"),
                    Dtype::F32,
                    vec![k, out],
                    f32_bytes(&p.outlier_w),
                ));
            }
        }
        let views = bufs
            .iter()
            .map(|(name, dtype, shape, data)| {
                TensorView::new(*dtype, shape.clone(), data)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| VisionError::Weights {
                        path: path.to_path_buf(),
                        msg: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut meta = meta.clone();
        meta.insert("kino_int8_id".into(), self.id.clone());
        meta.insert("f32_version".into(), self.made_from.clone());
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| VisionError::Weights {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let tmp = path.with_extension("safetensors.tmp");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads what [`Int8Swin::save`] wrote, with its metadata.
    pub fn load(path: &Path) -> Result<(Int8Swin, HashMap<String, String>)> {
        let bytes = std::fs::read(path).map_err(|source| VisionError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |msg: String| VisionError::Weights {
            path: path.to_path_buf(),
            msg,
        };
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let (mut layers, mut all_parts) = (Vec::new(), Vec::new());
        while let Ok(q) = st.tensor(&format!("{}.q", layers.len())) {
            let i = layers.len();
            let (&[inp, out], Dtype::I8) = (q.shape(), q.dtype()) else {
                return Err(bad(format!("layer {i}: int8 weights of shape {:?}", q.shape())));
            };
            let f32s = |name: &str| -> Result<Vec<f32>> {
                let t = st
                    .tensor(&format!("{i}.{name}"))
                    .map_err(|e| bad(format!("layer {i}: {e}")))?;
                if t.dtype() != Dtype::F32 {
                    return Err(bad(format!("layer {i}: {name} is not f32")));
                }
                Ok(t.data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            };
            let (outliers, outlier_w) = match st.tensor(&format!("{i}.outliers")) {
                Ok(t) if t.dtype() == Dtype::U32 => (
                    t.data()
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    f32s("outlier_w")?,
                ),
                Ok(_) => return Err(bad(format!("layer {i}: outliers are not u32"))),
                Err(_) => (Vec::new(), Vec::new()),
            };
            let parts = kino_kernels::Int8Parts {
                q: q.data().iter().map(|b| *b as i8).collect(),
                scales: f32s("scales")?,
                smooth: f32s("smooth")?,
                outliers,
                outlier_w,
            };
            let layer = Int8Linear::from_parts(&parts, inp, out).map_err(|e| bad(format!("layer {i}: {e}")))?;
            layers.push(layer);
            all_parts.push(parts);
        }
        if layers.is_empty() {
            return Err(bad("no int8 layers in the file".into()));
        }
        let made_from = meta.get("f32_version").cloned().unwrap_or_default();
        Ok((Int8Swin::new(layers, &all_parts, made_from), meta))
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The input ranges of each linear layer, recorded on calibration images.
#[derive(Debug, Clone)]
pub struct Calibration {
    ranges: Vec<ChannelRanges>,
    images: usize,
}

impl Calibration {
    /// Images seen.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Each layer's recorded ranges (to inspect, or to alter in tests).
    pub fn ranges_mut(&mut self) -> &mut [ChannelRanges] {
        &mut self.ranges
    }

    /// Each layer's ranges.
    pub fn ranges(&self) -> &[ChannelRanges] {
        &self.ranges
    }
}

/// How close the int8 model is to f32 on some images.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Accuracy {
    /// Images compared.
    pub images: usize,
    /// The smallest cosine between the pooled vectors.
    pub min_cosine: f32,
    /// The mean cosine.
    pub mean_cosine: f32,
    /// The share of f32's top-5 labels in int8's top 5 (with a classifier).
    pub top5_agreement: Option<f32>,
}

impl Accuracy {
    /// `Ok` within the bound ([`MIN_COSINE`], [`MIN_TOP5_AGREEMENT`]), else
    /// what is outside it.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.images == 0 {
            return Err("no images compared".into());
        }
        if self.min_cosine.is_nan() || self.min_cosine < MIN_COSINE {
            return Err(format!(
                "the pooled vectors' cosine to f32 falls to {:.4} (the bound is {MIN_COSINE})",
                self.min_cosine
            ));
        }
        if let Some(a) = self.top5_agreement.filter(|a| *a < MIN_TOP5_AGREEMENT) {
            return Err(format!(
                "top-5 labels agree with f32 on {:.1} % (the bound is {:.0} %)",
                a * 100.0,
                MIN_TOP5_AGREEMENT * 100.0
            ));
        }
        Ok(())
    }
}

fn top5(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|a, b| row[*b].total_cmp(&row[*a]));
    idx.truncate(5);
    idx
}

impl Swin {
    /// Each linear layer that can run in int8, as `(inputs, outputs)`, in the
    /// order the forward pass meets them: per block q·k·v, the attention
    /// output, the two MLP layers; after a stage, its patch merging.
    pub fn linear_shapes(&self) -> Vec<(usize, usize)> {
        self.linear_weights().iter().map(|(_, i, o)| (*i, *o)).collect()
    }

    fn linear_weights(&self) -> Vec<(&Tensor, usize, usize)> {
        let mut out = Vec::new();
        for stage in &self.stages {
            let dim = stage.dim;
            for blk in &stage.blocks {
                let mlp = blk.intermediate.wt.dim(1).unwrap_or(4 * dim);
                out.push((&blk.qkv.wt, dim, 3 * dim));
                out.push((&blk.output.wt, dim, dim));
                out.push((&blk.intermediate.wt, dim, mlp));
                out.push((&blk.mlp_out.wt, mlp, dim));
            }
            if let Some(m) = &stage.downsample {
                out.push((&m.reduction.wt, 4 * dim, 2 * dim));
            }
        }
        out
    }

    /// A calibration that has seen nothing yet.
    pub fn calibration(&self) -> Calibration {
        Calibration {
            ranges: self
                .linear_shapes()
                .iter()
                .map(|(i, _)| ChannelRanges::new(*i))
                .collect(),
            images: 0,
        }
    }

    /// Runs the f32 model on `pixels` (preprocessed, `(b, c, h, w)`),
    /// recording each linear layer's input into `cal`; returns the f32
    /// output (for [`Swin::accuracy_against`]). CPU models only.
    pub fn calibrate(&self, cal: &mut Calibration, pixels: &Tensor) -> Result<SwinOutput> {
        self.cpu_only("calibration")?;
        let b = pixels.dims4()?.0;
        let out = self.forward_cpu_with(pixels, &mut Linears::observing(&mut cal.ranges))?;
        cal.images += b;
        Ok(out)
    }

    /// The int8 layers from a calibration, taking each channel's
    /// `percentile` of |x| as its range ([`DEFAULT_PERCENTILE`]): outlier
    /// channels ([`OUTLIER_FACTOR`]) are computed in f32, the others
    /// smoothed and quantized.
    pub fn quantize(&self, cal: &Calibration, percentile: f64) -> Result<Int8Swin> {
        let shapes = self.linear_weights();
        if cal.ranges.len() != shapes.len() {
            return Err(VisionError::Input(format!(
                "a calibration of {} layers for a model of {}",
                cal.ranges.len(),
                shapes.len()
            )));
        }
        let mut layers = Vec::with_capacity(shapes.len());
        for ((wt, inp, out), r) in shapes.into_iter().zip(&cal.ranges) {
            let w = wt
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let range = r.percentile(percentile);
            let outliers = Int8Linear::outlier_channels(&range, OUTLIER_FACTOR, inp.div_ceil(32).max(4));
            layers.push(Int8Linear::quantize_split(&w, inp, out, &range, &outliers));
        }
        let parts: Vec<_> = layers.iter().map(Int8Linear::parts).collect();
        Ok(Int8Swin::new(layers, &parts, self.f32_version.clone()))
    }

    /// Runs the linear layers in int8 from now on (`Some`), or in f32
    /// again. The version becomes [`Int8Swin::version`]. Refuses layers
    /// made from other weights, or for another shape of model. CPU models
    /// only.
    pub fn set_int8(&mut self, q: Option<Int8Swin>) -> Result<()> {
        if let Some(q) = &q {
            self.cpu_only("int8")?;
            self.check_int8(q)?;
            if q.made_from() != self.f32_version {
                return Err(VisionError::Input(format!(
                    "the int8 layers were made from other weights ({}, now {})",
                    if q.made_from().is_empty() {
                        "unknown"
                    } else {
                        q.made_from()
                    },
                    self.f32_version
                )));
            }
        }
        self.int8 = q.map(std::sync::Arc::new);
        Ok(())
    }

    /// Whether the linear layers run in int8.
    pub fn is_int8(&self) -> bool {
        self.int8.is_some()
    }

    /// The model's output with the linear layers in int8 (`Some`) or f32,
    /// whatever [`Swin::set_int8`] chose. CPU models only.
    pub fn forward_with(&self, pixels: &Tensor, int8: Option<&Int8Swin>) -> Result<SwinOutput> {
        self.cpu_only("int8")?;
        if let Some(q) = int8 {
            self.check_int8(q)?;
        }
        self.forward_cpu_with(pixels, &mut Linears::int8(int8.map(|q| &q.layers[..])))
    }

    /// Compares `q` with f32 on `pixels` (preprocessed).
    pub fn accuracy(&self, q: &Int8Swin, pixels: &Tensor) -> Result<Accuracy> {
        let f = self.forward_with(pixels, None)?;
        self.accuracy_against(q, pixels, &f)
    }

    /// [`Swin::accuracy`] given the f32 output `f` on `pixels` (as
    /// [`Swin::calibrate`] returns it): one forward pass, at int8.
    pub fn accuracy_against(&self, q: &Int8Swin, pixels: &Tensor, f: &SwinOutput) -> Result<Accuracy> {
        let i = self.forward_with(pixels, Some(q))?;
        let (pf, pi) = (f.pooled.to_vec2::<f32>()?, i.pooled.to_vec2::<f32>()?);
        let cos: Vec<f32> = pf.iter().zip(&pi).map(|(a, b)| cosine(a, b)).collect();
        let top5_agreement = match (&f.logits, &i.logits) {
            (Some(lf), Some(li)) => {
                let (lf, li) = (lf.to_vec2::<f32>()?, li.to_vec2::<f32>()?);
                let (mut agree, mut total) = (0usize, 0usize);
                for (a, b) in lf.iter().zip(&li) {
                    let (ta, tb) = (top5(a), top5(b));
                    agree += ta.iter().filter(|l| tb.contains(l)).count();
                    total += ta.len();
                }
                Some(agree as f32 / total.max(1) as f32)
            }
            _ => None,
        };
        Ok(Accuracy {
            images: cos.len(),
            min_cosine: cos.iter().copied().fold(f32::INFINITY, f32::min),
            mean_cosine: cos.iter().sum::<f32>() / cos.len().max(1) as f32,
            top5_agreement,
        })
    }

    fn cpu_only(&self, what: &str) -> Result<()> {
        if self.device.is_cpu() {
            Ok(())
        } else {
            Err(VisionError::Input(format!(
                "{what} runs on the CPU only (this model is on {:?})",
                self.device
            )))
        }
    }

    fn check_int8(&self, q: &Int8Swin) -> Result<()> {
        let want = self.linear_shapes();
        let got: Vec<(usize, usize)> = q.layers.iter().map(|l| (l.inp(), l.out())).collect();
        if want != got {
            return Err(VisionError::Input(format!(
                "the int8 layers do not fit this model: {} layers {:?}… for {} {:?}…",
                got.len(),
                got.first(),
                want.len(),
                want.first()
            )));
        }
        Ok(())
    }
}

impl Accuracy {
    /// Both together (means weighted by images).
    pub fn merge(self, other: Accuracy) -> Accuracy {
        let a = self;
        let n = a.images + other.images;
        let w = |x: f32, y: f32| (x * a.images as f32 + y * other.images as f32) / n.max(1) as f32;
        Accuracy {
            images: n,
            min_cosine: a.min_cosine.min(other.min_cosine),
            mean_cosine: w(a.mean_cosine, other.mean_cosine),
            top5_agreement: match (a.top5_agreement, other.top5_agreement) {
                (Some(x), Some(y)) => Some(w(x, y)),
                (x, y) => x.or(y),
            },
        }
    }
}

/// `n` synthetic scenes for calibrating without a library: gradients,
/// stripes and checkerboards, noise, and dark slides with light text-like
/// blocks, 320×240, the same on every call.
pub fn bundled_scenes(n: usize) -> Vec<image::RgbImage> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 56) as u8
    };
    (0..n as u32)
        .map(|k| {
            let (a, b) = (rnd(), rnd());
            image::RgbImage::from_fn(320, 240, |x, y| match k % 4 {
                0 => image::Rgb([(x * 255 / 320) as u8, (y * 255 / 240) as u8, a]),
                1 => {
                    if ((x / (4 + k % 13)) + (y / (5 + b as u32 % 11))).is_multiple_of(2) {
                        image::Rgb([230, 220, a])
                    } else {
                        image::Rgb([20, b, 40])
                    }
                }
                2 => {
                    let n = rnd();
                    image::Rgb([n, n / 2 + a / 2, 255 - n])
                }
                _ => {
                    let text = y % 24 < 10 && (x / 7 + y / 24 + k) % 3 != 0 && x > 16 && x < 300;
                    if text {
                        image::Rgb([240, 240, 240])
                    } else {
                        image::Rgb([a / 4, 40, 60 + b / 2])
                    }
                }
            })
        })
        .collect()
}
