//! Command implementations, one module per area.

mod db;
mod media;
mod text;
mod vision;

use anyhow::Result;

use crate::cli::Command;
use crate::config::Config;
use crate::error::not_implemented;

/// Runs one command.
pub fn dispatch(command: Command, config: &Config) -> Result<()> {
    match command {
        Command::Db { action } => db::run(action, config),
        Command::Probe { file, json } => media::probe(&file, json),
        Command::Frames { file, fps, sample, out, json } => media::frames(&file, fps, sample, &out, json),
        Command::Subtitles { file, json } => media::subtitles(&file, json),
        Command::EmbedText { model, texts, json } => text::embed_text(config, model.as_deref(), &texts, json),
        Command::Models { action } => text::models(config, action),
        Command::EmbedImage { model, images, top, json } => vision::embed_image(config, model.as_deref(), &images, top, json),
        Command::Serve { .. } => Err(not_implemented("serve (streaming pipeline and web, issues 7 and 8)")),
        Command::Ingest { .. } => Err(not_implemented("ingest (streaming pipeline, issue 7)")),
        Command::Reindex { .. } => Err(not_implemented("reindex (streaming pipeline, issue 7)")),
        Command::Worker => Err(not_implemented("worker (streaming pipeline, issue 7)")),
        Command::Search { .. } => Err(not_implemented("search (fusion and query scoring, issue 6)")),
        Command::Ask { .. } => Err(not_implemented("ask (fusion and extractive answers, issue 6)")),
    }
}

/// A current-thread tokio runtime for commands that talk to the store.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
