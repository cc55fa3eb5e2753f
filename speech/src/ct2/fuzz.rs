//! Hostile input for the `model.bin` reader (issue #21): mutated valid files (bits flipped, length fields set to
//! 0 or 4 GiB, bytes inserted, deleted, duplicated, the tail cut) and generated files of random variables and
//! aliases. `KINO_FUZZ_CASES` sets the cases per property (default 10 000); `scripts/soak` runs a million in
//! release mode.
//!
//! What holds: opening never panics and never allocates more than a small multiple of the file's size; an error names the
//! file; an opened model's variables lie inside the file with as many bytes as their shape and dtype need, every
//! name and alias resolves, and converting any of them to f32 is a value or an error, never a panic.

use kino_fuzzkit::{config, largest_allocation, mutated, PeakAlloc};
use proptest::prelude::*;

use super::*;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// A variable as stored: name, shape, type id (or item size before version 4), byte count, data.
type RawVar = (String, Vec<u32>, u8, u32, Vec<u8>);

/// A `model.bin` of `version` (the layout of the module docs).
fn file(version: u32, vars: &[RawVar], aliases: &[(String, String)]) -> Vec<u8> {
    let mut out = version.to_le_bytes().to_vec();
    if version >= 2 {
        put_string(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
    }
    out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
    for (name, shape, ty, count, data) in vars {
        put_string(&mut out, name);
        out.push(shape.len() as u8);
        shape.iter().for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
        out.push(*ty);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(data);
    }
    if version >= 3 {
        out.extend_from_slice(&(aliases.len() as u32).to_le_bytes());
        for (a, t) in aliases {
            put_string(&mut out, a);
            put_string(&mut out, t);
        }
    }
    out
}

fn var(name: &str, shape: &[u32], dtype: DType, data: Vec<u8>) -> RawVar {
    (name.into(), shape.to_vec(), dtype.id(), data.len() as u32, data)
}

fn seeds() -> Vec<Vec<u8>> {
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let vars = vec![
        var(
            "encoder/conv1/weight",
            &[2, 3],
            DType::F32,
            f32s(&[1.0, -2.0, 3.5, 0.0, 1e-3, -7.25]),
        ),
        var("b", &[3], DType::F16, vec![0, 0x38, 0, 0xbe, 0xff, 0x7b]),
        var("c", &[2], DType::BF16, vec![0x80, 0x3f, 0x40, 0xc0]),
        var("q/weight", &[2, 2], DType::I8, vec![10, 0xec, 127, 0]),
        var("q/weight_scale", &[2], DType::F32, f32s(&[10.0, 127.0])),
        var("s/weight", &[3], DType::I16, vec![100, 0, 0x9c, 0xff, 0, 0]),
        var("s/weight_scale", &[], DType::F32, f32s(&[100.0])),
        var("heads", &[], DType::I32, 8i32.to_le_bytes().to_vec()),
    ];
    let aliases = vec![
        ("tied/weight".to_string(), "encoder/conv1/weight".to_string()),
        ("q2/weight".to_string(), "q/weight".to_string()),
    ];
    // Before version 4: item size and element count.
    let old = vec![
        ("x".to_string(), vec![2], 4, 2, f32s(&[1.5, 2.5])),
        ("y".to_string(), vec![2], 1, 2, vec![1, 2]),
        ("y_scale".to_string(), vec![], 4, 1, f32s(&[4.0])),
    ];
    vec![
        file(6, &vars, &aliases),
        file(4, &vars[..3], &[]),
        file(3, &old, &[("z".to_string(), "x".to_string())]),
        file(1, &old, &[]),
    ]
}

const DICTIONARY: &[&[u8]] = &[
    b"\0",
    b"\xff\xff",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x80",
    b"\x01\x00\x00\x00",
    b"\x06\x00\x00\x00",
    b"_scale\0",
    b"q/weight\0",
    b"\x09\x00q/weight\0",
    b"\xc3\x28",
    b"\x00\x00\xc0\x7f",
    b"\x00\x00\x80\x7f",
];

/// Opens `bytes` as `model.bin` and checks everything an opened model promises.
fn check(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
    }
    let path = DIR.with(|d| d.path().join("model.bin"));
    std::fs::write(&path, bytes).unwrap();
    let (model, peak) = largest_allocation(|| Ct2Model::open(&path));
    prop_assert!(
        peak <= 16 * bytes.len() + (64 << 10),
        "{peak} bytes allocated for a {}-byte file",
        bytes.len()
    );
    let m = match model {
        Ok(m) => m,
        Err(e) => {
            prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}");
            return Ok(());
        }
    };
    prop_assert!((1..=MAX_BINARY_VERSION).contains(&m.binary_version()));
    for v in m.variables() {
        prop_assert!(v.offset() + v.num_bytes() <= bytes.len(), "{v:?}");
        prop_assert_eq!(v.num_elements() * v.dtype().size(), v.num_bytes(), "{:?}", v);
        let (got, raw) = m.raw(v.name()).unwrap();
        prop_assert_eq!(got, v);
        prop_assert_eq!(raw, &bytes[v.offset()..v.offset() + v.num_bytes()]);
    }
    prop_assert!(m.parameter_count() <= bytes.len());
    for (alias, target) in m.aliases() {
        prop_assert_eq!(m.variable(alias), m.variable(target));
    }
    let names = m.variables().iter().map(|v| v.name().to_string());
    for name in names.chain(m.aliases().iter().map(|a| a.0.clone())) {
        prop_assert!(m.contains(&name));
        match m.tensor_f32(&name) {
            Ok((shape, values)) => prop_assert_eq!(values.len(), shape.iter().product::<usize>()),
            Err(e) => prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
        }
    }
    let _ = m.tensor_f32("no such variable").unwrap_err();
    Ok(())
}

/// Random files: variables of random names (some repeated, some scales), type ids, shapes and byte counts
/// (mostly right), and aliases to names that may not exist.
fn generated() -> impl Strategy<Value = Vec<u8>> {
    const NAMES: &[&str] = &["w", "w_scale", "v", "v_scale", "a", "w_zero", ""];
    let dim = prop_oneof![8 => 0u32..4, 1 => Just(u32::MAX), 1 => Just(1 << 31)];
    let v = (
        proptest::sample::select(NAMES),
        proptest::collection::vec(dim, 0..4),
        prop_oneof![6 => 0u8..6, 1 => any::<u8>()],
        prop_oneof![4 => Just(None), 1 => any::<u32>().prop_map(Some)],
        any::<u64>(),
    )
        .prop_map(|(name, shape, ty, count, fill)| {
            let size = DType::from_id(ty).map_or(1, DType::size);
            let n = shape
                .iter()
                .try_fold(size, |acc, &d| acc.checked_mul(d as usize))
                .unwrap_or(0)
                .min(64);
            let data: Vec<u8> = fill.to_le_bytes().iter().copied().cycle().take(n).collect();
            let count = count.unwrap_or(data.len() as u32);
            (name.to_string(), shape, ty, count, data)
        });
    let alias = (proptest::sample::select(NAMES), proptest::sample::select(NAMES))
        .prop_map(|(a, t)| (format!("x{a}"), t.to_string()));
    (
        prop_oneof![4 => Just(6u32), 1 => 1u32..8],
        proptest::collection::vec(v, 0..6),
        proptest::collection::vec(alias, 0..3),
    )
        .prop_map(|(version, vars, aliases)| file(version, &vars, &aliases))
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn fuzz_ct2_mutated(bytes in mutated(seeds(), DICTIONARY)) {
        check(&bytes)?;
    }

    #[test]
    fn fuzz_ct2_generated(bytes in generated()) {
        check(&bytes)?;
    }
}

#[test]
fn seeds_open() {
    let (_, peak) = largest_allocation(|| vec![1u8; 1 << 20]);
    assert!(
        peak >= 1 << 20,
        "the allocation tracker is not the global allocator ({peak})"
    );
    for bytes in seeds() {
        check(&bytes).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        std::fs::write(&path, &bytes).unwrap();
        let m = Ct2Model::open(&path).unwrap();
        for v in m.variables() {
            m.tensor_f32(v.name()).unwrap();
        }
    }
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    let seed = &seeds()[0];
    // The variable count, the first name's length and the first byte count set to their maximum.
    let name_len = 4 + 2 + "WhisperSpec".len() + 1 + 4 + 4;
    let count_at = name_len + 2 + "encoder/conv1/weight".len() + 1 + 1 + 8 + 1;
    for (at, width) in [(name_len - 4, 4), (name_len, 2), (count_at, 4)] {
        let mut bytes = seed.clone();
        bytes[at..at + width].fill(0xff);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        std::fs::write(&path, &bytes).unwrap();
        let (model, peak) = largest_allocation(|| Ct2Model::open(&path));
        let err = model.expect_err("a huge count must be refused");
        assert!(peak < 64 << 10, "{peak} bytes allocated before: {err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }
}
