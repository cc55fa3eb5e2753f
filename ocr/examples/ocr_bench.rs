//! Throughput of `Ocr::read`: `ocr_bench [--threads T] [--rounds R] IMAGE...`
//! reads every image R times with T intra-op threads and prints one JSON line.
//! Models and runtime come from kino's models folder (`$KINO_MODELS`, ...);
//! `ORT_DYLIB_PATH` overrides the runtime. Compare with
//! `scripts/fixtures/ocr_bench.py` (rapidocr, same arguments).

use std::path::PathBuf;
use std::time::Instant;

fn models_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("KINO_MODELS")
        .or_else(|| var("KINO_HOME").map(|h| h.join("models")))
        .or_else(|| var("XDG_DATA_HOME").map(|x| x.join("kino/models")))
        .unwrap_or_else(|| var("HOME").unwrap_or_default().join(".local/share/kino/models"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut threads, mut rounds, mut paths) = (1usize, 3usize, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = args.next().ok_or("--threads N")?.parse()?,
            "--rounds" => rounds = args.next().ok_or("--rounds N")?.parse()?,
            _ => paths.push(PathBuf::from(a)),
        }
    }
    if paths.is_empty() {
        return Err("usage: ocr_bench [--threads T] [--rounds R] IMAGE...".into());
    }
    let models = models_dir();
    kino_ocr::init_runtime(&models.join("onnxruntime/1.32.0/libonnxruntime.so"))?;
    let ocr = kino_ocr::Ocr::load(&models.join("rapidocr/PP-OCRv6"), threads)?;
    let images = paths
        .iter()
        .map(|p| Ok(image::open(p)?.to_rgb8()))
        .collect::<Result<Vec<_>, image::ImageError>>()?;
    // One warm-up pass, as the Python side gets.
    let lines: usize = images
        .iter()
        .map(|i| ocr.read(i).map(|l| l.len()))
        .sum::<Result<_, _>>()?;
    let start = Instant::now();
    for _ in 0..rounds {
        for img in &images {
            ocr.read(img)?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let n = images.len() * rounds;
    println!(
        "{{\"engine\":\"kino-ocr\",\"images_per_s\":{:.3},\"ms_per_image\":{:.1},\"images\":{},\"rounds\":{rounds},\"threads\":{threads},\"lines\":{lines}}}",
        n as f64 / secs,
        secs * 1000.0 / n as f64,
        images.len()
    );
    Ok(())
}
