//! Keeping every process's in-process indexes in step with the database.
//!
//! Every transaction that changes what search sees for a video (its
//! segments or document replaced, the video hidden as missing, shown again
//! or deleted) ends with [`record_change`]: it increments the one
//! `index_generation` counter and logs `(generation, video)` in
//! `index_changes`. The counter's row lock orders concurrent writers, so
//! generations become visible in order. On Postgres the same transaction
//! sends `NOTIFY kino_index`.
//!
//! A process holds a *watermark*: the generation its loaded indexes reflect.
//! [`Store::sync_changes`] reads the changes above it and reloads only the
//! videos they name (one video's segments and document each), so a new
//! video adds its segments and a replaced one swaps them, without a full
//! reload. [`Store::follow_changes`] runs that on every notification (and
//! on a timer, the only trigger on SQLite).
//!
//! Each video also remembers the generation of the state held for it, so a
//! process's own write (applied right after its commit) and the same change
//! arriving through the log never step back to an older state.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sqlx::Row;

use crate::documents::IndexedDocument;
use crate::index::IndexedSegment;
use crate::{now_ms, Backend, Result, Store};

/// The Postgres notification channel.
pub const CHANNEL: &str = "kino_index";

/// Changes kept in the log; a process further behind reloads in full.
const KEEP_CHANGES: i64 = 10_000;

/// How the in-process indexes follow the database.
#[derive(Debug)]
pub(crate) struct Live {
    /// Generation the loaded indexes reflect; -1 before any is loaded.
    watermark: AtomicI64,
    /// Per video, the generation of the state the indexes hold for it.
    applied: Mutex<HashMap<i64, i64>>,
    /// Loads and syncs run one at a time.
    lock: tokio::sync::Mutex<()>,
    /// Set by [`Store::close`]: background index work stops.
    pub(crate) closing: std::sync::atomic::AtomicBool,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            watermark: AtomicI64::new(-1),
            applied: Mutex::new(HashMap::new()),
            lock: tokio::sync::Mutex::new(()),
            closing: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// Records, as the last statements of a write transaction, that what search
/// sees of `video_id` changed: the next generation, logged (and notified on
/// Postgres). Returns the generation.
pub(crate) async fn record_change(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    video_id: i64,
) -> Result<i64> {
    let generation: i64 =
        sqlx::query_scalar("UPDATE index_generation SET value = value + 1 WHERE id = 1 RETURNING value")
            .fetch_one(&mut **tx)
            .await?;
    sqlx::query("INSERT INTO index_changes (generation, video_id, at_ms) VALUES ($1, $2, $3)")
        .bind(generation)
        .bind(video_id)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    if generation % 1000 == 0 {
        sqlx::query("DELETE FROM index_changes WHERE generation <= $1")
            .bind(generation - KEEP_CHANGES)
            .execute(&mut **tx)
            .await?;
    }
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(generation.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(generation)
}

/// What one [`Store::sync_changes`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// The generation the indexes reflect now.
    pub generation: i64,
    /// Videos whose entries were reloaded.
    pub videos: usize,
    /// True when the log no longer reached back to the watermark and the
    /// loaded indexes were reloaded in full.
    pub full_reload: bool,
}

impl Store {
    /// The database's current generation (0 for a new database).
    pub async fn current_generation(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM index_generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await?)
    }

    /// The generation this process's loaded indexes reflect (-1 when none
    /// is loaded yet).
    pub fn applied_generation(&self) -> i64 {
        self.live.watermark.load(Ordering::SeqCst)
    }

    /// Applies `f` to the indexes for `video_id`'s state at `generation`,
    /// unless a state at least as new is held already. Returns whether it ran.
    pub(crate) fn apply_at(&self, video_id: i64, generation: i64, f: impl FnOnce()) -> bool {
        let Ok(mut applied) = self.live.applied.lock() else {
            return false;
        };
        let held = applied.entry(video_id).or_insert(-1);
        if *held >= generation {
            return false;
        }
        *held = generation;
        f();
        true
    }

    /// Installs freshly loaded indexes' watermark: the generation read before
    /// their data. Per-video generations are forgotten (the changes after
    /// the watermark are replayed; replaying is idempotent).
    pub(crate) fn loaded_at(&self, generation: i64) {
        if let Ok(mut applied) = self.live.applied.lock() {
            applied.clear();
        }
        let _ = self
            .live
            .watermark
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                (w < 0 || w > generation).then_some(generation)
            });
    }

    /// Serialises loads with syncs (a load racing a sync could miss a change).
    pub(crate) async fn live_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.live.lock.lock().await
    }

    /// Brings the loaded indexes up to the database's current generation:
    /// reloads the videos named by the changes since the watermark (or
    /// everything, when the log has been pruned past it). A no-op while no
    /// index is loaded. Cheap when nothing changed: one small query.
    pub async fn sync_changes(&self) -> Result<SyncReport> {
        let _guard = self.live_lock().await;
        let watermark = self.applied_generation();
        let segments_loaded = self.index.read().map(|g| g.is_some()).unwrap_or(false);
        let documents_loaded = self.documents.read().map(|g| g.is_some()).unwrap_or(false);
        if watermark < 0 || !(segments_loaded || documents_loaded) {
            return Ok(SyncReport {
                generation: watermark,
                ..SyncReport::default()
            });
        }
        let current = self.current_generation().await?;
        if current == watermark {
            return Ok(SyncReport {
                generation: current,
                ..SyncReport::default()
            });
        }
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(generation) FROM index_changes")
            .fetch_one(&self.pool)
            .await?;
        if current < watermark || oldest.is_some_and(|o| o > watermark + 1) {
            tracing::info!(
                watermark,
                current,
                "index change log does not reach back: reloading in full"
            );
            if segments_loaded {
                self.load_index_unlocked().await?;
            }
            if documents_loaded {
                self.load_documents_unlocked().await?;
            }
            self.live.watermark.store(current, Ordering::SeqCst);
            return Ok(SyncReport {
                generation: current,
                videos: 0,
                full_reload: true,
            });
        }
        let rows = sqlx::query(
            "SELECT generation, video_id FROM index_changes WHERE generation > $1 AND generation <= $2 ORDER BY generation",
        )
        .bind(watermark)
        .bind(current)
        .fetch_all(&self.pool)
        .await?;
        let mut latest: HashMap<i64, i64> = HashMap::new();
        for r in &rows {
            let (generation, video): (i64, i64) = (r.try_get("generation")?, r.try_get("video_id")?);
            latest.insert(video, generation);
        }
        let mut videos = 0;
        for (video, generation) in latest {
            let held = self
                .live
                .applied
                .lock()
                .map(|a| a.get(&video).copied().unwrap_or(-1))
                .unwrap_or(-1);
            if held >= generation {
                continue;
            }
            if self.refresh_video(video, generation).await? {
                videos += 1;
            }
        }
        self.live.watermark.store(current, Ordering::SeqCst);
        if videos > 0 {
            tracing::debug!(
                videos,
                generation = current,
                "index brought up to date with other processes' changes"
            );
        }
        Ok(SyncReport {
            generation: current,
            videos,
            full_reload: false,
        })
    }

    /// Puts one video's entries into the loaded indexes (`None`: that index
    /// is left alone; an empty list or `Some(None)` removes the video).
    pub(crate) fn install_video(
        &self,
        video_id: i64,
        segments: Option<Vec<IndexedSegment>>,
        document: Option<Option<IndexedDocument>>,
    ) {
        if let Some(entries) = segments {
            self.install_segments(video_id, entries);
        }
        if let Some(doc) = document {
            self.documents_replace(video_id, doc);
        }
    }

    /// Puts one video's segments into the loaded segment index (if loaded).
    pub(crate) fn install_segments(&self, video_id: i64, entries: Vec<IndexedSegment>) {
        if let Ok(mut guard) = self.index.write() {
            if let Some(index) = guard.as_mut() {
                if let Err(e) = index.replace_video(video_id, entries) {
                    // Only a failing disk gets here: drop the index, so the
                    // next search reloads it from the database.
                    tracing::warn!(error = %e, video_id, "index not updated; it will be reloaded");
                    *guard = None;
                }
            }
        }
        // The library may have grown past the shortlists' threshold.
        self.prepare_shortlists();
    }

    /// Keeps the loaded indexes in step with the database until `stop`
    /// resolves: syncs on every Postgres notification and at least every
    /// `poll` (the only trigger on SQLite). Errors are logged and retried;
    /// a lost notification connection is reopened.
    pub async fn follow_changes(&self, poll: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut listener = None;
        loop {
            if self.backend == Backend::Postgres && listener.is_none() {
                listener = match sqlx::postgres::PgListener::connect(&self.url).await {
                    Ok(mut l) => match l.listen(CHANNEL).await {
                        Ok(()) => Some(l),
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN {CHANNEL} failed; polling");
                            None
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "no notification connection; polling");
                        None
                    }
                };
            }
            if let Err(e) = self.sync_changes().await {
                tracing::warn!(error = %e, "index not brought up to date; retrying");
            }
            let wait = async {
                match listener.as_mut() {
                    Some(l) => match tokio::time::timeout(poll, l.recv()).await {
                        Ok(Ok(_)) => true,
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "notification connection lost");
                            false
                        }
                        Err(_) => true,
                    },
                    None => {
                        tokio::time::sleep(poll).await;
                        true
                    }
                }
            };
            tokio::select! {
                _ = &mut stop => return,
                ok = wait => {
                    if !ok {
                        listener = None;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }
}
