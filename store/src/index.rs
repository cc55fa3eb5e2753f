//! Exact in-process vector search over segment embeddings.
//!
//! Vectors are L2-normalised on insert, so cosine similarity is a dot
//! product. Search scans every entry (exact, no approximation) and keeps the
//! top k in a small heap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

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

/// The index: every segment's embeddings, normalised.
#[derive(Debug, Clone, Default)]
pub struct VectorIndex {
    entries: Vec<IndexedSegment>,
}

impl VectorIndex {
    /// Adds a segment (its vectors are normalised).
    pub fn insert(&mut self, mut s: IndexedSegment) {
        normalize(&mut s.fused);
        if let Some(t) = s.text.as_mut() {
            normalize(t);
        }
        if let Some(v) = s.visual.as_mut() {
            normalize(v);
        }
        self.entries.push(s);
    }

    /// Replaces all entries of a video.
    pub fn replace_video(&mut self, video_id: i64, entries: Vec<IndexedSegment>) {
        self.remove_video(video_id);
        for e in entries {
            self.insert(e);
        }
    }

    /// Removes all entries of a video.
    pub fn remove_video(&mut self, video_id: i64) {
        self.entries.retain(|e| e.video_id != video_id);
    }

    /// Number of indexed segments.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries (normalised vectors).
    pub fn entries(&self) -> &[IndexedSegment] {
        &self.entries
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
        mut score: impl FnMut(&IndexedSegment) -> Option<f32>,
    ) -> Vec<SearchHit> {
        if k == 0 {
            return Vec::new();
        }
        let mut heap: BinaryHeap<MinByScore> = BinaryHeap::with_capacity(k + 1);
        for e in &self.entries {
            if video.map(|v| v != e.video_id).unwrap_or(false) {
                continue;
            }
            let Some(s) = score(e) else { continue };
            if !s.is_finite() {
                continue;
            }
            let hit = SearchHit {
                segment_id: e.segment_id,
                video_id: e.video_id,
                start_ms: e.start_ms,
                end_ms: e.end_ms,
                score: s,
            };
            if heap.len() < k {
                heap.push(MinByScore(hit));
            } else if let Some(worst) = heap.peek() {
                if s > worst.0.score {
                    heap.pop();
                    heap.push(MinByScore(hit));
                }
            }
        }
        let mut out: Vec<SearchHit> = heap.into_iter().map(|m| m.0).collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.segment_id.cmp(&b.segment_id)));
        out
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
            idx.insert(seg(i, i % 7, v));
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
        idx.insert(seg(1, 1, vec![1.0, 0.0]));
        idx.insert(seg(2, 2, vec![0.0, 1.0]));
        idx.replace_video(1, vec![seg(3, 1, vec![1.0, 1.0])]);
        assert_eq!(idx.len(), 2);
        idx.remove_video(2);
        let hits = idx.search(EmbeddingField::Fused, &[0.0, 1.0], 5, None);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].segment_id, 3);
        assert!(idx.search(EmbeddingField::Text, &[0.0, 1.0], 5, None).is_empty());
    }
}
