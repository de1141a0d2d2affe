//! Eigen-decomposition of a small symmetric matrix by the cyclic Jacobi method, for the
//! covariance matrix of CMA-ES. Each sweep costs about `3n³` multiply-adds and a handful of
//! sweeps converge, which is fine up to a few hundred dimensions.

/// Decomposes the symmetric `n × n` row-major matrix `a` as `V diag(λ) Vᵀ`, writing the
/// eigenvalues into `values` and the eigenvectors as the columns of `vectors` (row-major).
/// `a` is overwritten. Returns false when 100 sweeps did not bring the off-diagonal part
/// below `1e-15` relative to the Frobenius norm.
pub(crate) fn symmetric_eigen(
    a: &mut [f64],
    n: usize,
    values: &mut [f64],
    vectors: &mut [f64],
) -> bool {
    assert_eq!(a.len(), n * n, "matrix is not n × n");
    vectors.iter_mut().for_each(|v| *v = 0.0);
    for i in 0..n {
        vectors[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|v| v * v).sum();
    let tolerance = 1e-30 * total;
    let mut converged = false;
    for _sweep in 0..100 {
        let off_diagonal: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off_diagonal <= tolerance {
            converged = true;
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                rotate(a, vectors, n, p, q);
            }
        }
    }
    for i in 0..n {
        values[i] = a[i * n + i];
    }
    converged
}

/// Applies the Jacobi rotation that zeroes `a[p][q]`: `A ← Jᵀ A J` and `V ← V J`.
fn rotate(a: &mut [f64], vectors: &mut [f64], n: usize, p: usize, q: usize) {
    let apq = a[p * n + q];
    if apq == 0.0 {
        return;
    }
    // With θ = (a_qq − a_pp) / 2a_pq, t = tan φ is the smaller root of t² + 2θt − 1 = 0.
    let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
    let t = if theta.abs() > 1e150 {
        0.5 / theta
    } else {
        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
    };
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;

    for k in 0..n {
        let (akp, akq) = (a[k * n + p], a[k * n + q]);
        a[k * n + p] = c * akp - s * akq;
        a[k * n + q] = s * akp + c * akq;
    }

    for k in 0..n {
        let (apk, aqk) = (a[p * n + k], a[q * n + k]);
        a[p * n + k] = c * apk - s * aqk;
        a[q * n + k] = s * apk + c * aqk;
    }
    a[p * n + q] = 0.0;
    a[q * n + p] = 0.0;

    for k in 0..n {
        let (vkp, vkq) = (vectors[k * n + p], vectors[k * n + q]);
        vectors[k * n + p] = c * vkp - s * vkq;
        vectors[k * n + q] = s * vkp + c * vkq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::search::common::Rng;
    use rand::{Rng as _, SeedableRng};

    #[test]
    fn eigen_of_two_by_two() {
        let mut a = vec![2.0, 1.0, 1.0, 2.0];
        let (mut values, mut vectors) = (vec![0.0; 2], vec![0.0; 4]);
        assert!(symmetric_eigen(&mut a, 2, &mut values, &mut vectors));
        values.sort_by(f64::total_cmp);
        assert!((values[0] - 1.0).abs() < 1e-14, "{values:?}");
        assert!((values[1] - 3.0).abs() < 1e-14, "{values:?}");
    }

    #[test]
    fn eigen_reconstructs_random_matrix() {
        let n = 30;
        let mut rng = Rng::seed_from_u64(5);
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v: f64 = rng.random_range(-1.0..1.0);
                m[i * n + j] = v;
                m[j * n + i] = v;
            }
        }
        let mut a = m.clone();
        let (mut values, mut vectors) = (vec![0.0; n], vec![0.0; n * n]);
        assert!(symmetric_eigen(&mut a, n, &mut values, &mut vectors));
        let mut worst: f64 = 0.0;
        for i in 0..n {
            for j in 0..n {
                let r: f64 = (0..n)
                    .map(|k| vectors[i * n + k] * values[k] * vectors[j * n + k])
                    .sum();
                worst = worst.max((r - m[i * n + j]).abs());
                let o: f64 = (0..n)
                    .map(|k| vectors[k * n + i] * vectors[k * n + j])
                    .sum();
                let identity = if i == j { 1.0 } else { 0.0 };
                assert!((o - identity).abs() < 1e-12, "VᵀV[{i}][{j}] = {o}");
            }
        }
        assert!(worst < 1e-12, "reconstruction error {worst}");
    }
}
