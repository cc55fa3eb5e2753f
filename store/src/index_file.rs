//! The in-process index kept on disk, so a restart opens it in seconds
//! instead of reading every vector from the database.
//!
//! One folder per database under the configured directory, owned by one
//! process at a time (an exclusive lock on `lock`; a second process on the
//! same folder keeps its index in the heap):
//!
//! - `rows-*/`: the vectors, one append-only file per field and width
//!   ([`crate::rows`]), memory-mapped: searches read them from the page
//!   cache, not the heap. A full reload starts a new `rows-*` folder.
//! - `snapshot/`: `meta.json` (format, the store generation it reflects,
//!   the rows folder and how many rows of each file it uses), `slots.bin`
//!   (each segment's id, video, times and rows) and `shortlists/` (the
//!   approximate indexes). Replaced whole by renaming, so a crash leaves
//!   the old snapshot or the new one. Rows appended after it are cut off
//!   when it is opened.
//!
//! A snapshot older than the database is caught up from the change log
//! (only the videos changed since are read); one the log no longer reaches
//! back to is not used.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::index::{RowStore, Slot, VectorIndex, FIELD_NAMES};
use crate::rows::Rows;
use crate::shortlist::{Mix, Shortlists};
use crate::{now_ms, AnnOptions, Result, StoreError};

const FORMAT: u32 = 1;
/// Bytes per slot in `slots.bin`.
const SLOT_BYTES: usize = 8 * 4 + 3 * (2 + 4);

#[derive(Debug, Serialize, Deserialize)]
struct StoreMeta {
    field: usize,
    dim: usize,
    rows: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    generation: i64,
    segments: usize,
    /// The rows folder's name.
    rows_dir: String,
    stores: Vec<StoreMeta>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A database's index folder, locked by this process.
#[derive(Debug)]
pub(crate) struct IndexFolder {
    root: PathBuf,
    _lock: File,
}

impl IndexFolder {
    /// Opens (creating) `root` and takes its lock; `None` when another
    /// process holds it.
    pub(crate) fn open(root: &Path) -> Result<Option<IndexFolder>> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        let path = root.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(IndexFolder {
                root: root.to_path_buf(),
                _lock: lock,
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }

    /// A new, empty rows folder.
    pub(crate) fn new_rows_dir(&self) -> PathBuf {
        self.root
            .join(format!("rows-{}-{}", now_ms(), crate::index::next_epoch()))
    }

    fn snapshot(&self) -> PathBuf {
        self.root.join("snapshot")
    }

    /// Writes `index` (and its shortlists, when ready) as the snapshot of
    /// `generation`, then removes rows folders nothing uses any more.
    pub(crate) fn save(&self, index: &VectorIndex, lists: Option<&Shortlists>, generation: i64) -> Result<()> {
        let Some(rows_dir) = index.rows_dir.as_ref() else {
            return Err(StoreError::Ann("an index in the heap has no snapshot".into()));
        };
        for s in &index.stores {
            s.rows.sync()?;
        }
        let snapshot = self.snapshot();
        let tmp = snapshot.with_extension("new");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let mut bytes = Vec::with_capacity(index.len() * SLOT_BYTES);
        let mut segments = 0;
        for s in index.slots() {
            for v in [s.segment_id, s.video_id, s.start_ms, s.end_ms] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            for (store, row) in s.rows {
                bytes.extend_from_slice(&store.to_le_bytes());
                bytes.extend_from_slice(&row.to_le_bytes());
            }
            segments += 1;
        }
        let write = |name: &str, data: &[u8]| -> Result<()> {
            let path = tmp.join(name);
            let mut f = File::create(&path).map_err(io(&path))?;
            f.write_all(data).map_err(io(&path))?;
            f.sync_all().map_err(io(&path))
        };
        write("slots.bin", &bytes)?;
        if let Some(lists) = lists {
            lists.save(&tmp.join("shortlists"), generation)?;
        }
        let meta = Meta {
            format: FORMAT,
            generation,
            segments,
            rows_dir: rows_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            stores: index
                .stores
                .iter()
                .map(|s| StoreMeta {
                    field: s.field,
                    dim: s.rows.dim(),
                    rows: s.rows.len(),
                })
                .collect(),
        };
        write("meta.json", &serde_json::to_vec_pretty(&meta).expect("plain data"))?;
        let old = snapshot.with_extension("old");
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        if snapshot.exists() {
            std::fs::rename(&snapshot, &old).map_err(io(&snapshot))?;
        }
        std::fs::rename(&tmp, &snapshot).map_err(io(&snapshot))?;
        let _ = std::fs::remove_dir_all(&old);
        // Rows folders of earlier loads: unused now (a mapping still open
        // keeps its file's data until it is dropped).
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("rows-") && p != *rows_dir {
                    let _ = std::fs::remove_dir_all(&p);
                }
            }
        }
        Ok(())
    }

    /// Opens the snapshot: the index (vectors mapped from its rows
    /// folder), the generation it reflects and its shortlists (if saved
    /// and readable). `Ok(None)` when there is none.
    pub(crate) fn load(&self, options: AnnOptions, mix: Mix) -> Result<Option<(VectorIndex, i64, Option<Shortlists>)>> {
        let snapshot = self.snapshot();
        let meta_path = snapshot.join("meta.json");
        if !meta_path.exists() {
            return Ok(None);
        }
        let bad = |why: String| StoreError::Corrupt(format!("{}: {why}", snapshot.display()));
        let meta: Meta = serde_json::from_slice(&std::fs::read(&meta_path).map_err(io(&meta_path))?)
            .map_err(|e| bad(format!("meta.json: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!("format {} (this kino reads {FORMAT})", meta.format)));
        }
        if meta.rows_dir.is_empty() || meta.rows_dir.contains('/') || meta.rows_dir.contains("..") {
            return Err(bad(format!("rows folder {:?}", meta.rows_dir)));
        }
        let rows_dir = self.root.join(&meta.rows_dir);
        let mut index = VectorIndex::in_folder(rows_dir.clone())?;
        for s in &meta.stores {
            if s.field >= FIELD_NAMES.len() || s.dim == 0 {
                return Err(bad(format!("row store {s:?}")));
            }
            let path = rows_dir.join(format!("{}-{}.f32", FIELD_NAMES[s.field], s.dim));
            index.stores.push(RowStore {
                field: s.field,
                rows: Rows::file(&path, s.dim, s.rows)?,
            });
        }
        let slots_path = snapshot.join("slots.bin");
        let bytes = std::fs::read(&slots_path).map_err(io(&slots_path))?;
        if bytes.len() != meta.segments * SLOT_BYTES {
            return Err(bad(format!(
                "slots.bin holds {} bytes for {} segments",
                bytes.len(),
                meta.segments
            )));
        }
        let i64_at = |b: &[u8], at: usize| i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let mut slots = Vec::with_capacity(meta.segments);
        for b in bytes.chunks_exact(SLOT_BYTES) {
            let mut rows = [(0u16, 0u32); 3];
            for (f, r) in rows.iter_mut().enumerate() {
                let at = 32 + f * 6;
                let store = u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"));
                let row = u32::from_le_bytes(b[at + 2..at + 6].try_into().expect("4 bytes"));
                let fits = meta
                    .stores
                    .get(store as usize)
                    .is_some_and(|s| s.field == f && (row as usize) < s.rows);
                if row != crate::rows::NONE && !fits {
                    return Err(bad(format!(
                        "slots.bin names row {row} of store {store}, which is not there"
                    )));
                }
                *r = (store, row);
            }
            slots.push(Slot {
                segment_id: i64_at(b, 0),
                video_id: i64_at(b, 8),
                start_ms: i64_at(b, 16),
                end_ms: i64_at(b, 24),
                rows,
            });
        }
        index.restore(slots);
        let lists = match Shortlists::load(&snapshot.join("shortlists"), options, mix) {
            Ok(Some((lists, _))) if lists.len() == index.len() => Some(lists),
            Ok(Some(_)) => {
                tracing::warn!("saved approximate index does not match the saved segments; it will be rebuilt");
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "saved approximate index unusable; it will be rebuilt");
                None
            }
        };
        Ok(Some((index, meta.generation, lists)))
    }
}
