//! Approximate shortlists for large libraries: one HNSW index
//! ([`AnnIndex`]) per kind of segment vector (fused, text-only,
//! visual-only), keyed by segment id.
//!
//! A search asks each for its nearest segments and scores the union exactly
//! (see [`crate::VectorIndex::search_shortlisted`]), so a segment strong on
//! one side only (a silent scene, a slide read aloud) is still found. The
//! indexes follow the exact index video by video and are saved to a folder
//! tagged with the store generation they reflect, so a restart loads them
//! and catches up from the change log instead of rebuilding.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ann::{AnnIndex, AnnOptions};
use crate::index::{EmbeddingField, SegmentView};
use crate::{Result, StoreError};

/// When and how a process keeps approximate shortlists.
#[derive(Debug, Clone)]
pub struct ShortlistConfig {
    /// Below this many segments search scans exactly (it is exact and fast
    /// there: about 5 ms for 50,000 segments on one core).
    pub min_segments: usize,
    /// The HNSW settings.
    pub options: AnnOptions,
    /// Threads that build the indexes.
    pub threads: usize,
    /// Where the index is kept on disk: its vectors (memory-mapped), a
    /// snapshot of its segments and these shortlists, in a subfolder per
    /// database (none: all in the heap, nothing saved).
    pub dir: Option<PathBuf>,
}

impl Default for ShortlistConfig {
    fn default() -> Self {
        ShortlistConfig {
            min_segments: 50_000,
            options: AnnOptions::default(),
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            dir: None,
        }
    }
}

/// Where a process's shortlists stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShortlistStatus {
    /// `off`, `building` or `ready`.
    pub state: &'static str,
    /// Whether searches use them now (ready, and the library is large enough).
    pub in_use: bool,
    /// Segments they hold.
    pub segments: usize,
    /// How the ready ones came about: `built`, or `loaded` from the saved folder.
    pub source: Option<&'static str>,
}

const FIELDS: [(EmbeddingField, &str); 3] = [
    (EmbeddingField::Fused, "fused"),
    (EmbeddingField::Text, "text"),
    (EmbeddingField::Visual, "visual"),
];

/// Callers that may use one index at once (request threads searching while
/// the index follows a change); usearch keeps a scratch context for each.
const CONTEXTS: usize = 32;

/// Format version of the saved folder.
const FORMAT: u32 = 1;

/// The saved folder's `meta.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    generation: i64,
    segments: usize,
    /// Dimensions per field, for the fields present.
    fields: HashMap<String, usize>,
}

/// The three indexes plus which segments each video has in them.
pub(crate) struct Shortlists {
    options: AnnOptions,
    fields: [Option<AnnIndex>; 3],
    members: HashMap<i64, Vec<i64>>,
    segments: usize,
    /// `built` or `loaded`.
    pub(crate) source: &'static str,
}

impl Shortlists {
    pub(crate) fn new(options: AnnOptions) -> Shortlists {
        Shortlists {
            options,
            fields: [None, None, None],
            members: HashMap::new(),
            segments: 0,
            source: "built",
        }
    }

    /// Segments held.
    pub(crate) fn len(&self) -> usize {
        self.segments
    }

    /// Adds `entries` (none of them held yet), inserting from `threads`
    /// threads. A vector whose length differs from its field's first one
    /// is left out (that field then cannot shortlist it; the others can).
    pub(crate) fn add(&mut self, entries: &[SegmentView<'_>], threads: usize) -> Result<()> {
        for (f, (field, _)) in FIELDS.iter().enumerate() {
            let rows: Vec<(u64, &[f32])> = entries
                .iter()
                .filter_map(|e| e.field(*field).map(|v| (e.segment_id as u64, v)))
                .filter(|(_, v)| v.iter().any(|x| *x != 0.0))
                .collect();
            let Some(dim) = self.fields[f]
                .as_ref()
                .map(AnnIndex::dim)
                .or(rows.first().map(|r| r.1.len()))
            else {
                continue;
            };
            let index = match &mut self.fields[f] {
                Some(index) => index,
                slot @ None => slot.insert(AnnIndex::new(dim, &self.options, rows.len(), CONTEXTS)?),
            };
            let rows: Vec<(u64, &[f32])> = rows.into_iter().filter(|r| r.1.len() == dim).collect();
            index.add_parallel(&rows, threads)?;
        }
        for e in entries {
            self.members.entry(e.video_id).or_default().push(e.segment_id);
        }
        self.segments += entries.len();
        Ok(())
    }

    /// Takes a video's segments out.
    pub(crate) fn remove_video(&mut self, video_id: i64) -> Result<()> {
        let Some(ids) = self.members.remove(&video_id) else {
            return Ok(());
        };
        for id in &ids {
            for index in self.fields.iter().flatten() {
                index.remove(*id as u64)?;
            }
        }
        self.segments -= ids.len();
        Ok(())
    }

    /// Puts a video's current entries in place of what was held for it.
    pub(crate) fn replace_video(&mut self, video_id: i64, entries: &[SegmentView<'_>]) -> Result<()> {
        self.remove_video(video_id)?;
        if entries.is_empty() {
            Ok(())
        } else {
            self.add(entries, 1)
        }
    }

    /// The union of the `per_field` nearest segments to `query` (unit
    /// length) by each kind of vector of its length.
    pub(crate) fn candidates(&self, query: &[f32], per_field: usize) -> Result<Vec<i64>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for index in self.fields.iter().flatten().filter(|i| i.dim() == query.len()) {
            for (key, _) in index.search(query, per_field)? {
                if seen.insert(key) {
                    out.push(key as i64);
                }
            }
        }
        Ok(out)
    }

    /// Saves into `dir` (replaced whole: the new folder is written beside
    /// it and renamed into place), tagged with `generation`.
    pub(crate) fn save(&self, dir: &Path, generation: i64) -> Result<()> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| StoreError::Io { path, source }
        };
        let tmp = dir.with_extension("new");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let mut fields = HashMap::new();
        for ((_, name), index) in FIELDS.iter().zip(&self.fields) {
            if let Some(index) = index {
                index.save(&tmp.join(format!("{name}.usearch")))?;
                fields.insert(name.to_string(), index.dim());
            }
        }
        let mut members = Vec::with_capacity(self.segments * 16);
        for (video, ids) in &self.members {
            for id in ids {
                members.extend_from_slice(&video.to_le_bytes());
                members.extend_from_slice(&id.to_le_bytes());
            }
        }
        let write = |name: &str, bytes: &[u8]| -> Result<()> {
            let path = tmp.join(name);
            let mut f = std::fs::File::create(&path).map_err(io(&path))?;
            f.write_all(bytes).map_err(io(&path))?;
            f.sync_all().map_err(io(&path))
        };
        write("members.bin", &members)?;
        let meta = Meta {
            format: FORMAT,
            generation,
            segments: self.segments,
            fields,
        };
        let meta = serde_json::to_vec_pretty(&meta)
            .map_err(|e| StoreError::Ann(format!("encoding the shortlists' meta.json: {e}")))?;
        write("meta.json", &meta)?;
        let old = dir.with_extension("old");
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(io(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(io(dir))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        Ok(())
    }

    /// Loads a folder written by [`Shortlists::save`]: the indexes and the
    /// generation they reflect. `Ok(None)` when there is none; an error
    /// names what is wrong with one that is there.
    pub(crate) fn load(dir: &Path, options: AnnOptions) -> Result<Option<(Shortlists, i64)>> {
        let meta_path = dir.join("meta.json");
        if !meta_path.exists() {
            return Ok(None);
        }
        let bad = |why: String| StoreError::Ann(format!("{}: {why}", dir.display()));
        let meta: Meta =
            serde_json::from_slice(&std::fs::read(&meta_path).map_err(|e| bad(format!("reading meta.json: {e}")))?)
                .map_err(|e| bad(format!("meta.json: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!("format {} (this kino reads {FORMAT})", meta.format)));
        }
        let mut lists = Shortlists::new(options);
        lists.source = "loaded";
        for (f, (_, name)) in FIELDS.iter().enumerate() {
            if let Some(dim) = meta.fields.get(*name) {
                let index = AnnIndex::load(&dir.join(format!("{name}.usearch")), &options, CONTEXTS)?;
                if index.dim() != *dim || index.len() > meta.segments {
                    return Err(bad(format!("{name}.usearch does not match meta.json")));
                }
                lists.fields[f] = Some(index);
            }
        }
        let mut bytes = Vec::new();
        std::fs::File::open(dir.join("members.bin"))
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| bad(format!("reading members.bin: {e}")))?;
        if bytes.len() != meta.segments * 16 {
            return Err(bad(format!(
                "members.bin holds {} bytes for {} segments",
                bytes.len(),
                meta.segments
            )));
        }
        let le = |b: &[u8]| {
            b.try_into()
                .map(i64::from_le_bytes)
                .map_err(|_| bad("members.bin: a short pair".into()))
        };
        for pair in bytes.chunks_exact(16) {
            let (video, id) = pair.split_at(8);
            lists.members.entry(le(video)?).or_default().push(le(id)?);
        }
        lists.segments = meta.segments;
        // Before searches start, not beside them: moving a million
        // segments' graphs (1.6 GB) takes about 3.5 s, and searches running
        // meanwhile stalled for seconds (measured in docs/PERFORMANCE.md).
        crate::hugepages::advise();
        Ok(Some((lists, meta.generation)))
    }
}

#[cfg(test)]
#[path = "shortlist_tests.rs"]
mod tests;
