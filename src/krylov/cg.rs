//! Preconditioned conjugate gradients, after M. R. Hestenes and E. Stiefel, "Methods of
//! conjugate gradients for solving linear systems", J. Res. Nat. Bur. Standards 49(6), 1952.
//! The loop follows `scipy.sparse.linalg.cg`.

use super::driver::{self, add_checked, axpy, divisor, solve_with, Context, Estimate, KrylovStep};
use super::{Callback, LinearOperator, Preconditioner, Settings, SolveInfo, StopReason};
use crate::tensor::{self, Scalar};

/// A direction of non-positive curvature that CG found, for truncated Newton methods.
#[derive(Clone, Debug, PartialEq)]
pub struct CurvatureDirection<T> {
    /// The search direction `p`.
    pub direction: Vec<T>,
    /// `pᵀAp`, at most zero.
    pub curvature: f64,
}

/// Solves `A x = b` by conjugate gradients for a symmetric positive definite `A` and an
/// optional symmetric positive definite preconditioner. `x` contains the initial guess on entry
/// and the solution on return.
///
/// The callback, if any, runs after each iteration with the iteration count, `x` and the
/// recursively updated residual norm; it returns false to stop. When `pᵀAp ≤ 0` CG stops with
/// [`StopReason::NegativeCurvature`] and `x` keeps the iterate before that step;
/// [`cg_with_curvature`] also returns the direction. The default iteration limit is 10·n.
///
/// # Panics
///
/// If `b` or `x` differs in length from `a.dim()`.
pub fn cg<T: Scalar>(
    a: &mut dyn LinearOperator<T>,
    b: &[T],
    x: &mut [T],
    preconditioner: Option<&mut dyn Preconditioner<T>>,
    settings: &Settings<T>,
    callback: Option<Callback<'_, T>>,
) -> SolveInfo {
    solve_with::<T, Cg<T>>(a, b, x, preconditioner, settings, callback).0
}

/// Runs [`cg`] and, when it stops with [`StopReason::NegativeCurvature`], also returns the
/// direction `p` with `pᵀAp ≤ 0`. On the first iteration `p = M⁻¹ r₀`, and `x` stays the
/// initial guess.
///
/// # Panics
///
/// If `b` or `x` differs in length from `a.dim()`.
pub fn cg_with_curvature<T: Scalar>(
    a: &mut dyn LinearOperator<T>,
    b: &[T],
    x: &mut [T],
    preconditioner: Option<&mut dyn Preconditioner<T>>,
    settings: &Settings<T>,
    callback: Option<Callback<'_, T>>,
) -> (SolveInfo, Option<CurvatureDirection<T>>) {
    let (info, state) = solve_with::<T, Cg<T>>(a, b, x, preconditioner, settings, callback);
    let direction = match (&info.reason, state) {
        (StopReason::NegativeCurvature, Some(state)) => Some(CurvatureDirection {
            direction: state.p,
            curvature: state.curvature,
        }),
        _ => None,
    };
    (info, direction)
}

/// CG state: residual `r`, preconditioned residual `z`, direction `p` and `q = A p`.
struct Cg<T> {
    r: Vec<T>,
    z: Vec<T>,
    p: Vec<T>,
    q: Vec<T>,
    /// `rᵀz` of the previous iteration, or `None` before the first.
    rho_previous: Option<f64>,
    /// `pᵀAp` of the last step.
    curvature: f64,
}

impl<T: Scalar> KrylovStep<T> for Cg<T> {
    fn default_max_iterations(n: usize, _settings: &Settings<T>) -> usize {
        10 * n
    }

    fn start(
        _ctx: &mut Context<'_, T>,
        r0: Vec<T>,
        _settings: &Settings<T>,
    ) -> Result<Self, StopReason> {
        let n = r0.len();
        Ok(Cg {
            r: r0,
            z: vec![T::zero(); n],
            p: vec![T::zero(); n],
            q: vec![T::zero(); n],
            rho_previous: None,
            curvature: 0.0,
        })
    }

    fn step(&mut self, ctx: &mut Context<'_, T>, x: &mut [T]) -> Result<Estimate, StopReason> {
        // z = M⁻¹ r, ρ = rᵀz > 0 for a positive definite M.
        ctx.precondition(&self.r, &mut self.z);
        let rho = divisor("rho = rᵀM⁻¹r", tensor::dot(&self.r, &self.z))?;
        if rho < 0.0 {
            return Err(StopReason::Breakdown(format!(
                "rho = rᵀM⁻¹r = {rho} < 0, so the preconditioner is not positive definite"
            )));
        }

        // p = z + β p with β = ρ / ρ_previous.
        match self.rho_previous {
            None => self.p.copy_from_slice(&self.z),
            Some(rho_previous) => driver::xpby(&self.z, rho / rho_previous, &mut self.p),
        }

        // α = ρ / pᵀAp, unless the curvature is not positive.
        ctx.apply(&self.p, &mut self.q);
        let curvature = driver::finite("pᵀAp", tensor::dot(&self.p, &self.q))?;
        self.curvature = curvature;
        if curvature <= 0.0 {
            return Err(StopReason::NegativeCurvature);
        }
        let alpha = driver::finite("alpha = rᵀM⁻¹r / pᵀAp", rho / curvature)?;

        add_checked(x, &[(alpha, &self.p)])?;
        axpy(-alpha, &self.q, &mut self.r);
        self.rho_previous = Some(rho);
        Ok(Estimate::Recursive(tensor::norm(&self.r)))
    }

    /// Replaces the recursive residual by the true one and keeps the direction.
    fn resume(&mut self, _ctx: &mut Context<'_, T>, r: &[T]) -> bool {
        self.r.copy_from_slice(r);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krylov::testing::{self, assert_solves};
    use crate::krylov::{DenseMatrix, Diagonal, KrylovMethod};

    #[test]
    fn cg_poisson() {
        let problem = testing::poisson(50);
        assert_solves(&problem, KrylovMethod::Cg, 1e-10);
    }

    #[test]
    fn cg_random_spd() {
        let problem = testing::random_spd(30, 7);
        assert_solves(&problem, KrylovMethod::Cg, 1e-10);
    }

    #[test]
    fn cg_hilbert() {
        let problem = testing::hilbert(6);
        assert_solves(&problem, KrylovMethod::Cg, 1e-12);
    }

    #[test]
    fn cg_condition_1e8() {
        let problem = testing::log_diagonal(20, 8.0);
        assert_solves(&problem, KrylovMethod::Cg, 1e-12);
    }

    #[test]
    fn cg_converges_in_n_steps() {
        let problem = testing::random_spd(10, 3);
        let settings = Settings {
            rtol: 1e-10,
            ..Settings::default()
        };
        let mut a = problem.a.clone();
        let mut x = vec![0.0; 10];
        let info = cg(&mut a, &problem.b, &mut x, None, &settings, None);
        assert!(info.converged(), "{info:?}");
        assert!(info.iterations <= 12, "{info:?}");
    }

    #[test]
    fn cg_jacobi_cuts_iterations() {
        let problem = testing::scaled_poisson(40);
        let settings = Settings {
            rtol: 1e-8,
            ..Settings::default()
        };
        let mut a = problem.a.clone();
        let mut x = vec![0.0; 40];
        let plain = cg(&mut a, &problem.b, &mut x, None, &settings, None);

        let diagonal = (0..40).map(|i| problem.a.get(i, i)).collect();
        let mut jacobi = Diagonal::new(diagonal).unwrap();
        let mut x = vec![0.0; 40];
        let info = cg(
            &mut a,
            &problem.b,
            &mut x,
            Some(&mut jacobi),
            &settings,
            None,
        );
        assert!(info.converged(), "{info:?}");
        assert!(info.iterations < plain.iterations, "{info:?} vs {plain:?}");
        testing::assert_close(&x, &problem.x, 1e-5);
    }

    #[test]
    fn cg_negative_curvature_first_step() {
        let mut a = DenseMatrix::from_rows(&[vec![-1.0, 0.0], vec![0.0, 2.0]]).unwrap();
        let b = [1.0, 0.0];
        let mut x = [0.0, 0.0];
        let (info, found) = cg_with_curvature(&mut a, &b, &mut x, None, &Settings::default(), None);
        assert_eq!(info.reason, StopReason::NegativeCurvature);
        assert_eq!(info.iterations, 0);
        assert_eq!(x, [0.0, 0.0]);
        let found = found.expect("a direction comes with NegativeCurvature");
        assert_eq!(found.direction, vec![1.0, 0.0]);
        assert_eq!(found.curvature, -1.0);
    }

    #[test]
    fn cg_negative_curvature_later_step() {
        // Positive curvature along b = e₀ + e₁ at first, then the second direction has negative
        // curvature.
        let mut a = DenseMatrix::from_rows(&[vec![4.0, 0.0], vec![0.0, -1.0]]).unwrap();
        let b = [1.0, 0.1];
        let mut x = [0.0, 0.0];
        let (info, found) = cg_with_curvature(&mut a, &b, &mut x, None, &Settings::default(), None);
        assert_eq!(info.reason, StopReason::NegativeCurvature);
        assert_eq!(info.iterations, 1);
        assert!(x[0] != 0.0);
        let found = found.unwrap();
        let mut ap = [0.0; 2];
        a.apply(&found.direction, &mut ap);
        assert!(tensor::dot(&found.direction, &ap) <= 0.0);
        assert!((tensor::dot(&found.direction, &ap) - found.curvature).abs() < 1e-12);
    }

    #[test]
    fn cg_no_direction_when_converged() {
        let problem = testing::poisson(10);
        let mut a = problem.a.clone();
        let mut x = vec![0.0; 10];
        let settings = Settings::default();
        let (info, found) = cg_with_curvature(&mut a, &problem.b, &mut x, None, &settings, None);
        assert!(info.converged());
        assert!(found.is_none());
    }

    #[test]
    fn cg_f32_poisson() {
        let problem = testing::poisson(20);
        let data = problem.a.as_slice().iter().map(|&v| v as f32).collect();
        let mut a = DenseMatrix::new(20, data).unwrap();
        let b: Vec<f32> = problem.b.iter().map(|&v| v as f32).collect();
        let mut x = vec![0.0f32; 20];
        let settings = Settings {
            rtol: 1e-5f32,
            ..Settings::default()
        };
        let info = cg(&mut a, &b, &mut x, None, &settings, None);
        assert!(info.converged(), "{info:?}");
        assert!(info.residual_norm <= 1e-5 * tensor::norm(&b), "{info:?}");
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        testing::assert_close(&x64, &problem.x, 1e-3);
    }
}
