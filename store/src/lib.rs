//! kino's store: one typed async API over Postgres and SQLite.
//!
//! The backend is chosen by the database URL (`postgres://…` or a SQLite
//! path / `sqlite:` URL). Each backend has its own migrations
//! (`migrations/postgres`, `migrations/sqlite`), applied on connect; a
//! database whose schema is newer than this binary is refused.
//!
//! What lives here: videos, durable jobs with leases, subtitle cues,
//! segments with their embeddings (replaced atomically per video), stored
//! queries and answers, the models table, whole-video documents, login
//! sessions, and exact in-process vector indexes over segment embeddings
//! ([`VectorIndex`]) and documents ([`DocumentIndex`]) kept current on this
//! process's writes and, through a generation counter and a change log
//! ([`Store::sync_changes`], [`Store::follow_changes`]), on every other
//! process's.
//!
//! The store knows no model: embeddings are plain `f32` slices with a model
//! version string beside them.

mod ann;
mod documents;
mod embedding;
mod error;
mod hugepages;
pub use hugepages::{advise as advise_huge_pages, HugePages};
mod index;
mod jobs;
mod live;
pub use live::{SyncReport, CHANNEL as CHANGES_CHANNEL};
mod index_file;
mod queries;
mod rows;
mod segments;
mod sessions;
mod shortlist;
mod shortlist_live;
pub use segments::{IndexVersions, CUE_SOURCE_SPANS_PER_QUERY};
pub use shortlist::{Mix, ShortlistConfig, ShortlistStatus, SHORTLIST_CONNECTIVITY};
mod types;
mod url;
mod videos;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::{Any, AnyPool};

pub use ann::{AnnIndex, AnnOptions, Quantization, DEFAULT_CONNECTIVITY};
pub use documents::{
    span_of, DocPiece, Document, DocumentHit, DocumentIndex, DocumentWindow, IndexedDocument, IndexedWindow,
    NewDocument, NewWindow, SummarySentence,
};
pub use embedding::{decode_f32, encode_f32};
pub use error::StoreError;
pub use index::{
    dot, normalize as normalize_vector, EmbeddingField, IndexedSegment, SearchHit, SegmentView, VectorIndex,
};
pub use types::*;
pub use url::{parse_db_url, Backend, DbUrl};

/// Result type of every store call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

static PG_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// A connection pool to the kino database plus the in-process vector index.
///
/// Cheap to clone; all clones share the pool and the index.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    index: Arc<RwLock<Option<VectorIndex>>>,
    documents: Arc<RwLock<Option<DocumentIndex>>>,
    /// The database URL (a second connection listens for changes).
    url: Arc<str>,
    live: Arc<live::Live>,
    /// How the index is kept (shortlists, folder), when set.
    index_setup: Arc<std::sync::Mutex<Option<shortlist_live::IndexSetup>>>,
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Connects to the database named by `url`, creating it when it does not
    /// exist yet, and applies pending migrations.
    ///
    /// Errors: [`StoreError::BadUrl`] for a URL that names no supported
    /// backend, [`StoreError::SchemaTooNew`] when the database was migrated
    /// by a newer kino, [`StoreError::Db`] when the server cannot be reached.
    pub async fn open(url: &str) -> Result<Store> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects (creating the database if needed) without migrating.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let parsed = parse_db_url(url)?;
        if let Backend::Sqlite = parsed.backend {
            if let Some(parent) = parsed.sqlite_path().and_then(|p| p.parent().map(|p| p.to_owned())) {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(&parent).map_err(|e| StoreError::Io {
                        path: parent.display().to_string(),
                        source: e,
                    })?;
                }
            }
        }
        let exists = Any::database_exists(&parsed.url)
            .await
            .map_err(|e| StoreError::connect(&parsed, e))?;
        if !exists {
            if let Err(e) = Any::create_database(&parsed.url).await {
                // Another process may have created it at the same moment.
                let now_exists = Any::database_exists(&parsed.url).await.unwrap_or(false);
                if !now_exists {
                    return Err(StoreError::connect(&parsed, e));
                }
            }
        }
        let max = match parsed.backend {
            Backend::Postgres => 8,
            Backend::Sqlite => 4,
        };
        // How long a query waits for a connection. A Postgres server that is
        // down refuses at once, but the pool keeps trying until this runs
        // out: short, so a search answers 503 in seconds rather than hanging
        // (workers retry on their own). SQLite waits for its one writer.
        let acquire = match parsed.backend {
            Backend::Postgres => Duration::from_secs(5),
            Backend::Sqlite => Duration::from_secs(30),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(acquire)
            .connect(&parsed.url)
            .await
            .map_err(|e| StoreError::connect(&parsed, e))?;
        Ok(Store {
            pool,
            backend: parsed.backend,
            index: Arc::new(RwLock::new(None)),
            documents: Arc::new(RwLock::new(None)),
            url: Arc::from(parsed.url.as_str()),
            live: Arc::new(live::Live::default()),
            index_setup: Arc::new(std::sync::Mutex::new(None)),
        })
    }

    /// Applies pending migrations; refuses a schema newer than this binary.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Postgres => &PG_MIGRATOR,
            Backend::Sqlite => &SQLITE_MIGRATOR,
        };
        // SQLite has no migration lock in sqlx: two processes opening a new
        // database at the same moment (a `kino serve` and a `kino search`,
        // say) can both try to create the tables, and the loser fails. Once
        // the winner is done the migrations are applied, so try again.
        let mut attempt = 0;
        loop {
            match migrator.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(sqlx::migrate::MigrateError::VersionMissing(v)) => {
                    return Err(StoreError::SchemaTooNew {
                        found: v,
                        known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
                    })
                }
                Err(e) if self.backend == Backend::Sqlite && attempt < 20 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "migration raced another process; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * attempt.min(6))).await;
                }
                Err(e) => return Err(self.disk_full_or(StoreError::Migrate(e))),
            }
        }
    }

    /// `err`, or [`StoreError::DiskFull`] when the store is a SQLite file
    /// whose disk has less than a megabyte left (SQLite reports a full disk
    /// as an I/O error when it cannot grow its shared-memory file).
    pub fn disk_full_or(&self, err: StoreError) -> StoreError {
        if self.backend != Backend::Sqlite {
            return err;
        }
        let Some(dir) = parse_db_url(&self.url)
            .ok()
            .and_then(|u| u.sqlite_path().and_then(|p| p.parent().map(|p| p.to_owned())))
        else {
            return err;
        };
        let dir = if dir.as_os_str().is_empty() {
            std::path::PathBuf::from(".")
        } else {
            dir
        };
        match fs4::available_space(&dir) {
            Ok(free) if free < (1 << 20) => StoreError::DiskFull {
                path: dir.display().to_string(),
                detail: format!("{free} bytes free; {err}"),
            },
            _ => err,
        }
    }

    /// The schema version this binary knows (the newest migration).
    pub fn schema_version(&self) -> i64 {
        match self.backend {
            Backend::Postgres => &PG_MIGRATOR,
            Backend::Sqlite => &SQLITE_MIGRATOR,
        }
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
    }

    /// Which backend this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying pool, for tests and maintenance.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to finish; background
    /// work on the index (a shortlist build) stops at its next step.
    pub async fn close(&self) {
        self.live.closing.store(true, std::sync::atomic::Ordering::SeqCst);
        self.pool.close().await;
    }

    /// Begins a transaction that will write. On SQLite it takes the write
    /// lock at once (`BEGIN IMMEDIATE`), so it waits for another writer
    /// (the busy timeout) instead of failing with "database is locked" when a
    /// transaction that has read tries to start writing while another
    /// connection writes (SQLite cannot wait in that case).
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Checks the database file's structure: SQLite's `PRAGMA
    /// integrity_check` (`"ok"`, or the first problem it reports); on
    /// Postgres, which checks its own pages, `"ok"` once it answers.
    pub async fn integrity_check(&self) -> Result<String> {
        match self.backend {
            Backend::Sqlite => {
                let row: (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&self.pool).await?;
                Ok(row.0)
            }
            Backend::Postgres => {
                self.ping().await?;
                Ok("ok".into())
            }
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// `$1, $2, …, $n`: the bind placeholders of an `IN (…)` list of `n` values.
pub(crate) fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}
