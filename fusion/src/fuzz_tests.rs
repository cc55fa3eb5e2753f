//! Hostile input for the safetensors readers (issue #21): the fusion weights ([`FusionModel::load`]) and the
//! checkpoints of `kino train`'s two stages, fed mutated valid files and generated files whose header names any
//! dtype (the sub-byte F4/F6/F8 ones too), any shape and any offsets. `KINO_FUZZ_CASES` sets the cases per
//! property (default 10 000); `scripts/soak` runs a million in release mode.
//!
//! What holds: reading never panics and never allocates more than a small multiple of the file's size; a
//! weights error names the file; loaded weights fuse a segment (a vector or an error, never a panic); a broken
//! checkpoint is refused (training then starts afresh), never half-read.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use kino_fuzzkit::{config, largest_allocation, mutated, Bytes, PeakAlloc};
use proptest::prelude::*;

use crate::{FusionConfig, FusionModel, SegmentInputs};

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

const CONFIG: FusionConfig = FusionConfig {
    text_dim: 8,
    visual_dim: 12,
    heads: 2,
};

/// The fingerprint both checkpoint seeds are written for.
const FINGERPRINT: &str = "fuzz";

/// A file per test thread and name, rewritten for each case.
fn case_path(name: &str) -> PathBuf {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
    }
    DIR.with(|d| d.path().join(name))
}

fn save(tensors: &HashMap<String, Tensor>) -> Vec<u8> {
    let path = case_path("seed.safetensors");
    candle_core::safetensors::save(tensors, &path).unwrap();
    std::fs::read(&path).unwrap()
}

fn ramp(shape: &[usize], dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// Fusion weights: the identity file, one in f16 without the optional tensors, one with a trained head.
fn weight_seeds() -> Vec<Vec<u8>> {
    let path = case_path("identity.safetensors");
    FusionModel::identity(CONFIG.text_dim, CONFIG.visual_dim, CONFIG.heads)
        .unwrap()
        .save(&path)
        .unwrap();
    let identity = std::fs::read(&path).unwrap();
    let (d, v) = (CONFIG.text_dim, CONFIG.visual_dim);
    let mut required = HashMap::new();
    required.insert("grid_proj.weight".to_string(), ramp(&[d, v], DType::F16));
    required.insert("grid_proj.bias".to_string(), ramp(&[d], DType::F16));
    for side in ["t2v", "v2t"] {
        for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            required.insert(format!("{side}.{p}.weight"), ramp(&[d, d], DType::BF16));
            required.insert(format!("{side}.{p}.bias"), ramp(&[d], DType::F32));
        }
        required.insert(format!("{side}.norm.weight"), ramp(&[d], DType::F32));
        required.insert(format!("{side}.norm.bias"), ramp(&[d], DType::F64));
    }
    let mut trained = required.clone();
    trained.insert("pool_proj.weight".into(), ramp(&[d, v], DType::F32));
    trained.insert("pool_proj.bias".into(), ramp(&[d], DType::F32));
    trained.insert("pool_gate".into(), Tensor::new(&[0.5f32], &Device::Cpu).unwrap());
    trained.insert("blend".into(), Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap());
    vec![identity, save(&required), save(&trained)]
}

/// Stage 1's checkpoint (`train/state.rs`): the tensors file and its JSON.
fn state_seed() -> (Vec<u8>, Vec<u8>) {
    let (d, v) = (4, 3);
    let mut t = HashMap::new();
    for (name, shape) in [
        ("weight", &[d, v][..]),
        ("bias", &[d]),
        ("adam_m.weight", &[d, v]),
        ("adam_v.weight", &[d, v]),
        ("adam_m.bias", &[d]),
        ("adam_v.bias", &[d]),
        ("best.weight", &[d, v]),
        ("best.bias", &[d]),
    ] {
        t.insert(name.to_string(), ramp(shape, DType::F32));
    }
    t.insert("step".into(), Tensor::new(&[7u32, 0], &Device::Cpu).unwrap());
    let json = serde_json::json!({
        "format": "kino-train-checkpoint-v1",
        "fingerprint": FINGERPRINT,
        "step": 7,
        "epoch": 1,
        "position": 3,
        "seed": 42,
        "best_recall": 0.5,
        "best_step": 5,
        "recall_start": null,
        "evals_without_improvement": 1,
        "last_loss": 1.25
    });
    (save(&t), serde_json::to_vec_pretty(&json).unwrap())
}

/// The variables stage 2's checkpoint seed holds.
fn stage2_vars() -> Vec<Var> {
    vec![
        Var::from_tensor(&ramp(&[4, 3], DType::F32)).unwrap(),
        Var::from_tensor(&ramp(&[4], DType::F32)).unwrap(),
    ]
}

/// Stage 2's checkpoint (`train_fusion/checkpoint.rs`): one safetensors file, its position as a JSON byte tensor.
fn stage2_seed() -> Vec<u8> {
    let mut t = HashMap::new();
    for (i, v) in stage2_vars().iter().enumerate() {
        t.insert(format!("var.{i}"), v.as_tensor().clone());
        t.insert(format!("adam_m.{i}"), v.as_tensor().zeros_like().unwrap());
        t.insert(format!("adam_v.{i}"), v.as_tensor().ones_like().unwrap());
    }
    t.insert("best.grid_gate".into(), Tensor::new(&[0.25f32], &Device::Cpu).unwrap());
    let meta = serde_json::json!([{
        "fingerprint": FINGERPRINT,
        "epoch": 2,
        "step": 10,
        "best_epoch": 1,
        "best_score": 0.5,
        "score_start": 0.25,
        "since_best": 0,
        "first_loss": 2.0,
        "final_loss": 1.0
    }, 10]);
    let json = serde_json::to_vec(&meta).unwrap();
    let n = json.len();
    t.insert("meta".into(), Tensor::from_vec(json, n, &Device::Cpu).unwrap());
    save(&t)
}

/// Every safetensors seed, for the mutator.
fn all_seeds() -> Vec<Vec<u8>> {
    let mut seeds = weight_seeds();
    seeds.push(state_seed().0);
    seeds.push(stage2_seed());
    seeds
}

const DICTIONARY: &[&[u8]] = &[
    b"\"F4\"",
    b"\"F6_E2M3\"",
    b"\"F8_E8M0\"",
    b"\"F8_E4M3\"",
    b"\"BOOL\"",
    b"\"U16\"",
    b"\"C64\"",
    b"\"U8\"",
    b"\"I64\"",
    b"\"dtype\":",
    b"\"shape\":",
    b"\"data_offsets\":",
    b"[18446744073709551615,1]",
    b"[4294967296]",
    b"[0,0]",
    b"[]",
    b"4294967295",
    b"-1",
    b"1e999",
    b"\"__metadata__\":{}",
    b"\"meta\"",
    b"\"step\"",
    b"[[[[[[[[",
    b"\\u0000",
    b"\"",
    b",",
    b"{",
    b"}",
    b"\0",
    b"\xff",
];

/// The most a reader may allocate at once for a file of `len` bytes: a small multiple of it, plus room for
/// the backtrace candle attaches to its errors under `RUST_BACKTRACE=1` (resolving it takes a few MiB). A length
/// field of 4 GiB believed would be far past it.
fn allowance(len: usize) -> usize {
    16 * len + (64 << 20)
}

/// Loads `bytes` as fusion weights; an error names the file, a model fuses a segment.
fn check_weights(bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = case_path("weights.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let (loaded, peak) = largest_allocation(|| FusionModel::load(&path, CONFIG));
    prop_assert!(
        peak <= allowance(bytes.len()),
        "{peak} bytes allocated for {} bytes",
        bytes.len()
    );
    match loaded {
        Ok(model) => {
            let inputs = SegmentInputs {
                text: vec![vec![0.5; CONFIG.text_dim]],
                labels: Some(vec![0.25; CONFIG.text_dim]),
                pooled: Some(vec![1.0; CONFIG.visual_dim]),
                ..SegmentInputs::default()
            };
            let _ = model.fuse(&inputs);
        }
        Err(e) => prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
    }
    Ok(())
}

/// Reads `bytes` as stage 1's checkpoint tensors beside `json`; `Ok(true)` when it was usable.
fn check_state(bytes: &[u8], json: &[u8]) -> Result<bool, TestCaseError> {
    let stem = case_path("state");
    std::fs::write(stem.with_extension("safetensors"), bytes).unwrap();
    std::fs::write(stem.with_extension("json"), json).unwrap();
    let (read, peak) = largest_allocation(|| crate::train::read_checkpoint(&stem, FINGERPRINT, 4, 3));
    prop_assert!(peak <= allowance(bytes.len() + json.len()), "{peak} bytes allocated");
    Ok(read.unwrap_or(false))
}

/// Reads `bytes` as stage 2's checkpoint; `true` when it was usable.
fn check_stage2(bytes: &[u8], vars: &[Var]) -> Result<bool, TestCaseError> {
    let stem = case_path("stage2");
    std::fs::write(stem.with_extension("safetensors"), bytes).unwrap();
    let (usable, peak) = largest_allocation(|| crate::train_fusion::read_checkpoint(&stem, FINGERPRINT, vars));
    prop_assert!(peak <= allowance(bytes.len()), "{peak} bytes allocated");
    Ok(usable)
}

/// A safetensors file whose header is generated: tensors named as the readers expect, of any dtype and any
/// small shape, with offsets mostly consistent, and data of the length the offsets say.
fn generated() -> impl Strategy<Value = Bytes> {
    const NAMES: &[&str] = &[
        "grid_proj.weight",
        "grid_proj.bias",
        "t2v.q_proj.weight",
        "blend",
        "pool_gate",
        "weight",
        "bias",
        "step",
        "meta",
        "var.0",
        "var.1",
        "adam_m.0",
        "best.x",
    ];
    const DTYPES: &[&str] = &[
        "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16",
        "I32", "U32", "F32", "C64", "F64", "I64", "U64", "X9",
    ];
    let tensor = (
        proptest::sample::select(NAMES),
        proptest::sample::select(DTYPES),
        proptest::collection::vec(
            prop_oneof![8 => 0usize..13, 1 => Just(usize::MAX), 1 => Just(1 << 40)],
            0..4,
        ),
        prop_oneof![6 => Just(None), 1 => (0usize..64, 0usize..64).prop_map(Some)],
    );
    (proptest::collection::vec(tensor, 0..6), any::<u8>()).prop_map(|(tensors, fill)| {
        let mut header = serde_json::Map::new();
        let mut offset = 0usize;
        for (name, dtype, shape, offsets) in tensors {
            let bits = match dtype {
                "F4" => 4,
                "F6_E2M3" | "F6_E3M2" => 6,
                "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
                "I16" | "U16" | "F16" | "BF16" => 16,
                "I32" | "U32" | "F32" => 32,
                _ => 64,
            };
            let len = shape
                .iter()
                .try_fold(bits, |acc: usize, &d| acc.checked_mul(d))
                .map_or(8, |b| b.div_ceil(8))
                .min(4096);
            let (start, end) = offsets.unwrap_or((offset, offset + len));
            offset = offset.max(end);
            header.insert(
                name.to_string(),
                serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [start, end] }),
            );
        }
        let header = serde_json::to_vec(&header).unwrap();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&header);
        out.resize(out.len() + offset, fill);
        Bytes(out)
    })
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn fuzz_fusion_weights_mutated(bytes in mutated(weight_seeds(), DICTIONARY)) {
        check_weights(&bytes)?;
    }

    #[test]
    fn fuzz_safetensors_generated(bytes in generated()) {
        check_weights(&bytes)?;
        check_state(&bytes, &state_seed().1)?;
        check_stage2(&bytes, &stage2_vars())?;
    }
}

proptest! {
    // Each case writes and reads two checkpoints (about twice the cost of a weights case).
    #![proptest_config(config(2))]

    #[test]
    fn fuzz_checkpoints_mutated(bytes in mutated(all_seeds(), DICTIONARY), json in mutated(vec![state_seed().1], DICTIONARY)) {
        let (_, good_json) = state_seed();
        check_state(&bytes, &good_json)?;
        check_state(&state_seed().0, &json)?;
        check_stage2(&bytes, &stage2_vars())?;
    }
}

#[test]
fn seeds_load() {
    for bytes in weight_seeds() {
        let path = case_path("weights.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        FusionModel::load(&path, CONFIG).unwrap();
    }
    let (tensors, json) = state_seed();
    assert!(
        check_state(&tensors, &json).unwrap(),
        "stage 1's checkpoint seed must be usable"
    );
    assert!(
        check_stage2(&stage2_seed(), &stage2_vars()).unwrap(),
        "stage 2's checkpoint seed must be usable"
    );
}

/// Found by `fuzz_safetensors_generated`: an empty tensor whose dimensions multiply past `usize::MAX` made
/// candle's stride computation overflow (a panic in builds with overflow checks).
const HUGE_EMPTY: &[u8] =
    b"[\x00\x00\x00\x00\x00\x00\x00{\"grid_proj.weight\":{\"data_offsets\":[0,0],\"dtype\":\"F4\",\
\"shape\":[0,18446744073709551615,2]}}";

#[test]
fn empty_tensor_with_a_huge_shape_is_refused() {
    for dtype in ["F4", "U8"] {
        let bytes = String::from_utf8_lossy(HUGE_EMPTY).replace("F4", dtype).into_bytes();
        let path = case_path("weights.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let err = FusionModel::load(&path, CONFIG).unwrap_err().to_string();
        assert!(
            err.contains("is too large") && err.contains(&path.display().to_string()),
            "{err}"
        );
        assert!(!check_state(&bytes, &state_seed().1).unwrap());
        assert!(!check_stage2(&bytes, &stage2_vars()).unwrap());
    }
}
