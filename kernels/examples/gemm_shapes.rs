//! Times `kino_kernels::matmul` (the `gemm` crate) on the linear-layer shapes
//! of Swin-T at batch 8, for comparing with `torch.matmul` on the same CPU:
//! `cargo run --release -p kino-kernels --example gemm_shapes`.
//! Prints one line per shape: `m k n GFLOP/s`.

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
