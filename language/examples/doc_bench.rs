//! Whole-document embedding throughput, for `scripts/bench.d/documents.sh`.
//!
//! ```text
//! cargo run --release -p kino-language --example doc_bench -- MODEL_DIR DOCS_DIR OUT_JSON [BATCH_SIZE]
//! ```
//!
//! Reads every `*.txt` in `DOCS_DIR` (one document each, sorted by name),
//! loads the model, warms up on the first document, then embeds every
//! document with [`SentenceEncoder::encode_long`] (the default windows) and
//! prints one JSON object: `{"documents","windows","seconds","documents_per_s","batch_size","threads"}`.
//! The pooled vectors go to `OUT_JSON` (a list of lists) for the peer's
//! agreement check.

use std::path::PathBuf;
use std::time::Instant;

use kino_language::{SentenceEncoder, DEFAULT_STRIDE, DEFAULT_WINDOW};

// As the kino binary (see its main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: doc_bench MODEL_DIR DOCS_DIR OUT_JSON [BATCH_SIZE]");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[1]);
    let docs_dir = PathBuf::from(&args[2]);
    let batch: usize = args
        .get(4)
        .map(|b| b.parse().expect("BATCH_SIZE must be a number"))
        .unwrap_or(32);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&docs_dir)
        .unwrap_or_else(|e| {
            eprintln!("{}: {e}", docs_dir.display());
            std::process::exit(2)
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let docs: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("readable"))
        .collect();
    let mut enc = SentenceEncoder::load(&dir).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    enc.set_batch_size(batch);
    enc.encode_long(&docs[0], DEFAULT_WINDOW, DEFAULT_STRIDE)
        .expect("warm-up");
    let t = Instant::now();
    let mut pooled = Vec::with_capacity(docs.len());
    let mut windows = 0;
    for d in &docs {
        let long = enc.encode_long(d, DEFAULT_WINDOW, DEFAULT_STRIDE).expect("encode");
        assert!(!long.truncated);
        windows += long.windows.len();
        pooled.push(long.pooled);
    }
    let secs = t.elapsed().as_secs_f64();
    std::fs::write(&args[3], serde_json::to_string(&pooled).expect("json")).expect("writable");
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "{{\"documents\":{},\"windows\":{windows},\"seconds\":{secs:.3},\"documents_per_s\":{:.2},\"batch_size\":{batch},\"threads\":{threads}}}",
        docs.len(),
        docs.len() as f64 / secs
    );
}
