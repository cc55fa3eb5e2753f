//! Command implementations, one module per area.

mod bench;
mod bench_index;
mod db;
pub mod index;
mod media;
mod models;
mod ocr;
mod quantize;
mod query;
mod serve;
mod speech;
mod text;
mod train;
mod train_eval;
mod vision;

use anyhow::Result;

use crate::cli::Command;
use crate::config::Config;

/// Whether the approximate index is moved onto transparent huge pages
/// (`KINO_HUGE_PAGES`: on unless `off`, `0`, `false` or `no`; anything
/// else but `on`, `1`, `true` or `yes` is a usage error).
pub(crate) fn huge_pages() -> Result<bool> {
    match std::env::var("KINO_HUGE_PAGES") {
        Err(_) => Ok(true),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "on" | "1" | "true" | "yes" => Ok(true),
            "off" | "0" | "false" | "no" => Ok(false),
            _ => Err(crate::error::usage(format!("KINO_HUGE_PAGES={v}: expected on or off"))),
        },
    }
}

/// How the approximate index mixes a segment's vectors: with the weights
/// search scores them by.
pub(crate) fn shortlist_mix() -> kino_store::Mix {
    let w = kino_fusion::score::Weights::default();
    kino_store::Mix {
        fused: w.fused,
        text: w.text,
        visual: w.visual,
    }
}

/// Runs one command.
pub fn dispatch(command: Command, config: &Config, quiet: bool) -> Result<()> {
    match command {
        Command::Db { action } => db::run(action, config),
        Command::Bench {
            what:
                crate::cli::BenchWhat::Index {
                    segments,
                    queries,
                    dim,
                    dir,
                    json,
                    reopen,
                },
        } => bench_index::index(&bench_index::IndexBench {
            segments,
            queries,
            dim,
            dir,
            json,
            reopen,
        }),
        Command::Bench {
            what:
                crate::cli::BenchWhat::Search {
                    segments,
                    queries,
                    dim,
                    threads,
                    m,
                    ef_construction,
                    ef_search,
                    quantization,
                    export,
                    json,
                },
        } => bench::search(&bench::SearchBench {
            segments,
            queries,
            dim,
            threads: threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1),
            options: kino_store::AnnOptions {
                connectivity: m,
                expansion_add: ef_construction,
                expansion_search: ef_search,
                quantization: bench::quantization(&quantization)?,
            },
            export,
            json,
        }),
        Command::Probe { file, json } => media::probe(&file, json),
        Command::Frames {
            file,
            fps,
            sample,
            out,
            json,
        } => media::frames(&file, fps, sample, &out, json),
        Command::Subtitles { file, json } => media::subtitles(&file, json),
        Command::Transcribe {
            file,
            language,
            model,
            no_gate,
            json,
            srt,
        } => speech::transcribe(
            config,
            &file,
            language.as_deref(),
            model.as_deref(),
            !no_gate,
            json,
            srt,
            quiet,
        ),
        Command::Ocr { file, model, json } => ocr::ocr(config, &file, model.as_deref(), json, quiet),
        Command::EmbedText { model, texts, json } => text::embed_text(config, model.as_deref(), &texts, json),
        Command::Models { action } => models::run(config, action, quiet),
        Command::EmbedImage {
            model,
            images,
            top,
            json,
        } => vision::embed_image(config, model.as_deref(), &images, top, json),
        Command::Serve { library, bind, token } => serve::serve(config, &library, &bind, token),
        Command::Ingest { paths, json } => index::ingest(config, &paths, json, quiet),
        Command::Reindex {
            all,
            stale,
            video,
            json,
        } => index::reindex(config, all, stale, video, json),
        Command::Train {
            epochs,
            max_minutes,
            device,
            rollback,
            json,
        } => train::train(
            config,
            &train::TrainArgs {
                epochs,
                max_minutes,
                device,
                rollback,
                json,
            },
            quiet,
        ),
        Command::Worker { metrics } => index::worker(config, metrics.as_deref()),
        Command::Search { query, k, by, json } => match by {
            crate::cli::SearchBy::Moment => query::search(config, &query, k, json),
            crate::cli::SearchBy::Video => query::search_videos(config, &query, k, json),
        },
        Command::Ask { question, json } => query::ask(config, &question, json),
    }
}

/// A current-thread tokio runtime for commands that talk to the store.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
