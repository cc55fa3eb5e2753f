use super::*;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Random activations with the awkward rows mixed in: all zero, all
/// positive, all negative, one huge value, all equal, tiny values.
fn activations(rng: &mut Rng, m: usize, k: usize) -> Vec<f32> {
    let mut x = vec![0f32; m * k];
    for (i, row) in x.chunks_exact_mut(k.max(1)).enumerate().take(m) {
        match i % 7 {
            0 => row.iter_mut().for_each(|v| *v = rng.f() * 3.0),
            1 => {}
            2 => row.iter_mut().for_each(|v| *v = rng.f().abs() * 2.0),
            3 => row.iter_mut().for_each(|v| *v = -rng.f().abs() - 1e-3),
            4 => {
                row.iter_mut().for_each(|v| *v = rng.f());
                row[i % k] = 1e4;
            }
            5 => row.fill(0.75),
            _ => row.iter_mut().for_each(|v| *v = rng.f() * 1e-6),
        }
    }
    x
}

/// Random weights with an all-zero column, a column with one extreme value
/// and columns of equal values.
fn weights(rng: &mut Rng, k: usize, n: usize) -> Vec<f32> {
    let mut w: Vec<f32> = (0..k * n).map(|_| rng.f() * 0.1).collect();
    for i in 0..k {
        if n > 1 {
            w[i * n + 1] = 0.0;
        }
        if n > 2 {
            w[i * n + 2] = -0.5;
        }
    }
    if n > 3 && k > 0 {
        w[(k / 2) * n + 3] = -1e3;
    }
    w
}

/// The intended result, from the quantized values in i64 (independent of the
/// packing and of every kernel), with the same f32 epilogue.
fn reference(a: &QuantizedRows, b: &QuantizedWeights, bias: Option<&[f32]>, pre: &[f32]) -> Vec<f32> {
    let (m, n, k) = (a.m(), b.n(), a.k());
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        let (sx, z) = a.params(i);
        for j in 0..n {
            let s: i64 = (0..k)
                .map(|l| (a.get(i, l) as i64 - z as i64) * b.get(l, j) as i64)
                .sum();
            let v = i32::try_from(s).unwrap() as f32 * (sx * b.scales()[j]);
            out[i * n + j] = (pre[i * n + j] + bias.map_or(0.0, |b| b[j])) + v;
        }
    }
    out
}

fn check_all_paths(m: usize, k: usize, n: usize, seed: u64) {
    let mut rng = Rng(seed);
    let x = activations(&mut rng, m, k);
    let w = weights(&mut rng, k, n);
    let bias: Vec<f32> = (0..n).map(|_| rng.f()).collect();
    let pre: Vec<f32> = (0..m * n).map(|_| rng.f() * 10.0).collect();
    let a = QuantizedRows::quantize(&x, m, k);
    let b = QuantizedWeights::quantize(&w, k, n);
    let want = reference(&a, &b, Some(&bias), &pre);
    let want_plain = reference(&a, &b, None, &vec![0.0; m * n]);
    for path in Int8Path::all_available() {
        let mut got = pre.clone();
        int8_matmul_on(path, &a, &b, Some(&bias), &mut got, n, true);
        let same = got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits());
        assert!(same, "{path:?} differs from the reference for {m}x{k}x{n}");
        // Strided destination, no bias, overwritten.
        let ldc = n + 3;
        let mut got = vec![f32::NAN; m * ldc];
        int8_matmul_on(path, &a, &b, None, &mut got, ldc, false);
        for i in 0..m {
            for j in 0..n {
                assert_eq!(
                    got[i * ldc + j].to_bits(),
                    want_plain[i * n + j].to_bits(),
                    "{path:?} ({i}, {j})"
                );
            }
            for j in n..ldc.min(got.len() - i * ldc) {
                assert!(got[i * ldc + j].is_nan(), "{path:?} wrote outside the view");
            }
        }
    }
}

#[test]
fn every_path_matches_the_reference_exactly() {
    println!("int8 paths here: {:?}", Int8Path::all_available());
    let shapes = [
        (1, 1, 1),
        (1, 4, 16),
        (2, 3, 5),
        (7, 5, 63),
        (6, 64, 64),
        (13, 67, 70),
        (25, 130, 129),
        (50, 384, 100),
        (3, 1536, 17),
        (100, 99, 200),
        (5, 0, 7),
    ];
    for (s, &(m, k, n)) in shapes.iter().enumerate() {
        check_all_paths(m, k, n, 0x9e37_79b9_7f4a_7c15 ^ s as u64);
    }
}

/// The largest accumulators possible: every activation 255 (zero point 0),
/// weights ±127, at the largest supported k.
#[test]
fn extreme_values_at_max_k_do_not_overflow() {
    let (m, k, n) = (7, MAX_K, 3);
    let x = vec![2.0f32; m * k];
    let mut w = vec![0f32; k * n];
    for i in 0..k {
        w[i * n] = 1.0;
        w[i * n + 1] = -1.0;
        w[i * n + 2] = if i % 2 == 0 { 1.0 } else { -1.0 };
    }
    let a = QuantizedRows::quantize(&x, m, k);
    let b = QuantizedWeights::quantize(&w, k, n);
    assert_eq!(
        (a.get(0, 0), a.params(0).1, b.get(0, 0), b.get(0, 1)),
        (255, 0, 127, -127)
    );
    for path in Int8Path::all_available() {
        let mut got = vec![0f32; m * n];
        int8_matmul_on(path, &a, &b, None, &mut got, n, false);
        for i in 0..m {
            let full = 2.0 * k as f32;
            assert!((got[i * n] - full).abs() <= full * 1e-6, "{path:?}: {}", got[i * n]);
            assert!(
                (got[i * n + 1] + full).abs() <= full * 1e-6,
                "{path:?}: {}",
                got[i * n + 1]
            );
            assert_eq!(got[i * n + 2], 0.0, "{path:?}");
        }
    }
}

#[test]
fn quantization_error_is_within_half_a_step() {
    let mut rng = Rng(42);
    let (m, k, n) = (40, 300, 90);
    let x = activations(&mut rng, m, k);
    let a = QuantizedRows::quantize(&x, m, k);
    let xd = a.dequantize();
    for i in 0..m {
        let (s, z) = a.params(i);
        assert!((0..=255).contains(&z));
        for l in 0..k {
            let e = (x[i * k + l] - xd[i * k + l]).abs();
            assert!(
                e <= 0.5 * s * 1.001 + 1e-30,
                "row {i}: |{} - {}| > {s}/2",
                x[i * k + l],
                xd[i * k + l]
            );
        }
    }
    let w = weights(&mut rng, k, n);
    let b = QuantizedWeights::quantize(&w, k, n);
    let wd = b.dequantize();
    for i in 0..k {
        for j in 0..n {
            let s = b.scales()[j];
            assert!((w[i * n + j] - wd[i * n + j]).abs() <= 0.5 * s * 1.001, "({i}, {j})");
            assert_ne!(b.get(i, j), -128);
        }
    }
    // The product is the product of the dequantized matrices (to f32
    // rounding), so its error against the f32 product is bounded by
    // Σ |x|·δw + |w|·δx + δx·δw.
    let mut got = vec![0f32; m * n];
    int8_matmul(&a, &b, None, &mut got, n, false);
    for i in 0..m {
        let sx = a.params(i).0;
        for j in 0..n {
            let (mut exact, mut deq, mut bound, mut mag) = (0f64, 0f64, 0f64, 0f64);
            for l in 0..k {
                let (xv, wv) = (x[i * k + l] as f64, w[l * n + j] as f64);
                exact += xv * wv;
                deq += xd[i * k + l] as f64 * wd[l * n + j] as f64;
                let (dx, dw) = (0.5 * sx as f64, 0.5 * b.scales()[j] as f64);
                bound += xv.abs() * dw + wv.abs() * dx + dx * dw;
                mag += (xd[i * k + l] as f64 * wd[l * n + j] as f64).abs();
            }
            let g = got[i * n + j] as f64;
            assert!((g - deq).abs() <= mag * 1e-6 + 1e-30, "({i}, {j}): {g} vs {deq}");
            assert!(
                (g - exact).abs() <= bound * 1.01 + mag * 1e-6 + 1e-30,
                "({i}, {j}): {g} vs {exact}"
            );
        }
    }
}

/// A call of one copy of `quantize_rows` on (data, scales, zeros).
type Quantizer<'a> = dyn Fn(&mut [u8], &mut [f32], &mut [i32]) + 'a;

/// The vector copies of the activation quantizer give the portable code's
/// bytes, scales and zero points.
#[test]
fn every_quantizer_copy_gives_the_same_bytes() {
    let mut rng = Rng(7);
    for (m, k) in [(1, 1), (9, 5), (14, 67), (30, 384), (6, 1536)] {
        let x = activations(&mut rng, m, k);
        let cs: Vec<f32> = (0..k).map(|_| rng.f().abs() * 4.0 + 0.01).collect();
        for col_scale in [None, Some(&cs[..])] {
            let kp = round_up(k, 4);
            let run = |f: &Quantizer| {
                let (mut d, mut s, mut z) = (vec![0u8; m * kp], vec![0f32; m], vec![0i32; m]);
                f(&mut d, &mut s, &mut z);
                (d, s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), z)
            };
            let want = run(&|d, s, z| quantize_rows(d, s, z, &x, k, col_scale));
            let via_api = {
                let mut q = QuantizedRows::default();
                q.quantize_scaled_into(&x, m, k, col_scale);
                (
                    q.data[..m * kp].to_vec(),
                    q.scales.iter().map(|v| v.to_bits()).collect(),
                    q.zeros.clone(),
                )
            };
            assert_eq!(via_api, want, "{m}x{k}");
            #[cfg(target_arch = "x86_64")]
            {
                if crate::fma() {
                    // SAFETY: the CPU has AVX2 and FMA.
                    let got = run(&|d, s, z| unsafe { x86::quantize_rows_avx2(d, s, z, &x, k, col_scale) });
                    assert_eq!(got, want, "AVX2 {m}x{k}");
                }
                if crate::avx512() {
                    // SAFETY: the CPU has AVX-512F, AVX2 and FMA.
                    let got = run(&|d, s, z| unsafe { x86::quantize_rows_avx512(d, s, z, &x, k, col_scale) });
                    assert_eq!(got, want, "AVX-512 {m}x{k}");
                }
            }
        }
    }
}
