//! Small vector helpers shared by scoring, tags and answers.

/// Dot product of two equally long slices (16 independent lanes, so the compiler can vectorise the sum).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0f32; L];
    for (x, y) in ca.zip(cb) {
        for i in 0..L {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `(a·b, b·b)` in one pass over both slices (for a cosine to a unit `a`:
/// half the memory traffic of [`dot`] then [`norm`]). Each sum is the same
/// as [`dot`]'s, bit for bit.
pub fn dot_and_squares(a: &[f32], b: &[f32]) -> (f32, f32) {
    const L: usize = 16;
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    let tail_sq: f32 = rb.iter().map(|y| y * y).sum();
    let mut acc = [0f32; L];
    let mut sq = [0f32; L];
    for (x, y) in ca.zip(cb) {
        for i in 0..L {
            acc[i] += x[i] * y[i];
            sq[i] += y[i] * y[i];
        }
    }
    (acc.iter().sum::<f32>() + tail, sq.iter().sum::<f32>() + tail_sq)
}

/// Euclidean norm.
pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// Cosine similarity; 0 when either vector is zero. The slices must have the same length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 || !na.is_finite() || !nb.is_finite() {
        return 0.0;
    }
    dot(a, b) / (na * nb)
}

/// Scales `v` to unit length in place (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = norm(v);
    if n > 0.0 && n.is_finite() {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// `v` scaled to unit length.
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let mut out = v.to_vec();
    normalize(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_parallel_orthogonal_and_zero_vectors() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.1).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3 * naive.abs().max(1.0));
        let (d, sq) = dot_and_squares(&a, &b);
        assert_eq!((d, sq), (dot(&a, &b), dot(&b, &b)));
        let n = normalized(&[3.0, 4.0]);
        assert!((n[0] - 0.6).abs() < 1e-6 && (n[1] - 0.8).abs() < 1e-6);
    }
}
