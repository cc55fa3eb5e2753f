//! Whole-video documents: each video's whole text embedded with sliding
//! windows (one pooled vector, and each window with its time span), its
//! extractive summary, and the in-process index of those vectors that
//! video-level search scans.
//!
//! A document is written with the segments it was built beside
//! ([`Store::replace_segments_and_document`]) or alone when only it is stale
//! ([`Store::replace_document`]); either way in one transaction, so a reader
//! sees the old document or the new one, never a mix.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::index::dot;
use crate::segments::IndexVersions;
use crate::{decode_f32, encode_f32, now_ms, Result, Store, StoreError};

/// A sentence of a video's summary, with the time span of the cues it
/// came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummarySentence {
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// The sentence, verbatim.
    pub text: String,
}

/// Where a cue's text begins in a document's text, and the cue's time span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocPiece {
    /// Byte offset in [`NewDocument::text`].
    pub byte: i64,
    /// The cue's start, ms.
    pub start_ms: i64,
    /// The cue's end, ms.
    pub end_ms: i64,
}

/// One window of a document, with its vector.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWindow {
    /// Start of the first cue in the window, ms.
    pub start_ms: i64,
    /// End of the last cue in the window, ms.
    pub end_ms: i64,
    /// Byte range of the window in the document's text.
    pub start_byte: i64,
    /// End of that range.
    pub end_byte: i64,
    /// The window's text.
    pub text: String,
    /// Its sentence vector.
    pub vector: Vec<f32>,
}

/// A video's document as the pipeline builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDocument {
    /// What built it (text model, window settings).
    pub version: String,
    /// The whole text: cues of every source in time order, de-duplicated.
    pub text: String,
    /// Where each cue's text begins in `text`, with its times, in order.
    pub pieces: Vec<DocPiece>,
    /// The windows pooled into one vector.
    pub vector: Vec<f32>,
    /// Text tokens covered.
    pub tokens: i64,
    /// True when the text was too long to cover whole.
    pub truncated: bool,
    /// Every window, in text order.
    pub windows: Vec<NewWindow>,
    /// The summary: most central sentences, in time order.
    pub summary: Vec<SummarySentence>,
}

/// A stored document (without its window vectors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Its video.
    pub video_id: i64,
    /// What built it.
    pub version: String,
    /// The whole text.
    pub text: String,
    /// Where each cue's text begins, with its times.
    pub pieces: Vec<DocPiece>,
    /// Text tokens covered.
    pub tokens: i64,
    /// True when the text was too long to cover whole.
    pub truncated: bool,
    /// How many windows it has.
    pub windows: i64,
    /// The summary.
    pub summary: Vec<SummarySentence>,
    /// When it was written.
    pub updated_ms: i64,
}

impl Document {
    /// The time span of the cues that the bytes `start..end` of the text
    /// come from (the first and last piece they overlap); `None` when the
    /// range holds no piece.
    pub fn span_of(&self, start: usize, end: usize) -> Option<(i64, i64)> {
        span_of(&self.pieces, self.text.len(), start, end)
    }
}

/// [`Document::span_of`] over plain pieces of a text `len` bytes long.
pub fn span_of(pieces: &[DocPiece], len: usize, start: usize, end: usize) -> Option<(i64, i64)> {
    let mut first: Option<i64> = None;
    let mut last: Option<i64> = None;
    for (i, p) in pieces.iter().enumerate() {
        let p_start = p.byte.max(0) as usize;
        let p_end = pieces.get(i + 1).map_or(len, |n| n.byte.max(0) as usize);
        if p_start < end.max(start + 1) && p_end > start {
            first.get_or_insert(p.start_ms);
            last = Some(last.map_or(p.end_ms, |l: i64| l.max(p.end_ms)));
        }
    }
    Some((first?, last?))
}

/// A stored window (without its vector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentWindow {
    /// Its video.
    pub video_id: i64,
    /// Position in the document (0-based).
    pub idx: i64,
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Byte range in the document's text.
    pub start_byte: i64,
    /// End of that range.
    pub end_byte: i64,
    /// The window's text.
    pub text: String,
}

/// A window in the in-process document index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedWindow {
    /// Position in its document.
    pub idx: i64,
    /// Start, ms.
    pub start_ms: i64,
    /// End, ms.
    pub end_ms: i64,
    /// Its vector, normalised.
    pub vector: Vec<f32>,
}

/// A document in the in-process index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedDocument {
    /// Its video.
    pub video_id: i64,
    /// The pooled vector, normalised.
    pub vector: Vec<f32>,
    /// Its windows.
    pub windows: Vec<IndexedWindow>,
}

/// How one document matches a query.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentHit {
    /// Its video.
    pub video_id: i64,
    /// Cosine similarity of the query with the pooled vector.
    pub document: f32,
    /// The best windows, best first: `(idx, start_ms, end_ms, similarity)`.
    pub windows: Vec<(i64, i64, i64, f32)>,
}

/// Every document's vectors, normalised, for exact video-level search.
#[derive(Debug, Clone, Default)]
pub struct DocumentIndex {
    docs: std::collections::HashMap<i64, IndexedDocument>,
}

impl DocumentIndex {
    /// Replaces (or adds, or with `None` removes) a video's document.
    pub fn replace(&mut self, video_id: i64, doc: Option<IndexedDocument>) {
        self.docs.remove(&video_id);
        if let Some(mut d) = doc {
            crate::index::normalize(&mut d.vector);
            for w in &mut d.windows {
                crate::index::normalize(&mut w.vector);
            }
            self.docs.insert(video_id, d);
        }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether it holds no document.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Every document's match with the unit query `q` (its `windows` best
    /// windows each), in no particular order.
    pub fn scores(&self, q: &[f32], windows: usize) -> Vec<DocumentHit> {
        self.docs
            .values()
            .map(|d| {
                let mut ws: Vec<(i64, i64, i64, f32)> = d
                    .windows
                    .iter()
                    .map(|w| (w.idx, w.start_ms, w.end_ms, dot(q, &w.vector)))
                    .collect();
                ws.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(&b.0)));
                ws.truncate(windows);
                DocumentHit {
                    video_id: d.video_id,
                    document: dot(q, &d.vector),
                    windows: ws,
                }
            })
            .collect()
    }
}

fn from_json<T: for<'de> Deserialize<'de>>(r: &AnyRow, col: &str) -> Result<T> {
    let s: String = r.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("documents.{col}: {e}")))
}

fn document_from_row(r: &AnyRow) -> Result<Document> {
    Ok(Document {
        video_id: r.try_get("video_id")?,
        version: r.try_get("version")?,
        text: r.try_get("text")?,
        pieces: from_json(r, "pieces")?,
        tokens: r.try_get("tokens")?,
        truncated: r.try_get::<i64, _>("truncated")? != 0,
        windows: r.try_get("windows")?,
        summary: from_json(r, "summary")?,
        updated_ms: r.try_get("updated_ms")?,
    })
}

/// Replaces a video's document rows inside `tx` (`None`: deletes them).
pub(crate) async fn write_document(
    conn: &mut sqlx::AnyConnection,
    video_id: i64,
    doc: Option<&NewDocument>,
) -> Result<()> {
    for sql in [
        "DELETE FROM document_windows WHERE video_id = $1",
        "DELETE FROM documents WHERE video_id = $1",
    ] {
        sqlx::query(sql).bind(video_id).execute(&mut *conn).await?;
    }
    let Some(d) = doc else { return Ok(()) };
    if d.vector.is_empty() || d.windows.iter().any(|w| w.vector.len() != d.vector.len()) {
        return Err(StoreError::Corrupt(
            "a document's vectors are empty or of different sizes".into(),
        ));
    }
    sqlx::query(
        "INSERT INTO documents (video_id, version, text, pieces, dim, vector, tokens, truncated, summary, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(video_id)
    .bind(&d.version)
    .bind(&d.text)
    .bind(json(&d.pieces))
    .bind(d.vector.len() as i64)
    .bind(encode_f32(&d.vector))
    .bind(d.tokens)
    .bind(d.truncated as i64)
    .bind(json(&d.summary))
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    for (i, w) in d.windows.iter().enumerate() {
        sqlx::query(
            "INSERT INTO document_windows (video_id, idx, start_ms, end_ms, start_byte, end_byte, text, dim, vector) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(video_id)
        .bind(i as i64)
        .bind(w.start_ms)
        .bind(w.end_ms)
        .bind(w.start_byte)
        .bind(w.end_byte)
        .bind(&w.text)
        .bind(w.vector.len() as i64)
        .bind(encode_f32(&w.vector))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A JSON column's text.
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// The in-process form of a document being written.
pub(crate) fn indexed(video_id: i64, d: &NewDocument) -> IndexedDocument {
    IndexedDocument {
        video_id,
        vector: d.vector.clone(),
        windows: d
            .windows
            .iter()
            .enumerate()
            .map(|(i, w)| IndexedWindow {
                idx: i as i64,
                start_ms: w.start_ms,
                end_ms: w.end_ms,
                vector: w.vector.clone(),
            })
            .collect(),
    }
}

impl Store {
    /// Replaces a video's document (`None`: removes it) and records
    /// `versions` as its stage versions, in one transaction; the video's
    /// segments stay as they are and it is marked indexed again. For a
    /// video whose index is current except for its document.
    pub async fn replace_document(
        &self,
        video_id: i64,
        doc: Option<&NewDocument>,
        versions: &IndexVersions,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        write_document(&mut tx, video_id, doc).await?;
        sqlx::query(
            "UPDATE videos SET status = 'done', error = NULL, stage_versions = $2, updated_ms = $3 WHERE id = $1",
        )
        .bind(video_id)
        .bind(serde_json::to_string(&versions.stages).unwrap_or_else(|_| "{}".into()))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let generation = crate::live::record_change(&mut tx, self.backend, video_id).await?;
        tx.commit().await?;
        let doc = doc.map(|d| indexed(video_id, d));
        self.apply_at(video_id, generation, || self.install_video(video_id, None, Some(doc)));
        Ok(())
    }

    /// A video's document (without window vectors), when it has one.
    pub async fn document(&self, video_id: i64) -> Result<Option<Document>> {
        let row = sqlx::query(
            "SELECT d.video_id, d.version, d.text, d.pieces, d.tokens, d.truncated, d.summary, d.updated_ms, \
             (SELECT COUNT(*) FROM document_windows w WHERE w.video_id = d.video_id) AS windows \
             FROM documents d WHERE d.video_id = $1",
        )
        .bind(video_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(document_from_row).transpose()
    }

    /// Some windows of a video's document, by position, in the order asked
    /// (positions it does not have are left out).
    pub async fn document_windows(&self, video_id: i64, idxs: &[i64]) -> Result<Vec<DocumentWindow>> {
        if idxs.is_empty() {
            return Ok(Vec::new());
        }
        // Positions are integers: listed inline (no parameter limit to mind).
        let list = idxs.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT video_id, idx, start_ms, end_ms, start_byte, end_byte, text FROM document_windows \
             WHERE video_id = $1 AND idx IN ({list}) ORDER BY idx"
        );
        let rows = sqlx::query(&sql).bind(video_id).fetch_all(&self.pool).await?;
        let mut all = Vec::with_capacity(rows.len());
        for r in &rows {
            all.push(DocumentWindow {
                video_id: r.try_get("video_id")?,
                idx: r.try_get("idx")?,
                start_ms: r.try_get("start_ms")?,
                end_ms: r.try_get("end_ms")?,
                start_byte: r.try_get("start_byte")?,
                end_byte: r.try_get("end_byte")?,
                text: r.try_get("text")?,
            });
        }
        Ok(idxs
            .iter()
            .filter_map(|i| all.iter().find(|w| w.idx == *i).cloned())
            .collect())
    }

    /// Loads (or reloads) the in-process document index: every document of
    /// a video that is not missing.
    pub async fn load_documents(&self) -> Result<()> {
        let _guard = self.live_lock().await;
        self.load_documents_unlocked().await
    }

    pub(crate) async fn load_documents_unlocked(&self) -> Result<()> {
        let generation = self.current_generation().await?;
        let mut index = DocumentIndex::default();
        for d in self.indexed_documents(None).await? {
            index.replace(d.video_id, Some(d));
        }
        if let Ok(mut guard) = self.documents.write() {
            *guard = Some(index);
        }
        self.loaded_at(generation);
        Ok(())
    }

    /// The stored documents (of one video, or of all) of videos that are
    /// not missing, with their window vectors.
    pub(crate) async fn indexed_documents(&self, video: Option<i64>) -> Result<Vec<IndexedDocument>> {
        let only = if video.is_some() { " AND v.id = $1" } else { "" };
        let docs_sql = format!(
            "SELECT d.video_id, d.dim, d.vector FROM documents d JOIN videos v ON v.id = d.video_id \
             WHERE v.status <> 'missing' AND d.vector IS NOT NULL{only} ORDER BY d.video_id"
        );
        let windows_sql = format!(
            "SELECT w.video_id, w.idx, w.start_ms, w.end_ms, w.dim, w.vector FROM document_windows w \
             JOIN videos v ON v.id = w.video_id WHERE v.status <> 'missing'{only} ORDER BY w.video_id, w.idx"
        );
        let (mut docs_q, mut windows_q) = (sqlx::query(&docs_sql), sqlx::query(&windows_sql));
        if let Some(id) = video {
            docs_q = docs_q.bind(id);
            windows_q = windows_q.bind(id);
        }
        let docs = docs_q.fetch_all(&self.pool).await?;
        let windows = windows_q.fetch_all(&self.pool).await?;
        let mut by_video: std::collections::HashMap<i64, Vec<IndexedWindow>> = Default::default();
        for r in &windows {
            let dim = r.try_get::<i64, _>("dim")? as usize;
            by_video.entry(r.try_get("video_id")?).or_default().push(IndexedWindow {
                idx: r.try_get("idx")?,
                start_ms: r.try_get("start_ms")?,
                end_ms: r.try_get("end_ms")?,
                vector: decode_f32(&r.try_get::<Vec<u8>, _>("vector")?, Some(dim))?,
            });
        }
        let mut out = Vec::with_capacity(docs.len());
        for r in &docs {
            let video_id: i64 = r.try_get("video_id")?;
            let dim = r.try_get::<i64, _>("dim")? as usize;
            out.push(IndexedDocument {
                video_id,
                vector: decode_f32(&r.try_get::<Vec<u8>, _>("vector")?, Some(dim))?,
                windows: by_video.remove(&video_id).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Runs `f` on the in-process document index, loading it first if needed.
    pub async fn with_documents<T>(&self, f: impl FnOnce(&DocumentIndex) -> T) -> Result<T> {
        let loaded = self.documents.read().map(|g| g.is_some()).unwrap_or(false);
        if !loaded {
            let _guard = self.live_lock().await;
            if !self.documents.read().map(|g| g.is_some()).unwrap_or(false) {
                self.load_documents_unlocked().await?;
            }
        }
        let guard = self
            .documents
            .read()
            .map_err(|_| StoreError::Corrupt("document index lock poisoned".into()))?;
        Ok(f(guard.as_ref().expect("document index loaded above")))
    }

    /// Updates the loaded document index (a no-op before it is loaded).
    pub(crate) fn documents_replace(&self, video_id: i64, doc: Option<IndexedDocument>) {
        if let Ok(mut guard) = self.documents.write() {
            if let Some(index) = guard.as_mut() {
                index.replace(video_id, doc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_range_maps_to_the_span_of_the_pieces_it_overlaps() {
        let pieces = [
            DocPiece {
                byte: 0,
                start_ms: 0,
                end_ms: 1000,
            },
            DocPiece {
                byte: 10,
                start_ms: 2000,
                end_ms: 3000,
            },
            DocPiece {
                byte: 20,
                start_ms: 4000,
                end_ms: 5000,
            },
        ];
        assert_eq!(span_of(&pieces, 30, 0, 5), Some((0, 1000)));
        assert_eq!(span_of(&pieces, 30, 5, 15), Some((0, 3000)));
        assert_eq!(span_of(&pieces, 30, 12, 30), Some((2000, 5000)));
        assert_eq!(span_of(&pieces, 30, 25, 25), Some((4000, 5000)));
        assert_eq!(span_of(&[], 30, 0, 5), None);
    }

    #[test]
    fn the_index_replaces_and_scores_documents() {
        let mut idx = DocumentIndex::default();
        let doc = |id: i64, v: [f32; 2]| IndexedDocument {
            video_id: id,
            vector: v.to_vec(),
            windows: vec![
                IndexedWindow {
                    idx: 0,
                    start_ms: 0,
                    end_ms: 10,
                    vector: vec![0.0, 1.0],
                },
                IndexedWindow {
                    idx: 1,
                    start_ms: 10,
                    end_ms: 20,
                    vector: vec![3.0, 0.0],
                },
            ],
        };
        idx.replace(1, Some(doc(1, [2.0, 0.0])));
        idx.replace(2, Some(doc(2, [0.0, 5.0])));
        idx.replace(2, Some(doc(2, [0.0, 1.0])));
        assert_eq!(idx.len(), 2);
        let hits = idx.scores(&[1.0, 0.0], 1);
        let one = hits.iter().find(|h| h.video_id == 1).unwrap();
        assert!((one.document - 1.0).abs() < 1e-6);
        assert_eq!(one.windows, vec![(1, 10, 20, 1.0)]);
        let two = hits.iter().find(|h| h.video_id == 2).unwrap();
        assert!(two.document.abs() < 1e-6);
        idx.replace(1, None);
        assert_eq!(idx.len(), 1);
    }
}
