//! Segment vectors stored row after row: one kind of vector (fused, text
//! or visual) per store, in the heap or in a memory-mapped file.
//!
//! A file-backed store only ever appends: a row once written never moves
//! or changes, so a saved snapshot of the index stays valid while the file
//! grows behind it. Rows of replaced segments are left in place (garbage)
//! until the index is next loaded in full. Rows are little-endian f32, as
//! the machines kino runs on are.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::{Result, StoreError};

/// Row number meaning "this segment has no such vector".
pub(crate) const NONE: u32 = u32::MAX;

enum Backing {
    Heap(Vec<f32>),
    File {
        file: File,
        path: PathBuf,
        map: Option<Mmap>,
    },
}

/// Rows of `dim` floats.
pub(crate) struct Rows {
    /// 0 until the first row fixes it.
    dim: usize,
    len: usize,
    backing: Backing,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Rows {
    /// Rows kept in the heap.
    pub(crate) fn heap() -> Rows {
        Rows {
            dim: 0,
            len: 0,
            backing: Backing::Heap(Vec::new()),
        }
    }

    /// Rows in the file at `path`: its first `len` rows of `dim` floats are
    /// kept (anything after them is cut off), or a new empty file when
    /// `len` is 0.
    pub(crate) fn file(path: &Path, dim: usize, len: usize) -> Result<Rows> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(len == 0)
            .open(path)
            .map_err(io(path))?;
        let want = (dim * len * 4) as u64;
        let have = file.metadata().map_err(io(path))?.len();
        if have < want {
            return Err(StoreError::Corrupt(format!(
                "{}: {have} bytes, but the index needs {want}",
                path.display()
            )));
        }
        if have > want {
            file.set_len(want).map_err(io(path))?;
        }
        let mut rows = Rows {
            dim,
            len,
            backing: Backing::File {
                file,
                path: path.to_path_buf(),
                map: None,
            },
        };
        rows.remap()?;
        Ok(rows)
    }

    fn remap(&mut self) -> Result<()> {
        if let Backing::File { file, path, map } = &mut self.backing {
            *map = if self.len == 0 {
                None
            } else {
                // SAFETY: the file belongs to this process (the index folder
                // is locked) and is only appended to, never truncated or
                // rewritten while mapped.
                Some(unsafe { Mmap::map(&*file) }.map_err(io(path))?)
            };
        }
        Ok(())
    }

    /// Floats per row (0 while empty).
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Rows held (live and garbage).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends rows (`flat` holds whole rows of this store's width, or of
    /// `dim` when it is still empty); returns the first new row's number.
    pub(crate) fn append(&mut self, flat: &[f32], dim: usize) -> Result<u32> {
        if self.dim == 0 {
            self.dim = dim;
        }
        if dim != self.dim || dim == 0 || !flat.len().is_multiple_of(dim) {
            return Err(StoreError::Corrupt(format!(
                "{}-d vectors for an index of {}-d vectors",
                dim, self.dim
            )));
        }
        let first = self.len;
        let added = flat.len() / dim;
        if first + added >= NONE as usize {
            return Err(StoreError::Corrupt("more than 4 billion vectors".into()));
        }
        match &mut self.backing {
            Backing::Heap(v) => v.extend_from_slice(flat),
            Backing::File { file, path, .. } => {
                let bytes: Vec<u8> = flat.iter().flat_map(|x| x.to_le_bytes()).collect();
                let mut w = std::io::BufWriter::new(&*file);
                // Appends land at the end: the file is opened without a
                // cursor move, so seek there first.
                use std::io::Seek;
                w.seek(std::io::SeekFrom::Start((first * dim * 4) as u64))
                    .map_err(io(path))?;
                w.write_all(&bytes).map_err(io(path))?;
                w.flush().map_err(io(path))?;
            }
        }
        self.len += added;
        self.remap()?;
        Ok(first as u32)
    }

    /// Row `i` (empty when out of range).
    pub(crate) fn get(&self, i: u32) -> &[f32] {
        let i = i as usize;
        if i >= self.len {
            return &[];
        }
        let (a, b) = (i * self.dim, (i + 1) * self.dim);
        match &self.backing {
            Backing::Heap(v) => &v[a..b],
            Backing::File { map, .. } => match map {
                Some(m) => bytemuck::cast_slice(&m[a * 4..b * 4]),
                None => &[],
            },
        }
    }

    /// Appends row `i` to `out` (nothing when out of range); returns
    /// whether it did. A file-backed row is read with a positioned read, so
    /// its page stays in the kernel's page cache and is never mapped into
    /// this process: a search that reads a few hundred rows of a file of
    /// gigabytes leaves the process's resident memory as it was, where
    /// touching the mapping would keep every page it ever read resident.
    pub(crate) fn read_into(&self, i: u32, out: &mut Vec<f32>) -> Result<bool> {
        let i = i as usize;
        if i >= self.len {
            return Ok(false);
        }
        match &self.backing {
            Backing::Heap(v) => out.extend_from_slice(&v[i * self.dim..(i + 1) * self.dim]),
            Backing::File { file, path, .. } => {
                use std::os::unix::fs::FileExt;
                let at = out.len();
                out.resize(at + self.dim, 0.0);
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut out[at..]);
                if let Err(e) = file.read_exact_at(bytes, (i * self.dim * 4) as u64) {
                    out.truncate(at);
                    return Err(io(path)(e));
                }
            }
        }
        Ok(true)
    }

    /// Writes the rows through to the disk (file-backed only).
    pub(crate) fn sync(&self) -> Result<()> {
        if let Backing::File { file, path, .. } = &self.backing {
            file.sync_data().map_err(io(path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_append_read_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fused.f32");
        let mut heap = Rows::heap();
        let mut file = Rows::file(&path, 0, 0).unwrap();
        for rows in [&mut heap, &mut file] {
            assert_eq!(rows.append(&[1.0, 2.0, 3.0, 4.0], 2).unwrap(), 0);
            assert_eq!(rows.append(&[5.0, 6.0], 2).unwrap(), 2);
            assert_eq!(rows.get(1), &[3.0, 4.0]);
            assert_eq!(rows.get(2), &[5.0, 6.0]);
            assert!(rows.get(3).is_empty());
            let mut out = vec![9.0];
            assert!(rows.read_into(1, &mut out).unwrap());
            assert!(rows.read_into(2, &mut out).unwrap());
            assert!(!rows.read_into(3, &mut out).unwrap());
            assert_eq!(out, [9.0, 3.0, 4.0, 5.0, 6.0]);
            assert!(rows.append(&[1.0, 2.0, 3.0], 3).is_err(), "other width");
        }
        file.sync().unwrap();
        drop(file);
        // Reopened with the first two rows: the third is cut off.
        let reopened = Rows::file(&path, 2, 2).unwrap();
        assert_eq!(reopened.get(0), &[1.0, 2.0]);
        assert!(reopened.get(2).is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        // A file shorter than the index needs is an error naming it.
        let err = Rows::file(&path, 2, 5).err().unwrap().to_string();
        assert!(err.contains("fused.f32"), "{err}");
    }
}
