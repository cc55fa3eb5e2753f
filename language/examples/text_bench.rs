//! Sentence-encoding throughput, for `scripts/bench.d/text.sh`.
//!
//! ```text
//! cargo run --release -p kino-language --example text_bench -- MODEL_DIR SENTENCES_FILE [BATCH_SIZE]
//! ```
//!
//! Reads one sentence per line, loads the model, warms up on one batch, then
//! encodes all sentences once and prints one JSON object:
//! `{"sentences","seconds","sentences_per_s","batch_size","threads"}`.

use std::path::PathBuf;
use std::time::Instant;

use kino_language::SentenceEncoder;

// As the kino binary (see its main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: text_bench MODEL_DIR SENTENCES_FILE [BATCH_SIZE]");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[1]);
    let file = PathBuf::from(&args[2]);
    let batch: usize = args
        .get(3)
        .map(|b| b.parse().expect("BATCH_SIZE must be a number"))
        .unwrap_or(32);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        eprintln!("{}: {e}", file.display());
        std::process::exit(2)
    });
    let sentences: Vec<&str> = text.lines().collect();
    let mut enc = SentenceEncoder::load(&dir).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    enc.set_batch_size(batch);
    enc.encode(&sentences[..sentences.len().min(batch)]).expect("warm-up");
    let t = Instant::now();
    let out = enc.encode(&sentences).expect("encode");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(out.len(), sentences.len());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "{{\"sentences\":{},\"seconds\":{secs:.3},\"sentences_per_s\":{:.1},\"batch_size\":{batch},\"threads\":{threads}}}",
        sentences.len(),
        sentences.len() as f64 / secs
    );
}
