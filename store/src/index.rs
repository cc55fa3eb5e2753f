//! In-process vector search over segment embeddings.
//!
//! Vectors are L2-normalised on insert, so cosine similarity is a dot
//! product. Search scans every entry (exact) and keeps the top k in a small
//! heap; on a large library it scores only the shortlists of the
//! approximate indexes ([`VectorIndex::search_shortlisted`]).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use std::path::PathBuf;

use crate::rows::{Rows, NONE};
use crate::shortlist::Shortlists;
use crate::Result;

/// Which of a segment's embeddings to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingField {
    /// The fused text+visual vector.
    Fused,
    /// The text-only vector.
    Text,
    /// The visual-only vector.
    Visual,
}

/// One indexed segment.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedSegment {
    /// Segment row id.
    pub segment_id: i64,
    /// Its video.
    pub video_id: i64,
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Fused embedding.
    pub fused: Vec<f32>,
    /// Text-only embedding.
    pub text: Option<Vec<f32>>,
    /// Visual-only embedding.
    pub visual: Option<Vec<f32>>,
}

impl IndexedSegment {
    /// The embedding of `field`, if present.
    pub fn field(&self, field: EmbeddingField) -> Option<&[f32]> {
        match field {
            EmbeddingField::Fused => Some(&self.fused),
            EmbeddingField::Text => self.text.as_deref(),
            EmbeddingField::Visual => self.visual.as_deref(),
        }
    }
}

impl IndexedSegment {
    /// This segment seen as search sees it.
    pub fn view(&self) -> SegmentView<'_> {
        SegmentView {
            segment_id: self.segment_id,
            video_id: self.video_id,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            fused: &self.fused,
            text: self.text.as_deref(),
            visual: self.visual.as_deref(),
        }
    }
}

/// One indexed segment as a search scores it: its vectors (normalised)
/// borrowed from wherever the index keeps them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentView<'a> {
    /// Segment row id.
    pub segment_id: i64,
    /// Its video.
    pub video_id: i64,
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Fused embedding.
    pub fused: &'a [f32],
    /// Text-only embedding.
    pub text: Option<&'a [f32]>,
    /// Visual-only embedding.
    pub visual: Option<&'a [f32]>,
}

impl<'a> SegmentView<'a> {
    /// The embedding of `field`, if present.
    pub fn field(&self, field: EmbeddingField) -> Option<&'a [f32]> {
        match field {
            EmbeddingField::Fused => Some(self.fused),
            EmbeddingField::Text => self.text,
            EmbeddingField::Visual => self.visual,
        }
    }

    /// An owned copy.
    pub fn to_owned(&self) -> IndexedSegment {
        IndexedSegment {
            segment_id: self.segment_id,
            video_id: self.video_id,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            fused: self.fused.to_vec(),
            text: self.text.map(<[f32]>::to_vec),
            visual: self.visual.map(<[f32]>::to_vec),
        }
    }
}

/// Where one segment's vectors are: per field, (row store, row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) segment_id: i64,
    pub(crate) video_id: i64,
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    /// Per field (fused, text, visual): the row store and the row, or
    /// `rows::NONE` as the row when the segment has no such vector.
    pub(crate) rows: [(u16, u32); 3],
}

impl Slot {
    /// This slot with its vectors as `get` finds them by field (0 fused,
    /// 1 text, 2 visual).
    fn view_with<'a>(&self, get: impl Fn(usize) -> Option<&'a [f32]>) -> SegmentView<'a> {
        SegmentView {
            segment_id: self.segment_id,
            video_id: self.video_id,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            fused: get(0).unwrap_or_default(),
            text: get(1),
            visual: get(2),
        }
    }
}

/// A search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchHit {
    /// Segment row id.
    pub segment_id: i64,
    /// Its video.
    pub video_id: i64,
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Score (cosine similarity for plain searches).
    pub score: f32,
}

impl SearchHit {
    /// `e`'s place in time with `score`.
    fn of(e: &SegmentView<'_>, score: f32) -> SearchHit {
        SearchHit {
            segment_id: e.segment_id,
            video_id: e.video_id,
            start_ms: e.start_ms,
            end_ms: e.end_ms,
            score,
        }
    }
}

#[derive(PartialEq)]
struct MinByScore(SearchHit);
impl Eq for MinByScore {}
impl PartialOrd for MinByScore {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MinByScore {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reverse: the heap's top is the worst hit kept so far.
        other
            .0
            .score
            .total_cmp(&self.0.score)
            .then_with(|| self.0.segment_id.cmp(&other.0.segment_id))
    }
}

/// L2-normalises in place; a zero vector stays zero.
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Dot product with 16 independent running sums, so the compiler can keep
/// them in SIMD registers (a plain `sum()` is one sequential chain).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::NEG_INFINITY;
    }
    const L: usize = 16;
    let mut acc = [0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// A new [`VectorIndex::epoch`].
pub(crate) fn next_epoch() -> u64 {
    static EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    EPOCH.fetch_add(1, AtomicOrdering::SeqCst)
}

fn normalized(mut s: IndexedSegment) -> IndexedSegment {
    normalize(&mut s.fused);
    if let Some(t) = s.text.as_mut() {
        normalize(t);
    }
    if let Some(v) = s.visual.as_mut() {
        normalize(v);
    }
    s
}

/// One row store: the vectors of one field and width.
pub(crate) struct RowStore {
    /// 0 fused, 1 text, 2 visual.
    pub(crate) field: usize,
    pub(crate) rows: Rows,
}

/// Field names, as in file names.
pub(crate) const FIELD_NAMES: [&str; 3] = ["fused", "text", "visual"];

/// The index: every segment's place in time and its normalised vectors,
/// grouped by video (so one video's replacement or a one-video search
/// touches only its own entries), plus, for large libraries, approximate
/// shortlists ([`crate::ShortlistConfig`]). The vectors live in row stores,
/// in the heap or in memory-mapped files ([`VectorIndex::in_folder`]).
#[derive(Default)]
pub struct VectorIndex {
    videos: HashMap<i64, Vec<Slot>>,
    /// Segment id → (video, position in its list).
    positions: HashMap<i64, (i64, usize)>,
    len: usize,
    pub(crate) stores: Vec<RowStore>,
    /// Where file-backed row stores go (none: in the heap).
    pub(crate) rows_dir: Option<PathBuf>,
    /// Identifies this loaded copy (a background build for an older copy is dropped).
    pub(crate) epoch: u64,
    pub(crate) ann: AnnSlot,
    /// Changed since it was last saved.
    pub(crate) dirty: AtomicBool,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("segments", &self.len)
            .field("videos", &self.videos.len())
            .field("rows_dir", &self.rows_dir)
            .field("shortlists", &self.ann.state())
            .finish()
    }
}

/// The approximate side of a [`VectorIndex`].
#[derive(Default)]
pub(crate) enum AnnSlot {
    /// None (small library, not enabled, or it failed: search is exact).
    #[default]
    Off,
    /// Being loaded or built in the background; videos changed meanwhile
    /// are caught up when it is installed. Search is exact meanwhile.
    Building { pending: HashSet<i64> },
    /// In use (while the index holds at least `min_segments`).
    Ready { lists: Shortlists, min_segments: usize },
}

impl AnnSlot {
    pub(crate) fn state(&self) -> &'static str {
        match self {
            AnnSlot::Off => "off",
            AnnSlot::Building { .. } => "building",
            AnnSlot::Ready { .. } => "ready",
        }
    }
}

/// The top `k` hits by score (ties: lower segment id first).
struct TopK {
    k: usize,
    heap: BinaryHeap<MinByScore>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    fn offer(&mut self, e: &SegmentView<'_>, s: f32) {
        if !s.is_finite() || self.k == 0 {
            return;
        }
        let hit = SearchHit::of(e, s);
        if self.heap.len() < self.k {
            self.heap.push(MinByScore(hit));
        } else if let Some(worst) = self.heap.peek() {
            if MinByScore(hit) < *worst {
                self.heap.pop();
                self.heap.push(MinByScore(hit));
            }
        }
    }

    fn into_sorted(self) -> Vec<SearchHit> {
        let mut out: Vec<SearchHit> = self.heap.into_iter().map(|m| m.0).collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.segment_id.cmp(&b.segment_id)));
        out
    }
}

impl VectorIndex {
    /// An empty index keeping its vectors in files in `dir` (created).
    pub(crate) fn in_folder(dir: PathBuf) -> Result<VectorIndex> {
        std::fs::create_dir_all(&dir).map_err(|source| crate::StoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(VectorIndex {
            rows_dir: Some(dir),
            ..VectorIndex::default()
        })
    }

    /// Appends one field's vectors (all of width `dim`) to its row store;
    /// returns the store and the first row.
    fn append_rows(&mut self, field: usize, dim: usize, flat: &[f32]) -> Result<(u16, u32)> {
        let at = match self.stores.iter().position(|s| s.field == field && s.rows.dim() == dim) {
            Some(i) => i,
            None => {
                let rows = match &self.rows_dir {
                    Some(dir) => Rows::file(&dir.join(format!("{}-{dim}.f32", FIELD_NAMES[field])), dim, 0)?,
                    None => Rows::heap(),
                };
                self.stores.push(RowStore { field, rows });
                self.stores.len() - 1
            }
        };
        let first = self.stores[at].rows.append(flat, dim)?;
        Ok((at as u16, first))
    }

    /// Puts segments' vectors into row stores (one append per field and
    /// width); returns their slots.
    fn store_segments(&mut self, entries: Vec<IndexedSegment>) -> Result<Vec<Slot>> {
        let entries: Vec<IndexedSegment> = entries.into_iter().map(normalized).collect();
        let mut slots: Vec<Slot> = entries
            .iter()
            .map(|e| Slot {
                segment_id: e.segment_id,
                video_id: e.video_id,
                start_ms: e.start_ms,
                end_ms: e.end_ms,
                rows: [(0, NONE); 3],
            })
            .collect();
        for (field, kind) in [EmbeddingField::Fused, EmbeddingField::Text, EmbeddingField::Visual]
            .into_iter()
            .enumerate()
        {
            // Grouped by width (a model change mixes widths for a while).
            let mut widths: Vec<usize> = entries.iter().filter_map(|e| e.field(kind).map(<[f32]>::len)).collect();
            widths.sort_unstable();
            widths.dedup();
            for dim in widths.into_iter().filter(|d| *d > 0) {
                let which: Vec<usize> = (0..entries.len())
                    .filter(|i| entries[*i].field(kind).is_some_and(|v| v.len() == dim))
                    .collect();
                let flat: Vec<f32> = which
                    .iter()
                    .flat_map(|i| entries[*i].field(kind).unwrap_or_default().iter().copied())
                    .collect();
                let (store, first) = self.append_rows(field, dim, &flat)?;
                for (n, i) in which.into_iter().enumerate() {
                    slots[i].rows[field] = (store, first + n as u32);
                }
            }
        }
        Ok(slots)
    }

    /// A slot's vectors.
    pub(crate) fn view_of(&self, s: &Slot) -> SegmentView<'_> {
        let get = |field: usize| {
            let (store, row) = s.rows[field];
            (row != NONE)
                .then(|| self.stores.get(store as usize).map(|st| st.rows.get(row)))
                .flatten()
        };
        s.view_with(get)
    }

    /// A slot's vectors read into `scratch` (cleared first) rather than
    /// borrowed from the mapped row files: see [`Rows::read_into`]. What
    /// the shortlisted search scores, so a million-segment library's rows
    /// stay in the page cache instead of this process's resident memory.
    fn read_view<'b>(&self, s: &Slot, scratch: &'b mut Vec<f32>) -> Result<SegmentView<'b>> {
        scratch.clear();
        let mut spans: [Option<(usize, usize)>; 3] = [None; 3];
        for (field, span) in spans.iter_mut().enumerate() {
            let (store, row) = s.rows[field];
            if row == NONE {
                continue;
            }
            if let Some(st) = self.stores.get(store as usize) {
                let at = scratch.len();
                if st.rows.read_into(row, scratch)? {
                    *span = Some((at, scratch.len()));
                }
            }
        }
        let scratch: &'b [f32] = scratch;
        let get = |f: usize| spans[f].map(|(a, b)| &scratch[a..b]);
        Ok(s.view_with(get))
    }

    /// Adds a segment (its vectors are normalised; an entry with the same
    /// segment id is replaced).
    pub fn insert(&mut self, s: IndexedSegment) -> Result<()> {
        let video = s.video_id;
        let mut list = self.videos.get(&video).cloned().unwrap_or_default();
        list.retain(|e| e.segment_id != s.segment_id);
        list.extend(self.store_segments(vec![s])?);
        self.install(video, list);
        Ok(())
    }

    /// Replaces all entries of a video.
    pub fn replace_video(&mut self, video_id: i64, entries: Vec<IndexedSegment>) -> Result<()> {
        let list = self.store_segments(entries)?;
        self.install(video_id, list);
        Ok(())
    }

    /// Makes `list` the video's entries (its old ones become garbage).
    fn install(&mut self, video_id: i64, mut list: Vec<Slot>) {
        // In time order: the segments beside one are its neighbours in the list.
        list.sort_by_key(|s| (s.start_ms, s.end_ms, s.segment_id));
        if let Some(old) = self.videos.remove(&video_id) {
            for e in &old {
                self.positions.remove(&e.segment_id);
            }
            self.len -= old.len();
        }
        for (i, e) in list.iter().enumerate() {
            if let Some((other, pos)) = self.positions.insert(e.segment_id, (video_id, i)) {
                // An id held by another video moves here.
                if other != video_id {
                    if let Some(l) = self.videos.get_mut(&other) {
                        if pos < l.len() {
                            l.remove(pos);
                            self.len -= 1;
                            for (j, moved) in l.iter().enumerate().skip(pos) {
                                self.positions.insert(moved.segment_id, (other, j));
                            }
                        }
                    }
                }
            }
        }
        self.len += list.len();
        if !list.is_empty() {
            self.videos.insert(video_id, list);
        }
        self.dirty.store(true, AtomicOrdering::SeqCst);
        self.changed(video_id);
    }

    /// Removes all entries of a video.
    pub fn remove_video(&mut self, video_id: i64) {
        self.install(video_id, Vec::new());
    }

    /// Keeps the shortlists in step with a changed video.
    fn changed(&mut self, video_id: i64) {
        match &self.ann {
            AnnSlot::Off => {}
            AnnSlot::Building { .. } => {
                if let AnnSlot::Building { pending } = &mut self.ann {
                    pending.insert(video_id);
                }
            }
            AnnSlot::Ready { .. } => {
                let owned = self.read_video(video_id);
                if let AnnSlot::Ready { lists, .. } = &mut self.ann {
                    let replaced = owned.and_then(|owned| {
                        let views: Vec<SegmentView<'_>> = owned.iter().map(IndexedSegment::view).collect();
                        lists.replace_video(video_id, &views)
                    });
                    if let Err(e) = replaced {
                        tracing::warn!(error = %e, video_id, "approximate index not updated; searching exactly from now on");
                        self.ann = AnnSlot::Off;
                    }
                }
            }
        }
    }

    /// Number of indexed segments.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry (normalised vectors), video by video.
    pub fn iter(&self) -> impl Iterator<Item = SegmentView<'_>> {
        self.videos.values().flatten().map(|s| self.view_of(s))
    }

    /// One video's entries.
    pub fn video(&self, video_id: i64) -> impl Iterator<Item = SegmentView<'_>> {
        self.videos
            .get(&video_id)
            .into_iter()
            .flatten()
            .map(|s| self.view_of(s))
    }

    /// One video's entries copied out, their vectors read from the row
    /// files rather than through the mapping (see [`Rows::read_into`]):
    /// what building and updating the shortlists reads, so a build over a
    /// whole library leaves no row page in this process's resident memory.
    pub(crate) fn read_video(&self, video_id: i64) -> Result<Vec<IndexedSegment>> {
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        for s in self.videos.get(&video_id).into_iter().flatten() {
            out.push(self.read_view(s, &mut scratch)?.to_owned());
        }
        Ok(out)
    }

    /// The ids of the videos held.
    pub fn video_ids(&self) -> Vec<i64> {
        self.videos.keys().copied().collect()
    }

    /// One segment's entry.
    pub fn get(&self, segment_id: i64) -> Option<SegmentView<'_>> {
        self.slot(segment_id).map(|s| self.view_of(s))
    }

    fn slot(&self, segment_id: i64) -> Option<&Slot> {
        let (video, pos) = self.positions.get(&segment_id)?;
        self.videos.get(video)?.get(*pos)
    }

    /// Every slot, for saving.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.videos.values().flatten()
    }

    /// Installs saved slots (their rows already in `stores`).
    pub(crate) fn restore(&mut self, slots: Vec<Slot>) {
        let mut by_video: HashMap<i64, Vec<Slot>> = HashMap::new();
        for s in slots {
            by_video.entry(s.video_id).or_default().push(s);
        }
        for (video, list) in by_video {
            self.install(video, list);
        }
    }

    /// Whether searches use the approximate shortlists now.
    pub fn approximate(&self) -> bool {
        matches!(&self.ann, AnnSlot::Ready { min_segments, .. } if self.len >= *min_segments)
    }

    /// Exact top-k by cosine similarity of `field` to `query`, optionally
    /// only within one video. Entries lacking that field are skipped.
    pub fn search(&self, field: EmbeddingField, query: &[f32], k: usize, video: Option<i64>) -> Vec<SearchHit> {
        let mut q = query.to_vec();
        normalize(&mut q);
        self.search_by(k, video, |e| e.field(field).map(|v| dot(v, &q)))
    }

    /// Exact top-k by an arbitrary score (`None` skips the entry); the
    /// scorer sees normalised vectors.
    pub fn search_by(
        &self,
        k: usize,
        video: Option<i64>,
        mut score: impl FnMut(&SegmentView<'_>) -> Option<f32>,
    ) -> Vec<SearchHit> {
        let mut top = TopK::new(k);
        if k == 0 {
            return Vec::new();
        }
        let mut offer = |e: SegmentView<'_>| {
            if let Some(s) = score(&e) {
                top.offer(&e, s);
            }
        };
        match video {
            Some(v) => self.video(v).for_each(&mut offer),
            None => self.iter().for_each(&mut offer),
        }
        top.into_sorted()
    }

    /// The segment of `segment_id`'s video next to it in time: with
    /// `later`, the first after it that starts at or after its end;
    /// otherwise the last before it that ends at or before its start (a
    /// video's entries are kept in time order). `None` at either end of the
    /// video and for an unknown segment. How a search grows its best
    /// moments past its shortlist.
    pub fn beside(&self, segment_id: i64, later: bool) -> Option<i64> {
        let (video, pos) = *self.positions.get(&segment_id)?;
        let list = self.videos.get(&video)?;
        let at = list.get(pos)?;
        let next = if later {
            list[pos + 1..].iter().find(|s| s.start_ms >= at.end_ms)
        } else {
            list[..pos].iter().rev().find(|s| s.end_ms <= at.start_ms)
        };
        next.map(|s| s.segment_id)
    }

    /// One segment scored by `score` on its vectors, read into `scratch`
    /// as the shortlisted search reads them; `None` for an unknown segment
    /// or when `score` skips it.
    pub fn score_one(
        &self,
        segment_id: i64,
        scratch: &mut Vec<f32>,
        score: impl FnOnce(&SegmentView<'_>) -> Option<f32>,
    ) -> Result<Option<SearchHit>> {
        let Some(slot) = self.slot(segment_id) else {
            return Ok(None);
        };
        let e = self.read_view(slot, scratch)?;
        Ok(score(&e).map(|s| SearchHit::of(&e, s)))
    }

    /// Top-k by `score` like [`VectorIndex::search_by`], for a query whose
    /// score is the weighted mean of its cosine similarities to a segment's
    /// vectors (`query`, any length), weighed as the shortlists' [`Mix`]
    /// says. On a library large enough for the approximate shortlists, only
    /// the `k` segments nearest by their mixed vectors are scored (a
    /// segment strong on one side only is shortlisted when that side makes
    /// its score high); otherwise, and for one video, every entry is.
    /// Another score gets right answers from a worse shortlist.
    ///
    /// [`Mix`]: crate::Mix
    pub fn search_shortlisted(
        &self,
        query: &[f32],
        k: usize,
        video: Option<i64>,
        mut score: impl FnMut(&SegmentView<'_>) -> Option<f32>,
    ) -> Vec<SearchHit> {
        if video.is_none() && self.approximate() {
            if let AnnSlot::Ready { lists, .. } = &self.ann {
                let mut q = query.to_vec();
                normalize(&mut q);
                match self.score_candidates(lists, &q, k, &mut score) {
                    Ok(hits) => return hits,
                    Err(e) => tracing::warn!(error = %e, "approximate search failed; scanning exactly"),
                }
            }
        }
        self.search_by(k, video, score)
    }

    /// The shortlist of `k` for `q` (unit length), each member scored on
    /// its rows read from the files ([`VectorIndex::read_view`]).
    fn score_candidates(
        &self,
        lists: &Shortlists,
        q: &[f32],
        k: usize,
        score: &mut impl FnMut(&SegmentView<'_>) -> Option<f32>,
    ) -> Result<Vec<SearchHit>> {
        let mut top = TopK::new(k);
        let mut scratch = Vec::with_capacity(3 * q.len());
        for id in lists.candidates(q, k)? {
            let Some(slot) = self.slot(id) else { continue };
            let e = self.read_view(slot, &mut scratch)?;
            if let Some(s) = score(&e) {
                top.offer(&e, s);
            }
        }
        Ok(top.into_sorted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: i64, video: i64, v: Vec<f32>) -> IndexedSegment {
        IndexedSegment {
            segment_id: id,
            video_id: video,
            start_ms: 0,
            end_ms: 1,
            fused: v,
            text: None,
            visual: None,
        }
    }

    #[test]
    fn beside_finds_the_neighbours_in_time_whatever_the_order_stored() {
        let mut idx = VectorIndex::default();
        // Video 1's segments stored out of time order; video 2 in between.
        for (id, video, start) in [(3, 1, 20_000), (1, 1, 0), (9, 2, 10_000), (2, 1, 10_000)] {
            let mut s = seg(id, video, vec![id as f32, 1.0]);
            s.start_ms = start;
            s.end_ms = start + 10_000;
            idx.insert(s).unwrap();
        }
        let next = |id: i64, later: bool| idx.beside(id, later);
        assert_eq!(next(1, true), Some(2));
        assert_eq!(next(2, true), Some(3));
        assert_eq!(next(2, false), Some(1));
        assert_eq!(next(1, false), None, "the video's first segment");
        assert_eq!(next(3, true), None, "the video's last segment");
        assert_eq!(next(9, true), None, "another video's segments are not beside it");
        assert_eq!(next(42, true), None, "an unknown segment");
        // Scored on its own (normalised) vectors; a skipped one is None.
        let hit = idx
            .score_one(3, &mut Vec::new(), |e| Some(e.fused[0]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (hit.segment_id, hit.video_id, hit.start_ms, hit.end_ms),
            (3, 1, 20_000, 30_000)
        );
        assert!((hit.score - 3.0 / 10f32.sqrt()).abs() < 1e-6, "{}", hit.score);
        assert!(idx.score_one(3, &mut Vec::new(), |_| None).unwrap().is_none());
        assert!(idx.score_one(42, &mut Vec::new(), |_| Some(1.0)).unwrap().is_none());
    }

    #[test]
    fn exact_top_k_matches_brute_force() {
        // Deterministic pseudo-random vectors.
        let mut state = 12345u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let mut idx = VectorIndex::default();
        let mut raw = Vec::new();
        for i in 0..500 {
            let v: Vec<f32> = (0..16).map(|_| rnd()).collect();
            raw.push((i, v.clone()));
            idx.insert(seg(i, i % 7, v)).unwrap();
        }
        let q: Vec<f32> = (0..16).map(|_| rnd()).collect();
        let hits = idx.search(EmbeddingField::Fused, &q, 10, None);
        let cos = |a: &[f32], b: &[f32]| {
            let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            d / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
        };
        let mut brute: Vec<(i64, f32)> = raw.iter().map(|(i, v)| (*i, cos(v, &q))).collect();
        brute.sort_by(|a, b| b.1.total_cmp(&a.1));
        assert_eq!(
            hits.iter().map(|h| h.segment_id).collect::<Vec<_>>(),
            brute[..10].iter().map(|b| b.0).collect::<Vec<_>>()
        );
        for (h, b) in hits.iter().zip(&brute) {
            assert!((h.score - b.1).abs() < 1e-5);
        }
        let only3 = idx.search(EmbeddingField::Fused, &q, 5, Some(3));
        assert_eq!(only3.len(), 5);
        assert!(only3.iter().all(|h| h.video_id == 3));
    }

    #[test]
    fn replace_and_remove_video() {
        let mut idx = VectorIndex::default();
        idx.insert(seg(1, 1, vec![1.0, 0.0])).unwrap();
        idx.insert(seg(2, 2, vec![0.0, 1.0])).unwrap();
        idx.replace_video(1, vec![seg(3, 1, vec![1.0, 1.0])]).unwrap();
        assert_eq!(idx.len(), 2);
        idx.remove_video(2);
        let hits = idx.search(EmbeddingField::Fused, &[0.0, 1.0], 5, None);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].segment_id, 3);
        assert!(idx.search(EmbeddingField::Text, &[0.0, 1.0], 5, None).is_empty());
    }

    #[test]
    fn rows_read_from_the_files_equal_the_mapped_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = VectorIndex::in_folder(dir.path().join("rows")).unwrap();
        let mut with_sides = seg(1, 1, vec![3.0, 4.0]);
        with_sides.text = Some(vec![0.0, 2.0]);
        with_sides.visual = Some(vec![1.0, 0.0, 0.0]);
        idx.replace_video(1, vec![with_sides, seg(2, 1, vec![1.0, 1.0])])
            .unwrap();
        idx.insert(seg(3, 2, vec![0.0, 5.0])).unwrap();
        for video in [1, 2, 3] {
            let mapped: Vec<IndexedSegment> = idx.video(video).map(|v| v.to_owned()).collect();
            assert_eq!(idx.read_video(video).unwrap(), mapped, "video {video}");
        }
        let read = idx.read_video(1).unwrap();
        assert_eq!(read[0].fused, [0.6, 0.8]);
        assert_eq!(read[0].visual.as_deref(), Some(&[1.0, 0.0, 0.0][..]));
        assert_eq!(read[1].text, None);
    }
}
