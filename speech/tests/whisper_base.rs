//! The real Whisper base weights (faster-whisper-base, CTranslate2 format),
//! installed by `kino models fetch speech` (`scripts/test` installs them).

mod common;

use kino_speech::{Ct2Model, DType};

fn open() -> Ct2Model {
    let path = common::models_dir().join("Systran/faster-whisper-base/model.bin");
    assert!(
        path.is_file(),
        "{} is missing: install the speech model with `kino models fetch speech` \
         (`cargo run --bin kino -- models fetch speech`; scripts/test does it)",
        path.display()
    );
    Ct2Model::open(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn whisper_base_layout() {
    let m = open();
    assert_eq!(m.binary_version(), 6);
    assert_eq!(m.spec_name(), "WhisperSpec");
    assert_eq!(m.spec_revision(), 3);
    assert_eq!(m.variables().len(), 212);
    assert_eq!(
        m.aliases(),
        [(
            "decoder/projection/weight".to_string(),
            "decoder/embeddings/weight".to_string()
        )]
    );

    let shape = |name: &str| -> Vec<usize> {
        let v = m.variable(name).unwrap_or_else(|| panic!("no variable {name}"));
        v.shape().to_vec()
    };
    let (d, ff, vocab) = (512, 2048, 51865);
    assert_eq!(shape("encoder/conv1/weight"), [d, 80, 3]);
    assert_eq!(shape("encoder/conv1/bias"), [d]);
    assert_eq!(shape("encoder/conv2/weight"), [d, d, 3]);
    assert_eq!(shape("encoder/position_encodings/encodings"), [1500, d]);
    assert_eq!(shape("encoder/layer_norm/gamma"), [d]);
    assert_eq!(shape("decoder/embeddings/weight"), [vocab, d]);
    assert_eq!(shape("decoder/projection/weight"), [vocab, d]);
    assert_eq!(shape("decoder/position_encodings/encodings"), [448, d]);
    assert_eq!(shape("decoder/layer_norm/beta"), [d]);
    for side in ["encoder", "decoder"] {
        for l in 0..6 {
            let p = format!("{side}/layer_{l}");
            // Fused q, k, v projection of self-attention.
            assert_eq!(shape(&format!("{p}/self_attention/linear_0/weight")), [3 * d, d]);
            assert_eq!(shape(&format!("{p}/self_attention/linear_0/bias")), [3 * d]);
            assert_eq!(shape(&format!("{p}/self_attention/linear_1/weight")), [d, d]);
            assert_eq!(shape(&format!("{p}/self_attention/layer_norm/gamma")), [d]);
            assert_eq!(shape(&format!("{p}/ffn/linear_0/weight")), [ff, d]);
            assert_eq!(shape(&format!("{p}/ffn/linear_1/weight")), [d, ff]);
            if side == "decoder" {
                // Cross-attention: q, then fused k and v over the encoder output.
                assert_eq!(shape(&format!("{p}/attention/linear_0/weight")), [d, d]);
                assert_eq!(shape(&format!("{p}/attention/linear_1/weight")), [2 * d, d]);
                assert_eq!(shape(&format!("{p}/attention/linear_2/weight")), [d, d]);
            } else {
                assert!(!m.contains(&format!("{p}/attention/linear_0/weight")));
            }
        }
        assert!(!m.contains(&format!("{side}/layer_6/ffn/linear_0/weight")), "6 layers");
    }
    for v in m.variables().iter().filter(|v| !v.shape().is_empty()) {
        assert_eq!(v.dtype(), DType::F16, "{} is fp16", v.name());
    }
    let scalar = |name: &str| m.tensor_f32(name).unwrap().1[0];
    assert_eq!(scalar("encoder/num_heads"), 8.0);
    assert_eq!(scalar("decoder/num_heads"), 8.0);

    // Whisper base has 72,593,920 weights; CTranslate2 stores a zero key bias
    // in every fused projection (6 × 512 in the encoder, 6 × 2 × 512 in the
    // decoder), and the tied output projection is an alias (counted once).
    let n = m.parameter_count();
    println!("whisper base: {n} parameters ({:.2} M)", n as f64 / 1e6);
    assert_eq!(n, 72_593_920 + 6 * 512 + 6 * 2 * 512);
}

#[test]
fn whisper_base_weights_convert_to_f32() {
    let m = open();
    let mut total = 0;
    for v in m.variables() {
        let (shape, values) = m.tensor_f32(v.name()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shape, v.shape());
        assert_eq!(values.len(), v.num_elements());
        assert!(
            values.iter().all(|x| x.is_finite()),
            "{} has non-finite values",
            v.name()
        );
        if !shape.is_empty() {
            total += values.len();
        }
    }
    assert_eq!(total, m.parameter_count());

    let (_, conv1) = m.tensor_f32("encoder/conv1/weight").unwrap();
    let mean_abs = conv1.iter().map(|x| x.abs() as f64).sum::<f64>() / conv1.len() as f64;
    println!("encoder/conv1/weight: mean |w| = {mean_abs:.4}");
    assert!((1e-3..1.0).contains(&mean_abs), "{mean_abs}");
    // Layer norm gains sit around 1, not 0: a check on the byte order and f16 decoding.
    let (_, gamma) = m.tensor_f32("encoder/layer_norm/gamma").unwrap();
    let mean = gamma.iter().sum::<f32>() / gamma.len() as f32;
    assert!((0.1..5.0).contains(&mean), "{mean}");
    // The tied output projection is the embedding table itself.
    let (proj, proj_bytes) = m.raw("decoder/projection/weight").unwrap();
    let (emb, emb_bytes) = m.raw("decoder/embeddings/weight").unwrap();
    assert!(std::ptr::eq(proj, emb) && std::ptr::eq(proj_bytes, emb_bytes));
}

#[test]
fn a_truncated_copy_of_the_real_file_is_refused() {
    let m = open();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(m.path()).unwrap(), 1 << 20),
        &mut bytes,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    std::fs::write(&path, &bytes).unwrap();
    let e = Ct2Model::open(&path).unwrap_err().to_string();
    println!("{e}");
    assert!(
        e.contains(&path.display().to_string()) && e.contains("truncated"),
        "{e}"
    );
    assert!(e.contains("the data of \"decoder/embeddings/weight\""), "{e}");
}
