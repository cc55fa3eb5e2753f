//! Tests of the `model.bin` reader on small files written here.

use super::*;

/// A little `model.bin` writer for tests (the format of the module docs).
struct Writer {
    version: u32,
    vars: Vec<u8>,
    n_vars: u32,
    aliases: Vec<(String, String)>,
}

fn put_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

impl Writer {
    fn new(version: u32) -> Writer {
        Writer {
            version,
            vars: Vec::new(),
            n_vars: 0,
            aliases: Vec::new(),
        }
    }

    /// A variable with an explicit dtype id and byte count (version >= 4).
    fn var_raw(&mut self, name: &str, shape: &[u32], type_id: u8, num_bytes: u32, data: &[u8]) -> &mut Self {
        put_string(&mut self.vars, name);
        self.vars.push(shape.len() as u8);
        for d in shape {
            self.vars.extend_from_slice(&d.to_le_bytes());
        }
        self.vars.push(type_id);
        self.vars.extend_from_slice(&num_bytes.to_le_bytes());
        self.vars.extend_from_slice(data);
        self.n_vars += 1;
        self
    }

    fn var(&mut self, name: &str, shape: &[u32], dtype: DType, data: &[u8]) -> &mut Self {
        self.var_raw(name, shape, dtype.id(), data.len() as u32, data)
    }

    /// A variable in the layout before version 4 (item size, element count).
    fn var_old(&mut self, name: &str, shape: &[u32], item_size: u8, data: &[u8]) -> &mut Self {
        put_string(&mut self.vars, name);
        self.vars.push(shape.len() as u8);
        for d in shape {
            self.vars.extend_from_slice(&d.to_le_bytes());
        }
        self.vars.push(item_size);
        self.vars
            .extend_from_slice(&((data.len() / item_size as usize) as u32).to_le_bytes());
        self.vars.extend_from_slice(data);
        self.n_vars += 1;
        self
    }

    fn alias(&mut self, alias: &str, target: &str) -> &mut Self {
        self.aliases.push((alias.into(), target.into()));
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.version.to_le_bytes());
        if self.version >= 2 {
            put_string(&mut out, "TestSpec");
            out.extend_from_slice(&7u32.to_le_bytes());
        }
        out.extend_from_slice(&self.n_vars.to_le_bytes());
        out.extend_from_slice(&self.vars);
        if self.version >= 3 {
            out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
            for (a, t) in &self.aliases {
                put_string(&mut out, a);
                put_string(&mut out, t);
            }
        }
        out
    }
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f16s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect()
}

fn bf16s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect()
}

/// Writes `bytes` as `model.bin` in a fresh folder and opens it.
fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, Result<Ct2Model>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    std::fs::write(&path, bytes).unwrap();
    let model = Ct2Model::open(&path);
    (dir, path, model)
}

/// Opens `bytes`, expecting an error whose message names the file.
fn open_err(bytes: &[u8]) -> Ct2Error {
    let (_dir, path, model) = open_bytes(bytes);
    let err = model.expect_err("a bad file must not open");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    err
}

/// A small version-6 file with every dtype, a quantized weight and aliases.
fn sample() -> Writer {
    let mut w = Writer::new(6);
    w.var(
        "a/weight",
        &[2, 3],
        DType::F32,
        &f32s(&[1.0, -2.0, 3.5, 0.0, 1e-3, -7.25]),
    )
    .var("b/weight", &[3], DType::F16, &f16s(&[0.5, -1.5, 65504.0]))
    .var("c/weight", &[2], DType::BF16, &bf16s(&[1.0, -3.0]))
    .var("q/weight", &[2, 2], DType::I8, &[10, (-20i8) as u8, 127, 0])
    .var("q/weight_scale", &[2], DType::F32, &f32s(&[10.0, 127.0]))
    .var("s/weight", &[3], DType::I16, &[100, 0, 0x9c, 0xff, 0, 0])
    .var("s/weight_scale", &[], DType::F32, &f32s(&[100.0]))
    .var("flag", &[], DType::I8, &[1])
    .var("heads", &[], DType::I32, &8i32.to_le_bytes())
    .alias("tied/weight", "a/weight")
    .alias("q2/weight", "q/weight")
    .alias("tied2/weight", "tied/weight");
    w
}

#[test]
fn reads_header_variables_and_aliases() {
    let (_dir, path, model) = open_bytes(&sample().bytes());
    let m = model.unwrap();
    assert_eq!(m.path(), path);
    assert_eq!(m.binary_version(), 6);
    assert_eq!(m.spec_name(), "TestSpec");
    assert_eq!(m.spec_revision(), 7);
    let names: Vec<_> = m.variables().iter().map(Variable::name).collect();
    assert_eq!(names[..4], ["a/weight", "b/weight", "c/weight", "q/weight"]);
    assert_eq!(m.variables().len(), 9);
    assert_eq!(m.aliases().len(), 3);
    let a = m.variable("a/weight").unwrap();
    assert_eq!(
        (a.shape(), a.dtype(), a.num_bytes()),
        (&[2usize, 3][..], DType::F32, 24)
    );
    assert_eq!(m.variable("tied2/weight"), Some(a));
    assert!(
        m.contains("q2/weight_scale"),
        "the alias of a quantized weight aliases its scale"
    );
    // 6 + 3 + 2 + 4 + 3: scalars and the scales are not weights.
    assert_eq!(m.parameter_count(), 18);
}

#[test]
fn converts_every_dtype_to_f32() {
    let (_dir, _path, model) = open_bytes(&sample().bytes());
    let m = model.unwrap();
    let t = |n: &str| m.tensor_f32(n).unwrap();
    assert_eq!(t("a/weight"), (vec![2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e-3, -7.25]));
    assert_eq!(t("tied2/weight"), t("a/weight"));
    assert_eq!(t("b/weight"), (vec![3], vec![0.5, -1.5, 65504.0]));
    assert_eq!(t("c/weight"), (vec![2], vec![1.0, -3.0]));
    // int8 per row: row 0 / 10, row 1 / 127.
    assert_eq!(t("q/weight"), (vec![2, 2], vec![1.0, -2.0, 1.0, 0.0]));
    assert_eq!(t("q2/weight"), t("q/weight"));
    // int16 with one scale: 100, -100, 0.
    assert_eq!(t("s/weight"), (vec![3], vec![1.0, -1.0, 0.0]));
    assert_eq!(t("flag"), (vec![], vec![1.0]));
    assert_eq!(t("heads"), (vec![], vec![8.0]));
    let (v, raw) = m.raw("b/weight").unwrap();
    assert_eq!((v.dtype(), raw.len()), (DType::F16, 6));
}

#[test]
fn reads_older_binary_versions() {
    // Version 1: no spec, item sizes, no aliases.
    let mut w = Writer::new(1);
    w.var_old("x", &[2], 4, &f32s(&[1.5, 2.5]))
        .var_old("y", &[2], 1, &[1, 2]);
    let (_dir, _path, model) = open_bytes(&w.bytes());
    let m = model.unwrap();
    assert_eq!((m.spec_name(), m.spec_revision()), ("", 1));
    assert_eq!(m.tensor_f32("x").unwrap(), (vec![2], vec![1.5, 2.5]));
    assert_eq!(m.variable("y").unwrap().dtype(), DType::I8);
    // Version 3: spec and aliases, still item sizes.
    let mut w = Writer::new(3);
    w.var_old("x", &[1], 4, &f32s(&[4.0])).alias("z", "x");
    let (_dir, _path, model) = open_bytes(&w.bytes());
    assert_eq!(model.unwrap().tensor_f32("z").unwrap(), (vec![1], vec![4.0]));
}

#[test]
fn every_truncation_is_an_error_naming_the_file() {
    let bytes = sample().bytes();
    for len in 0..bytes.len() {
        match open_err(&bytes[..len]) {
            Ct2Error::Truncated { len: l, .. } => assert_eq!(l, len),
            e => panic!("prefix of {len} bytes: {e}"),
        }
    }
    let e = open_err(&bytes[..30]).to_string();
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn rejects_unknown_binary_versions() {
    for v in [0, MAX_BINARY_VERSION + 1, 0xffff_ffff] {
        let mut bytes = sample().bytes();
        bytes[..4].copy_from_slice(&v.to_le_bytes());
        let e = open_err(&bytes);
        assert!(matches!(e, Ct2Error::Version { version, .. } if version == v), "{e}");
        assert!(e.to_string().contains("unsupported CTranslate2 binary version"), "{e}");
    }
}

#[test]
fn rejects_unknown_dtypes() {
    let mut w = Writer::new(6);
    w.var_raw("w", &[1], 9, 4, &[0; 4]);
    let e = open_err(&w.bytes());
    assert!(matches!(&e, Ct2Error::DType { name, .. } if name == "w"), "{e}");
    assert!(e.to_string().contains("type id 9"), "{e}");
    let mut w = Writer::new(3);
    w.var_old("w", &[1], 3, &[0; 3]);
    assert!(matches!(open_err(&w.bytes()), Ct2Error::DType { .. }));
}

#[test]
fn rejects_byte_counts_that_do_not_match_the_shape() {
    // [2, 3] f32 needs 24 bytes; the file says 20 (and holds 20).
    let mut w = Writer::new(6);
    w.var_raw("w", &[2, 3], 0, 20, &[0; 20]);
    let e = open_err(&w.bytes());
    assert!(
        matches!(
            &e,
            Ct2Error::Size {
                expected: ByteCount(Some(24)),
                actual: 20,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("\"w\" of shape [2, 3]"), "{e}");
    // A shape whose byte count overflows.
    let mut w = Writer::new(6);
    w.var_raw("big", &[u32::MAX; 8], 0, 0, &[]);
    assert!(matches!(
        open_err(&w.bytes()),
        Ct2Error::Size {
            expected: ByteCount(None),
            ..
        }
    ));
    // A byte count past the end of the file.
    let mut w = Writer::new(6);
    w.var_raw("w", &[1000], 0, 4000, &[0; 8]);
    assert!(matches!(open_err(&w.bytes()), Ct2Error::Truncated { .. }));
}

#[test]
fn rejects_bad_aliases_duplicates_and_trailing_bytes() {
    let mut w = Writer::new(6);
    w.var("x", &[1], DType::F32, &f32s(&[1.0])).alias("y", "nope");
    assert!(matches!(open_err(&w.bytes()), Ct2Error::DanglingAlias { .. }));
    let mut w = Writer::new(6);
    w.var("x", &[1], DType::F32, &f32s(&[1.0])).alias("x", "x");
    assert!(matches!(open_err(&w.bytes()), Ct2Error::Duplicate { .. }));
    let mut w = Writer::new(6);
    w.var("x", &[1], DType::F32, &f32s(&[1.0]))
        .var("x", &[1], DType::F32, &f32s(&[2.0]));
    assert!(matches!(open_err(&w.bytes()), Ct2Error::Duplicate { .. }));
    let mut bytes = sample().bytes();
    bytes.push(0);
    assert!(matches!(open_err(&bytes), Ct2Error::Trailing { extra: 1, .. }));
    let mut w = Writer::new(6);
    w.var("\u{ff}", &[1], DType::F32, &f32s(&[1.0]));
    let mut bytes = w.bytes();
    let at = bytes.windows(2).position(|p| p == "\u{ff}".as_bytes()).unwrap();
    bytes[at] = 0xff; // not UTF-8
    assert!(matches!(open_err(&bytes), Ct2Error::Utf8 { .. }));
}

#[test]
fn missing_variables_and_scales_are_errors() {
    let mut w = Writer::new(6);
    w.var("q", &[2], DType::I8, &[1, 2])
        .var("r", &[2], DType::I8, &[1, 2])
        .var("r_scale", &[3], DType::F32, &f32s(&[1.0, 2.0, 3.0]))
        .var("z", &[1], DType::I8, &[1])
        .var("z_scale", &[1], DType::F32, &f32s(&[0.0]))
        .var("i", &[1], DType::I8, &[1])
        .var("i_scale", &[1], DType::I8, &[1]);
    let (_dir, path, model) = open_bytes(&w.bytes());
    let m = model.unwrap();
    let err = |n: &str| {
        let e = m.tensor_f32(n).unwrap_err();
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        e.to_string()
    };
    assert!(err("nothing").contains("no variable \"nothing\""));
    assert!(err("q").contains("no variable \"q_scale\""));
    assert!(err("r").contains("expected 1 or 2"));
    assert!(err("z").contains("zero or non-finite"));
    assert!(err("i").contains("not a float"));
}

#[test]
fn missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    let e = Ct2Model::open(&path).unwrap_err();
    assert!(matches!(e, Ct2Error::Io { .. }));
    assert!(e.to_string().contains(&path.display().to_string()));
}
