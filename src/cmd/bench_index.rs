//! `kino bench index`: the search index as `kino serve` keeps it, on a
//! synthetic store of N segments.
//!
//! The store gets N segments (videos of 360, an hour each) whose text and
//! visual vectors are drawn around random topic centres and whose fused
//! vector is their normalised sum. Then, as `kino serve` does: the index is
//! read from the database into memory-mapped row files, its shortlists
//! are built in the background and the whole is saved. The exact top 10
//! of held-out queries under search's own score comes from a full scan.
//! A second process (this binary again, `--reopen`) then opens the saved
//! index cold, as a restarted `kino serve` would, and measures the time to
//! its first approximate answer, recall against the exact answers,
//! single-query latency and its resident memory (heap and mapped file
//! pages apart).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kino_fusion::score::{self, Weights};
use kino_store::{IndexVersions, NewSegment, NewVideo, SearchHit, SegmentView, ShortlistConfig, Store};
use serde_json::{json, Value};

use super::bench::{draw, normalized, percentile, proc_status_bytes, round, Rng};
use crate::error::usage;

/// What to measure.
#[derive(Debug, Clone)]
pub struct IndexBench {
    /// Segments in the store.
    pub segments: usize,
    /// Held-out queries.
    pub queries: usize,
    /// Dimensions.
    pub dim: usize,
    /// Where the store and the index folder go (default: a temporary folder).
    pub dir: Option<PathBuf>,
    /// Print one JSON object.
    pub json: bool,
    /// Internal: the second process's part, on the folder of a first run.
    pub reopen: bool,
}

const PER_VIDEO: usize = 360;
/// Shortlist size, as search asks.
const PRESELECT: usize = crate::query::PRESELECT;
/// Other shortlist sizes measured beside it (recall and latency), so the
/// choice of [`PRESELECT`] can be read off one run.
const SWEEP: [usize; 6] = [25, 50, 100, 150, 200, 400];

fn rss() -> (u64, u64) {
    let v = proc_status_bytes(&["RssAnon", "RssFile"]);
    (v[0], v[1])
}

fn scorer(unit: &[f32]) -> impl FnMut(&SegmentView<'_>) -> Option<f32> + '_ {
    let w = Weights::default();
    move |e| {
        let v = score::SegmentVectors {
            fused: e.fused,
            text: e.text,
            visual: e.visual,
        };
        score::score_unit_vectors(unit, &v, (e.segment_id, e.video_id), &w).ok()
    }
}

fn config(dir: &Path) -> Result<ShortlistConfig> {
    Ok(ShortlistConfig {
        min_segments: 1,
        dir: Some(dir.join("index")),
        mix: super::shortlist_mix(),
        huge_pages: super::huge_pages()?,
        ..ShortlistConfig::default()
    })
}

async fn wait_in_use(store: &Store, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !store.shortlist_status().in_use {
        if Instant::now() > deadline {
            bail!(
                "the shortlists were not ready within {limit:?}: {:?}",
                store.shortlist_status()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs the benchmark and prints its report.
pub fn index(b: &IndexBench) -> Result<()> {
    if b.segments < PER_VIDEO || b.queries == 0 || b.dim == 0 {
        return Err(usage(format!(
            "--segments must be at least {PER_VIDEO}, --queries and --dim at least 1"
        )));
    }
    super::huge_pages()?;
    let dir = match &b.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("kino-bench-index-{}", std::process::id())),
    };
    if !b.reopen && dir.join("kino.db").exists() {
        return Err(usage(format!(
            "{}: holds a store already; name a new folder",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run(b, &dir);
    if b.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run(b: &IndexBench, dir: &Path) -> Result<()> {
    let dir = dir.to_path_buf();
    let rt = super::runtime()?;
    if b.reopen {
        let report = rt.block_on(reopen(&dir))?;
        out!("{report}");
        return Ok(());
    }
    let mut report = rt.block_on(first_run(b, &dir))?;
    // The cold start, in a process of its own.
    let exe = std::env::current_exe().context("finding this binary")?;
    let child = std::process::Command::new(exe)
        .args(["bench", "index", "--reopen", "--dir"])
        .arg(&dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the reopening process")?;
    if !child.status.success() {
        bail!("the reopening process failed ({})", child.status);
    }
    let reopened: Value = serde_json::from_slice(&child.stdout).context("reading the reopening process's report")?;
    report["reopened"] = reopened;
    if b.json {
        out!("{report}");
    } else {
        let r = &report["reopened"];
        out!(
            "{} segments × {}: read from the database in {} s, shortlists built in {} s, saved in {} s; \
             cold start to the first answer {} s; recall@10 {}; p50 {} ms, p99 {} ms; \
             resident {} MiB heap + {} MiB mapped; folder {} MiB",
            b.segments,
            b.dim,
            report["read_db_s"],
            report["build_s"],
            report["save_s"],
            r["cold_start_s"],
            r["recall_at_10"],
            r["p50_ms"],
            r["p99_ms"],
            r["rss_anon_mib"],
            r["rss_file_mib"],
            report["folder_mib"]
        );
    }
    Ok(())
}

fn db_url(dir: &Path) -> String {
    dir.join("kino.db").display().to_string()
}

async fn first_run(b: &IndexBench, dir: &Path) -> Result<Value> {
    let store = Store::open(&db_url(dir)).await?;
    let mut rng = Rng(20_261_203);
    let clusters = (b.segments / 1000).max(1);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| normalized((0..b.dim).map(|_| rng.normal()).collect()))
        .collect();
    let t = Instant::now();
    let versions = IndexVersions::default().with("text", "bench");
    let videos = b.segments / PER_VIDEO;
    for v in 0..videos {
        let video = store
            .upsert_video(&NewVideo {
                path: format!("/bench/{v:06}.mp4"),
                content_hash: Some(format!("bench-{v}")),
                size_bytes: 1,
                mtime_ms: 1,
            })
            .await?;
        let text = draw(&mut rng, &centres, PER_VIDEO, b.dim);
        let visual = draw(&mut rng, &centres, PER_VIDEO, b.dim);
        let segments: Vec<NewSegment> = text
            .chunks_exact(b.dim)
            .zip(visual.chunks_exact(b.dim))
            .enumerate()
            .map(|(i, (t, v))| NewSegment {
                start_ms: i as i64 * 10_000,
                end_ms: (i as i64 + 1) * 10_000,
                text: String::new(),
                tags: Vec::new(),
                fused: normalized(t.iter().zip(v).map(|(a, b)| a + b).collect()),
                text_emb: Some(t.to_vec()),
                visual_emb: Some(v.to_vec()),
                model_version: "bench".into(),
                thumbnail: None,
            })
            .collect();
        store.replace_segments(video.id, &segments, &versions).await?;
        if (v + 1) % 100 == 0 {
            eprintln!("  {} of {} segments stored", (v + 1) * PER_VIDEO, videos * PER_VIDEO);
        }
    }
    let populate_s = t.elapsed().as_secs_f64();
    let segments = videos * PER_VIDEO;
    eprintln!("{segments} segments stored in {populate_s:.0} s");

    store.enable_shortlists(config(dir)?);
    let t = Instant::now();
    store.load_index().await?;
    let read_db_s = t.elapsed().as_secs_f64();
    eprintln!("index read from the database in {read_db_s:.1} s; building the shortlists");
    let t = Instant::now();
    wait_in_use(&store, Duration::from_secs(3 * 3600)).await?;
    let build_s = t.elapsed().as_secs_f64();
    // The build saves when it is done; this waits for that save.
    let t = Instant::now();
    while store.save_index().await? {}
    let snapshot = dir.join("index");
    let save_s = t.elapsed().as_secs_f64();

    // Held-out queries and their exact answers under search's own score.
    let queries = draw(&mut rng, &centres, b.queries, b.dim);
    let t = Instant::now();
    let truth: Vec<Vec<i64>> = store
        .with_index(|i| {
            queries
                .chunks_exact(b.dim)
                .map(|q| i.search_by(10, None, scorer(q)).iter().map(|h| h.segment_id).collect())
                .collect()
        })
        .await?;
    let exact_ms = t.elapsed().as_secs_f64() * 1000.0 / b.queries as f64;
    let q_bytes: Vec<u8> = queries.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(dir.join("queries.f32"), q_bytes)?;
    std::fs::write(dir.join("truth.json"), serde_json::to_vec(&truth)?)?;
    store.close().await;
    Ok(json!({
        "segments": segments,
        "dim": b.dim,
        "queries": b.queries,
        "clusters": clusters,
        "populate_s": round(populate_s, 1),
        "read_db_s": round(read_db_s, 2),
        "build_s": round(build_s, 1),
        "save_s": round(save_s, 2),
        "exact_scan_ms_per_query": round(exact_ms, 1),
        "folder_mib": dir_bytes(&snapshot) / (1 << 20),
        "database_mib": std::fs::metadata(dir.join("kino.db")).map(|m| m.len()).unwrap_or(0) / (1 << 20),
    }))
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    };
    entries.flatten().map(|e| dir_bytes(&e.path())).sum()
}

async fn reopen(dir: &Path) -> Result<Value> {
    let queries: Vec<f32> = std::fs::read(dir.join("queries.f32"))
        .context("reading queries.f32 (run without --reopen first)")?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let truth: Vec<Vec<i64>> = serde_json::from_slice(&std::fs::read(dir.join("truth.json"))?)?;
    let dim = queries.len() / truth.len().max(1);
    let t = Instant::now();
    let store = Store::open(&db_url(dir)).await?;
    store.enable_shortlists(config(dir)?);
    store.load_index().await?;
    wait_in_use(&store, Duration::from_secs(600)).await?;
    let first: Vec<SearchHit> = store
        .with_index(|i| i.search_shortlisted(&queries[..dim], PRESELECT, None, scorer(&queries[..dim])))
        .await?;
    let cold_start_s = t.elapsed().as_secs_f64();
    if store.shortlist_status().source != Some("loaded") {
        bail!(
            "the shortlists were rebuilt, not loaded: {:?}",
            store.shortlist_status()
        );
    }
    // Search's own shortlist size: recall over the queries, latency over
    // five passes (1,000 searches for 200 queries).
    let own = measure(&store, &queries, &truth, dim, PRESELECT, 5).await?;
    let (anon, file) = rss();
    let mut sweep = Vec::new();
    for shortlist in SWEEP {
        let m = measure(&store, &queries, &truth, dim, shortlist, 1).await?;
        sweep.push(json!({ "shortlist": shortlist, "recall_at_10": m.recall, "p50_ms": m.p50, "p99_ms": m.p99 }));
    }
    Ok(json!({
        "cold_start_s": round(cold_start_s, 2),
        "first_answer_hits": first.len(),
        "recall_at_10": own.recall,
        "searches": own.searches,
        "p50_ms": own.p50,
        "p99_ms": own.p99,
        "rss_anon_mib": anon / (1 << 20),
        "rss_file_mib": file / (1 << 20),
        "shortlist": PRESELECT,
        "sweep": sweep,
    }))
}

/// What [`measure`] found.
struct Measured {
    recall: f64,
    p50: f64,
    p99: f64,
    searches: usize,
}

/// Recall@10 (of the first pass) and p50/p99 latency in ms (over all
/// `passes`) of searches with shortlists of `shortlist` segments.
async fn measure(
    store: &Store,
    queries: &[f32],
    truth: &[Vec<i64>],
    dim: usize,
    shortlist: usize,
    passes: usize,
) -> Result<Measured> {
    let mut latencies = Vec::new();
    let mut found = 0;
    for pass in 0..passes {
        for (q, want) in queries.chunks_exact(dim).zip(truth) {
            let t = Instant::now();
            let hits = store
                .with_index(|i| i.search_shortlisted(q, shortlist, None, scorer(q)))
                .await?;
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            if pass == 0 {
                found += want
                    .iter()
                    .filter(|id| hits.iter().take(10).any(|h| h.segment_id == **id))
                    .count();
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Measured {
        recall: round(found as f64 / (truth.len() * 10).max(1) as f64, 4),
        p50: round(percentile(&latencies, 0.5), 2),
        p99: round(percentile(&latencies, 0.99), 2),
        searches: latencies.len(),
    })
}
