//! `kino search` and `kino ask`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use kino_store::{NewQuery, Store};
use serde_json::json;

use crate::config::Config;
use crate::engines::load_text;
use crate::query::Engine;

fn open(config: &Config, rt: &tokio::runtime::Runtime) -> Result<(Store, Engine)> {
    let store = rt.block_on(Store::open(&config.db))?;
    let text = Arc::new(load_text(&config.text_model_dir(), config.precision.text())?);
    Ok((store.clone(), Engine::new(store, text)))
}

fn fmt_time(ms: i64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `kino search --by video`: whole videos, each with its best moments.
pub fn search_videos(config: &Config, query: &[String], k: usize, json_out: bool) -> Result<()> {
    let query = query.join(" ");
    let rt = super::runtime()?;
    let (store, engine) = open(config, &rt)?;
    let t = Instant::now();
    let results = rt.block_on(engine.search_videos(&query, k))?;
    let q = NewQuery {
        question: query.clone(),
        kind: "search".into(),
        latency_ms: t.elapsed().as_millis() as i64,
        model_version: engine_version(&engine),
    };
    rt.block_on(store.record_query(&q, None))?;
    if json_out {
        out!("{}", json!({ "results": results }));
    } else if results.is_empty() {
        out!("no videos found (is the library indexed? try `kino ingest DIR`)");
    } else {
        for (i, v) in results.iter().enumerate() {
            let length = v
                .duration_ms
                .map(|d| format!("  ({})", fmt_time(d)))
                .unwrap_or_default();
            out!("{:>2}. {:.3}  {}{length}", i + 1, v.score, v.path);
            for m in &v.best_moments {
                let snippet: String = m.text.chars().take(120).collect();
                out!("      {}–{}  {snippet}", fmt_time(m.start_ms), fmt_time(m.end_ms));
            }
        }
    }
    rt.block_on(store.close());
    Ok(())
}

/// `kino search QUERY [-k N]`
pub fn search(config: &Config, query: &[String], k: usize, json_out: bool) -> Result<()> {
    let query = query.join(" ");
    let rt = super::runtime()?;
    let (store, engine) = open(config, &rt)?;
    let t = Instant::now();
    let results = rt.block_on(engine.search_moments(&query, k, None))?;
    let latency = t.elapsed().as_millis() as i64;
    let q = NewQuery {
        question: query.clone(),
        kind: "search".into(),
        latency_ms: latency,
        model_version: engine_version(&engine),
    };
    rt.block_on(store.record_query(&q, None))?;
    if json_out {
        out!("{}", json!({ "results": results }));
    } else if results.is_empty() {
        out!("no moments found (is the library indexed? try `kino ingest DIR`)");
    } else {
        for (i, m) in results.iter().enumerate() {
            out!(
                "{:>2}. {:.3}  {}  {}–{}{}",
                i + 1,
                m.score,
                m.path,
                fmt_time(m.start_ms),
                fmt_time(m.end_ms),
                if m.tags.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", m.tags.join(", "))
                }
            );
            if !m.text.is_empty() {
                let snippet: String = m.text.chars().take(160).collect();
                out!("      {snippet}");
            }
        }
    }
    rt.block_on(store.close());
    Ok(())
}

fn engine_version(engine: &Engine) -> String {
    use kino_web::QueryEngine;
    engine.model_version()
}

/// `kino ask QUESTION`
pub fn ask(config: &Config, question: &[String], json_out: bool) -> Result<()> {
    let question = question.join(" ");
    let rt = super::runtime()?;
    let (store, engine) = open(config, &rt)?;
    let t = Instant::now();
    let answer = rt.block_on(engine.answer(&question))?;
    let latency = t.elapsed().as_millis() as i64;
    let citations = serde_json::to_value(&answer.citations)?;
    let q = NewQuery {
        question: question.clone(),
        kind: "ask".into(),
        latency_ms: latency,
        model_version: engine_version(&engine),
    };
    let query_id = rt.block_on(store.record_query(&q, Some((&answer.answer, &citations))))?;
    if json_out {
        out!(
            "{}",
            json!({ "answer": answer.answer, "citations": citations, "query_id": query_id })
        );
    } else if answer.answer.is_empty() {
        out!("nothing in the library answers that");
    } else {
        out!("{}", answer.answer);
        for c in &answer.citations {
            out!(
                "  — {} {}–{}: {}",
                c.path,
                fmt_time(c.start_ms),
                fmt_time(c.end_ms),
                c.text
            );
        }
    }
    rt.block_on(store.close());
    Ok(())
}
