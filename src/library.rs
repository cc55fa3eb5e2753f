//! The library: files on disk reconciled with the `videos` table.
//!
//! A file is identified by its content hash (blake3): a file at a new path
//! whose content matches a video whose old path is gone is a *move* (the
//! index is kept); one whose content matches a video still present is a
//! *duplicate* (recorded, not indexed again).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use kino_store::{NewVideo, Store, Video, VideoStatus};

use crate::error::usage;
use crate::staleness::{self, Ask, Stage, Versions};

/// What registering a file did.
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    /// A file never seen before: needs indexing.
    New(Video),
    /// Known file whose content changed: needs indexing again.
    Changed(Video),
    /// Known file, same content.
    Unchanged(Video),
    /// A known video moved here from `from`; its index is kept.
    Moved {
        /// The video.
        video: Video,
        /// Its former path.
        from: String,
    },
    /// Same content as another video that is still present.
    Duplicate {
        /// The new row.
        video: Video,
        /// The original's id.
        of: i64,
    },
}

impl Registration {
    /// Whether the file should be (re)indexed, and from which stage: asks
    /// [`staleness::stale_stage`] with what registering learned (new or
    /// changed content). `retry_failed`: failed videos count as stale (an
    /// explicit `kino ingest`).
    pub fn stale_stage(&self, current: &Versions, retry_failed: bool) -> Option<Stage> {
        let ask = Ask {
            content_changed: matches!(self, Registration::New(_) | Registration::Changed(_)),
            retry_failed,
        };
        staleness::stale_stage(self.video(), current, ask)
    }

    /// The video row.
    pub fn video(&self) -> &Video {
        match self {
            Registration::New(v) | Registration::Changed(v) | Registration::Unchanged(v) => v,
            Registration::Moved { video, .. } | Registration::Duplicate { video, .. } => video,
        }
    }
}

/// Absolute, normalised path (symlinks resolved) as stored in the database.
pub fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// Lists the video files under `paths` (files are taken as given, folders
/// searched recursively for video files), sorted, without duplicates.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| usage(format!("{}: {e}", p.display())))?;
        if meta.is_dir() {
            walk(p, &mut out).with_context(|| format!("listing {}", p.display()))?;
        } else {
            out.push(canonical(p)?);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let ft = match e.file_type() {
            Ok(ft) => ft,
            Err(_) => continue,
        };
        if ft.is_dir() {
            if !e.file_name().to_string_lossy().starts_with('.') {
                walk(&path, out)?;
            }
        } else if kino_ingest::watch::is_candidate(&path) {
            if let Ok(c) = std::fs::canonicalize(&path) {
                out.push(c);
            }
        }
    }
    Ok(())
}

/// Records `path` in the store (see the module docs for moves and duplicates).
pub async fn register(store: &Store, path: &Path) -> Result<Registration> {
    let path = canonical(path)?;
    let meta = std::fs::metadata(&path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    // Hashing a named pipe or a device would block or never end.
    if !meta.is_file() {
        return Err(usage(format!(
            "{}: not a regular file (a pipe, socket or device is never read)",
            path.display()
        )));
    }
    let mtime_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let path_str = path.display().to_string();
    let known = store.video_by_path(&path_str).await?;
    // Cheap check first: same size and mtime as recorded means same content.
    if let Some(v) = &known {
        if v.size_bytes == meta.len() as i64 && v.mtime_ms == mtime_ms && v.content_hash.is_some() {
            if v.status == VideoStatus::Missing {
                let v = store
                    .upsert_video(&new_video(&path_str, v.content_hash.clone(), &meta, mtime_ms))
                    .await?;
                let restored = if v.indexed_ms.is_some() {
                    VideoStatus::Done
                } else {
                    VideoStatus::Queued
                };
                store.set_video_status(v.id, restored, None).await?;
                return Ok(Registration::Unchanged(store.video(v.id).await?.unwrap_or(v)));
            }
            return Ok(Registration::Unchanged(v.clone()));
        }
    }
    let hash = {
        let p = path.clone();
        tokio::task::spawn_blocking(move || kino_ingest::hash::content_hash(&p)).await??
    };
    if let Some(v) = known {
        let same = v.content_hash.as_deref() == Some(hash.as_str());
        let v = store
            .upsert_video(&new_video(&path_str, Some(hash), &meta, mtime_ms))
            .await?;
        if same {
            return Ok(Registration::Unchanged(v));
        }
        // New content: the whole index must be made again (its old segments
        // stay searchable until then); a queued video is never refreshed
        // stage by stage from what was stored for the old content.
        store.set_video_status(v.id, VideoStatus::Queued, None).await?;
        return Ok(Registration::Changed(store.video(v.id).await?.unwrap_or(v)));
    }
    let same_content = store.videos_by_hash(&hash).await?;
    if let Some(old) = same_content.iter().find(|v| !Path::new(&v.path).exists()) {
        store.rename_video(old.id, &path_str, mtime_ms).await?;
        let video = store.video(old.id).await?.context("moved video vanished")?;
        return Ok(Registration::Moved {
            video,
            from: old.path.clone(),
        });
    }
    let video = store
        .upsert_video(&new_video(&path_str, Some(hash), &meta, mtime_ms))
        .await?;
    if let Some(orig) = same_content
        .iter()
        .find(|v| v.status != VideoStatus::Duplicate && v.id != video.id)
    {
        store.set_video_duplicate(video.id, orig.id).await?;
        let video = store.video(video.id).await?.unwrap_or(video);
        return Ok(Registration::Duplicate { video, of: orig.id });
    }
    Ok(Registration::New(video))
}

fn new_video(path: &str, hash: Option<String>, meta: &std::fs::Metadata, mtime_ms: i64) -> NewVideo {
    NewVideo {
        path: path.to_string(),
        content_hash: hash,
        size_bytes: meta.len() as i64,
        mtime_ms,
    }
}
