//! ONNX Runtime: the library loaded once per process, and sessions on it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::OcrError;

/// The environment every session is built on, once ONNX Runtime is loaded.
static ENV: OnceLock<Environment> = OnceLock::new();
/// Serialises initialisation attempts.
static INIT: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime once per process: `$ORT_DYLIB_PATH` when set, else `lib`.
///
/// Later calls return `Ok(())` at once when an earlier one succeeded; after a
/// failure a later call tries again. Never panics: a missing file, a file that
/// is not a shared library, a library without ONNX Runtime's API or one older
/// than 1.31 is an [`OcrError::Runtime`].
pub fn init_runtime(lib: &Path) -> Result<(), OcrError> {
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if ENV.get().is_some() {
        return Ok(());
    }
    let path = match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => lib.to_path_buf(),
    };
    // ort resolves a relative path against the executable's folder; kino means the working directory.
    let path = std::path::absolute(&path).unwrap_or(path);
    let fail = |reason: String| OcrError::Runtime {
        path: path.clone(),
        reason,
    };
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let builder = ort::init_from(&path).map_err(|e| fail(e.to_string()))?;
    let env = builder.with_name("kino-ocr").build().map_err(|e| fail(e.to_string()))?;
    let _ = ENV.set(env);
    Ok(())
}

/// Opens `path` as a session with `threads` intra-op threads (0: ONNX Runtime's
/// default), every graph optimisation on and no memory arena, as rapidocr does.
pub(crate) fn session(path: &Path, threads: usize) -> Result<Session, OcrError> {
    let env = ENV.get().ok_or(OcrError::NotInitialised)?;
    if !path.is_file() {
        return Err(OcrError::MissingModel {
            path: path.to_path_buf(),
        });
    }
    let fail = |e: ort::Error| OcrError::Model {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    // No memory arena, as rapidocr configures it: the detector's activations
    // for a large frame would otherwise stay reserved for the process's life.
    let mut builder = Session::builder(env)
        .map_err(fail)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| fail(e.into()))?
        .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
        .map_err(|e| fail(e.into()))?;
    if threads > 0 {
        builder = builder.with_intra_threads(threads).map_err(|e| fail(e.into()))?;
    }
    builder.commit_from_file(path).map_err(fail)
}

/// Runs a single-input, single-output model on `data` of `shape`: the output's
/// shape and values.
pub(crate) fn run(
    session: &Mutex<Session>,
    stage: &'static str,
    shape: [usize; 4],
    data: &[f32],
) -> Result<(Vec<usize>, Vec<f32>), OcrError> {
    let fail = |e: ort::Error| OcrError::Inference {
        stage,
        reason: e.to_string(),
    };
    let input = ort::value::TensorRef::from_array_view((shape, data)).map_err(fail)?;
    let mut session = session.lock().unwrap_or_else(|e| e.into_inner());
    let outputs = session.run(ort::inputs![input]).map_err(fail)?;
    let (out_shape, values) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
    let out_shape = out_shape.iter().map(|&d| d.max(0) as usize).collect();
    Ok((out_shape, values.to_vec()))
}
