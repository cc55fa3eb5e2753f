//! `init_runtime` failures (own test binary: initialisation is once per process).

mod common;

use std::path::Path;

#[test]
fn bad_runtime_paths_are_errors_then_a_good_one_loads() {
    // SAFETY: the only test in this binary; nothing else reads the environment now.
    unsafe { std::env::remove_var("ORT_DYLIB_PATH") };
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("libonnxruntime.so");
    let msg = kino_ocr::init_runtime(&missing).unwrap_err().to_string();
    assert!(
        msg.contains(&missing.display().to_string()) && msg.contains("kino models fetch onnxruntime"),
        "{msg}"
    );

    let text = dir.path().join("not-a-library.so");
    std::fs::write(&text, "this is not a shared library\n").unwrap();
    let msg = kino_ocr::init_runtime(&text).unwrap_err().to_string();
    assert!(msg.contains(&text.display().to_string()), "{msg}");

    // Models are refused before initialisation succeeds.
    let err = kino_ocr::Ocr::load(Path::new("/nonexistent"), 1).err().unwrap();
    assert!(matches!(err, kino_ocr::OcrError::NotInitialised), "{err:?}");

    // ORT_DYLIB_PATH wins over the path passed.
    let lib = common::runtime_lib();
    assert!(
        lib.is_file(),
        "{} is missing: install it with `kino models fetch ocr onnxruntime`",
        lib.display()
    );
    unsafe { std::env::set_var("ORT_DYLIB_PATH", &missing) };
    let msg = kino_ocr::init_runtime(&lib).unwrap_err().to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    unsafe { std::env::remove_var("ORT_DYLIB_PATH") };

    kino_ocr::init_runtime(&lib).unwrap_or_else(|e| panic!("{e}"));
    // Once per process: a second call is a no-op.
    kino_ocr::init_runtime(&missing).unwrap();
}
