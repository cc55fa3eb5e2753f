//! `kino bench search`: the approximate index on a synthetic library of
//! clustered segment vectors, measured against exact search.
//!
//! N vectors of `dim` floats are drawn around N/1000 random centres (unit
//! Gaussian directions, noise of the same order as the spread of real
//! sentence vectors within a topic), plus held-out queries drawn the same
//! way (never indexed points). The exact top 10 of each query comes from a
//! full scan; the index is built from every core; each query is then
//! searched alone, one at a time, for the latency percentiles. `--export
//! DIR` writes the vectors, the queries and the exact answers as raw
//! little-endian files so that a peer (faiss, in `scripts/bench search`)
//! is measured on the same data.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use kino_store::{AnnIndex, AnnOptions, Quantization};
use serde_json::json;

use crate::error::usage;

/// What to measure.
#[derive(Debug, Clone)]
pub struct SearchBench {
    /// Vectors indexed.
    pub segments: usize,
    /// Held-out queries.
    pub queries: usize,
    /// Dimensions.
    pub dim: usize,
    /// Threads for building and for the exact scan.
    pub threads: usize,
    /// HNSW settings.
    pub options: AnnOptions,
    /// Where to write the data for a peer.
    pub export: Option<PathBuf>,
    /// Print one JSON object.
    pub json: bool,
}

/// A small deterministic generator (SplitMix64 with Box–Muller normals).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub(super) fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

pub(super) fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    kino_store::normalize_vector(&mut v);
    v
}

/// `n` unit vectors around `centres`, row-major.
pub(super) fn draw(rng: &mut Rng, centres: &[Vec<f32>], n: usize, dim: usize) -> Vec<f32> {
    // Within-topic spread: a point's cosine to its centre is about 0.7.
    let noise = 1.0 / (dim as f32).sqrt();
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = &centres[(rng.next_u64() % centres.len() as u64) as usize];
        out.extend(normalized(c.iter().map(|x| x + noise * rng.normal()).collect()));
    }
    out
}

/// The exact top `k` of every query (by dot product of unit vectors), on `threads` threads.
fn exact_top(base: &[f32], queries: &[f32], dim: usize, k: usize, threads: usize) -> Vec<Vec<u64>> {
    let nq = queries.len() / dim;
    let per = nq.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = queries
            .chunks(per * dim)
            .map(|qs| {
                s.spawn(move || {
                    qs.chunks_exact(dim)
                        .map(|q| {
                            let mut best: Vec<(f32, u64)> = Vec::with_capacity(k + 1);
                            for (i, v) in base.chunks_exact(dim).enumerate() {
                                let d = kino_store::dot(v, q);
                                if best.len() < k || d > best[best.len() - 1].0 {
                                    let at = best.partition_point(|b| b.0 >= d);
                                    best.insert(at, (d, i as u64));
                                    best.truncate(k);
                                }
                            }
                            best.into_iter().map(|b| b.1).collect()
                        })
                        .collect::<Vec<Vec<u64>>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("scan thread")).collect()
    })
}

fn write_raw(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Fields of `/proc/self/status`, in bytes (`VmRSS`, `RssAnon`, …).
pub(super) fn proc_status_bytes(names: &[&str]) -> Vec<u64> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    names
        .iter()
        .map(|name| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        })
        .collect()
}

fn rss_bytes() -> (u64, u64) {
    let v = proc_status_bytes(&["VmRSS", "VmHWM"]);
    (v[0], v[1])
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Runs the search benchmark and prints its report.
pub fn search(b: &SearchBench) -> Result<()> {
    let huge_pages = super::huge_pages()?;
    if b.segments < 10 || b.queries == 0 || b.dim == 0 {
        return Err(usage("--segments must be at least 10, --queries and --dim at least 1"));
    }
    let k = 10;
    let mut rng = Rng(20_261_203);
    let clusters = (b.segments / 1000).max(1);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| normalized((0..b.dim).map(|_| rng.normal()).collect()))
        .collect();
    let t = Instant::now();
    let base = draw(&mut rng, &centres, b.segments, b.dim);
    let queries = draw(&mut rng, &centres, b.queries, b.dim);
    let gen_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let truth = exact_top(&base, &queries, b.dim, k, b.threads);
    let exact_s = t.elapsed().as_secs_f64();
    eprintln!(
        "{} vectors of {} dimensions in {clusters} clusters ({gen_s:.1} s); exact top {k} of {} queries ({exact_s:.1} s)",
        b.segments, b.dim, b.queries
    );
    if let Some(dir) = &b.export {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        write_raw(&dir.join("base.f32"), &f32s(&base))?;
        write_raw(&dir.join("queries.f32"), &f32s(&queries))?;
        let t: Vec<u8> = truth.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
        write_raw(&dir.join("truth.u64"), &t)?;
    }

    let (rss_before, _) = rss_bytes();
    let keys: Vec<u64> = (0..b.segments as u64).collect();
    let t = Instant::now();
    let index = AnnIndex::build(b.dim, &b.options, &keys, &base, b.threads)?;
    let build_s = t.elapsed().as_secs_f64();
    // As `kino serve` does once its shortlists are built or loaded.
    let huge = if huge_pages {
        kino_store::advise_huge_pages()
    } else {
        kino_store::HugePages::default()
    };
    let (rss_after, peak) = rss_bytes();
    eprintln!("index built in {build_s:.1} s");

    let mut latencies = Vec::with_capacity(b.queries);
    let (mut hits, mut hits_reranked) = (0usize, 0usize);
    for (q, want) in queries.chunks_exact(b.dim).zip(&truth) {
        let t = Instant::now();
        let got = index.search(q, k)?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        hits += got.iter().filter(|(key, _)| want.contains(key)).count();
        // As search uses it: a shortlist of 4k, re-ranked with exact scores.
        let mut short: Vec<(f32, u64)> = index
            .search(q, 4 * k)?
            .into_iter()
            .map(|(key, _)| (kino_store::dot(&base[key as usize * b.dim..][..b.dim], q), key))
            .collect();
        short.sort_by(|a, b| b.0.total_cmp(&a.0));
        hits_reranked += short.iter().take(k).filter(|(_, key)| want.contains(key)).count();
    }
    latencies.sort_by(f64::total_cmp);
    let total = (b.queries * k) as f64;

    // A cold start: the saved index memory-mapped.
    let dir = b.export.clone().unwrap_or_else(std::env::temp_dir);
    let file = dir.join(format!("kino-bench-{}.usearch", std::process::id()));
    let t = Instant::now();
    index.save(&file)?;
    let save_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let viewed = AnnIndex::view(&file, &b.options)?;
    let first = viewed.search(&queries[..b.dim], k)?;
    let view_s = t.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    drop(viewed);
    if b.export.is_none() {
        let _ = std::fs::remove_file(&file);
    }
    let report = json!({
        "engine": "kino (usearch HNSW)",
        "segments": b.segments,
        "dim": b.dim,
        "queries": b.queries,
        "clusters": clusters,
        "threads": b.threads,
        "m": b.options.connectivity,
        "ef_construction": b.options.expansion_add,
        "ef_search": b.options.expansion_search,
        "quantization": format!("{:?}", b.options.quantization).to_lowercase(),
        "huge_pages_bytes": huge.collapsed,
        "build_s": round(build_s, 2),
        "recall_at_10": round(hits as f64 / total, 4),
        "recall_at_10_reranked": round(hits_reranked as f64 / total, 4),
        "p50_ms": round(percentile(&latencies, 0.50), 3),
        "p99_ms": round(percentile(&latencies, 0.99), 3),
        "index_bytes": index.memory_bytes(),
        "index_file_bytes": file_bytes,
        "rss_growth_bytes": rss_after.saturating_sub(rss_before),
        "peak_rss_bytes": peak,
        "save_s": round(save_s, 2),
        "open_mapped_and_first_search_s": round(view_s, 3),
        "first_search_hits": first.len(),
    });
    if b.json {
        out!("{report}");
    } else {
        out!(
            "{} segments × {}: recall@10 {} ({} re-ranked), p50 {} ms, p99 {} ms, built in {} s, index {} MiB, opened mapped in {} s",
            b.segments,
            b.dim,
            report["recall_at_10"],
            report["recall_at_10_reranked"],
            report["p50_ms"],
            report["p99_ms"],
            report["build_s"],
            index.memory_bytes() / (1 << 20),
            report["open_mapped_and_first_search_s"]
        );
    }
    Ok(())
}

pub(super) fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// Parses `--quantization`.
pub fn quantization(s: &str) -> Result<Quantization> {
    match s {
        "i8" | "int8" => Ok(Quantization::I8),
        "f16" => Ok(Quantization::F16),
        "f32" => Ok(Quantization::F32),
        other => Err(usage(format!("--quantization {other}: use i8, f16 or f32"))),
    }
}
