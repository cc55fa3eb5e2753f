//! Database URL parsing: the scheme picks the backend.

use std::path::{Path, PathBuf};

use crate::{Result, StoreError};

/// The database backends kino supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL (production store, scale-out).
    Postgres,
    /// SQLite (embedded default).
    Sqlite,
}

/// A database URL after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbUrl {
    /// Which backend it names.
    pub backend: Backend,
    /// The URL as handed to sqlx (`postgres://…` or `sqlite://PATH?mode=rwc`).
    pub url: String,
}

impl DbUrl {
    /// For SQLite: the database file's path.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let rest = self.url.strip_prefix("sqlite://")?;
        let path = rest.split('?').next().unwrap_or(rest);
        Some(PathBuf::from(path))
    }

    /// The URL with any password replaced by `***`, for messages.
    pub fn redacted(&self) -> String {
        match ::url::Url::parse(&self.url) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => self.url.clone(),
        }
    }
}

/// Parses a database URL or path.
///
/// Accepted: `postgres://…`, `postgresql://…`, `sqlite://PATH`, `sqlite:PATH`,
/// or a plain file path (absolute, relative, or ending in `.db`/`.sqlite`),
/// which means SQLite. Anything else is [`StoreError::BadUrl`].
pub fn parse_db_url(input: &str) -> Result<DbUrl> {
    let s = input.trim();
    let bad = |why: &str| StoreError::BadUrl {
        url: input.to_string(),
        reason: why.to_string(),
    };
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let u = ::url::Url::parse(s).map_err(|e| bad(&format!("not a valid URL: {e}")))?;
        if u.host_str().map(str::is_empty).unwrap_or(true) {
            return Err(bad(
                "a Postgres URL needs a host, e.g. postgres://postgres@127.0.0.1/kino",
            ));
        }
        let db = u.path().trim_start_matches('/');
        if db.is_empty() {
            return Err(bad(
                "a Postgres URL needs a database name, e.g. postgres://postgres@127.0.0.1/kino",
            ));
        }
        if db.contains('/') {
            return Err(bad("the database name may not contain '/'"));
        }
        return Ok(DbUrl {
            backend: Backend::Postgres,
            url: s.to_string(),
        });
    }
    let path = if let Some(rest) = s.strip_prefix("sqlite://") {
        rest.split('?').next().unwrap_or("").to_string()
    } else if let Some(rest) = s.strip_prefix("sqlite:") {
        rest.split('?').next().unwrap_or("").to_string()
    } else if s.contains("://") || looks_like_scheme(s) {
        let scheme = s.split(':').next().unwrap_or("");
        return Err(bad(&format!(
            "unsupported scheme '{scheme}': use postgres://USER@HOST/DB or a SQLite file path"
        )));
    } else {
        s.to_string()
    };
    if path.is_empty() || path == ":memory:" {
        return Err(bad(
            "a SQLite database needs a file path (in-memory databases are not supported)",
        ));
    }
    let p = Path::new(&path);
    if p.is_dir() {
        return Err(bad(
            "that path is a directory; name a database file inside it, e.g. DIR/kino.db",
        ));
    }
    Ok(DbUrl {
        backend: Backend::Sqlite,
        url: format!("sqlite://{path}?mode=rwc"),
    })
}

/// `mysql:…`, `redis:…` etc.: a word of letters followed by ':' (but not a
/// Windows drive letter).
fn looks_like_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            scheme.len() > 1
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_backend_by_scheme() {
        assert_eq!(
            parse_db_url("postgres://postgres@127.0.0.1/kino").unwrap().backend,
            Backend::Postgres
        );
        assert_eq!(
            parse_db_url("postgresql://u:p@h:5432/db").unwrap().backend,
            Backend::Postgres
        );
        let s = parse_db_url("/tmp/x/kino.db").unwrap();
        assert_eq!(s.backend, Backend::Sqlite);
        assert_eq!(s.sqlite_path().unwrap(), PathBuf::from("/tmp/x/kino.db"));
        assert_eq!(
            parse_db_url("sqlite:///tmp/a.db").unwrap().sqlite_path().unwrap(),
            PathBuf::from("/tmp/a.db")
        );
        assert_eq!(
            parse_db_url("sqlite:rel.db").unwrap().sqlite_path().unwrap(),
            PathBuf::from("rel.db")
        );
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        for bad in [
            "",
            "mysql://root@localhost/db",
            "postgres://",
            "postgres://127.0.0.1",
            "redis:x",
            "sqlite::memory:",
            "/tmp",
        ] {
            let err = parse_db_url(bad).unwrap_err();
            assert!(matches!(err, StoreError::BadUrl { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn redacts_passwords() {
        let u = parse_db_url("postgres://u:secret@h/db").unwrap();
        assert!(!u.redacted().contains("secret"));
    }
}
