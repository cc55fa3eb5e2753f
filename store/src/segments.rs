//! Cues and segments, replaced atomically per video, and the index upkeep.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::index::IndexedSegment;
use crate::{
    decode_f32, encode_f32, now_ms, CueRecord, NewDocument, NewSegment, Result, Segment, SegmentWords, Store,
    StoreError, VectorIndex,
};
use futures_util::TryStreamExt;

/// Most spans [`Store::cue_sources`] looks up in one query (4 parameters
/// each, well under SQLite's and Postgres's parameter limits).
pub const CUE_SOURCE_SPANS_PER_QUERY: usize = 500;

const SEG_COLS: &str =
    "id, video_id, start_ms, end_ms, text, tags, dim, fused, text_emb, visual_emb, model_version, thumbnail";

/// Versions of what produced a video's index, per pipeline stage.
///
/// Stage names are the caller's (kino uses `decode`, `vision`, `text`,
/// `fusion`); a stage that did not run is absent. The whole map is stored as
/// JSON in `videos.stage_versions`; the `text`, `vision` and `fusion` entries
/// also fill the older per-model columns (and `needs_vision` is set when
/// there is no `vision` entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexVersions {
    /// Stage name → version.
    pub stages: BTreeMap<String, String>,
}

impl IndexVersions {
    /// These versions plus `stage` at `version`.
    pub fn with(mut self, stage: &str, version: impl Into<String>) -> Self {
        self.stages.insert(stage.to_string(), version.into());
        self
    }

    /// The version recorded for `stage`.
    pub fn get(&self, stage: &str) -> Option<&str> {
        self.stages.get(stage).map(String::as_str)
    }
}

/// What the in-process index reads of `segments s`.
const INDEX_COLS: &str = "s.id, s.video_id, s.start_ms, s.end_ms, s.dim, s.fused, s.text_emb, s.visual_emb";

fn indexed_from_row(r: &AnyRow) -> Result<IndexedSegment> {
    let dim = r.try_get::<i64, _>("dim")? as usize;
    let opt = |name: &str| -> Result<Option<Vec<f32>>> {
        let b: Option<Vec<u8>> = r.try_get(name)?;
        b.map(|b| decode_f32(&b, None)).transpose()
    };
    Ok(IndexedSegment {
        segment_id: r.try_get("id")?,
        video_id: r.try_get("video_id")?,
        start_ms: r.try_get("start_ms")?,
        end_ms: r.try_get("end_ms")?,
        fused: decode_f32(&r.try_get::<Vec<u8>, _>("fused")?, Some(dim))?,
        text: opt("text_emb")?,
        visual: opt("visual_emb")?,
    })
}

fn segment_from_row(r: &AnyRow) -> Result<Segment> {
    let dim = r.try_get::<i64, _>("dim")? as usize;
    let tags: String = r.try_get("tags")?;
    let opt = |name: &str| -> Result<Option<Vec<f32>>> {
        let b: Option<Vec<u8>> = r.try_get(name)?;
        b.map(|b| decode_f32(&b, None)).transpose()
    };
    Ok(Segment {
        id: r.try_get("id")?,
        video_id: r.try_get("video_id")?,
        start_ms: r.try_get("start_ms")?,
        end_ms: r.try_get("end_ms")?,
        text: r.try_get("text")?,
        tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt(format!("segment tags: {e}")))?,
        fused: decode_f32(&r.try_get::<Vec<u8>, _>("fused")?, Some(dim))?,
        text_emb: opt("text_emb")?,
        visual_emb: opt("visual_emb")?,
        model_version: r.try_get("model_version")?,
        thumbnail: r.try_get("thumbnail")?,
    })
}

/// Inserts one segment row into `table` (`segments` or `staged_segments`,
/// which share their columns) and returns its id.
async fn insert_segment(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    video_id: i64,
    s: &NewSegment,
    now: i64,
) -> Result<i64> {
    let sql = format!(
        "INSERT INTO {table} (video_id, start_ms, end_ms, text, tags, dim, fused, text_emb, visual_emb, model_version, \
         thumbnail, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id"
    );
    Ok(sqlx::query_scalar(&sql)
        .bind(video_id)
        .bind(s.start_ms)
        .bind(s.end_ms)
        .bind(&s.text)
        .bind(serde_json::to_string(&s.tags).unwrap_or_else(|_| "[]".into()))
        .bind(s.fused.len() as i64)
        .bind(encode_f32(&s.fused))
        .bind(s.text_emb.as_deref().map(encode_f32))
        .bind(s.visual_emb.as_deref().map(encode_f32))
        .bind(&s.model_version)
        .bind(&s.thumbnail)
        .bind(now)
        .fetch_one(conn)
        .await?)
}

impl Store {
    /// Replaces all cues of a video in one transaction.
    pub async fn replace_cues(&self, video_id: i64, cues: &[CueRecord]) -> Result<()> {
        self.write_cues(video_id, cues, true).await
    }

    /// Adds cues to a video's (on-screen text found while its frames are
    /// decoded, after the subtitles and speech were stored), in one
    /// transaction.
    pub async fn append_cues(&self, video_id: i64, cues: &[CueRecord]) -> Result<()> {
        if cues.is_empty() {
            return Ok(());
        }
        self.write_cues(video_id, cues, false).await
    }

    async fn write_cues(&self, video_id: i64, cues: &[CueRecord], replace: bool) -> Result<()> {
        let mut tx = self.write_tx().await?;
        if replace {
            sqlx::query("DELETE FROM cues WHERE video_id = $1")
                .bind(video_id)
                .execute(&mut *tx)
                .await?;
        }
        for c in cues {
            sqlx::query(
                "INSERT INTO cues (video_id, start_ms, end_ms, text, source, language) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(video_id)
            .bind(c.start_ms)
            .bind(c.end_ms)
            .bind(&c.text)
            .bind(&c.source)
            .bind(&c.language)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A video's cues in time order.
    pub async fn cues(&self, video_id: i64) -> Result<Vec<CueRecord>> {
        let rows = sqlx::query(
            "SELECT start_ms, end_ms, text, source, language FROM cues WHERE video_id = $1 ORDER BY start_ms, id",
        )
        .bind(video_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CueRecord {
                    start_ms: r.try_get("start_ms")?,
                    end_ms: r.try_get("end_ms")?,
                    text: r.try_get("text")?,
                    source: r.try_get("source")?,
                    language: r.try_get("language")?,
                })
            })
            .collect()
    }

    /// The distinct cue sources (`subtitle`, `speech`, `screen`, …) whose cues
    /// overlap each span `(video_id, start_ms, end_ms)`, sorted, one list per
    /// span in the order given. A cue overlaps a span when it starts before
    /// the span ends and ends after it starts (touching ends do not count).
    ///
    /// One query per call (up to [`CUE_SOURCE_SPANS_PER_QUERY`] spans; more
    /// are split into several queries).
    pub async fn cue_sources(&self, spans: &[(i64, i64, i64)]) -> Result<Vec<Vec<String>>> {
        let mut out: Vec<Vec<String>> = vec![Vec::new(); spans.len()];
        for (chunk_no, chunk) in spans.chunks(CUE_SOURCE_SPANS_PER_QUERY).enumerate() {
            let base = chunk_no * CUE_SOURCE_SPANS_PER_QUERY;
            // spans(i, video_id, start_ms, end_ms) as a VALUES list; the casts
            // give both backends the column types.
            let values = (0..chunk.len())
                .map(|i| {
                    let p = i * 4;
                    format!(
                        "(CAST(${} AS BIGINT), CAST(${} AS BIGINT), CAST(${} AS BIGINT), CAST(${} AS BIGINT))",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "WITH spans (i, video_id, start_ms, end_ms) AS (VALUES {values}) \
                 SELECT DISTINCT spans.i AS i, cues.source AS source FROM spans JOIN cues \
                 ON cues.video_id = spans.video_id AND cues.start_ms < spans.end_ms AND cues.end_ms > spans.start_ms \
                 ORDER BY i, source"
            );
            let mut q = sqlx::query(&sql);
            for (i, (video_id, start_ms, end_ms)) in chunk.iter().enumerate() {
                q = q.bind(i as i64).bind(*video_id).bind(*start_ms).bind(*end_ms);
            }
            for r in q.fetch_all(&self.pool).await? {
                let i: i64 = r.try_get("i")?;
                let source: String = r.try_get("source")?;
                if let Some(list) = out.get_mut(base + i as usize) {
                    list.push(source);
                }
            }
        }
        Ok(out)
    }

    /// Replaces a video's segments in one transaction and marks the video
    /// indexed with `versions` (its per-stage versions are written in the
    /// same transaction). Readers see the old set or the new set,
    /// never a mix. The in-process index is updated after the commit.
    pub async fn replace_segments(
        &self,
        video_id: i64,
        segments: &[NewSegment],
        versions: &IndexVersions,
    ) -> Result<Vec<i64>> {
        self.replace_index(video_id, segments, versions, None).await
    }

    /// [`Store::replace_segments`] and the video's whole-text document
    /// (`None`: the video has no text, any old document is removed), in the
    /// same transaction.
    pub async fn replace_segments_and_document(
        &self,
        video_id: i64,
        segments: &[NewSegment],
        versions: &IndexVersions,
        document: Option<&NewDocument>,
    ) -> Result<Vec<i64>> {
        self.replace_index(video_id, segments, versions, Some(document)).await
    }

    /// Segments, versions and (when `document` is `Some`) the document.
    async fn replace_index(
        &self,
        video_id: i64,
        segments: &[NewSegment],
        versions: &IndexVersions,
        document: Option<Option<&NewDocument>>,
    ) -> Result<Vec<i64>> {
        for s in segments {
            if s.fused.is_empty() {
                return Err(StoreError::Corrupt("a segment's fused embedding is empty".into()));
            }
        }
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM segments WHERE video_id = $1")
            .bind(video_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM staged_segments WHERE video_id = $1")
            .bind(video_id)
            .execute(&mut *tx)
            .await?;
        let mut ids = Vec::with_capacity(segments.len());
        for s in segments {
            ids.push(insert_segment(&mut tx, "segments", video_id, s, now).await?);
        }
        sqlx::query(
            "UPDATE videos SET status = 'done', error = NULL, text_model = $2, vision_model = $3, fusion_model = $4, \
             needs_vision = $5, stage_versions = $6, indexed_ms = $7, updated_ms = $7 WHERE id = $1",
        )
        .bind(video_id)
        .bind(versions.get("text"))
        .bind(versions.get("vision"))
        .bind(versions.get("fusion"))
        .bind(versions.get("vision").is_none() as i64)
        .bind(serde_json::to_string(&versions.stages).unwrap_or_else(|_| "{}".into()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(doc) = document {
            crate::documents::write_document(&mut tx, video_id, doc).await?;
        }
        let generation = crate::live::record_change(&mut tx, self.backend, video_id).await?;
        kino_fault::point(|| "segments-tx".into());
        tx.commit().await?;

        let entries = segments
            .iter()
            .zip(&ids)
            .map(|(s, id)| IndexedSegment {
                segment_id: *id,
                video_id,
                start_ms: s.start_ms,
                end_ms: s.end_ms,
                fused: s.fused.clone(),
                text: s.text_emb.clone(),
                visual: s.visual_emb.clone(),
            })
            .collect();
        let document = document.map(|d| d.map(|d| crate::documents::indexed(video_id, d)));
        self.apply_at(video_id, generation, || {
            self.install_video(video_id, Some(entries), document)
        });
        Ok(ids)
    }

    /// Checkpoints part of a video's new index: appends finished segments to
    /// the video's staging area (invisible to search). The next
    /// [`Store::replace_segments`] of the video clears it.
    pub async fn stage_segments(&self, video_id: i64, segments: &[NewSegment]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        for s in segments {
            insert_segment(&mut tx, "staged_segments", video_id, s, now).await?;
        }
        kino_fault::point(|| "stage-tx".into());
        tx.commit().await?;
        Ok(())
    }

    /// The staged (checkpointed) segments of a video, in time order.
    pub async fn staged_segments(&self, video_id: i64) -> Result<Vec<NewSegment>> {
        let sql = format!("SELECT {SEG_COLS} FROM staged_segments WHERE video_id = $1 ORDER BY start_ms, id");
        let rows = sqlx::query(&sql).bind(video_id).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let s = segment_from_row(r)?;
                Ok(NewSegment {
                    start_ms: s.start_ms,
                    end_ms: s.end_ms,
                    text: s.text,
                    tags: s.tags,
                    fused: s.fused,
                    text_emb: s.text_emb,
                    visual_emb: s.visual_emb,
                    model_version: s.model_version,
                    thumbnail: s.thumbnail,
                })
            })
            .collect()
    }

    /// Drops a video's staged segments (a fresh start without checkpoint).
    pub async fn clear_staged(&self, video_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM staged_segments WHERE video_id = $1")
            .bind(video_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A video's segments in time order.
    pub async fn segments(&self, video_id: i64) -> Result<Vec<Segment>> {
        let sql = format!("SELECT {SEG_COLS} FROM segments WHERE video_id = $1 ORDER BY start_ms, id");
        let rows = sqlx::query(&sql).bind(video_id).fetch_all(&self.pool).await?;
        rows.iter().map(segment_from_row).collect()
    }

    /// The words of segments by id (text, tags, thumbnail; no vectors: a
    /// search takes those from the in-process index). Unknown ids are skipped.
    pub async fn segment_words_by_id(&self, ids: &[i64]) -> Result<Vec<SegmentWords>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT id, text, tags, thumbnail FROM segments WHERE id IN ({})",
                crate::placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                let tags: String = r.try_get("tags")?;
                out.push(SegmentWords {
                    id: r.try_get("id")?,
                    text: r.try_get("text")?,
                    tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt(format!("segment tags: {e}")))?,
                    thumbnail: r.try_get("thumbnail")?,
                });
            }
        }
        Ok(out)
    }

    /// Segments by id (any order; unknown ids are skipped), in one query per 500 ids.
    pub async fn segments_by_id(&self, ids: &[i64]) -> Result<Vec<Segment>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT {SEG_COLS} FROM segments WHERE id IN ({})",
                crate::placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(segment_from_row(&r)?);
            }
        }
        Ok(out)
    }

    /// Number of stored segments of one video.
    pub async fn segment_count_of(&self, video_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM segments WHERE video_id = $1")
            .bind(video_id)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Total number of stored segments.
    pub async fn segment_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM segments")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Loads (or reloads) the in-process vector index from the store: every
    /// segment of every video that is not missing. Later writes through this
    /// store keep it current, and [`Store::sync_changes`] brings in other
    /// processes' writes.
    pub async fn load_index(&self) -> Result<()> {
        let _guard = self.live_lock().await;
        self.load_index_unlocked().await
    }

    pub(crate) async fn load_index_unlocked(&self) -> Result<()> {
        if self.open_saved_index().await? {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let generation = self.current_generation().await?;
        let index = match self.empty_index() {
            Ok(index) => self.read_index(index).await,
            Err(e) => Err(e),
        };
        let index = match index {
            Ok(index) => index,
            Err(e @ StoreError::Io { .. }) => {
                // The index folder cannot be written (a full disk, say):
                // search still works from the heap.
                tracing::warn!(error = %e, "index folder unusable; keeping the index in memory");
                let mut heap = VectorIndex::default();
                heap.epoch = crate::index::next_epoch();
                self.read_index(heap).await?
            }
            Err(e) => return Err(e),
        };
        let segments = index.len();
        if let Ok(mut guard) = self.index.write() {
            *guard = Some(index);
        }
        self.loaded_at(generation);
        tracing::debug!(
            segments,
            secs = started.elapsed().as_secs_f32(),
            "index read from the database"
        );
        self.prepare_shortlists();
        Ok(())
    }

    /// Reads every visible segment into `index`, streamed video by video:
    /// a million segments' vectors never sit in memory at once.
    async fn read_index(&self, mut index: VectorIndex) -> Result<VectorIndex> {
        let sql = format!(
            "SELECT {INDEX_COLS} FROM segments s JOIN videos v ON v.id = s.video_id \
             WHERE v.status <> 'missing' ORDER BY s.video_id, s.id"
        );
        let mut rows = sqlx::query(&sql).fetch(&self.pool);
        let mut batch: Vec<IndexedSegment> = Vec::new();
        while let Some(r) = rows.try_next().await? {
            let s = indexed_from_row(&r)?;
            if batch.last().is_some_and(|b| b.video_id != s.video_id) {
                let video = batch[0].video_id;
                index.replace_video(video, std::mem::take(&mut batch))?;
            }
            batch.push(s);
        }
        if let Some(video) = batch.first().map(|b| b.video_id) {
            index.replace_video(video, batch)?;
        }
        Ok(index)
    }

    /// One video's segments as search sees them: none when it is missing or gone.
    pub(crate) async fn visible_segments(&self, video_id: i64) -> Result<Vec<IndexedSegment>> {
        let rows = sqlx::query(&format!(
            "SELECT {INDEX_COLS} FROM segments s JOIN videos v ON v.id = s.video_id \
             WHERE v.id = $1 AND v.status <> 'missing' ORDER BY s.id"
        ))
        .bind(video_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(indexed_from_row).collect()
    }

    /// Runs `f` on the in-process index, loading it first if needed.
    pub async fn with_index<T>(&self, f: impl FnOnce(&VectorIndex) -> T) -> Result<T> {
        let loaded = self.index.read().map(|g| g.is_some()).unwrap_or(false);
        if !loaded {
            let _guard = self.live_lock().await;
            if !self.index.read().map(|g| g.is_some()).unwrap_or(false) {
                self.load_index_unlocked().await?;
            }
        }
        let guard = self
            .index
            .read()
            .map_err(|_| StoreError::Corrupt("vector index lock poisoned".into()))?;
        Ok(f(guard.as_ref().expect("index loaded above")))
    }

    /// After a committed change of `video_id`'s visibility at `generation`:
    /// reads what search should see of it now and puts that into the loaded
    /// indexes (removes it when it is missing or gone). Returns whether it
    /// was applied (not when a state at least as new is held already).
    pub(crate) async fn refresh_video(&self, video_id: i64, generation: i64) -> Result<bool> {
        let segments = if self.index.read().map(|g| g.is_some()).unwrap_or(false) {
            Some(self.visible_segments(video_id).await?)
        } else {
            None
        };
        let document = if self.documents.read().map(|g| g.is_some()).unwrap_or(false) {
            Some(self.indexed_documents(Some(video_id)).await?.pop())
        } else {
            None
        };
        Ok(self.apply_at(video_id, generation, || {
            self.install_video(video_id, segments, document)
        }))
    }
}

impl From<Segment> for IndexedSegment {
    fn from(s: Segment) -> Self {
        IndexedSegment {
            segment_id: s.id,
            video_id: s.video_id,
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            fused: s.fused,
            text: s.text_emb,
            visual: s.visual_emb,
        }
    }
}
