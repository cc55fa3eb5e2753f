//! `kino-manifest.json`: what an installed model is, where it came from and
//! the SHA-256 and size of each of its files.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::Kind;
use crate::error::{ModelError, Result};

/// The manifest's file name inside a model folder.
pub const MANIFEST_FILE: &str = "kino-manifest.json";

/// One file of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the model folder (`/`-separated).
    pub path: String,
    /// SHA-256 (hex).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// An installed model's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Model name (its folder under the models directory).
    pub name: String,
    /// What it is for.
    pub kind: Kind,
    /// Where it came from (`pip wheel …`, `hub …`, `import …`).
    pub source: String,
    /// The source's revision: the hub commit, the wheel's file name, or
    /// `local`.
    pub revision: String,
    /// When it was installed (Unix ms).
    pub installed_ms: i64,
    /// Every file but the manifest, sorted by path.
    pub files: Vec<FileEntry>,
}

/// A file that no longer matches its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Path relative to the model folder.
    pub path: String,
    /// What is wrong (missing, size, checksum).
    pub what: String,
}

impl Manifest {
    /// Describes the files now in `dir` (hashing each).
    pub fn describe(dir: &Path, name: &str, kind: Kind, source: &str, revision: &str) -> Result<Manifest> {
        let mut files = Vec::new();
        for rel in list_files(dir)? {
            let path = dir.join(&rel);
            let size = std::fs::metadata(&path).map_err(|e| ModelError::io(&path, e))?.len();
            files.push(FileEntry {
                path: rel,
                sha256: sha256_file(&path)?,
                size,
            });
        }
        Ok(Manifest {
            name: name.into(),
            kind,
            source: source.into(),
            revision: revision.into(),
            installed_ms: now_ms(),
            files,
        })
    }

    /// Reads `dir/kino-manifest.json`; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ModelError::invalid(&path, format!("unreadable manifest: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ModelError::io(&path, e)),
        }
    }

    /// Writes `dir/kino-manifest.json`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|e| ModelError::invalid(&path, e.to_string()))?;
        std::fs::write(&path, json).map_err(|e| ModelError::io(&path, e))
    }

    /// The entry of `path`.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Total size of the files.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Files of `dir` that are missing or have another size than recorded
    /// (cheap: no hashing).
    pub fn check_sizes(&self, dir: &Path) -> Vec<Mismatch> {
        self.files
            .iter()
            .filter_map(|f| match std::fs::metadata(dir.join(&f.path)) {
                Err(_) => Some(Mismatch {
                    path: f.path.clone(),
                    what: "missing".into(),
                }),
                Ok(m) if m.len() != f.size => Some(Mismatch {
                    path: f.path.clone(),
                    what: format!("size {} (recorded {})", m.len(), f.size),
                }),
                Ok(_) => None,
            })
            .collect()
    }

    /// Files of `dir` that no longer match (re-hashes every file).
    pub fn verify(&self, dir: &Path) -> Result<Vec<Mismatch>> {
        let mut bad = self.check_sizes(dir);
        for f in &self.files {
            if bad.iter().any(|m| m.path == f.path) {
                continue;
            }
            let got = sha256_file(&dir.join(&f.path))?;
            if got != f.sha256 {
                bad.push(Mismatch {
                    path: f.path.clone(),
                    what: format!("SHA-256 {got} (recorded {})", f.sha256),
                });
            }
        }
        Ok(bad)
    }
}

/// Unix time in ms.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// SHA-256 (hex) of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    digest_file::<Sha256>(path, b"")
}

/// The digest `D` (hex) of `prefix` followed by a file's content.
pub(crate) fn digest_file<D: Digest>(path: &Path, prefix: &[u8]) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut h = D::new();
    h.update(prefix);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Every file under `dir` but the manifest, as sorted `/`-separated
/// relative paths.
pub fn list_files(dir: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for e in std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))? {
            let e = e.map_err(|e| ModelError::io(dir, e))?;
            let path: PathBuf = e.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if let Ok(rel) = path.strip_prefix(root) {
                let rel = rel.to_string_lossy().replace('\\', "/");
                if rel != MANIFEST_FILE {
                    out.push(rel);
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Checks that the model files in `dir` can be loaded, as far as their
/// formats go: every `.json` parses, and every `.safetensors` has a header
/// whose tensors end exactly at the end of the file (a cut download fails
/// here even without a checksum).
pub fn check_loadable(dir: &Path) -> Result<()> {
    for rel in list_files(dir)? {
        let path = dir.join(&rel);
        if rel.ends_with(".json") {
            let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| ModelError::invalid(&path, format!("not valid JSON: {e}")))?;
        } else if rel.ends_with(".safetensors") {
            check_safetensors(&path)?;
        }
    }
    Ok(())
}

/// A safetensors file: 8-byte little-endian header length, a JSON header
/// whose `data_offsets` index the bytes after it, and exactly those bytes.
fn check_safetensors(path: &Path) -> Result<()> {
    let bad = |msg: String| ModelError::invalid(path, format!("not a complete safetensors file: {msg}"));
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let len = f.metadata().map_err(|e| ModelError::io(path, e))?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| bad("shorter than 8 bytes".into()))?;
    let n = u64::from_le_bytes(n);
    if n > 100 << 20 || 8 + n > len {
        return Err(bad(format!("header of {n} bytes in a file of {len}")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
    let end = header
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    if 8 + n + end != len {
        return Err(bad(format!(
            "tensors end at byte {} but the file has {len}",
            8 + n + end
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid safetensors file with one f32 tensor of `n` values.
    pub(crate) fn safetensors(n: usize) -> Vec<u8> {
        let header = format!(
            r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
            4 * n
        );
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header.as_bytes());
        out.extend(std::iter::repeat_n(0u8, 4 * n));
        out
    }

    #[test]
    fn a_manifest_describes_hashes_and_catches_a_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
        std::fs::create_dir_all(dir.path().join("1_Pooling")).unwrap();
        std::fs::write(dir.path().join("1_Pooling/config.json"), b"{\"a\":1}").unwrap();
        std::fs::write(dir.path().join("model.safetensors"), safetensors(10)).unwrap();
        let m = Manifest::describe(dir.path(), "m", Kind::Text, "test", "local").unwrap();
        assert_eq!(
            m.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["1_Pooling/config.json", "config.json", "model.safetensors"]
        );
        assert_eq!(
            m.file("config.json").unwrap().sha256,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap().unwrap(), m);
        assert!(m.verify(dir.path()).unwrap().is_empty());
        check_loadable(dir.path()).unwrap();

        // One flipped byte: same size, another digest.
        let p = dir.path().join("model.safetensors");
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(m.check_sizes(dir.path()).is_empty());
        let bad = m.verify(dir.path()).unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].path, "model.safetensors");
        assert!(bad[0].what.contains("SHA-256"), "{:?}", bad[0]);
        std::fs::remove_file(dir.path().join("config.json")).unwrap();
        assert_eq!(m.check_sizes(dir.path())[0].what, "missing");
    }

    #[test]
    fn a_cut_safetensors_file_or_bad_json_is_not_loadable() {
        let dir = tempfile::tempdir().unwrap();
        let full = safetensors(100);
        std::fs::write(dir.path().join("model.safetensors"), &full[..full.len() - 7]).unwrap();
        let e = check_loadable(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("not a complete safetensors"),
            "{e}"
        );
        std::fs::write(dir.path().join("model.safetensors"), &full).unwrap();
        std::fs::write(dir.path().join("config.json"), b"{oops").unwrap();
        let e = check_loadable(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("not valid JSON"), "{e}");
    }
}
