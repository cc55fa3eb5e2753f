//! Videos: the library's files and their indexing status.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, MediaFacts, NewVideo, Result, Store, StoreError, Video, VideoStatus};

const VIDEO_COLS: &str = "id, path, content_hash, size_bytes, mtime_ms, duration_ms, width, height, fps, \
    video_codec, audio_codec, status, error, duplicate_of, text_model, vision_model, fusion_model, \
    needs_vision, stage_versions, language, warnings, missing_since_ms, indexed_ms, created_ms, updated_ms";

pub(crate) fn video_from_row(r: &AnyRow) -> Result<Video> {
    let status: String = r.try_get("status")?;
    Ok(Video {
        id: r.try_get("id")?,
        path: r.try_get("path")?,
        content_hash: r.try_get("content_hash")?,
        size_bytes: r.try_get("size_bytes")?,
        mtime_ms: r.try_get("mtime_ms")?,
        facts: MediaFacts {
            duration_ms: r.try_get("duration_ms")?,
            width: r.try_get("width")?,
            height: r.try_get("height")?,
            fps: r.try_get("fps")?,
            video_codec: r.try_get("video_codec")?,
            audio_codec: r.try_get("audio_codec")?,
        },
        status: VideoStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown video status '{status}'")))?,
        error: r.try_get("error")?,
        duplicate_of: r.try_get("duplicate_of")?,
        text_model: r.try_get("text_model")?,
        vision_model: r.try_get("vision_model")?,
        fusion_model: r.try_get("fusion_model")?,
        needs_vision: r.try_get::<i64, _>("needs_vision")? != 0,
        // Unreadable JSON counts as nothing recorded (the legacy columns decide).
        stage_versions: serde_json::from_str(&r.try_get::<String, _>("stage_versions")?).unwrap_or_default(),
        language: r.try_get("language")?,
        warnings: serde_json::from_str(&r.try_get::<String, _>("warnings")?).unwrap_or_default(),
        missing_since_ms: r.try_get("missing_since_ms")?,
        indexed_ms: r.try_get("indexed_ms")?,
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
    })
}

impl Store {
    /// Records a file by path: inserts it, or updates hash, size and mtime
    /// of the existing row. A file that was missing is present again.
    /// Returns the row.
    pub async fn upsert_video(&self, v: &NewVideo) -> Result<Video> {
        let now = now_ms();
        let sql = format!(
            "INSERT INTO videos (path, content_hash, size_bytes, mtime_ms, status, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, 'queued', $5, $5) \
             ON CONFLICT (path) DO UPDATE SET content_hash = excluded.content_hash, size_bytes = excluded.size_bytes, \
             mtime_ms = excluded.mtime_ms, missing_since_ms = NULL, updated_ms = excluded.updated_ms \
             RETURNING {VIDEO_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(&v.path)
            .bind(&v.content_hash)
            .bind(v.size_bytes)
            .bind(v.mtime_ms)
            .bind(now)
            // Stepped to the end: on SQLite an autocommit write's own error
            // (a full disk, say) comes at its last step, which `fetch_one`
            // skips, returning the row of a write that did not happen.
            .fetch_all(&self.pool)
            .await?;
        let row = row
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("video {} after writing it", v.path)))?;
        // The status is kept: what search sees of the video does not change.
        video_from_row(row)
    }

    /// One video by id.
    pub async fn video(&self, id: i64) -> Result<Option<Video>> {
        let sql = format!("SELECT {VIDEO_COLS} FROM videos WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(video_from_row).transpose()
    }

    /// The paths of videos by id, in one query per 500 ids (unknown ids
    /// are left out): what a search answer names its moments' videos by.
    pub async fn video_paths(&self, ids: &[i64]) -> Result<std::collections::HashMap<i64, String>> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT id, path FROM videos WHERE id IN ({})",
                crate::placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.insert(r.try_get("id")?, r.try_get("path")?);
            }
        }
        Ok(out)
    }

    /// One video by path.
    pub async fn video_by_path(&self, path: &str) -> Result<Option<Video>> {
        let sql = format!("SELECT {VIDEO_COLS} FROM videos WHERE path = $1");
        let row = sqlx::query(&sql).bind(path).fetch_optional(&self.pool).await?;
        row.as_ref().map(video_from_row).transpose()
    }

    /// Videos with the given content hash, oldest first.
    pub async fn videos_by_hash(&self, hash: &str) -> Result<Vec<Video>> {
        let sql = format!("SELECT {VIDEO_COLS} FROM videos WHERE content_hash = $1 ORDER BY id");
        let rows = sqlx::query(&sql).bind(hash).fetch_all(&self.pool).await?;
        rows.iter().map(video_from_row).collect()
    }

    /// All videos, by path.
    pub async fn videos(&self) -> Result<Vec<Video>> {
        let sql = format!("SELECT {VIDEO_COLS} FROM videos ORDER BY path");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(video_from_row).collect()
    }

    /// Stores probed media facts.
    pub async fn set_video_facts(&self, id: i64, f: &MediaFacts) -> Result<()> {
        sqlx::query(
            "UPDATE videos SET duration_ms = $2, width = $3, height = $4, fps = $5, video_codec = $6, \
             audio_codec = $7, updated_ms = $8 WHERE id = $1",
        )
        .bind(id)
        .bind(f.duration_ms)
        .bind(f.width)
        .bind(f.height)
        .bind(f.fps)
        .bind(&f.video_codec)
        .bind(&f.audio_codec)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the problems of a video's last indexing run that did not stop
    /// it (replacing the previous run's).
    pub async fn set_video_warnings(&self, id: i64, warnings: &[String]) -> Result<()> {
        let json = serde_json::to_string(warnings).unwrap_or_else(|_| "[]".into());
        sqlx::query("UPDATE videos SET warnings = $2, updated_ms = $3 WHERE id = $1")
            .bind(id)
            .bind(json)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets the language a video's speech is recognised in (`None`: detect).
    /// Returns false when there is no such video.
    pub async fn set_video_language(&self, id: i64, language: Option<&str>) -> Result<bool> {
        let r = sqlx::query("UPDATE videos SET language = $2, updated_ms = $3 WHERE id = $1")
            .bind(id)
            .bind(language)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Sets a video's status and error (the error is cleared when `None`).
    /// A video leaving or entering `missing` appears in or leaves search.
    pub async fn set_video_status(&self, id: i64, status: VideoStatus, error: Option<&str>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let old: Option<String> = sqlx::query_scalar("SELECT status FROM videos WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query("UPDATE videos SET status = $2, error = $3, updated_ms = $4 WHERE id = $1")
            .bind(id)
            .bind(status.as_str())
            .bind(error)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        let missing = VideoStatus::Missing.as_str();
        let changed = old.is_some_and(|o| (o == missing) != (status == VideoStatus::Missing));
        let generation = if changed {
            Some(crate::live::record_change(&mut tx, self.backend, id).await?)
        } else {
            None
        };
        tx.commit().await?;
        if let Some(g) = generation {
            self.refresh_video(id, g).await?;
        }
        Ok(())
    }

    /// Marks a video as a duplicate of another with the same content.
    pub async fn set_video_duplicate(&self, id: i64, of: i64) -> Result<()> {
        sqlx::query("UPDATE videos SET status = 'duplicate', duplicate_of = $2, updated_ms = $3 WHERE id = $1")
            .bind(id)
            .bind(of)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves a video to a new path (a rename): its index is kept.
    pub async fn rename_video(&self, id: i64, new_path: &str, mtime_ms: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE videos SET path = $2, mtime_ms = $3, missing_since_ms = NULL, \
             status = CASE WHEN status = 'missing' THEN (CASE WHEN indexed_ms IS NULL THEN 'queued' ELSE 'done' END) ELSE status END, \
             updated_ms = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(new_path)
        .bind(mtime_ms)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let generation = crate::live::record_change(&mut tx, self.backend, id).await?;
        tx.commit().await?;
        self.refresh_video(id, generation).await?;
        Ok(())
    }

    /// Marks a video missing: its segments stop appearing in search.
    pub async fn mark_video_missing(&self, id: i64) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE videos SET status = 'missing', missing_since_ms = COALESCE(missing_since_ms, $2), updated_ms = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let generation = crate::live::record_change(&mut tx, self.backend, id).await?;
        tx.commit().await?;
        self.apply_at(id, generation, || self.install_video(id, Some(Vec::new()), Some(None)));
        Ok(())
    }

    /// Deletes videos missing since before `older_than_ms` (with their
    /// segments, cues and jobs). Returns how many were purged.
    pub async fn purge_missing(&self, older_than_ms: i64) -> Result<u64> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM videos WHERE status = 'missing' AND missing_since_ms IS NOT NULL AND missing_since_ms <= $1",
        )
        .bind(older_than_ms)
        .fetch_all(&self.pool)
        .await?;
        for id in &ids {
            self.delete_video(*id).await?;
        }
        Ok(ids.len() as u64)
    }

    /// Deletes a video and everything hanging off it.
    pub async fn delete_video(&self, id: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for sql in [
            "UPDATE videos SET duplicate_of = NULL WHERE duplicate_of = $1",
            "DELETE FROM segments WHERE video_id = $1",
            "DELETE FROM staged_segments WHERE video_id = $1",
            "DELETE FROM cues WHERE video_id = $1",
            "DELETE FROM document_windows WHERE video_id = $1",
            "DELETE FROM documents WHERE video_id = $1",
            "DELETE FROM jobs WHERE video_id = $1",
            "DELETE FROM videos WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        let generation = crate::live::record_change(&mut tx, self.backend, id).await?;
        tx.commit().await?;
        self.apply_at(id, generation, || self.install_video(id, Some(Vec::new()), Some(None)));
        Ok(())
    }
}
