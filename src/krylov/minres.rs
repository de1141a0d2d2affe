//! MINRES, after C. C. Paige and M. A. Saunders, "Solution of sparse indefinite systems of
//! linear equations", SIAM J. Numer. Anal. 12(4), 1975. The recurrences follow
//! `scipy.sparse.linalg.minres` 1.17, a translation of the Stanford SOL MATLAB code.

use std::mem::swap;

use super::driver::{self, add_checked, axpy, divisor, solve_with, Context, Estimate, KrylovStep};
use super::{Callback, LinearOperator, Preconditioner, Settings, SolveInfo, StopReason};
use crate::tensor::{self, Scalar};

/// Solves `A x = b` by MINRES for a symmetric, possibly indefinite `A`. A preconditioner, if
/// any, must be symmetric positive definite. `x` contains the initial guess on entry and the
/// solution on return.
///
/// Neither symmetry is checked. A negative `rᵀM⁻¹r` stops the solver with a breakdown that
/// names the preconditioner.
///
/// The residual estimate passed to the callback and used to trigger the true-residual check
/// is the norm that the rotations give, `‖r‖` without a preconditioner and `‖r‖_{M⁻¹}` with
/// one. The stopping rule is that of the other solvers, `‖b − A x‖ ≤ max(rtol·‖b‖, atol)`,
/// not scipy's `‖r‖ ≤ rtol·‖A‖·‖x‖`. The default iteration limit is 5·n, as in scipy.
///
/// # Panics
///
/// If `b` or `x` differs in length from `a.dim()`.
pub fn minres<T: Scalar>(
    a: &mut dyn LinearOperator<T>,
    b: &[T],
    x: &mut [T],
    preconditioner: Option<&mut dyn Preconditioner<T>>,
    settings: &Settings<T>,
    callback: Option<Callback<'_, T>>,
) -> SolveInfo {
    solve_with::<T, Minres<T>>(a, b, x, preconditioner, settings, callback).0
}

/// The Lanczos vectors and the running QR factorization of the tridiagonal matrix. The
/// scalar names are those of the SOL code.
struct Minres<T> {
    /// The Lanczos vector `v = y / β`.
    v: Vec<T>,
    /// `M⁻¹ r2`, which becomes `β v` of the next step.
    y: Vec<T>,
    /// The previous and the current unpreconditioned Lanczos vectors.
    r1: Vec<T>,
    r2: Vec<T>,
    /// The last three search directions, newest in `w`.
    w: Vec<T>,
    w1: Vec<T>,
    w2: Vec<T>,
    beta: f64,
    beta_previous: f64,
    /// The previous rotation.
    cs: f64,
    sn: f64,
    dbar: f64,
    epsilon: f64,
    /// The residual norm estimate.
    phibar: f64,
    first: bool,
}

impl<T: Scalar> KrylovStep<T> for Minres<T> {
    fn default_max_iterations(n: usize, _settings: &Settings<T>) -> usize {
        5 * n
    }

    fn start(
        ctx: &mut Context<'_, T>,
        r0: Vec<T>,
        _settings: &Settings<T>,
    ) -> Result<Self, StopReason> {
        let n = r0.len();
        let mut y = vec![T::zero(); n];
        ctx.precondition(&r0, &mut y);
        let beta1 = divisor("β₁² = r₀ᵀM⁻¹r₀", tensor::dot(&r0, &y))?;
        if beta1 < 0.0 {
            return Err(not_positive_definite("β₁² = r₀ᵀM⁻¹r₀", beta1));
        }
        let beta1 = beta1.sqrt();

        Ok(Minres {
            v: vec![T::zero(); n],
            y,
            r1: r0.clone(),
            r2: r0,
            w: vec![T::zero(); n],
            w1: vec![T::zero(); n],
            w2: vec![T::zero(); n],
            beta: beta1,
            beta_previous: 0.0,
            cs: -1.0,
            sn: 0.0,
            dbar: 0.0,
            epsilon: 0.0,
            phibar: beta1,
            first: true,
        })
    }

    fn step(&mut self, ctx: &mut Context<'_, T>, x: &mut [T]) -> Result<Estimate, StopReason> {
        let alpha = self.lanczos(ctx)?;
        let (delta, gamma, epsilon_previous) = self.rotate(alpha)?;

        // φ = c φ̄ is the step along the new direction w = (v − ε w₂ − δ w₁) / γ.
        let phi = self.cs * self.phibar;
        self.phibar *= self.sn;
        self.update_directions(delta, gamma, epsilon_previous);
        add_checked(x, &[(phi, &self.w)])?;
        Ok(Estimate::Recursive(self.phibar.abs()))
    }
}

impl<T: Scalar> Minres<T> {
    /// Runs one Lanczos step: `v = y / β`, the next vector in `r2`, `y = M⁻¹ r2` and the new
    /// `β`. Returns `α = vᵀAv`.
    fn lanczos(&mut self, ctx: &mut Context<'_, T>) -> Result<f64, StopReason> {
        let beta = divisor("Lanczos β", self.beta)?;
        self.v.copy_from_slice(&self.y);
        driver::scale(1.0 / beta, &mut self.v);

        // y = A v − (β / β_previous) r1 − (α / β) r2.
        ctx.apply(&self.v, &mut self.y);
        if !self.first {
            axpy(-beta / self.beta_previous, &self.r1, &mut self.y);
        }
        let alpha = driver::finite("Lanczos α = vᵀAv", tensor::dot(&self.v, &self.y))?;
        axpy(-alpha / beta, &self.r2, &mut self.y);

        // r1 ← r2, r2 ← y, y ← M⁻¹ r2. The old r1 becomes scratch for y.
        swap(&mut self.r1, &mut self.r2);
        swap(&mut self.r2, &mut self.y);
        ctx.precondition(&self.r2, &mut self.y);

        let beta_squared = driver::finite("β² = r₂ᵀM⁻¹r₂", tensor::dot(&self.r2, &self.y))?;
        if beta_squared < 0.0 {
            return Err(not_positive_definite("β² = r₂ᵀM⁻¹r₂", beta_squared));
        }
        self.beta_previous = beta;
        self.beta = beta_squared.sqrt();
        self.first = false;
        Ok(alpha)
    }

    /// Applies the previous rotation to the new column `(α, β)` of the tridiagonal matrix
    /// and computes the next one. Returns `δ`, `γ` and the previous `ε`.
    fn rotate(&mut self, alpha: f64) -> Result<(f64, f64, f64), StopReason> {
        let epsilon_previous = self.epsilon;
        let delta = self.cs * self.dbar + self.sn * alpha;
        let gbar = self.sn * self.dbar - self.cs * alpha;
        self.epsilon = self.sn * self.beta;
        self.dbar = -self.cs * self.beta;

        // As in the SOL code, γ is kept at least ε so that a singular A does not divide by 0.
        let gamma = driver::finite("γ", gbar.hypot(self.beta))?.max(f64::EPSILON);
        self.cs = gbar / gamma;
        self.sn = self.beta / gamma;
        Ok((delta, gamma, epsilon_previous))
    }

    /// Shifts `w₁ ← w₂`, `w₂ ← w` and sets `w = (v − ε w₁ − δ w₂) / γ` with the shifted
    /// vectors, reusing the oldest vector's storage.
    fn update_directions(&mut self, delta: f64, gamma: f64, epsilon_previous: f64) {
        let (epsilon, delta, gamma) = (T::of(epsilon_previous), T::of(delta), T::of(gamma));
        for (((oldest, &v), &older), &old) in
            self.w1.iter_mut().zip(&self.v).zip(&self.w2).zip(&self.w)
        {
            *oldest = (v - epsilon * older - delta * old) / gamma;
        }
        swap(&mut self.w1, &mut self.w2);
        swap(&mut self.w2, &mut self.w);
    }
}

fn not_positive_definite(quantity: &str, value: f64) -> StopReason {
    StopReason::Breakdown(format!(
        "{quantity} = {value} < 0, so the preconditioner is not positive definite or the \
         operator is not symmetric"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krylov::testing::{self, assert_solves};
    use crate::krylov::{DenseMatrix, Diagonal, KrylovMethod};

    #[test]
    fn minres_diag_one_minus_one() {
        let mut a = DenseMatrix::from_rows(&[vec![1.0, 0.0], vec![0.0, -1.0]]).unwrap();
        let mut x = [0.0f64, 0.0];
        let info = minres(
            &mut a,
            &[1.0, 1.0],
            &mut x,
            None,
            &Settings::default(),
            None,
        );
        assert!(info.converged(), "{info:?}");
        assert!((x[0] - 1.0).abs() < 1e-12, "{x:?}");
        assert!((x[1] + 1.0).abs() < 1e-12, "{x:?}");
    }

    #[test]
    fn minres_poisson() {
        assert_solves(&testing::poisson(50), KrylovMethod::Minres, 1e-10);
    }

    #[test]
    fn minres_indefinite() {
        assert_solves(&testing::indefinite(40), KrylovMethod::Minres, 1e-10);
    }

    #[test]
    fn minres_hilbert() {
        assert_solves(&testing::hilbert(6), KrylovMethod::Minres, 1e-12);
    }

    #[test]
    fn minres_condition_1e8() {
        assert_solves(&testing::log_diagonal(20, 8.0), KrylovMethod::Minres, 1e-12);
    }

    #[test]
    fn minres_jacobi_preconditioned() {
        let problem = testing::scaled_poisson(40);
        let diagonal = (0..40).map(|i| problem.a.get(i, i)).collect();
        let mut jacobi = Diagonal::new(diagonal).unwrap();
        let settings = Settings {
            rtol: 1e-10,
            ..Settings::default()
        };
        let mut a = problem.a.clone();
        let mut x = vec![0.0; 40];
        let info = minres(
            &mut a,
            &problem.b,
            &mut x,
            Some(&mut jacobi),
            &settings,
            None,
        );
        assert!(info.converged(), "{info:?}");
        assert!(info.residual_norm <= 1e-10 * tensor::norm(&problem.b));
        testing::assert_close(&x, &problem.x, 1e-6);
    }

    #[test]
    fn minres_rejects_indefinite_preconditioner() {
        let problem = testing::poisson(5);
        let mut m = Diagonal::new(vec![1.0, -1.0, 1.0, -1.0, 1.0]).unwrap();
        let mut a = problem.a.clone();
        let b = [0.0, 1.0, 0.0, 0.0, 0.0];
        let mut x = [0.0; 5];
        let info = minres(&mut a, &b, &mut x, Some(&mut m), &Settings::default(), None);
        let StopReason::Breakdown(what) = &info.reason else {
            panic!("expected a breakdown, got {info:?}");
        };
        assert!(what.contains("preconditioner"), "{what}");
        assert_eq!(x, [0.0; 5]);
    }
}
