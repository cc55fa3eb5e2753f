//! Throughput of the Swin forward pass on random pixel values, for
//! `scripts/bench.d/vision.sh`.
//!
//! ```text
//! cargo run --release -p kino-vision --example swin_bench -- MODEL_DIR [BATCH] [ITERS]
//! ```
//! Prints `kino_vision_images_per_s=N`. `KINO_BENCH_DEVICE=cuda` runs on CUDA
//! GPU 0 (build with `--features cuda`).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use kino_vision::Swin;

// As the kino binary: an allocator that reuses freed tensor memory instead of
// returning it to the OS and faulting it in again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: swin_bench MODEL_DIR [BATCH] [ITERS]")?;
    let batch: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8);
    let iters: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let device = match std::env::var("KINO_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::new_cuda(0)?,
        _ => Device::Cpu,
    };
    let model = Swin::load(dir.as_ref(), &device)?;
    let (h, w) = model.config().image_size.hw();
    let px = Tensor::randn(0f32, 1f32, (batch, 3, h, w), &Device::Cpu)?
        .to_dtype(DType::F32)?
        .to_device(&device)?;
    model.forward(&px)?; // warm-up (builds the plan cache)
    let t = Instant::now();
    for _ in 0..iters {
        let out = model.forward(&px)?;
        out.pooled.to_vec2::<f32>()?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!("kino_vision_images_per_s={:.2}", (batch * iters) as f64 / secs);
    Ok(())
}
