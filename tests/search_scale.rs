//! `kino bench search`: the approximate index measured against exact
//! search on clustered vectors and held-out queries, from the CLI.

use std::process::Command;

use serde_json::Value;

fn kino() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL").arg("-q");
    c
}

#[test]
fn bench_search_reports_recall_latency_memory_and_a_mapped_cold_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = kino()
        .args([
            "bench",
            "search",
            "--segments",
            "5000",
            "--queries",
            "100",
            "--json",
            "--export",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["segments"], 5000);
    assert_eq!(r["dim"], 384);
    assert_eq!(r["quantization"], "i8");
    // As search uses it (a shortlist re-ranked with exact scores).
    let reranked = r["recall_at_10_reranked"].as_f64().unwrap();
    assert!(reranked >= 0.95, "{r}");
    assert!(r["recall_at_10"].as_f64().unwrap() <= reranked + 1e-9, "{r}");
    let (p50, p99) = (r["p50_ms"].as_f64().unwrap(), r["p99_ms"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= p99, "{r}");
    // int8 vectors: a quarter of f32's 7.3 MiB, plus the graph (the saved
    // file; in memory the index also holds preallocated room).
    let bytes = r["index_file_bytes"].as_u64().unwrap();
    assert!(bytes > 5000 * 384 && bytes < 5000 * 384 * 3, "{r}");
    assert_eq!(r["first_search_hits"], 10);
    // The peer's inputs: vectors, queries and the exact answers.
    assert_eq!(
        std::fs::metadata(dir.path().join("base.f32")).unwrap().len(),
        5000 * 384 * 4
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("queries.f32")).unwrap().len(),
        100 * 384 * 4
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("truth.u64")).unwrap().len(),
        100 * 10 * 8
    );

    // f16 vectors keep recall without re-ranking.
    let out = kino()
        .args([
            "bench",
            "search",
            "--segments",
            "3000",
            "--queries",
            "50",
            "--quantization",
            "f16",
            "--json",
        ])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["recall_at_10"].as_f64().unwrap() >= 0.95, "{r}");

    for bad in [
        vec!["--quantization", "i4"],
        vec!["--segments", "3"],
        vec!["--segments", "many"],
    ] {
        let out = kino().args(["bench", "search"]).args(&bad).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty());
    }
    // A misspelt huge-pages setting is refused before any work, not taken as on.
    let out = kino()
        .args(["bench", "search", "--segments", "3000"])
        .env("KINO_HUGE_PAGES", "of")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KINO_HUGE_PAGES=of"), "{err}");
}

#[test]
fn bench_index_measures_the_served_index_and_its_cold_start() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("run");
    let out = kino()
        .args([
            "bench",
            "index",
            "--segments",
            "2160",
            "--queries",
            "20",
            "--dim",
            "64",
            "--json",
            "--dir",
        ])
        .arg(&at)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["segments"], 2160);
    let cold = &r["reopened"];
    // The second process answered from the saved index and shortlists.
    assert_eq!(cold["first_answer_hits"], 50, "{r}");
    assert!(cold["recall_at_10"].as_f64().unwrap() >= 0.9, "{r}");
    assert!(cold["cold_start_s"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(cold["searches"], 100);
    // Recall and latency for other shortlist sizes beside search's own;
    // a longer shortlist never finds less.
    let sweep = cold["sweep"].as_array().unwrap();
    assert_eq!(sweep.len(), 6, "{r}");
    assert_eq!(sweep[0]["shortlist"], 25, "{r}");
    let recalls: Vec<f64> = sweep.iter().map(|s| s["recall_at_10"].as_f64().unwrap()).collect();
    assert!(recalls.windows(2).all(|w| w[0] <= w[1] + 0.02), "{recalls:?}");
    assert!(sweep.iter().all(|s| s["p99_ms"].as_f64().unwrap() > 0.0), "{r}");
    assert!(at.join("index").is_dir() && at.join("kino.db").is_file());
    // A folder that holds a store already is refused (exit code 2).
    let again = kino()
        .args(["bench", "index", "--segments", "360", "--dir"])
        .arg(&at)
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
