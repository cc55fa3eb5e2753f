//! The store's error type.

use crate::DbUrl;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no supported backend or is malformed.
    #[error("bad database URL '{url}': {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The database could not be reached or created.
    #[error("cannot open database {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The database was migrated by a newer kino than this one.
    #[error("the database schema (migration {found}) is newer than this kino knows (up to {known}); upgrade kino or use another database")]
    SchemaTooNew {
        /// A migration version the database has and this binary lacks.
        found: i64,
        /// The newest migration this binary has.
        known: i64,
    },
    /// The disk holding the database is full.
    #[error("{path}: the disk is full ({detail}); free some space and run kino again: what is indexed is kept")]
    DiskFull {
        /// The database's folder.
        path: String,
        /// The underlying error.
        detail: String,
    },
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A file-system error around the database file.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A row that should exist does not.
    #[error("{0} not found")]
    NotFound(String),
    /// The approximate vector index failed (building, searching, saving or
    /// opening its file).
    #[error("vector index: {0}")]
    Ann(String),
    /// Stored data could not be decoded (for example an embedding blob of the wrong length).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn connect(url: &DbUrl, source: sqlx::Error) -> Self {
        StoreError::Connect {
            url: url.redacted(),
            source,
        }
    }

    /// True when the disk holding the database is full (SQLite's
    /// `SQLITE_FULL`, Postgres' `disk_full`, an OS "no space left"): a
    /// retry in seconds will not cure it, space must be freed first.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskFull { .. } => true,
            StoreError::Io { source, .. } => source.raw_os_error() == Some(28),
            StoreError::Db(e) => {
                e.as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| c == "13" || c == "53100")
                    || matches!(e, sqlx::Error::Io(io) if io.raw_os_error() == Some(28))
            }
            _ => false,
        }
    }

    /// True for errors that a retry may cure (connection lost, pool timeout, server restarting).
    pub fn is_transient(&self) -> bool {
        match self {
            // Retried with a backoff: the job waits for space to return.
            StoreError::Connect { .. } | StoreError::DiskFull { .. } => true,
            StoreError::Db(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .map(|c| {
                        c.starts_with("57P")
                            || c.starts_with("08")
                            || c == "40001"
                            || c == "40P01"
                            || c == "5"
                            || c == "6"
                            // SQLITE_FULL, Postgres disk_full: space may return.
                            || c == "13"
                            || c == "53100"
                    })
                    .unwrap_or(false)
            }
            _ => false,
        }
    }
}
