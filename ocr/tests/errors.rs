//! Model files missing or damaged: errors that name the file.

mod common;

use std::path::Path;

use kino_ocr::{Ocr, OcrError, CLS_MODEL, DET_MODEL, REC_MODEL};

fn load_err(dir: &Path) -> OcrError {
    common::init();
    match Ocr::load(dir, 1) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn a_missing_models_folder_names_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let msg = load_err(&missing).to_string();
    assert!(msg.contains(&missing.join(DET_MODEL).display().to_string()), "{msg}");
    assert!(msg.contains("kino models fetch ocr"), "{msg}");
}

#[test]
fn a_corrupt_model_names_the_file() {
    let models = common::ocr_dir();
    let dir = tempfile::tempdir().unwrap();
    // Good detector and classifier, a recogniser of random bytes.
    for f in [DET_MODEL, CLS_MODEL] {
        assert!(
            models.join(f).is_file(),
            "{} is missing: `kino models fetch ocr onnxruntime`",
            models.join(f).display()
        );
        std::os::unix::fs::symlink(models.join(f), dir.path().join(f)).unwrap();
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(dir.path().join(REC_MODEL), &junk).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, OcrError::Model { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().join(REC_MODEL).display().to_string()), "{msg}");

    // A corrupt detector is named too (it loads first).
    std::fs::remove_file(dir.path().join(DET_MODEL)).unwrap();
    std::fs::write(dir.path().join(DET_MODEL), &junk[..100]).unwrap();
    let msg = load_err(dir.path()).to_string();
    assert!(msg.contains(&dir.path().join(DET_MODEL).display().to_string()), "{msg}");
}
