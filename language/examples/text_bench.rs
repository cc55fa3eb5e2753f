//! Sentence-encoding throughput, for `scripts/bench.d/text.sh`.
//!
//! ```text
//! cargo run --release -p kino-language --example text_bench -- MODEL_DIR SENTENCES_FILE [BATCH_SIZE] [--precision f32|int8|both]
//! ```
//!
//! Reads one sentence per line, loads the model, warms up on one batch, then
//! encodes all sentences once and prints one JSON object:
//! `{"sentences","seconds","sentences_per_s","batch_size","threads","precision"}`.
//! With `--precision both` it does so at f32 and then int8 (one object
//! each), then prints `{"int8_over_f32": ratio, "min_cosine", "mean_cosine"}`
//! comparing the two.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kino_language::{cosine, Precision, SentenceEncoder};

// As the kino binary (see its main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn usage() -> ! {
    eprintln!("usage: text_bench MODEL_DIR SENTENCES_FILE [BATCH_SIZE] [--precision f32|int8|both]");
    std::process::exit(2)
}

/// Encodes `sentences` at `precision`; prints the JSON line and returns
/// (sentences per second, vectors).
fn run(dir: &Path, sentences: &[&str], batch: usize, precision: Precision) -> (f64, Vec<Vec<f32>>) {
    let mut enc = SentenceEncoder::load_with(dir, precision).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    enc.set_batch_size(batch);
    enc.encode(&sentences[..sentences.len().min(batch)]).expect("warm-up");
    let t = Instant::now();
    let out = enc.encode(sentences).expect("encode");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(out.len(), sentences.len());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rate = sentences.len() as f64 / secs;
    let name = match precision {
        Precision::F32 => "f32",
        Precision::Int8 => "int8",
    };
    println!(
        "{{\"sentences\":{},\"seconds\":{secs:.3},\"sentences_per_s\":{rate:.1},\"batch_size\":{batch},\"threads\":{threads},\"precision\":\"{name}\"}}",
        sentences.len(),
    );
    (rate, out)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut precision = "f32".to_string();
    if let Some(i) = args.iter().position(|a| a == "--precision") {
        if i + 1 >= args.len() {
            usage();
        }
        precision = args.remove(i + 1);
        args.remove(i);
    }
    if args.len() < 2 {
        usage();
    }
    let dir = PathBuf::from(&args[0]);
    let file = PathBuf::from(&args[1]);
    let batch: usize = args
        .get(2)
        .map(|b| b.parse().expect("BATCH_SIZE must be a number"))
        .unwrap_or(32);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        eprintln!("{}: {e}", file.display());
        std::process::exit(2)
    });
    let sentences: Vec<&str> = text.lines().collect();
    match precision.as_str() {
        "f32" => {
            run(&dir, &sentences, batch, Precision::F32);
        }
        "int8" => {
            run(&dir, &sentences, batch, Precision::Int8);
        }
        "both" => {
            let (f, fv) = run(&dir, &sentences, batch, Precision::F32);
            let (q, qv) = run(&dir, &sentences, batch, Precision::Int8);
            let cos: Vec<f32> = fv.iter().zip(&qv).map(|(a, b)| cosine(a, b)).collect();
            let min = cos.iter().copied().fold(1f32, f32::min);
            let mean = cos.iter().map(|&c| c as f64).sum::<f64>() / cos.len().max(1) as f64;
            println!(
                "{{\"int8_over_f32\":{:.3},\"min_cosine\":{min:.5},\"mean_cosine\":{mean:.5}}}",
                q / f
            );
        }
        _ => usage(),
    }
}
