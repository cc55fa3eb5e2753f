//! Throughput of the Swin forward pass on random pixel values, for
//! `scripts/bench.d/vision.sh`.
//!
//! ```text
//! cargo run --release -p kino-vision --example swin_bench -- MODEL_DIR [BATCH] [ITERS]
//! ```
//! Prints `kino_vision_images_per_s=N`. `KINO_BENCH_DEVICE=cuda` runs on CUDA
//! GPU 0 (build with `--features cuda`). `KINO_BENCH_PRECISION=int8` runs the
//! linear layers in int8, calibrated first on 16 bundled scenes (not timed),
//! and also prints the pooled vectors' cosine to f32 on the bench input
//! (`kino_vision_int8_min_cosine=C`).

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
    let mut model = Swin::load(dir.as_ref(), &device)?;
    let (h, w) = model.config().image_size.hw();
    let px = Tensor::randn(0f32, 1f32, (batch, 3, h, w), &Device::Cpu)?
        .to_dtype(DType::F32)?
        .to_device(&device)?;
    if std::env::var("KINO_BENCH_PRECISION").as_deref() == Ok("int8") {
        let mut cal = model.calibration();
        let scenes = kino_vision::swin::bundled_scenes(16);
        for c in scenes.chunks(8) {
            model.calibrate(&mut cal, &model.preprocessor().batch(c, &device)?)?;
        }
        let q = model.quantize(&cal, kino_vision::swin::DEFAULT_PERCENTILE)?;
        let acc = model.accuracy(&q, &px)?;
        println!("kino_vision_int8_min_cosine={:.5}", acc.min_cosine);
        model.set_int8(Some(q))?;
    }
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
