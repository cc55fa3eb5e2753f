//! Query-encoding latency as `kino serve` pays it: one query at a time,
//! on a rayon pool of one thread (as each request thread encodes).
//!
//! ```text
//! cargo run --release -p kino-language --example query_bench -- MODEL_DIR QUERIES_FILE [--precision f32|int8] [--batch N]
//! ```
//!
//! Prints `{"queries","seconds","ms_per_query","precision","batch"}` for
//! the best of three passes over the file; `--batch N` encodes N queries
//! per call instead of one (whether batching concurrent queries would pay).

use std::path::PathBuf;
use std::time::Instant;

use kino_language::{Precision, SentenceEncoder};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: query_bench MODEL_DIR QUERIES_FILE [--precision f32|int8] [--batch N]");
        std::process::exit(2);
    }
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let precision = match flag("--precision") {
        Some(p) if p == "f32" => Precision::F32,
        _ => Precision::Int8,
    };
    let batch: usize = flag("--batch").map_or(1, |b| b.parse().expect("--batch N"));
    let text = std::fs::read_to_string(&args[1]).expect("queries file");
    let queries: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let enc = SentenceEncoder::load_with(&PathBuf::from(&args[0]), precision).expect("model");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let best = pool.install(|| {
        enc.encode_whole(&queries[..1]).expect("warm-up");
        (0..3)
            .map(|_| {
                let t = Instant::now();
                for qs in queries.chunks(batch) {
                    enc.encode_whole(qs).expect("encode");
                }
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    });
    println!(
        "{{\"queries\":{},\"seconds\":{best:.3},\"ms_per_query\":{:.4},\"precision\":\"{precision:?}\",\"batch\":{batch}}}",
        queries.len(),
        best * 1000.0 / queries.len() as f64
    );
}
