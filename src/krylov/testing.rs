//! Test systems with known solutions, test operators and assertions shared by the solver
//! tests.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DenseMatrix, KrylovMethod, LinearOperator, Settings};
use crate::tensor;

/// A system `A x = b` built as `b = A x*`, with a bound on `‖A⁻¹‖₂`.
pub struct Problem {
    pub a: DenseMatrix<f64>,
    pub b: Vec<f64>,
    /// The solution `x*`.
    pub x: Vec<f64>,
    /// `‖A⁻¹‖_F`, an upper bound on `‖A⁻¹‖₂`, computed by Gauss–Jordan elimination.
    pub inverse_norm: f64,
}

impl Problem {
    fn new(a: DenseMatrix<f64>) -> Self {
        let n = a.dim();
        let x: Vec<f64> = (0..n).map(|i| (0.7 * i as f64 + 0.3).sin() + 0.2).collect();
        let mut b = vec![0.0; n];
        a.clone().apply(&x, &mut b);
        let inverse_norm = inverse_frobenius_norm(&a);
        Problem {
            a,
            b,
            x,
            inverse_norm,
        }
    }
}

/// Builds the 1-D Poisson matrix `tridiag(−1, 2, −1)`, symmetric positive definite.
pub fn poisson(n: usize) -> Problem {
    Problem::new(tridiagonal(n, -1.0, 2.0, -1.0))
}

/// `D P D` for the Poisson matrix `P` and `D = diag(10^(2i/(n−1)))`, so the diagonal spans
/// four decades: symmetric positive definite and badly scaled, a case for Jacobi.
pub fn scaled_poisson(n: usize) -> Problem {
    let d = |i: usize| 10f64.powf(2.0 * i as f64 / (n - 1) as f64);
    let p = tridiagonal(n, -1.0, 2.0, -1.0);
    Problem::new(DenseMatrix::from_fn(n, |i, j| d(i) * p.get(i, j) * d(j)))
}

/// `BᵀB + I` for a seeded uniform random `B`: symmetric positive definite.
pub fn random_spd(n: usize, seed: u64) -> Problem {
    let b = random_matrix(n, seed);
    let a = DenseMatrix::from_fn(n, |i, j| {
        let gram: f64 = (0..n).map(|k| b.get(k, i) * b.get(k, j)).sum();
        gram + if i == j { 1.0 } else { 0.0 }
    });
    Problem::new(a)
}

/// Builds the Hilbert matrix `1 / (i + j + 1)`, whose condition number for `n = 6` is about
/// 1.5e7 (numpy.linalg.cond gives 1.495e7).
pub fn hilbert(n: usize) -> Problem {
    Problem::new(DenseMatrix::from_fn(n, |i, j| 1.0 / (i + j + 1) as f64))
}

/// `diag(10^(decades·i/(n−1)))`, with condition number `10^decades`.
pub fn log_diagonal(n: usize, decades: f64) -> Problem {
    let d = |i: usize| 10f64.powf(decades * i as f64 / (n - 1) as f64);
    Problem::new(DenseMatrix::from_fn(
        n,
        |i, j| if i == j { d(i) } else { 0.0 },
    ))
}

/// Builds the Poisson matrix minus 2I, which is symmetric with eigenvalues `−2 cos(kπ/(n+1))`
/// of both signs. For even `n` none is zero.
pub fn indefinite(n: usize) -> Problem {
    Problem::new(tridiagonal(n, -1.0, 0.0, -1.0))
}

/// Builds the upwind convection–diffusion matrix `tridiag(−1 − c, 2, −1 + c)`, which is
/// nonsymmetric.
pub fn convection_diffusion(n: usize, c: f64) -> Problem {
    Problem::new(tridiagonal(n, -1.0 - c, 2.0, -1.0 + c))
}

/// `B + 2√n I` for a seeded uniform random `B`: nonsymmetric, eigenvalues near `2√n`.
pub fn random_nonsymmetric(n: usize, seed: u64) -> Problem {
    let b = random_matrix(n, seed);
    let shift = 2.0 * (n as f64).sqrt();
    Problem::new(DenseMatrix::from_fn(n, |i, j| {
        b.get(i, j) + if i == j { shift } else { 0.0 }
    }))
}

fn tridiagonal(n: usize, lower: f64, diagonal: f64, upper: f64) -> DenseMatrix<f64> {
    DenseMatrix::from_fn(n, |i, j| match j as isize - i as isize {
        -1 => lower,
        0 => diagonal,
        1 => upper,
        _ => 0.0,
    })
}

fn random_matrix(n: usize, seed: u64) -> DenseMatrix<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    DenseMatrix::from_fn(n, |_, _| rng.random_range(-1.0..1.0))
}

/// Returns `‖A⁻¹‖_F` by Gauss–Jordan elimination with partial pivoting.
fn inverse_frobenius_norm(a: &DenseMatrix<f64>) -> f64 {
    let n = a.dim();
    let mut m: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n).map(|j| a.get(i, j)).collect();
            row.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            row
        })
        .collect();
    for k in 0..n {
        let pivot = (k..n)
            .max_by(|&i, &j| m[i][k].abs().total_cmp(&m[j][k].abs()))
            .unwrap();
        m.swap(k, pivot);
        let scale = m[k][k];
        assert!(scale != 0.0, "test matrix is singular");
        m[k].iter_mut().for_each(|v| *v /= scale);
        for i in (0..n).filter(|&i| i != k) {
            let factor = m[i][k];
            let pivot_row = m[k].clone();
            for (v, p) in m[i].iter_mut().zip(pivot_row) {
                *v -= factor * p;
            }
        }
    }
    m.iter()
        .flat_map(|row| &row[n..])
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
}

/// Returns `‖b − A x‖` computed independently of the solvers.
pub fn residual_norm(a: &DenseMatrix<f64>, b: &[f64], x: &[f64]) -> f64 {
    let mut ax = vec![0.0; b.len()];
    a.clone().apply(x, &mut ax);
    ax.iter()
        .zip(b)
        .map(|(p, q)| (q - p).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Asserts `‖x − expected‖ ≤ tolerance · ‖expected‖`.
pub fn assert_close(x: &[f64], expected: &[f64], tolerance: f64) {
    let error: f64 = x
        .iter()
        .zip(expected)
        .map(|(p, q)| (p - q).powi(2))
        .sum::<f64>()
        .sqrt();
    let scale = tensor::norm(expected);
    assert!(
        error <= tolerance * scale,
        "‖x − x*‖ = {error:e} exceeds {tolerance:e} · ‖x*‖ = {:e}\nx = {x:?}\nx* = {expected:?}",
        tolerance * scale
    );
}

/// Solves `problem` from `x₀ = 0` with `rtol` and asserts convergence, the residual bound and
/// the error bound `‖x − x*‖ ≤ ‖A⁻¹‖ (‖b − A x‖ + rounding in b)`.
pub fn assert_solves(problem: &Problem, method: KrylovMethod, rtol: f64) {
    let n = problem.b.len();
    let settings = Settings {
        rtol,
        ..Settings::default()
    };
    let mut a = problem.a.clone();
    let mut x = vec![0.0; n];
    let info = method.solve(&mut a, &problem.b, &mut x, None, &settings, None);
    assert!(info.converged(), "{method} did not converge: {info:?}");

    let b_norm = tensor::norm(&problem.b);
    let residual = residual_norm(&problem.a, &problem.b, &x);
    assert!(
        residual <= rtol * b_norm,
        "{method}: residual {residual:e} > {:e}",
        rtol * b_norm
    );
    assert!(
        (info.residual_norm - residual).abs() <= 1e-12 * b_norm,
        "{method}: reported residual {:e} but recomputed {residual:e}",
        info.residual_norm
    );

    // b = A x* is rounded, so x* solves the stored system only up to ‖A⁻¹‖·n·ε·‖A‖‖x*‖.
    let a_norm = tensor::norm(problem.a.as_slice());
    let rounding = n as f64 * f64::EPSILON * a_norm * tensor::norm(&problem.x);
    let bound = 1.01 * problem.inverse_norm * (residual + rounding);
    let error: f64 = x
        .iter()
        .zip(&problem.x)
        .map(|(p, q)| (p - q).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        error <= bound,
        "{method}: ‖x − x*‖ = {error:e} exceeds the bound {bound:e}"
    );
}

/// An operator that works for `limit` applications and returns NaN after that.
pub struct NanAfter {
    pub inner: DenseMatrix<f64>,
    pub limit: usize,
    pub applications: usize,
}

impl NanAfter {
    fn next(&mut self, y: &mut [f64]) -> bool {
        self.applications += 1;
        if self.applications > self.limit {
            y.fill(f64::NAN);
            return false;
        }
        true
    }
}

impl LinearOperator<f64> for NanAfter {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn apply(&mut self, x: &[f64], y: &mut [f64]) {
        if self.next(y) {
            self.inner.apply(x, y);
        }
    }

    fn apply_transpose(&mut self, x: &[f64], y: &mut [f64]) -> bool {
        if self.next(y) {
            self.inner.apply_transpose(x, y);
        }
        true
    }

    fn is_symmetric(&self) -> bool {
        self.inner.is_symmetric()
    }
}

/// A matrix that hides its transpose.
pub struct NoTranspose(pub DenseMatrix<f64>);

impl LinearOperator<f64> for NoTranspose {
    fn dim(&self) -> usize {
        self.0.dim()
    }

    fn apply(&mut self, x: &[f64], y: &mut [f64]) {
        self.0.apply(x, y);
    }

    fn is_symmetric(&self) -> bool {
        self.0.is_symmetric()
    }
}
