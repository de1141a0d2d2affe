//! Biconjugate gradients, after R. Fletcher, "Conjugate gradient methods for indefinite
//! systems", Numerical Analysis Dundee 1975, Lecture Notes in Mathematics 506, 1976. The loop
//! follows `scipy.sparse.linalg.bicg`.

use super::driver::{self, add_checked, axpy, divisor, solve_with, Context, Estimate, KrylovStep};
use super::{Callback, LinearOperator, Preconditioner, Settings, SolveInfo, StopReason};
use crate::tensor::{self, Scalar};

/// Solves `A x = b` by biconjugate gradients for any nonsingular `A`. `x` contains the initial
/// guess on entry and the solution on return.
///
/// BiCG needs `Aᵀ` and, with a preconditioner, `M⁻ᵀ`. It uses `apply`/`solve` for them when
/// the operator or preconditioner declares itself symmetric, and otherwise stops with
/// [`StopReason::Unsupported`] before it changes `x`. The callback receives the recursively
/// updated residual norm. The default iteration limit is 10·n.
///
/// Breakdown is tested on exact zeros, not on scipy's absolute threshold `|ρ| < ε²`, which
/// depends on the scale of `b`.
///
/// # Panics
///
/// If `b` or `x` differs in length from `a.dim()`.
pub fn bicg<T: Scalar>(
    a: &mut dyn LinearOperator<T>,
    b: &[T],
    x: &mut [T],
    preconditioner: Option<&mut dyn Preconditioner<T>>,
    settings: &Settings<T>,
    callback: Option<Callback<'_, T>>,
) -> SolveInfo {
    solve_with::<T, Bicg<T>>(a, b, x, preconditioner, settings, callback).0
}

/// The residual and direction of the system, and their shadows (tilde) for `Aᵀ`.
struct Bicg<T> {
    r: Vec<T>,
    r_tilde: Vec<T>,
    z: Vec<T>,
    z_tilde: Vec<T>,
    p: Vec<T>,
    p_tilde: Vec<T>,
    q: Vec<T>,
    q_tilde: Vec<T>,
    /// `r̃ᵀz` of the previous iteration, or `None` before the first.
    rho_previous: Option<f64>,
}

impl<T: Scalar> KrylovStep<T> for Bicg<T> {
    fn default_max_iterations(n: usize, _settings: &Settings<T>) -> usize {
        10 * n
    }

    fn start(
        _ctx: &mut Context<'_, T>,
        r0: Vec<T>,
        _settings: &Settings<T>,
    ) -> Result<Self, StopReason> {
        let n = r0.len();
        Ok(Bicg {
            r_tilde: r0.clone(),
            r: r0,
            z: vec![T::zero(); n],
            z_tilde: vec![T::zero(); n],
            p: vec![T::zero(); n],
            p_tilde: vec![T::zero(); n],
            q: vec![T::zero(); n],
            q_tilde: vec![T::zero(); n],
            rho_previous: None,
        })
    }

    fn step(&mut self, ctx: &mut Context<'_, T>, x: &mut [T]) -> Result<Estimate, StopReason> {
        // z = M⁻¹ r, z̃ = M⁻ᵀ r̃, ρ = r̃ᵀz.
        ctx.precondition_transpose(&self.r_tilde, &mut self.z_tilde)?;
        ctx.precondition(&self.r, &mut self.z);
        let rho = divisor("rho = r̃ᵀM⁻¹r", tensor::dot(&self.r_tilde, &self.z))?;

        // p = z + β p and p̃ = z̃ + β p̃ with β = ρ / ρ_previous.
        match self.rho_previous {
            None => {
                self.p.copy_from_slice(&self.z);
                self.p_tilde.copy_from_slice(&self.z_tilde);
            }
            Some(rho_previous) => {
                let beta = rho / rho_previous;
                driver::xpby(&self.z, beta, &mut self.p);
                driver::xpby(&self.z_tilde, beta, &mut self.p_tilde);
            }
        }

        // The transpose goes first, so that an operator without one stops before A is used.
        ctx.apply_transpose(&self.p_tilde, &mut self.q_tilde)?;
        ctx.apply(&self.p, &mut self.q);
        let curvature = divisor("p̃ᵀAp", tensor::dot(&self.p_tilde, &self.q))?;
        let alpha = driver::finite("alpha = r̃ᵀM⁻¹r / p̃ᵀAp", rho / curvature)?;

        add_checked(x, &[(alpha, &self.p)])?;
        axpy(-alpha, &self.q, &mut self.r);
        axpy(-alpha, &self.q_tilde, &mut self.r_tilde);
        self.rho_previous = Some(rho);
        Ok(Estimate::Recursive(tensor::norm(&self.r)))
    }

    /// Replaces the recursive residual by the true one and keeps the shadow sequence.
    fn resume(&mut self, _ctx: &mut Context<'_, T>, r: &[T]) -> bool {
        self.r.copy_from_slice(r);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krylov::testing::{self, assert_solves, NoTranspose};
    use crate::krylov::{DenseMatrix, KrylovMethod};

    #[test]
    fn bicg_poisson() {
        assert_solves(&testing::poisson(50), KrylovMethod::Bicg, 1e-10);
    }

    #[test]
    fn bicg_indefinite() {
        assert_solves(&testing::indefinite(40), KrylovMethod::Bicg, 1e-10);
    }

    #[test]
    fn bicg_convection_diffusion() {
        assert_solves(
            &testing::convection_diffusion(50, 0.4),
            KrylovMethod::Bicg,
            1e-10,
        );
    }

    #[test]
    fn bicg_random_nonsymmetric() {
        assert_solves(
            &testing::random_nonsymmetric(30, 11),
            KrylovMethod::Bicg,
            1e-10,
        );
    }

    #[test]
    fn bicg_hilbert() {
        assert_solves(&testing::hilbert(6), KrylovMethod::Bicg, 1e-12);
    }

    #[test]
    fn bicg_condition_1e8() {
        assert_solves(&testing::log_diagonal(20, 8.0), KrylovMethod::Bicg, 1e-12);
    }

    #[test]
    fn bicg_without_transpose_is_unsupported() {
        let problem = testing::convection_diffusion(10, 0.3);
        let mut a = NoTranspose(problem.a.clone());
        let mut x = vec![0.5; 10];
        let info = bicg(&mut a, &problem.b, &mut x, None, &Settings::default(), None);
        let StopReason::Unsupported(what) = &info.reason else {
            panic!("expected Unsupported, got {info:?}");
        };
        assert!(what.contains("apply_transpose"), "{what}");
        assert_eq!(info.iterations, 0);
        assert_eq!(x, vec![0.5; 10]);
    }

    #[test]
    fn bicg_symmetric_operator_needs_no_transpose() {
        let problem = testing::poisson(20);
        let mut a = NoTranspose(problem.a.clone());
        let mut x = vec![0.0; 20];
        let info = bicg(&mut a, &problem.b, &mut x, None, &Settings::default(), None);
        assert!(info.converged(), "{info:?}");
    }

    #[test]
    fn bicg_uses_transpose_on_nonsymmetric() {
        // A symmetric stand-in for Aᵀ would give wrong shadow residuals, so agreement with
        // the known solution shows that apply_transpose is used.
        let mut a = DenseMatrix::from_rows(&[
            vec![4.0, 1.0, 0.0],
            vec![-2.0, 5.0, 1.0],
            vec![0.0, -3.0, 6.0],
        ])
        .unwrap();
        let x_star = [1.0, -2.0, 0.5];
        let mut b = [0.0; 3];
        a.apply(&x_star, &mut b);
        let mut x = [0.0; 3];
        let settings = Settings {
            rtol: 1e-12,
            ..Settings::default()
        };
        let info = bicg(&mut a, &b, &mut x, None, &settings, None);
        assert!(info.converged(), "{info:?}");
        assert!(info.iterations <= 4, "{info:?}");
        testing::assert_close(&x, &x_star, 1e-10);
    }
}
