//! The kept visual features of one video: a small binary file ("KINOFEAT" v1) written while a video is indexed
//! and read back by `kino train`, so the projection of pooled visual vectors can be learnt without decoding the
//! videos again.
//!
//! # Format (little-endian)
//!
//! | part | content |
//! | --- | --- |
//! | header | magic `b"KINOFEAT"`, `u32` version (1), `u32` pooled_dim, `u32` grid_tokens, `u32` grid_dim |
//! | record (one per sampled frame, until EOF) | `i64` pts_ms, `u32` byte length of the rest of the record, then the rest |
//! | rest of a record | pooled_dim `f16`; grid_tokens × grid_dim `f16` (absent when the grid is 0); `u16` label count, then per label `u16` byte length, the UTF-8 name, `f32` probability |
//!
//! `grid_tokens = grid_dim = 0` when only the pooled vectors are kept. A truncated final record (a crash in the
//! middle of a write) is ignored by the readers, which treat it as the end of the file; a bad magic or version, or
//! a record whose length disagrees with the header, is an error naming the path.
//!
//! [`FeatureWriter`] writes to a `.partial` file and renames it into place in [`FeatureWriter::finish`], so a
//! finished file is always complete.

use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use half::f16;

use crate::FusionError;

const MAGIC: &[u8; 8] = b"KINOFEAT";
const VERSION: u32 = 1;
const HEADER_BYTES: u64 = 8 + 4 * 4;
/// `i64` pts + `u32` length.
const RECORD_HEAD_BYTES: u64 = 12;
/// Rough size of the label part of a record (five labels of some twenty bytes), for [`FeatureShape::bytes_per_frame`].
const LABEL_BYTES_ESTIMATE: usize = 2 + 5 * (2 + 20 + 4);

/// The widths of the vectors kept per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureShape {
    /// Width of the pooled image embedding.
    pub pooled_dim: usize,
    /// Number of grid tokens per frame (0 when only pooled vectors are kept).
    pub grid_tokens: usize,
    /// Width of one grid token (0 when only pooled vectors are kept).
    pub grid_dim: usize,
}

impl FeatureShape {
    /// Whether the token grids are kept.
    pub fn has_grid(&self) -> bool {
        self.grid_tokens > 0 && self.grid_dim > 0
    }

    /// The same shape without the grid.
    pub fn pooled_only(&self) -> FeatureShape {
        FeatureShape {
            pooled_dim: self.pooled_dim,
            grid_tokens: 0,
            grid_dim: 0,
        }
    }

    /// Number of `f16` values of the grid of one frame (0 without a grid).
    fn grid_len(&self) -> usize {
        if self.has_grid() {
            self.grid_tokens * self.grid_dim
        } else {
            0
        }
    }

    /// Approximate size of one frame's record in bytes (the labels are estimated), for disk-space estimates.
    pub fn bytes_per_frame(&self) -> usize {
        RECORD_HEAD_BYTES as usize + 2 * (self.pooled_dim + self.grid_len()) + LABEL_BYTES_ESTIMATE
    }
}

/// What is kept of one sampled frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FrameRecord {
    /// Presentation time of the frame, in milliseconds.
    pub pts_ms: i64,
    /// The pooled image embedding (`pooled_dim` values).
    pub pooled: Vec<f32>,
    /// The token grid, row-major `grid_tokens × grid_dim`; empty when the shape is pooled-only.
    pub grid: Vec<f32>,
    /// Classifier labels with their probabilities.
    pub labels: Vec<(String, f32)>,
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> FusionError {
    FusionError::Features {
        path: path.to_path_buf(),
        message: format!("{what}: {e}"),
    }
}

fn bad(path: &Path, message: impl Into<String>) -> FusionError {
    FusionError::Features {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes a features file, frame by frame, to a `.partial` path; [`FeatureWriter::finish`] renames it into place.
pub struct FeatureWriter {
    out: BufWriter<File>,
    partial: PathBuf,
    shape: FeatureShape,
    frames: usize,
    bytes: u64,
    buf: Vec<u8>,
}

impl FeatureWriter {
    /// Creates (or truncates) `partial` and writes the header. A shape whose grid has a zero side is stored as
    /// pooled-only.
    pub fn create(partial: &Path, shape: FeatureShape) -> Result<Self, FusionError> {
        let shape = if shape.has_grid() { shape } else { shape.pooled_only() };
        let to_u32 = |v: usize, what: &str| {
            u32::try_from(v).map_err(|_| bad(partial, format!("{what} {v} does not fit the format")))
        };
        let file = File::create(partial).map_err(|e| io_err(partial, "cannot create", e))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let mut head = Vec::with_capacity(HEADER_BYTES as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&to_u32(shape.pooled_dim, "pooled_dim")?.to_le_bytes());
        head.extend_from_slice(&to_u32(shape.grid_tokens, "grid_tokens")?.to_le_bytes());
        head.extend_from_slice(&to_u32(shape.grid_dim, "grid_dim")?.to_le_bytes());
        out.write_all(&head).map_err(|e| io_err(partial, "cannot write", e))?;
        Ok(Self {
            out,
            partial: partial.to_path_buf(),
            shape,
            frames: 0,
            bytes: HEADER_BYTES,
            buf: Vec::new(),
        })
    }

    /// Appends one frame. A pooled vector (or, when grids are kept, a grid) of the wrong width is a
    /// [`FusionError::Dimension`]; the grid is dropped when the shape is pooled-only. Label names longer than
    /// 65,535 bytes are cut (at a character boundary) and at most 65,535 labels are kept.
    pub fn push(&mut self, frame: &FrameRecord) -> Result<(), FusionError> {
        if frame.pooled.len() != self.shape.pooled_dim {
            return Err(FusionError::Dimension {
                context: "kept pooled features".into(),
                expected: self.shape.pooled_dim,
                got: frame.pooled.len(),
            });
        }
        let grid_len = self.shape.grid_len();
        if grid_len > 0 && frame.grid.len() != grid_len {
            return Err(FusionError::Dimension {
                context: "kept grid features".into(),
                expected: grid_len,
                got: frame.grid.len(),
            });
        }
        let buf = &mut self.buf;
        buf.clear();
        buf.extend_from_slice(&frame.pts_ms.to_le_bytes());
        buf.extend_from_slice(&[0u8; 4]); // length, patched below
        for &v in &frame.pooled {
            buf.extend_from_slice(&f16::from_f32(v).to_le_bytes());
        }
        if grid_len > 0 {
            for &v in &frame.grid {
                buf.extend_from_slice(&f16::from_f32(v).to_le_bytes());
            }
        }
        let labels = &frame.labels[..frame.labels.len().min(u16::MAX as usize)];
        buf.extend_from_slice(&(labels.len() as u16).to_le_bytes());
        for (name, p) in labels {
            let mut end = name.len().min(u16::MAX as usize);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            buf.extend_from_slice(&(end as u16).to_le_bytes());
            buf.extend_from_slice(&name.as_bytes()[..end]);
            buf.extend_from_slice(&p.to_le_bytes());
        }
        let rest = u32::try_from(buf.len() - RECORD_HEAD_BYTES as usize)
            .map_err(|_| bad(&self.partial, "a frame record exceeds 4 GiB"))?;
        buf[8..12].copy_from_slice(&rest.to_le_bytes());
        self.out
            .write_all(buf)
            .map_err(|e| io_err(&self.partial, "cannot write", e))?;
        self.frames += 1;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Bytes written so far, header included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The shape of the file (pooled-only when the grid is not kept).
    pub fn shape(&self) -> FeatureShape {
        self.shape
    }

    /// Flushes and syncs the file, then renames the partial file to `path` atomically.
    pub fn finish(self, path: &Path) -> Result<(), FusionError> {
        let partial = self.partial;
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_err(&partial, "cannot flush", e.into_error()))?;
        file.sync_all().map_err(|e| io_err(&partial, "cannot sync", e))?;
        drop(file);
        std::fs::rename(&partial, path).map_err(|e| io_err(path, "cannot rename the partial file into place", e))?;
        // Make the rename itself durable (best effort: not every platform can open a directory).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// A streaming reader over the records of a features file.
struct Reader {
    input: BufReader<File>,
    path: PathBuf,
    shape: FeatureShape,
    pos: u64,
    len: u64,
}

impl Reader {
    fn open(path: &Path) -> Result<Self, FusionError> {
        let file = File::open(path).map_err(|e| io_err(path, "cannot open", e))?;
        let len = file.metadata().map_err(|e| io_err(path, "cannot stat", e))?.len();
        let mut input = BufReader::with_capacity(1 << 16, file);
        let mut head = [0u8; HEADER_BYTES as usize];
        match input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Err(bad(path, "too short for a header")),
            Err(e) => return Err(io_err(path, "cannot read", e)),
        }
        if &head[..8] != MAGIC {
            return Err(bad(path, "not a kino features file (bad magic)"));
        }
        let word = |i: usize| u32::from_le_bytes(head[8 + 4 * i..12 + 4 * i].try_into().expect("4 bytes"));
        if word(0) != VERSION {
            return Err(bad(
                path,
                format!("unsupported version {} (expected {VERSION})", word(0)),
            ));
        }
        let shape = FeatureShape {
            pooled_dim: word(1) as usize,
            grid_tokens: word(2) as usize,
            grid_dim: word(3) as usize,
        };
        if (shape.grid_tokens == 0) != (shape.grid_dim == 0) {
            return Err(bad(
                path,
                format!("inconsistent grid {}×{}", shape.grid_tokens, shape.grid_dim),
            ));
        }
        Ok(Self {
            input,
            path: path.to_path_buf(),
            shape,
            pos: HEADER_BYTES,
            len,
        })
    }

    /// The next record, or `None` at the end (or at a truncated final record). The grid is decoded only when
    /// `grid` is set, the labels only when `labels` is set; skipped parts are not read.
    fn next(&mut self, grid: bool, labels: bool) -> Result<Option<FrameRecord>, FusionError> {
        if self.len.saturating_sub(self.pos) < RECORD_HEAD_BYTES {
            return Ok(None);
        }
        let mut head = [0u8; RECORD_HEAD_BYTES as usize];
        self.read(&mut head)?;
        let pts_ms = i64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let rest = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as u64;
        if self.len - self.pos < rest {
            return Ok(None); // truncated final record
        }
        let (pooled_bytes, grid_bytes) = (2 * self.shape.pooled_dim as u64, 2 * self.shape.grid_len() as u64);
        if rest < pooled_bytes + grid_bytes + 2 {
            return Err(bad(
                &self.path,
                format!(
                    "record at {} ms holds {rest} bytes, fewer than the header's widths need ({})",
                    pts_ms,
                    pooled_bytes + grid_bytes + 2
                ),
            ));
        }
        let end = self.pos + rest;
        let mut bytes = vec![0u8; pooled_bytes as usize];
        self.read(&mut bytes)?;
        let pooled = decode_f16(&bytes);
        let grid = if grid && grid_bytes > 0 {
            bytes.resize(grid_bytes as usize, 0);
            self.read(&mut bytes)?;
            decode_f16(&bytes)
        } else {
            self.skip(grid_bytes)?;
            Vec::new()
        };
        let labels = if labels {
            let mut rest_bytes = vec![0u8; (end - self.pos) as usize];
            self.read(&mut rest_bytes)?;
            decode_labels(&rest_bytes).ok_or_else(|| {
                bad(
                    &self.path,
                    format!("record at {pts_ms} ms: its labels disagree with its length"),
                )
            })?
        } else {
            self.skip(end - self.pos)?;
            Vec::new()
        };
        Ok(Some(FrameRecord {
            pts_ms,
            pooled,
            grid,
            labels,
        }))
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), FusionError> {
        self.input
            .read_exact(buf)
            .map_err(|e| io_err(&self.path, "cannot read", e))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Result<(), FusionError> {
        if n > 0 {
            let n_i64 = i64::try_from(n).map_err(|_| bad(&self.path, "record too long"))?;
            self.input
                .seek_relative(n_i64)
                .map_err(|e| io_err(&self.path, "cannot seek", e))?;
            self.pos += n;
        }
        Ok(())
    }
}

fn decode_f16(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

/// Parses the label part of a record; `None` unless it is well formed and fills `bytes` exactly.
fn decode_labels(bytes: &[u8]) -> Option<Vec<(String, f32)>> {
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = bytes.get(*at..at.checked_add(n)?)?;
        *at += n;
        Some(s)
    };
    let mut at = 0;
    let count = u16::from_le_bytes(take(&mut at, 2)?.try_into().ok()?) as usize;
    let mut labels = Vec::with_capacity(count);
    for _ in 0..count {
        let n = u16::from_le_bytes(take(&mut at, 2)?.try_into().ok()?) as usize;
        let name = String::from_utf8_lossy(take(&mut at, n)?).into_owned();
        let p = f32::from_le_bytes(take(&mut at, 4)?.try_into().ok()?);
        labels.push((name, p));
    }
    (at == bytes.len()).then_some(labels)
}

/// Reads a whole features file: its shape and every complete record (grids and labels decoded).
pub fn read(path: &Path) -> Result<(FeatureShape, Vec<FrameRecord>), FusionError> {
    let mut r = Reader::open(path)?;
    let mut frames = Vec::new();
    while let Some(f) = r.next(true, true)? {
        frames.push(f);
    }
    Ok((r.shape, frames))
}

/// Reads only the times and pooled vectors of a features file; the grid and label bytes are skipped, not decoded.
pub fn read_pooled(path: &Path) -> Result<Vec<(i64, Vec<f32>)>, FusionError> {
    let mut r = Reader::open(path)?;
    let mut frames = Vec::new();
    while let Some(f) = r.next(false, false)? {
        frames.push((f.pts_ms, f.pooled));
    }
    Ok(frames)
}

/// Reads the times, pooled vectors and labels of a features file; the grids are skipped (`grid` is empty).
pub fn read_without_grids(path: &Path) -> Result<Vec<FrameRecord>, FusionError> {
    let mut r = Reader::open(path)?;
    let mut frames = Vec::new();
    while let Some(f) = r.next(false, true)? {
        frames.push(f);
    }
    Ok(frames)
}

/// Calls `f(index, grid)` with the grid of every record that has one, in file order (`index` counts every record,
/// as the other readers list them); one grid is decoded at a time, nothing else is. Returns the file's shape.
pub fn for_each_grid(path: &Path, mut f: impl FnMut(usize, &[f32])) -> Result<FeatureShape, FusionError> {
    let mut r = Reader::open(path)?;
    let mut index = 0;
    while let Some(rec) = r.next(true, false)? {
        if !rec.grid.is_empty() {
            f(index, &rec.grid);
        }
        index += 1;
    }
    Ok(r.shape)
}

/// Reads only the header of a features file.
pub fn read_shape(path: &Path) -> Result<FeatureShape, FusionError> {
    Ok(Reader::open(path)?.shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pts_ms: i64, shape: FeatureShape, seed: f32) -> FrameRecord {
        FrameRecord {
            pts_ms,
            pooled: (0..shape.pooled_dim)
                .map(|i| (i as f32 * 0.37 + seed).sin() * 3.0)
                .collect(),
            grid: (0..shape.grid_tokens * shape.grid_dim)
                .map(|i| (i as f32 * 0.11 - seed).cos())
                .collect(),
            labels: vec![("tabby cat".into(), 0.75), ("sofa, couch".into(), 0.125)],
        }
    }

    fn write(path: &Path, shape: FeatureShape, frames: &[FrameRecord]) -> FeatureShape {
        let partial = path.with_extension("partial");
        let mut w = FeatureWriter::create(&partial, shape).unwrap();
        for f in frames {
            w.push(f).unwrap();
        }
        assert_eq!(w.frames(), frames.len());
        assert_eq!(w.bytes(), {
            let s = w.shape();
            HEADER_BYTES + frames.len() as u64 * (s.bytes_per_frame() as u64 - LABEL_BYTES_ESTIMATE as u64 + 34)
        });
        let s = w.shape();
        w.finish(path).unwrap();
        assert!(!partial.exists());
        s
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 2e-3 * x.abs().max(1.0))
    }

    #[test]
    fn round_trip_within_f16_precision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.feat");
        let shape = FeatureShape {
            pooled_dim: 12,
            grid_tokens: 4,
            grid_dim: 6,
        };
        let frames: Vec<_> = (0..5).map(|i| frame(i * 1000 - 40, shape, i as f32)).collect();
        write(&path, shape, &frames);
        let (s, back) = read(&path).unwrap();
        assert_eq!(s, shape);
        assert_eq!(read_shape(&path).unwrap(), shape);
        assert_eq!(back.len(), frames.len());
        for (a, b) in frames.iter().zip(&back) {
            assert_eq!(a.pts_ms, b.pts_ms);
            assert!(close(&a.pooled, &b.pooled));
            assert!(close(&a.grid, &b.grid));
            assert_eq!(a.labels, b.labels);
        }
        let pooled = read_pooled(&path).unwrap();
        assert_eq!(pooled.len(), 5);
        for (a, (pts, p)) in frames.iter().zip(&pooled) {
            assert_eq!(a.pts_ms, *pts);
            assert!(close(&a.pooled, p));
        }
    }

    #[test]
    fn pooled_only_shape_drops_grids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.feat");
        let full = FeatureShape {
            pooled_dim: 8,
            grid_tokens: 3,
            grid_dim: 5,
        };
        let frames: Vec<_> = (0..3).map(|i| frame(i * 500, full, i as f32)).collect();
        let s = write(&path, full.pooled_only(), &frames);
        assert!(!s.has_grid());
        assert!(s.bytes_per_frame() < full.bytes_per_frame());
        let (shape, back) = read(&path).unwrap();
        assert_eq!(
            shape,
            FeatureShape {
                pooled_dim: 8,
                grid_tokens: 0,
                grid_dim: 0
            }
        );
        assert!(back.iter().all(|f| f.grid.is_empty() && f.labels.len() == 2));
        assert!(close(&back[2].pooled, &frames[2].pooled));
    }

    #[test]
    fn truncated_last_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.feat");
        let shape = FeatureShape {
            pooled_dim: 10,
            grid_tokens: 2,
            grid_dim: 4,
        };
        let frames: Vec<_> = (0..4).map(|i| frame(i * 1000, shape, i as f32)).collect();
        write(&path, shape, &frames);
        let full = std::fs::read(&path).unwrap();
        for cut in [1, 7, 13, 30] {
            std::fs::write(&path, &full[..full.len() - cut]).unwrap();
            let (_, back) = read(&path).unwrap();
            assert_eq!(back.len(), 3, "cut {cut}");
            assert_eq!(back[2].pts_ms, 2000);
            assert_eq!(read_pooled(&path).unwrap().len(), 3);
        }
        // Only the header: no frames, no error.
        std::fs::write(&path, &full[..HEADER_BYTES as usize + 5]).unwrap();
        assert!(read(&path).unwrap().1.is_empty());
    }

    #[test]
    fn bad_magic_version_or_length_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.feat");
        let shape = FeatureShape {
            pooled_dim: 4,
            grid_tokens: 0,
            grid_dim: 0,
        };
        write(&path, shape, &[frame(0, shape, 1.0)]);
        let good = std::fs::read(&path).unwrap();

        let mut b = good.clone();
        b[0] = b'X';
        std::fs::write(&path, &b).unwrap();
        let e = read(&path).unwrap_err();
        assert!(matches!(e, FusionError::Features { .. }));
        assert!(e.to_string().contains("broken.feat"), "{e}");
        assert!(read_pooled(&path).is_err() && read_shape(&path).is_err());

        let mut b = good.clone();
        b[8] = 2;
        std::fs::write(&path, &b).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("version"));

        // The header says 4 pooled values; the record claims fewer bytes than that.
        let mut b = good.clone();
        b[HEADER_BYTES as usize + 8..HEADER_BYTES as usize + 12].copy_from_slice(&3u32.to_le_bytes());
        std::fs::write(&path, &b).unwrap();
        let e = read_pooled(&path).unwrap_err();
        assert!(e.to_string().contains("broken.feat"), "{e}");

        std::fs::write(&path, b"KINO").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("broken.feat"));
    }

    #[test]
    fn wrong_width_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let shape = FeatureShape {
            pooled_dim: 6,
            grid_tokens: 2,
            grid_dim: 3,
        };
        let mut w = FeatureWriter::create(&dir.path().join("x.partial"), shape).unwrap();
        let mut f = frame(0, shape, 0.0);
        f.pooled.pop();
        assert!(matches!(
            w.push(&f),
            Err(FusionError::Dimension {
                expected: 6,
                got: 5,
                ..
            })
        ));
        let mut f = frame(0, shape, 0.0);
        f.grid.clear();
        assert!(matches!(
            w.push(&f),
            Err(FusionError::Dimension {
                expected: 6,
                got: 0,
                ..
            })
        ));
        w.push(&frame(0, shape, 0.0)).unwrap();
        assert_eq!(w.frames(), 1);
    }
}
