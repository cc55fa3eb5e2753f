//! Approximate shortlists for large libraries: one HNSW index
//! ([`AnnIndex`]) over each segment's *mixed* vector, keyed by segment id.
//!
//! Search ranks a segment by the weighted mean of its similarities to the
//! query, one per kind of vector it has (fused, text-only, visual-only).
//! For unit vectors that mean is one dot product: the query against the
//! weighted mean of the segment's unit vectors (the mix, [`Mix`]). The
//! mean is shorter than 1 where the sides disagree, so it is indexed with
//! one more component, `sqrt(1 - |mean|²)`: every indexed vector is then of
//! unit length, and the query (given a 0 there) has a cosine with it equal
//! to search's score. So the index's nearest segments are the best by
//! search's own score, up to the graph's and int8's approximation. A
//! segment strong on one side only (a
//! silent scene, a slide read aloud) is found exactly when that side makes
//! its score high; the shortlist is then scored exactly (see
//! [`crate::VectorIndex::search_shortlisted`]). One graph instead of one
//! per kind: a third of the memory and of the walking.
//!
//! The index follows the exact index video by video and is saved to a
//! folder tagged with the store generation it reflects (and the mix it was
//! made with), so a restart loads it and catches up from the change log
//! instead of rebuilding.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ann::{AnnIndex, AnnOptions};
use crate::index::{dot, SegmentView};
use crate::{Result, StoreError};

/// The weights search gives each kind of similarity; the shortlists mix
/// each segment's vectors with them. They should be the search's own
/// (kino's are `kino_fusion::score::Weights::default()`, the default here):
/// other weights still give right answers, with a worse shortlist.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mix {
    /// Weight of the similarity to the fused vector.
    pub fused: f32,
    /// Weight of the similarity to the text-only vector.
    pub text: f32,
    /// Weight of the similarity to the visual-only vector.
    pub visual: f32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            fused: 0.5,
            text: 0.3,
            visual: 0.2,
        }
    }
}

impl Mix {
    /// The weighted mean of `e`'s unit vectors of `dim` dimensions (of its
    /// first vector's when `dim` is `None`), weighed as search weighs their
    /// similarities: a vector of zeros counts with a similarity of 0, a
    /// vector of another length not at all. `None` when nothing is left, or
    /// the mean is zero.
    pub(crate) fn of(&self, e: &SegmentView<'_>, dim: Option<usize>) -> Option<Vec<f32>> {
        let sides = [
            (Some(e.fused).filter(|f| !f.is_empty()), self.fused),
            (e.text, self.text),
            (e.visual, self.visual),
        ];
        let dim = dim.or_else(|| sides.iter().find_map(|(v, _)| v.map(<[f32]>::len)))?;
        let mut mean = vec![0f32; dim];
        let mut total = 0f32;
        for (v, w) in sides {
            let Some(v) = v.filter(|v| v.len() == dim) else {
                continue;
            };
            total += w;
            let norm = dot(v, v).sqrt();
            if norm > 0.0 && norm.is_finite() {
                for (m, x) in mean.iter_mut().zip(v) {
                    *m += w * x / norm;
                }
            }
        }
        (total > 0.0 && mean.iter().any(|x| *x != 0.0)).then(|| {
            mean.iter_mut().for_each(|m| *m /= total);
            mean
        })
    }
}

/// HNSW links per node (`M`) of the shortlists' graph. usearch keeps a
/// node's links in 64-byte blocks: 2·M base links of 4 bytes plus a 14-byte
/// head is 238 bytes at M 28, kept in 256. At a million segments M 14 found
/// 0.936 of the exact top 10 and no longer shortlist found more; M 28 finds
/// 0.985 (`docs/PERFORMANCE.md`, "the mixed index").
pub const SHORTLIST_CONNECTIVITY: usize = 28;

/// When and how a process keeps approximate shortlists.
#[derive(Debug, Clone)]
pub struct ShortlistConfig {
    /// Below this many segments search scans exactly (it is exact and fast
    /// there: about 5 ms for 50,000 segments on one core).
    pub min_segments: usize,
    /// The HNSW settings (M [`SHORTLIST_CONNECTIVITY`] by default).
    pub options: AnnOptions,
    /// How each segment's vectors are mixed into the one it is indexed by.
    pub mix: Mix,
    /// Threads that build the indexes.
    pub threads: usize,
    /// Where the index is kept on disk: its vectors (memory-mapped), a
    /// snapshot of its segments and these shortlists, in a subfolder per
    /// database (none: all in the heap, nothing saved).
    pub dir: Option<PathBuf>,
    /// Whether the shortlists' memory is moved onto transparent huge pages
    /// once they are built or loaded (see [`crate::advise_huge_pages`]).
    pub huge_pages: bool,
}

impl Default for ShortlistConfig {
    fn default() -> Self {
        ShortlistConfig {
            min_segments: 50_000,
            options: AnnOptions {
                connectivity: SHORTLIST_CONNECTIVITY,
                // The walk keeps at least this many candidates; a search
                // asking for more walks as wide as it asks.
                expansion_search: 64,
                ..AnnOptions::default()
            },
            mix: Mix::default(),
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            dir: None,
            huge_pages: true,
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

/// `mean` (at most unit length) with one more component that makes it of
/// unit length: a query with 0 there then has a cosine with it equal to
/// its dot product with `mean`.
fn lifted(mut mean: Vec<f32>) -> Vec<f32> {
    let sq = dot(&mean, &mean);
    mean.push((1.0 - sq).max(0.0).sqrt());
    mean
}

/// Callers that may use one index at once (request threads searching while
/// the index follows a change); usearch keeps a scratch context for each.
const CONTEXTS: usize = 32;

/// Format version of the saved folder (1 held one index per kind).
const FORMAT: u32 = 2;

/// The index file in the saved folder.
const INDEX_FILE: &str = "mixed.usearch";

/// The saved folder's `meta.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    generation: i64,
    segments: usize,
    /// Dimensions of the indexed vectors (the mixed ones and one more;
    /// none: no index, nothing to mix).
    #[serde(default)]
    dim: Option<usize>,
    /// The mix the index was made with.
    #[serde(default)]
    mix: Option<Mix>,
}

/// The index plus which segments each video has in it.
pub(crate) struct Shortlists {
    options: AnnOptions,
    mix: Mix,
    index: Option<AnnIndex>,
    members: HashMap<i64, Vec<i64>>,
    segments: usize,
    /// `built` or `loaded`.
    pub(crate) source: &'static str,
}

impl Shortlists {
    pub(crate) fn new(options: AnnOptions, mix: Mix) -> Shortlists {
        Shortlists {
            options,
            mix,
            index: None,
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
    /// threads. An entry with no vector of the index's length (nothing to
    /// mix) is held but cannot be shortlisted.
    pub(crate) fn add(&mut self, entries: &[SegmentView<'_>], threads: usize) -> Result<()> {
        let mut dim = self.index.as_ref().map(|i| i.dim() - 1);
        let mut rows: Vec<(u64, Vec<f32>)> = Vec::with_capacity(entries.len());
        for e in entries {
            if let Some(v) = self.mix.of(e, dim) {
                dim = Some(v.len());
                rows.push((e.segment_id as u64, lifted(v)));
            }
        }
        if let Some(dim) = dim.map(|d| d + 1).filter(|_| !rows.is_empty()) {
            let index = match &mut self.index {
                Some(index) => index,
                slot @ None => slot.insert(AnnIndex::new(dim, &self.options, rows.len(), CONTEXTS)?),
            };
            let rows: Vec<(u64, &[f32])> = rows.iter().map(|(k, v)| (*k, v.as_slice())).collect();
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
        if let Some(index) = &self.index {
            for id in &ids {
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

    /// The `k` segments whose mixed vectors are nearest to `query` (unit
    /// length), nearest first; none for a query of another length.
    pub(crate) fn candidates(&self, query: &[f32], k: usize) -> Result<Vec<i64>> {
        match self.index.as_ref().filter(|i| i.dim() == query.len() + 1) {
            Some(index) => {
                let mut q = Vec::with_capacity(query.len() + 1);
                q.extend_from_slice(query);
                q.push(0.0);
                Ok(index.search(&q, k)?.into_iter().map(|(key, _)| key as i64).collect())
            }
            None => Ok(Vec::new()),
        }
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
        if let Some(index) = &self.index {
            index.save(&tmp.join(INDEX_FILE))?;
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
            dim: self.index.as_ref().map(AnnIndex::dim),
            mix: Some(self.mix),
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

    /// Loads a folder written by [`Shortlists::save`] with the same `mix`:
    /// the index and the generation it reflects. `Ok(None)` when there is
    /// none; an error names what is wrong with one that is there (made by
    /// another version, or with another mix, included).
    pub(crate) fn load(dir: &Path, options: AnnOptions, mix: Mix) -> Result<Option<(Shortlists, i64)>> {
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
        if meta.mix != Some(mix) {
            return Err(bad(format!("made with the mix {:?}, not {mix:?}", meta.mix)));
        }
        let mut lists = Shortlists::new(options, mix);
        lists.source = "loaded";
        if let Some(dim) = meta.dim {
            let index = AnnIndex::load(&dir.join(INDEX_FILE), &options, CONTEXTS)?;
            if index.dim() != dim || index.len() > meta.segments {
                return Err(bad(format!("{INDEX_FILE} does not match meta.json")));
            }
            lists.index = Some(index);
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
        Ok(Some((lists, meta.generation)))
    }
}

#[cfg(test)]
#[path = "shortlist_tests.rs"]
mod tests;
