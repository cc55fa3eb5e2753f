//! Times `kino_kernels::matmul` (the `gemm` crate) on the linear-layer shapes
//! of Swin-T at batch 8, for comparing with `torch.matmul` on the same CPU:
//! `cargo run --release -p kino-kernels --example gemm_shapes`.
//! Prints one line per shape: `m k n GFLOP/s`. With `int8` as its argument
//! it times the int8 products instead (`kino_kernels::int8_matmul`, the
//! weights quantized once, the activations quantized in each run as a
//! layer does) and prints integer ops per second (2 per multiply-add), the
//! kernel's alone and with the activation quantization.

use std::time::Instant;

use kino_kernels::{matmul, Mat, Threads};

fn main() {
    let shapes: &[(usize, usize, usize)] = &[
        (25088, 96, 288),
        (25088, 96, 96),
        (25088, 96, 384),
        (25088, 384, 96),
        (6272, 384, 192),
        (6272, 192, 576),
        (6272, 192, 768),
        (6272, 768, 192),
        (1568, 768, 384),
        (1568, 384, 1152),
        (1568, 384, 1536),
        (1568, 1536, 384),
        (392, 768, 3072),
        (392, 3072, 768),
    ];
    if std::env::args().nth(1).as_deref() == Some("int8") {
        return int8(shapes);
    }
    let mut total = 0.0;
    for &(m, k, n) in shapes {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        let run = |c: &mut [f32]| {
            matmul(
                m,
                k,
                n,
                Mat::rows(&a, k),
                Mat::rows(&b, n),
                c,
                n,
                false,
                1.0,
                Threads::All,
            )
        };
        run(&mut c);
        let iters = ((2e10 / (2.0 * (m * k * n) as f64)) as usize).clamp(3, 200);
        let t = Instant::now();
        for _ in 0..iters {
            run(&mut c);
        }
        let s = t.elapsed().as_secs_f64() / iters as f64;
        total += s;
        println!(
            "{m} {k} {n} {:.1} GFLOP/s ({:.2} ms)",
            2.0 * (m * k * n) as f64 / s / 1e9,
            s * 1e3
        );
    }
    println!("total {:.1} ms", total * 1e3);
}

fn int8(shapes: &[(usize, usize, usize)]) {
    use kino_kernels::{int8_matmul, Int8Path, QuantizedRows, QuantizedWeights};
    println!("int8 path: {:?}", Int8Path::best());
    let (mut macs, mut kernel_s, mut layer_s) = (0f64, 0f64, 0f64);
    for &(m, k, n) in shapes {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 255) as f32 / 64.0 - 2.0).collect();
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104_729) % 251) as f32 / 500.0 - 0.25)
            .collect();
        let q = QuantizedWeights::quantize(&w, k, n);
        let mut a = QuantizedRows::quantize(&x, m, k);
        let mut c = vec![0f32; m * n];
        int8_matmul(&a, &q, None, &mut c, n, false);
        let iters = ((2e10 / (2.0 * (m * k * n) as f64)) as usize).clamp(3, 400);
        let t = Instant::now();
        for _ in 0..iters {
            int8_matmul(&a, &q, None, &mut c, n, false);
        }
        let kernel = t.elapsed().as_secs_f64() / iters as f64;
        let t = Instant::now();
        for _ in 0..iters {
            a.quantize_into(&x, m, k);
            int8_matmul(&a, &q, None, &mut c, n, false);
        }
        let layer = t.elapsed().as_secs_f64() / iters as f64;
        let ops = 2.0 * (m * k * n) as f64;
        macs += (m * k * n) as f64;
        kernel_s += kernel;
        layer_s += layer;
        println!(
            "{m} {k} {n} {:.1} G int-ops/s product, {:.1} with quantization ({:.2} / {:.2} ms)",
            ops / kernel / 1e9,
            ops / layer / 1e9,
            kernel * 1e3,
            layer * 1e3
        );
    }
    println!(
        "all shapes: {:.1} G int-ops/s product, {:.1} with quantization ({:.1} / {:.1} ms)",
        2.0 * macs / kernel_s / 1e9,
        2.0 * macs / layer_s / 1e9,
        kernel_s * 1e3,
        layer_s * 1e3
    );
}
