//! Fused, multi-threaded CPU kernels for the element-wise steps of the model
//! (candle runs element-wise ops on one thread): bias add, bias add + GELU,
//! residual add, all in place on a freshly computed tensor. Other devices use
//! candle's generic ops.

use candle_core::{bail, CpuStorage, InplaceOp2, Layout, Result, Tensor};
use rayon::prelude::*;

/// Rows handled per rayon task (keeps tasks large enough to amortise scheduling).
const MIN_CHUNK: usize = 16 * 1024;

/// erf for f32 without `exp`: Eigen's / XLA's rational approximation on
/// [-4, 4] (|error| < 1e-6 against the exact function; see the unit test).
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2.mul_add(-2.726_142_3e-10, 2.770_681_4e-8);
    p = x2.mul_add(p, -2.101_024e-6);
    p = x2.mul_add(p, -5.692_506_4e-5);
    p = x2.mul_add(p, -7.349_906_3e-4);
    p = x2.mul_add(p, -2.954_600_1e-3);
    p = x2.mul_add(p, -1.609_603_3e-2);
    let mut q = x2.mul_add(-1.456_607_2e-5, -2.133_740_6e-4);
    q = x2.mul_add(q, -1.682_827e-3);
    q = x2.mul_add(q, -7.373_329_3e-3);
    q = x2.mul_add(q, -1.426_474e-2);
    x * p / q
}

/// Exact (erf) GELU in f32.
#[inline(always)]
pub fn gelu_erf_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// dst += bias (bias broadcast over rows).
    Bias,
    /// dst = gelu(dst + bias).
    BiasGelu,
    /// dst += src (same shape).
    Add,
}

struct Fused(Kind);

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what}: f32 expected")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: contiguous tensor expected"),
    }
}

impl InplaceOp2 for Fused {
    fn name(&self) -> &'static str {
        "kino-fused-elementwise"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let src = slice(s2, l2, "source")?;
        let Some((a, b)) = l1.contiguous_offsets() else {
            bail!("destination: contiguous tensor expected")
        };
        let CpuStorage::F32(dst) = s1 else {
            bail!("destination: f32 expected")
        };
        let dst = &mut dst[a..b];
        match self.0 {
            Kind::Add => {
                if src.len() != dst.len() {
                    bail!("add: {} vs {} elements", dst.len(), src.len());
                }
                dst.par_chunks_mut(MIN_CHUNK)
                    .zip(src.par_chunks(MIN_CHUNK))
                    .for_each(|(d, s)| {
                        for (d, s) in d.iter_mut().zip(s) {
                            *d += s;
                        }
                    });
            }
            Kind::Bias | Kind::BiasGelu => {
                let n = src.len();
                if n == 0 || dst.len() % n != 0 {
                    bail!("bias of {n} does not divide {} elements", dst.len());
                }
                let rows = (MIN_CHUNK / n).max(1);
                let gelu = self.0 == Kind::BiasGelu;
                dst.par_chunks_mut(rows * n).for_each(|chunk| {
                    for row in chunk.chunks_exact_mut(n) {
                        if gelu {
                            for (d, b) in row.iter_mut().zip(src) {
                                *d = gelu_erf_f32(*d + b);
                            }
                        } else {
                            for (d, b) in row.iter_mut().zip(src) {
                                *d += b;
                            }
                        }
                    }
                });
            }
        }
        Ok(())
    }
}

fn fast(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.is_contiguous()
}

/// `x + bias` (bias over the last dim). Consumes `x`, which must not be shared.
pub fn add_bias(x: Tensor, bias: &Tensor) -> Result<Tensor> {
    if fast(&x) && fast(bias) {
        x.inplace_op2(bias, &Fused(Kind::Bias))?;
        Ok(x)
    } else {
        x.broadcast_add(bias)
    }
}

/// `gelu_erf(x + bias)`. Consumes `x`, which must not be shared.
pub fn add_bias_gelu(x: Tensor, bias: &Tensor) -> Result<Tensor> {
    if fast(&x) && fast(bias) {
        x.inplace_op2(bias, &Fused(Kind::BiasGelu))?;
        Ok(x)
    } else {
        x.broadcast_add(bias)?.gelu_erf()
    }
}

/// `x + y` (same shape). Consumes `y`, which must not be shared, and writes into it.
pub fn add_into(x: &Tensor, y: Tensor) -> Result<Tensor> {
    if fast(x) && fast(&y) && x.dims() == y.dims() {
        y.inplace_op2(x, &Fused(Kind::Add))?;
        Ok(y)
    } else {
        x + y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf64(x: f64) -> f64 {
        // Abramowitz-Stegun 7.1.28 is too coarse; use a series / continued fraction pair.
        if x.abs() < 2.5 {
            let mut sum = x;
            let mut term = x;
            let x2 = x * x;
            for n in 1..200 {
                term *= -x2 / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc continued fraction.
            let ax = x.abs();
            let mut f = 0.0;
            for k in (1..120).rev() {
                f = (k as f64 / 2.0) / (ax + f);
            }
            let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f);
            (1.0 - erfc) * x.signum()
        }
    }

    #[test]
    fn fast_erf_is_accurate() {
        let mut worst = 0f64;
        for i in -60000..=60000 {
            let x = i as f64 / 10000.0;
            let d = (erf_f32(x as f32) as f64 - erf64(x)).abs();
            worst = worst.max(d);
        }
        assert!(worst < 2e-6, "erf max error {worst}");
    }

    #[test]
    fn fused_ops_match_generic_ones() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 2.0, (300, 70), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 70, &dev).unwrap();
        let want = x.broadcast_add(&b).unwrap().gelu_erf().unwrap();
        let got = add_bias_gelu(x.copy().unwrap(), &b).unwrap();
        let d: f32 = (want - &got)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-5, "bias+gelu differs by {d}");
        let want = x.broadcast_add(&b).unwrap();
        let got = add_bias(x.copy().unwrap(), &b).unwrap();
        let d: f32 = (want - &got)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0);
        let y = Tensor::randn(0f32, 1.0, (300, 70), &dev).unwrap();
        let want = (&x + &y).unwrap();
        let got = add_into(&x, y.copy().unwrap()).unwrap();
        let d: f32 = (want - &got)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0);
    }
}
