//! The visual-concept path with a real Swin forward pass: a small random Swin checkpoint (kino-vision's test
//! fixture) whose classifier head is set here so that one video's frames are labelled "tabby, tabby cat"; the text
//! query "a cat" finds that video's segment although nothing is said in it.
//!
//! Frames → `kino_vision::Swin::embed` (pooled, token grid, labels) → `FrameVisual` → segments and tags → label
//! text embedded with the real MiniLM model → fusion (grids passed through) → ranking.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::{embed, encoder, index_video, timed};
use image::{Rgb, RgbImage};
use kino_fusion::score::rank;
use kino_fusion::{FrameVisual, FusionModel};
use kino_vision::Swin;

const CAT: &str = "tabby, tabby cat";
const BOARD: &str = "chessboard";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vision/tests/fixtures/swin_abs")
}

/// Orange fur with dark stripes whose phase moves from frame to frame.
fn cat_frame(i: u32) -> RgbImage {
    RgbImage::from_fn(64, 48, |x, y| {
        if (x + y / 2 + i) % 9 < 3 {
            Rgb([70, 40, 20])
        } else {
            Rgb([230, 140, 50])
        }
    })
}

/// A black-and-white board, shifted a little from frame to frame.
fn board_frame(i: u32) -> RgbImage {
    RgbImage::from_fn(64, 48, |x, y| {
        if ((x + i) / 8 + y / 8) & 1 == 0 {
            Rgb([240, 240, 240])
        } else {
            Rgb([15, 15, 15])
        }
    })
}

fn mean(rows: &[Vec<f32>]) -> Vec<f32> {
    let mut m = vec![0f32; rows[0].len()];
    for r in rows {
        m.iter_mut().zip(r).for_each(|(a, b)| *a += b / rows.len() as f32);
    }
    m
}

/// Copies the fixture checkpoint into `dir` with labels renamed and the classifier head set so that frames like
/// `cats` score `CAT` and frames like `boards` score `BOARD`.
fn concept_checkpoint(dir: &Path, cats: &[RgbImage], boards: &[RgbImage]) -> Swin {
    let src = fixture();
    let base = Swin::load(&src, &Device::Cpu).unwrap_or_else(|e| panic!("vision fixture at {}: {e}", src.display()));
    let pooled = |imgs: &[RgbImage]| {
        mean(
            &base
                .embed(imgs)
                .unwrap()
                .into_iter()
                .map(|f| f.pooled)
                .collect::<Vec<_>>(),
        )
    };
    let (pa, pb) = (pooled(cats), pooled(boards));
    let d: Vec<f32> = pa.iter().zip(&pb).map(|(a, b)| a - b).collect();
    let mid: Vec<f32> = pa.iter().zip(&pb).map(|(a, b)| (a + b) / 2.0).collect();
    let dd: f32 = d.iter().map(|x| x * x).sum();
    assert!(dd > 1e-6, "the two kinds of frames must differ for the random Swin");
    let s = 40.0 / dd; // logits ±20 at the two means, 0 for the other labels
    let dm: f32 = d.iter().zip(&mid).map(|(a, b)| a * b).sum();
    let hidden = d.len();

    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let labels = tensors["classifier.weight"].dim(0).unwrap();
    let mut w = vec![0f32; labels * hidden];
    let mut b = vec![0f32; labels];
    for j in 0..hidden {
        w[j] = s * d[j];
        w[hidden + j] = -s * d[j];
    }
    b[0] = -s * dm;
    b[1] = s * dm;
    tensors.insert(
        "classifier.weight".into(),
        Tensor::from_vec(w, (labels, hidden), &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "classifier.bias".into(),
        Tensor::from_vec(b, labels, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();

    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let names = [CAT, BOARD, "pot, flowerpot", "umbrella"];
    let id2label: serde_json::Map<String, serde_json::Value> = (0..labels)
        .map(|i| (i.to_string(), names[i % names.len()].into()))
        .collect();
    let label2id: serde_json::Map<String, serde_json::Value> = (0..labels)
        .map(|i| (names[i % names.len()].to_string(), i.into()))
        .collect();
    config["id2label"] = id2label.into();
    config["label2id"] = label2id.into();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    std::fs::copy(
        src.join("preprocessor_config.json"),
        dir.join("preprocessor_config.json"),
    )
    .unwrap();
    Swin::load(dir, &Device::Cpu).unwrap()
}

fn visuals(swin: &Swin, frames: &[RgbImage], step_ms: i64) -> Vec<FrameVisual> {
    swin.embed(frames)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, f)| FrameVisual {
            pts_ms: i as i64 * step_ms,
            pooled: f.pooled,
            grid: f.grid,
            grid_tokens: f.grid_tokens,
            hidden: f.hidden,
            labels: f.labels,
        })
        .collect()
}

#[test]
fn a_cat_query_finds_the_silent_video_whose_frames_swin_labels_as_cats() {
    let cats: Vec<RgbImage> = (0..10).map(cat_frame).collect();
    let boards: Vec<RgbImage> = (0..10).map(board_frame).collect();
    let dir = tempfile::tempdir().unwrap();
    let swin = concept_checkpoint(dir.path(), &cats, &boards);

    let cat_visuals = visuals(&swin, &cats, 1_000);
    let board_visuals = visuals(&swin, &boards, 2_000);
    // The head does what the test needs: every cat frame's top label is the cat, every board frame's the board.
    assert!(
        cat_visuals.iter().all(|f| f.labels[0].0 == CAT && f.labels[0].1 > 0.5),
        "{:?}",
        cat_visuals[5].labels
    );
    assert!(
        board_visuals.iter().all(|f| f.labels[0].0 == BOARD),
        "{:?}",
        board_visuals[5].labels
    );

    let model = FusionModel::identity(encoder().dim(), swin.hidden_size(), 4).unwrap();
    let mut library = Vec::new();
    // Video 1: gardening talk, no frames (vision branch off).
    let garden = timed(&[
        (500, 4_500, "I am pressing tomato seeds into small pots of soil."),
        (
            5_000,
            9_000,
            "Each seed goes about a finger deep, then I cover it gently.",
        ),
    ]);
    index_video(1, 10_000, &[], &garden, &model, &mut library);
    // Video 2: a chess commentary over frames of the board.
    let chess = timed(&[
        (
            1_000,
            6_000,
            "White opens with the king's pawn and black answers with the Sicilian.",
        ),
        (
            8_000,
            14_000,
            "After the knight takes on d4, the bishop pins it to the queen.",
        ),
    ]);
    index_video(2, 20_000, &board_visuals, &chess, &model, &mut library);
    // Video 3: ten seconds of a cat, nothing said.
    index_video(3, 10_000, &cat_visuals, &[], &model, &mut library);

    let silent: Vec<_> = library.iter().filter(|c| c.video_id == 3).collect();
    assert_eq!(silent.len(), 1);
    assert!(silent[0].text.is_none() && silent[0].transcript.is_empty());
    assert_eq!(silent[0].tags[0], CAT);

    let q = embed(&["a cat"]).unwrap().remove(0);
    let m = rank(&q, &library, 3).unwrap();
    assert_eq!(m[0].video_id, 3, "{m:#?}");
    assert_eq!((m[0].start_ms, m[0].end_ms), (0, 10_000));
    assert!(
        m[0].score > m[1].score + 0.1,
        "a clear margin: {} vs {}",
        m[0].score,
        m[1].score
    );

    // Talk still wins for talk, and the board's label helps the chess video for a visual chess query.
    let q = embed(&["someone is planting seeds"]).unwrap().remove(0);
    assert_eq!(rank(&q, &library, 1).unwrap()[0].video_id, 1);
    let q = embed(&["a chessboard"]).unwrap().remove(0);
    assert_eq!(rank(&q, &library, 1).unwrap()[0].video_id, 2);
}
