//! Helpers shared by the store's tests: a throw-away database per test on
//! a real Postgres or a real SQLite file, and small builders.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use kino_store::{Backend, NewSegment, NewVideo, Store};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A throw-away database: a Postgres database dropped on `finish`, or a
/// SQLite file in a temporary directory.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

pub fn pg_base() -> String {
    std::env::var("KINO_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Postgres => {
                let name = format!(
                    "kino_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    kino_store::now_ms() % 1_000_000
                );
                TestDb {
                    url: format!("{}/{}", pg_base(), name),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = dir.path().join("kino.db").display().to_string();
                TestDb {
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    pub async fn finish(self, store: Store) {
        store.close().await;
        if let Some(name) = &self.pg_name {
            let admin = sqlx::PgPool::connect(&format!("{}/postgres", pg_base())).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

/// Runs an async test body against both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = TestDb::new(Backend::Postgres);
                let store = db.open().await;
                ($body)(store.clone(), db.url.clone()).await;
                db.finish(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = TestDb::new(Backend::Sqlite);
                let store = db.open().await;
                ($body)(store.clone(), db.url.clone()).await;
                db.finish(store).await;
            }
        }
    };
}

pub async fn add_video(store: &Store, path: &str) -> i64 {
    store
        .upsert_video(&NewVideo {
            path: path.into(),
            content_hash: Some(format!("hash-{path}")),
            size_bytes: 10,
            mtime_ms: 1,
        })
        .await
        .unwrap()
        .id
}

pub fn segment(start: i64, text: &str, v: Vec<f32>) -> NewSegment {
    NewSegment {
        start_ms: start,
        end_ms: start + 10_000,
        text: text.into(),
        tags: vec!["tag".into()],
        fused: v.clone(),
        text_emb: Some(v),
        visual_emb: None,
        model_version: "test-v1".into(),
        thumbnail: None,
    }
}
