//! Keeping a process's index: opened from its saved snapshot (and caught
//! up from the change log) or read from the database, its approximate
//! shortlists loaded with it or built in the background, kept in step
//! with every change, and saved now and then. Search stays exact (and
//! right) until the shortlists are ready.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::index::{next_epoch, AnnSlot, IndexedSegment, SegmentView, VectorIndex};
use crate::index_file::IndexFolder;
use crate::shortlist::{ShortlistConfig, ShortlistStatus, Shortlists};
use crate::{Result, Store, StoreError};

/// Videos copied out of the exact index at a time while building (the
/// index is locked only while copying).
const BUILD_CHUNK: usize = 8;

/// FNV-1a: a name for a database that stays the same across builds.
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// What [`Store::enable_shortlists`] set up.
#[derive(Debug, Clone)]
pub(crate) struct IndexSetup {
    cfg: ShortlistConfig,
    folder: Option<Arc<IndexFolder>>,
}

impl Store {
    /// Turns on approximate shortlists for this process's index (see
    /// [`ShortlistConfig`]); they are prepared in the background once the
    /// index is loaded and large enough. `cfg.dir` is a folder for saved
    /// indexes; each database gets its own subfolder.
    ///
    /// With `cfg.dir`, the index is also kept on disk there (its vectors
    /// memory-mapped, a snapshot opened on the next start): call this
    /// before the index is first loaded. A folder another process holds is
    /// not shared: this one keeps its index in the heap and says so.
    pub fn enable_shortlists(&self, cfg: ShortlistConfig) {
        let folder = cfg.dir.as_ref().and_then(|dir| {
            // The same database under another spelling (a relative SQLite
            // path, say) gets the same folder.
            let url = crate::parse_db_url(&self.url)
                .ok()
                .and_then(|p| p.sqlite_path().and_then(|p| std::fs::canonicalize(p).ok()))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| self.url.split('?').next().unwrap_or_default().to_string());
            let root = dir.join(format!("db-{:016x}", stable_hash(&url)));
            match IndexFolder::open(&root) {
                Ok(Some(f)) => Some(Arc::new(f)),
                Ok(None) => {
                    tracing::warn!(
                        folder = %root.display(),
                        "another kino process keeps its index in this folder; this one keeps its index in memory"
                    );
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "index folder unusable; keeping the index in memory");
                    None
                }
            }
        });
        if let Ok(mut c) = self.index_setup.lock() {
            *c = Some(IndexSetup { cfg, folder });
        }
        self.prepare_shortlists();
    }

    /// Segments in the loaded index (`None` while none is loaded; this
    /// does not load it).
    pub fn loaded_segments(&self) -> Option<usize> {
        self.index.read().ok().and_then(|g| g.as_ref().map(|i| i.len()))
    }

    fn index_setup(&self) -> Option<IndexSetup> {
        self.index_setup.lock().ok().and_then(|c| c.clone())
    }

    /// A new, empty index: in a fresh rows folder when the index is kept on disk.
    pub(crate) fn empty_index(&self) -> Result<VectorIndex> {
        let mut index = match self.index_setup().and_then(|s| s.folder) {
            Some(folder) => VectorIndex::in_folder(folder.new_rows_dir())?,
            None => VectorIndex::default(),
        };
        index.epoch = next_epoch();
        Ok(index)
    }

    /// On the first load of this process: the saved snapshot, caught up
    /// with the changes since it, installed as the index. Returns whether
    /// it was (when not, the caller reads the database).
    pub(crate) async fn open_saved_index(&self) -> Result<bool> {
        let Some(IndexSetup {
            cfg,
            folder: Some(folder),
        }) = self.index_setup()
        else {
            return Ok(false);
        };
        if self.index.read().map(|g| g.is_some()).unwrap_or(true) {
            return Ok(false);
        }
        let started = Instant::now();
        let (options, mix, huge_pages) = (cfg.options, cfg.mix, cfg.huge_pages);
        let f = folder.clone();
        let load = move || {
            let saved = f.load(options, mix)?;
            // Before searches start, not beside them: moving a million
            // segments' graphs takes seconds, and searches running
            // meanwhile stalled for seconds (docs/PERFORMANCE.md).
            if huge_pages && saved.as_ref().is_some_and(|s| s.2.is_some()) {
                crate::hugepages::advise();
            }
            Ok::<_, StoreError>(saved)
        };
        let saved = match tokio::task::spawn_blocking(load).await {
            Ok(Ok(Some(saved))) => saved,
            Ok(Ok(None)) => return Ok(false),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "saved index unusable; reading the database");
                return Ok(false);
            }
            Err(e) => {
                tracing::warn!(error = %e, "opening the saved index failed; reading the database");
                return Ok(false);
            }
        };
        let (mut index, generation, lists) = saved;
        let (current, changed) = self.changed_since(generation).await?;
        let Some(changed) = changed else {
            tracing::info!(generation, current, "saved index is too old; reading the database");
            return Ok(false);
        };
        index.epoch = next_epoch();
        let shortlisted = lists.is_some();
        if let Some(lists) = lists {
            index.ann = AnnSlot::Ready {
                lists,
                min_segments: cfg.min_segments,
            };
        }
        index.dirty.store(false, Ordering::SeqCst);
        if let Ok(mut guard) = self.index.write() {
            *guard = Some(index);
        }
        for video in &changed {
            let segments = self.visible_segments(*video).await?;
            self.install_segments(*video, segments);
        }
        self.loaded_at(current);
        tracing::info!(
            segments = self
                .index
                .read()
                .ok()
                .and_then(|g| g.as_ref().map(|i| i.len()))
                .unwrap_or(0),
            caught_up = changed.len(),
            shortlists = shortlisted,
            secs = started.elapsed().as_secs_f32(),
            "index opened from its snapshot"
        );
        self.prepare_shortlists();
        Ok(true)
    }

    /// Where this process's shortlists stand.
    pub fn shortlist_status(&self) -> ShortlistStatus {
        let guard = self.index.read().ok();
        let index = guard.as_ref().and_then(|g| g.as_ref());
        let (state, segments, source) = match index.map(|i| &i.ann) {
            Some(AnnSlot::Ready { lists, .. }) => ("ready", lists.len(), Some(lists.source)),
            Some(slot) => (slot.state(), 0, None),
            None => ("off", 0, None),
        };
        ShortlistStatus {
            state,
            in_use: index.is_some_and(|i| i.approximate()),
            segments,
            source,
        }
    }

    fn shortlist_config(&self) -> Option<ShortlistConfig> {
        self.index_setup().map(|s| s.cfg)
    }

    /// Starts preparing shortlists when they are enabled, the index is
    /// loaded and large enough, and none are ready or on the way. Returns
    /// at once; needs a tokio runtime (without one it does nothing).
    pub(crate) fn prepare_shortlists(&self) {
        let Some(cfg) = self.shortlist_config() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (epoch, videos) = {
            let Ok(mut guard) = self.index.write() else {
                return;
            };
            let Some(index) = guard.as_mut() else {
                return;
            };
            if !matches!(index.ann, AnnSlot::Off) || index.len() < cfg.min_segments {
                return;
            }
            index.ann = AnnSlot::Building {
                pending: Default::default(),
            };
            (index.epoch, index.video_ids())
        };
        let store = self.clone();
        runtime.spawn(async move {
            if let Err(e) = store.prepare(&cfg, epoch, videos).await {
                tracing::warn!(error = %e, "approximate search not prepared; searching exactly");
                if let Ok(mut guard) = store.index.write() {
                    if let Some(index) = guard.as_mut().filter(|i| i.epoch == epoch) {
                        index.ann = AnnSlot::Off;
                    }
                }
            }
        });
    }

    async fn prepare(&self, cfg: &ShortlistConfig, epoch: u64, videos: Vec<i64>) -> Result<()> {
        let started = Instant::now();
        let store = self.clone();
        let c = cfg.clone();
        let lists = tokio::task::spawn_blocking(move || store.build_from_index(&c, epoch, &videos))
            .await
            .map_err(|e| StoreError::Ann(format!("building: {e}")))??;
        if self.install_shortlists(lists, epoch, cfg)? == Some(false) {
            return Err(StoreError::Ann("the built index does not match the store".into()));
        }
        tracing::info!(
            secs = started.elapsed().as_secs_f32(),
            "approximate search ready (built)"
        );
        self.save_index().await?;
        Ok(())
    }

    /// The current generation and the videos changed after `generation`
    /// (`None` when the change log no longer reaches back that far, or the
    /// database is not the one saved).
    async fn changed_since(&self, generation: i64) -> Result<(i64, Option<Vec<i64>>)> {
        let current = self.current_generation().await?;
        if generation > current {
            return Ok((current, None));
        }
        if generation == current {
            return Ok((current, Some(Vec::new())));
        }
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(generation) FROM index_changes")
            .fetch_one(&self.pool)
            .await?;
        if oldest.is_none_or(|o| o > generation + 1) {
            return Ok((current, None));
        }
        let videos = sqlx::query_scalar(
            "SELECT DISTINCT video_id FROM index_changes WHERE generation > $1 AND generation <= $2",
        )
        .bind(generation)
        .bind(current)
        .fetch_all(&self.pool)
        .await?;
        Ok((current, Some(videos)))
    }

    /// Builds shortlists of `videos`, copying a few videos at a time out of
    /// the exact index (writers wait only for a copy, not for the build).
    fn build_from_index(&self, cfg: &ShortlistConfig, epoch: u64, videos: &[i64]) -> Result<Shortlists> {
        let mut lists = Shortlists::new(cfg.options, cfg.mix);
        let mut next_report = 0.1;
        for (i, chunk) in videos.chunks(BUILD_CHUNK).enumerate() {
            if self.live.closing.load(Ordering::SeqCst) {
                return Err(StoreError::Ann("the store is closing".into()));
            }
            let entries: Vec<IndexedSegment> = {
                let guard = self
                    .index
                    .read()
                    .map_err(|_| StoreError::Corrupt("vector index lock poisoned".into()))?;
                let index = guard
                    .as_ref()
                    .filter(|i| i.epoch == epoch)
                    .ok_or_else(|| StoreError::Ann("the index was reloaded during the build".into()))?;
                let mut entries = Vec::new();
                for v in chunk {
                    entries.extend(index.read_video(*v)?);
                }
                entries
            };
            let views: Vec<SegmentView<'_>> = entries.iter().map(IndexedSegment::view).collect();
            lists.add(&views, cfg.threads)?;
            let done = ((i + 1) * BUILD_CHUNK).min(videos.len()) as f64 / videos.len().max(1) as f64;
            if done >= next_report {
                tracing::info!(
                    percent = (done * 100.0).round(),
                    segments = lists.len(),
                    "building the approximate index"
                );
                next_report = (done + 0.1).min(1.0);
            }
        }
        // Onto huge pages before they are put to use (as when opened).
        // Searches running meanwhile may pause while the process's other
        // large mappings move too: once per build.
        if cfg.huge_pages {
            crate::hugepages::advise();
        }
        Ok(lists)
    }

    /// Catches `lists` up with `changed` and with the videos changed while
    /// it was prepared, then puts it in use. `Some(false)` when it does not
    /// hold what the exact index holds afterwards (left unused); `None`
    /// when the index it was prepared for is gone.
    fn install_shortlists(&self, mut lists: Shortlists, epoch: u64, cfg: &ShortlistConfig) -> Result<Option<bool>> {
        let mut guard = self
            .index
            .write()
            .map_err(|_| StoreError::Corrupt("vector index lock poisoned".into()))?;
        let Some(index) = guard.as_mut().filter(|i| i.epoch == epoch) else {
            return Ok(None);
        };
        let AnnSlot::Building { pending } = std::mem::take(&mut index.ann) else {
            return Ok(None);
        };
        for video in pending {
            let entries = index.read_video(video)?;
            let views: Vec<SegmentView<'_>> = entries.iter().map(IndexedSegment::view).collect();
            lists.replace_video(video, &views)?;
        }
        if lists.len() != index.len() {
            tracing::warn!(
                shortlisted = lists.len(),
                indexed = index.len(),
                "approximate index out of step with the store"
            );
            return Ok(Some(false));
        }
        index.ann = AnnSlot::Ready {
            lists,
            min_segments: cfg.min_segments,
        };
        index.dirty.store(true, Ordering::SeqCst);
        Ok(Some(true))
    }

    /// Saves the index (and its shortlists) when it changed since the last
    /// save, tagged with the generation this process has applied (what it
    /// holds is at least that new; changes after it are replayed on
    /// load). Returns whether it saved.
    pub async fn save_index(&self) -> Result<bool> {
        let Some(folder) = self.index_setup().and_then(|s| s.folder) else {
            return Ok(false);
        };
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            // Writers wait while it is written (seconds for a million
            // segments); searches do not.
            let guard = store
                .index
                .read()
                .map_err(|_| StoreError::Corrupt("vector index lock poisoned".into()))?;
            let Some(index) = guard.as_ref() else {
                return Ok(false);
            };
            if index.rows_dir.is_none() || !index.dirty.swap(false, Ordering::SeqCst) {
                return Ok(false);
            }
            let lists = match &index.ann {
                AnnSlot::Ready { lists, .. } => Some(lists),
                _ => None,
            };
            let generation = store.applied_generation();
            let started = Instant::now();
            if let Err(e) = folder.save(index, lists, generation) {
                index.dirty.store(true, Ordering::SeqCst);
                return Err(e);
            }
            tracing::info!(
                generation,
                segments = index.len(),
                shortlists = lists.is_some(),
                secs = started.elapsed().as_secs_f32(),
                "index saved"
            );
            Ok(true)
        })
        .await
        .map_err(|e| StoreError::Ann(format!("saving: {e}")))?
    }

    /// Saves the index every `every` when it changed, until `stop`
    /// resolves, and once more then. Errors are logged.
    pub async fn keep_index_saved(&self, every: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let stopping = tokio::select! {
                _ = &mut stop => true,
                _ = tokio::time::sleep(every) => false,
            };
            if let Err(e) = self.save_index().await {
                tracing::warn!(error = %e, "index not saved");
            }
            if stopping {
                return;
            }
        }
    }
}
