//! An approximate nearest-neighbour index (HNSW) over one kind of segment
//! vector, for libraries too large for the exact scan.
//!
//! Built on `usearch`: a maintained HNSW with the three things kino needs
//! beside speed, each one call: vectors stored quantized (int8 or f16, so a
//! million 384-d vectors fit in about half a gigabyte with the graph), a
//! file format that can be memory-mapped instead of read into the heap
//! ([`AnnIndex::view`]), and search with a key filter (one video's
//! segments). Keys are segment ids. Similarities are cosine, like the
//! exact index's, so shortlists from here are re-ranked with the exact
//! scores.

use std::path::Path;

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::{Result, StoreError};

/// How vectors are stored in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    /// 8-bit integers (a quarter of f32), each vector scaled so its largest
    /// component is ±127 and rounded (cosine does not see the scale).
    I8,
    /// Half floats.
    F16,
    /// Full floats.
    F32,
}

/// HNSW links per node (`M`) unless told otherwise.
pub const DEFAULT_CONNECTIVITY: usize = 14;

/// The index's settings (HNSW's usual names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnOptions {
    /// Links per node (`M`).
    pub connectivity: usize,
    /// Candidates kept while inserting (`efConstruction`).
    pub expansion_add: usize,
    /// Candidates kept while searching (`efSearch`).
    pub expansion_search: usize,
    /// How vectors are stored.
    pub quantization: Quantization,
}

impl Default for AnnOptions {
    fn default() -> Self {
        AnnOptions {
            // usearch keeps a node's links in 64-byte blocks: a node of
            // 2·M base links (4 bytes each) plus 14 bytes of head is 142
            // bytes at M 16, stored in 192; at M 14 it is 126, stored in
            // 128. That is 64 MB less per million vectors and graph, for
            // about the same recall once the shortlist is re-ranked
            // (docs/PERFORMANCE.md, "Search at scale").
            connectivity: DEFAULT_CONNECTIVITY,
            expansion_add: 128,
            expansion_search: 128,
            quantization: Quantization::I8,
        }
    }
}

/// An HNSW index of `dim`-dimensional vectors keyed by `u64`.
pub struct AnnIndex {
    inner: Index,
    dim: usize,
    /// Threads that may add or search at once (usearch keeps a scratch
    /// context per thread; a caller finding none free fails).
    threads: usize,
}

fn ann_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Ann(format!("{what}: {e}"))
}

fn options(dim: usize, o: &AnnOptions) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: match o.quantization {
            Quantization::I8 => ScalarKind::I8,
            Quantization::F16 => ScalarKind::F16,
            Quantization::F32 => ScalarKind::F32,
        },
        connectivity: o.connectivity,
        expansion_add: o.expansion_add,
        expansion_search: o.expansion_search,
        multi: false,
    }
}

impl AnnIndex {
    /// An empty index with room for `capacity` vectors, safe to add to from
    /// `threads` threads at once.
    pub fn new(dim: usize, opts: &AnnOptions, capacity: usize, threads: usize) -> Result<AnnIndex> {
        if dim == 0 {
            return Err(StoreError::Ann("vectors of 0 dimensions".into()));
        }
        let inner = Index::new(&options(dim, opts)).map_err(|e| ann_err("creating the index", e))?;
        let index = AnnIndex {
            inner,
            dim,
            threads: threads.max(1),
        };
        index.reserve(capacity)?;
        Ok(index)
    }

    /// Builds an index of `vectors` (row-major, `dim` floats each) keyed by
    /// `keys`, inserting from `threads` threads.
    pub fn build(dim: usize, opts: &AnnOptions, keys: &[u64], vectors: &[f32], threads: usize) -> Result<AnnIndex> {
        if vectors.len() != keys.len() * dim {
            return Err(StoreError::Ann(format!(
                "{} keys but {} floats for {dim}-d vectors",
                keys.len(),
                vectors.len()
            )));
        }
        let threads = threads.max(1);
        let index = AnnIndex::new(dim, opts, keys.len(), threads)?;
        let rows: Vec<(u64, &[f32])> = keys.iter().copied().zip(vectors.chunks_exact(dim)).collect();
        index.add_parallel(&rows, threads)?;
        Ok(index)
    }

    /// Adds `rows` from up to `threads` threads at once (after reserving
    /// room for them all).
    pub fn add_parallel(&self, rows: &[(u64, &[f32])], threads: usize) -> Result<()> {
        self.reserve(self.len() + rows.len())?;
        let chunk = rows.len().div_ceil(threads.clamp(1, self.threads)).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = rows
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || -> Result<()> {
                        for (key, v) in part {
                            self.add(*key, v)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| StoreError::Ann("an insert thread panicked".into()))??;
            }
            Ok(())
        })
    }

    /// Makes room for `capacity` vectors in all (never shrinks). Adds from
    /// several threads at once need the room reserved first: growing is not
    /// safe while another thread adds or searches.
    pub fn reserve(&self, capacity: usize) -> Result<()> {
        if capacity <= self.inner.capacity() && self.inner.capacity() > 0 {
            return Ok(());
        }
        self.inner
            .reserve_capacity_and_threads(capacity.max(1), self.threads)
            .map_err(|e| ann_err("reserving room", e))
    }

    /// Adds one vector, growing the index when it is full (growing needs
    /// exclusive use: see [`AnnIndex::reserve`]).
    pub fn add(&self, key: u64, vector: &[f32]) -> Result<()> {
        if vector.len() != self.dim {
            return Err(StoreError::Ann(format!(
                "a {}-d vector for a {}-d index",
                vector.len(),
                self.dim
            )));
        }
        if self.inner.size() >= self.inner.capacity() {
            self.reserve((self.inner.capacity() * 2).max(64))?;
        }
        match Encoded::new(self.quantization(), vector) {
            Encoded::Float => self.inner.add(key, vector),
            Encoded::I8(v) => self.inner.add(key, &v),
        }
        .map_err(|e| ann_err("adding", e))
    }

    /// Whether `key` is in the index.
    pub fn contains(&self, key: u64) -> bool {
        self.inner.contains(key)
    }

    /// Removes a key; returns whether it was there.
    pub fn remove(&self, key: u64) -> Result<bool> {
        Ok(self.inner.remove(key).map_err(|e| ann_err("removing", e))? > 0)
    }

    /// The `k` nearest keys to `query` with their cosine similarity (of
    /// the stored, quantized vectors), best first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>> {
        self.check(query)?;
        let m = match Encoded::new(self.quantization(), query) {
            Encoded::Float => self.inner.search(query, k),
            Encoded::I8(q) => self.inner.search(&q, k),
        }
        .map_err(|e| ann_err("searching", e))?;
        Ok(similarities(m))
    }

    /// [`AnnIndex::search`] among the keys `keep` accepts.
    pub fn search_filtered(&self, query: &[f32], k: usize, keep: impl Fn(u64) -> bool) -> Result<Vec<(u64, f32)>> {
        self.check(query)?;
        let m = match Encoded::new(self.quantization(), query) {
            Encoded::Float => self.inner.filtered_search(query, k, keep),
            Encoded::I8(q) => self.inner.filtered_search(&q, k, keep),
        }
        .map_err(|e| ann_err("searching", e))?;
        Ok(similarities(m))
    }

    fn check(&self, query: &[f32]) -> Result<()> {
        if query.len() == self.dim {
            Ok(())
        } else {
            Err(StoreError::Ann(format!(
                "a {}-d query for a {}-d index",
                query.len(),
                self.dim
            )))
        }
    }

    /// Sets how many candidates a search keeps (`efSearch`).
    pub fn set_expansion_search(&self, n: usize) {
        self.inner.change_expansion_search(n);
    }

    /// Vectors in the index.
    pub fn len(&self) -> usize {
        self.inner.size()
    }

    /// True when the index holds no vector.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimensions of its vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How its vectors are stored.
    pub fn quantization(&self) -> Quantization {
        // Only kinds `quantization` knows are ever created or opened.
        quantization(self.inner.scalar_kind()).unwrap_or(Quantization::F32)
    }

    /// Bytes the index holds in memory (graph and vectors).
    pub fn memory_bytes(&self) -> usize {
        self.inner.memory_usage()
    }

    /// Writes the index to `path` (through a temporary file renamed into
    /// place, so a reader never sees half a file).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let tmp_str = tmp
            .to_str()
            .ok_or_else(|| StoreError::Ann(format!("{}: not UTF-8", tmp.display())))?;
        self.inner
            .save(tmp_str)
            .map_err(|e| ann_err(&format!("saving {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path).map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Opens a saved index memory-mapped (read-only: no adds; the file must
    /// stay in place while it is used). `opts` gives the search settings.
    pub fn view(path: &Path, opts: &AnnOptions) -> Result<AnnIndex> {
        Self::open(path, opts, true, 1)
    }

    /// Reads a saved index into memory (it can then be added to from up to
    /// `threads` threads at once).
    pub fn load(path: &Path, opts: &AnnOptions, threads: usize) -> Result<AnnIndex> {
        Self::open(path, opts, false, threads)
    }

    fn open(path: &Path, opts: &AnnOptions, view: bool, threads: usize) -> Result<AnnIndex> {
        let p = path
            .to_str()
            .ok_or_else(|| StoreError::Ann(format!("{}: not UTF-8", path.display())))?;
        let what = || format!("opening {}", path.display());
        let meta = Index::metadata(p).map_err(|e| ann_err(&what(), e))?;
        let dim = meta.dimensions as usize;
        if quantization(meta.quantization).is_none() {
            let kind = meta.quantization;
            return Err(ann_err(
                &what(),
                format!("vectors stored as {kind:?}, which kino does not write"),
            ));
        }
        let mut o = options(dim, opts);
        o.quantization = meta.quantization;
        o.metric = meta.metric;
        let inner = Index::new(&o).map_err(|e| ann_err(&what(), e))?;
        if view {
            inner.view(p).map_err(|e| ann_err(&what(), e))?;
        } else {
            inner.load(p).map_err(|e| ann_err(&what(), e))?;
        }
        inner.change_expansion_search(opts.expansion_search);
        let index = AnnIndex {
            inner,
            dim,
            threads: threads.max(1),
        };
        if !view {
            // Loading sizes the scratch space for this machine's cores.
            index
                .inner
                .reserve_capacity_and_threads(index.inner.capacity().max(index.len()).max(1), index.threads)
                .map_err(|e| ann_err(&what(), e))?;
        }
        Ok(index)
    }
}

/// The [`Quantization`] of a usearch scalar kind (`None` for kinds kino
/// does not write).
fn quantization(kind: ScalarKind) -> Option<Quantization> {
    match kind {
        ScalarKind::I8 => Some(Quantization::I8),
        ScalarKind::F16 => Some(Quantization::F16),
        ScalarKind::F32 => Some(Quantization::F32),
        _ => None,
    }
}

/// Cosine distances from usearch as similarities.
fn similarities(m: usearch::ffi::Matches) -> Vec<(u64, f32)> {
    m.keys
        .into_iter()
        .zip(m.distances.into_iter().map(|d| 1.0 - d))
        .collect()
}

/// A vector as it goes into usearch: floats as they are (usearch converts
/// them to f16 itself), int8 converted here.
enum Encoded {
    Float,
    I8(Vec<i8>),
}

impl Encoded {
    fn new(quantization: Quantization, v: &[f32]) -> Encoded {
        match quantization {
            Quantization::F32 | Quantization::F16 => Encoded::Float,
            // usearch's own conversion scales a vector to unit length and
            // then by 127: a unit 384-d vector's components are about ±0.05,
            // so they would land on a handful of levels (and be truncated).
            // Scaling the largest component to ±127 uses the whole range.
            Quantization::I8 => {
                let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                let scale = if max > 0.0 && max.is_finite() { 127.0 / max } else { 0.0 };
                Encoded::I8(
                    v.iter()
                        .map(|x| (x * scale).round().clamp(-127.0, 127.0) as i8)
                        .collect(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{dot, normalize};

    /// Clustered unit vectors from a fixed seed.
    fn data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(|_| next()).collect()).collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = &centres[i % centres.len()];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.5 * next()).collect();
            normalize(&mut v);
            out.extend(v);
        }
        out
    }

    fn exact(base: &[f32], dim: usize, q: &[f32], k: usize, keep: impl Fn(u64) -> bool) -> Vec<u64> {
        let mut s: Vec<(u64, f32)> = base
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (i as u64, dot(v, q)))
            .filter(|(i, _)| keep(*i))
            .collect();
        s.sort_by(|a, b| b.1.total_cmp(&a.1));
        s.into_iter().take(k).map(|x| x.0).collect()
    }

    #[test]
    fn finds_the_exact_neighbours_and_survives_a_save_and_a_memory_map() {
        let (n, dim) = (5000, 32);
        let base = data(n, dim, 7);
        let keys: Vec<u64> = (0..n as u64).collect();
        let idx = AnnIndex::build(dim, &AnnOptions::default(), &keys, &base, 2).unwrap();
        assert_eq!(idx.len(), n);
        let queries = data(100, dim, 99); // not indexed points
        let recall = |idx: &AnnIndex, keep: &dyn Fn(u64) -> bool| {
            let mut hit = 0;
            for q in queries.chunks_exact(dim) {
                let truth = exact(&base, dim, q, 10, keep);
                // A shortlist of 40, re-ranked with the exact scores (as search does).
                let mut short: Vec<(u64, f32)> = idx
                    .search_filtered(q, 40, keep)
                    .unwrap()
                    .iter()
                    .map(|x| (x.0, dot(&base[x.0 as usize * dim..][..dim], q)))
                    .collect();
                short.sort_by(|a, b| b.1.total_cmp(&a.1));
                let got: Vec<u64> = short.iter().take(10).map(|x| x.0).collect();
                assert!(got.iter().all(|k| keep(*k)));
                hit += truth.iter().filter(|t| got.contains(t)).count();
            }
            hit as f64 / (queries.len() / dim * 10) as f64
        };
        let all = recall(&idx, &|_| true);
        eprintln!("recall@10 (shortlist of 40, re-ranked): {all}");
        assert!(all >= 0.95, "recall@10 {all}");
        let some = recall(&idx, &|k| k % 7 == 3);
        assert!(some >= 0.9, "filtered recall@10 {some}");
        let q = &queries[..dim];
        let top = idx.search(q, 1).unwrap()[0];
        let want = dot(&base[top.0 as usize * dim..][..dim], q);
        assert!((top.1 - want).abs() < 0.02, "similarity {} vs exact {want}", top.1);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segments.usearch");
        idx.save(&path).unwrap();
        let viewed = AnnIndex::view(&path, &AnnOptions::default()).unwrap();
        assert_eq!(viewed.len(), n);
        assert_eq!(viewed.quantization(), Quantization::I8);
        assert_eq!(viewed.search(q, 10).unwrap(), idx.search(q, 10).unwrap());
        let loaded = AnnIndex::load(&path, &AnnOptions::default(), 2).unwrap();
        assert!(loaded.remove(top.0).unwrap());
        loaded.add(1_000_000, q).unwrap();
        assert_eq!(loaded.search(q, 1).unwrap()[0].0, 1_000_000);

        // Bad input is an error, not a crash.
        assert!(idx.search(&[1.0; 3], 5).is_err());
        std::fs::write(dir.path().join("junk.usearch"), b"not an index").unwrap();
        assert!(AnnIndex::view(&dir.path().join("junk.usearch"), &AnnOptions::default()).is_err());
        assert!(AnnIndex::view(&dir.path().join("absent.usearch"), &AnnOptions::default()).is_err());
    }

    #[test]
    fn a_new_vector_is_linked_to_up_to_twice_m_on_the_base_level() {
        // The one change kino makes to usearch (third_party/README.md): a
        // new node keeps up to 2·M base-level links, as faiss gives it,
        // where upstream keeps M. The last vector inserted has only the
        // links made for it (no later insert adds a reverse link to it).
        // In 384 dimensions the diversity heuristic keeps nearly every
        // candidate, so upstream's M is the cap it reaches.
        let (n, dim, m) = (1000, 384, 4);
        let base = data(n, dim, 11);
        let opts = AnnOptions {
            connectivity: m,
            ..AnnOptions::default()
        };
        let idx = AnnIndex::new(dim, &opts, n, 1).unwrap();
        for (key, v) in base.chunks_exact(dim).enumerate() {
            idx.add(key as u64, v).unwrap();
        }
        let last = (n - 1) as u64;
        let links = idx.inner.neighbors(last, 0).count();
        assert!(links > m && links <= 2 * m, "{links} base-level links at M {m}");
        // Above the base level the cap stays M.
        for key in 0..n as u64 {
            for level in 1..=idx.inner.level_of_key(key) {
                assert!(idx.inner.neighbors(key, level).count() <= m);
            }
        }
    }

    #[test]
    fn every_vector_is_found_where_it_was_put_in_the_block_or_past_it() {
        // kino's second change to usearch (third_party/README.md): the
        // vectors of the slots reserved while the index was empty sit in
        // one block, addressed by slot; slots added past it are allocated
        // one by one, a removed slot is reused in place, and a loaded or
        // viewed index reads its block from the file. Each vector must be
        // found under its own key whichever of these holds it.
        let (dim, reserved, n) = (32, 300, 1000);
        let base = data(n, dim, 13);
        let idx = AnnIndex::new(dim, &AnnOptions::default(), reserved, 2).unwrap();
        let rows: Vec<(u64, &[f32])> = (0..n as u64).zip(base.chunks_exact(dim)).collect();
        idx.add_parallel(&rows[..reserved], 2).unwrap();
        // Past the block, then two slots freed and reused: one in it, one past it.
        idx.add_parallel(&rows[reserved..], 2).unwrap();
        for key in [7u64, 777] {
            assert!(idx.remove(key).unwrap());
            let v = &base[key as usize * dim..][..dim];
            idx.add(key + 10_000, v).unwrap();
        }
        let key_of = |i: u64| if i == 7 || i == 777 { i + 10_000 } else { i };
        // One more vector, added past the block of a loaded index below.
        let (extra_key, extra) = (5_000u64, data(1, dim, 17));
        let vector_of = |key: u64| match key {
            k if k == extra_key => &extra[..],
            k => &base[(k % 10_000) as usize * dim..][..dim],
        };
        // A wrong vector in a slot shows as a wrong similarity for its key
        // (usearch scores candidates with the stored vectors). A vector is
        // its own nearest, but HNSW leaves a node or two of a thousand
        // unreachable (upstream too), hence 99 % and not all.
        let check = |idx: &AnnIndex, what: &str| {
            let mut found_itself = 0;
            for (i, v) in base.chunks_exact(dim).enumerate() {
                let got = idx.search(v, 10).unwrap();
                for (key, sim) in &got {
                    let want = dot(v, vector_of(*key));
                    assert!(
                        (sim - want).abs() < 0.01,
                        "{what}: key {key} scored {sim} for vector {i}, its vector gives {want}"
                    );
                }
                found_itself += usize::from(got[0].0 == key_of(i as u64));
            }
            assert!(
                found_itself >= n * 99 / 100,
                "{what}: {found_itself} of {n} vectors found themselves first"
            );
        };
        check(&idx, "built");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segments.usearch");
        idx.save(&path).unwrap();
        check(&AnnIndex::load(&path, &AnnOptions::default(), 2).unwrap(), "loaded");
        check(&AnnIndex::view(&path, &AnnOptions::default()).unwrap(), "viewed");
        let loaded = AnnIndex::load(&path, &AnnOptions::default(), 2).unwrap();
        loaded.add(extra_key, &extra).unwrap(); // past a loaded block
        assert_eq!(loaded.search(&extra, 1).unwrap()[0].0, extra_key);
        check(&loaded, "loaded and added to");
    }

    #[test]
    fn int8_uses_the_whole_range_of_each_vector() {
        // A unit 384-d vector has components of about ±0.05: scaled by 127
        // alone they would fall on a dozen levels (cosine to the original
        // about 0.98); scaled by their largest they keep three decimals.
        let v = data(1, 384, 5);
        let Encoded::I8(q) = Encoded::new(Quantization::I8, &v) else {
            panic!("int8 expected")
        };
        assert_eq!(q.iter().map(|x| x.unsigned_abs()).max(), Some(127));
        let back: Vec<f32> = q.iter().map(|x| *x as f32).collect();
        let cos = dot(&back, &v) / dot(&back, &back).sqrt();
        assert!(cos > 0.9995, "cosine of the int8 vector to the original {cos}");
        let Encoded::I8(zero) = Encoded::new(Quantization::I8, &[0.0; 8]) else {
            panic!("int8 expected")
        };
        assert_eq!(zero, vec![0; 8]);
    }
}
