//! `kino db migrate`.

use anyhow::{Context, Result};

use crate::cli::DbAction;
use crate::config::Config;

/// Runs a `kino db` action.
pub fn run(action: DbAction, config: &Config) -> Result<()> {
    match action {
        DbAction::Migrate => {
            let rt = super::runtime()?;
            rt.block_on(async {
                let store = kino_store::Store::connect(&config.db).await?;
                store.migrate().await?;
                let version = store.schema_version();
                store.close().await;
                tracing::info!(schema = version, "database is up to date");
                out!("database migrated to schema version {version}");
                Ok::<_, anyhow::Error>(())
            })
            .context("kino db migrate")
        }
    }
}
