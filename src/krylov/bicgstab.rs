//! BiCGSTAB, after H. A. van der Vorst, "Bi-CGSTAB: a fast and smoothly converging variant
//! of Bi-CG for the solution of nonsymmetric linear systems", SIAM J. Sci. Stat. Comput.
//! 13(2), 1992. The loop follows `scipy.sparse.linalg.bicgstab`.

use super::driver::{self, add_checked, axpy, divisor, solve_with, Context, Estimate, KrylovStep};
use super::{Callback, LinearOperator, Preconditioner, Settings, SolveInfo, StopReason};
use crate::tensor::{self, Scalar};

/// Solves `A x = b` by BiCGSTAB for any nonsingular `A`, without `Aᵀ`. `x` contains the initial
/// guess on entry and the solution on return.
///
/// An iteration applies the operator twice. When the residual after its first half, `s`,
/// already meets the tolerance, the iteration ends there, as in scipy. The callback receives
/// the recursively updated residual norm. The default iteration limit is 10·n.
///
/// Breakdown is tested on exact zeros, not on scipy's absolute thresholds `|ρ|, |ω| < ε²`,
/// which depend on the scale of `b`. After a failed true-residual check the method restarts
/// from the true residual.
///
/// # Panics
///
/// If `b` or `x` differs in length from `a.dim()`.
pub fn bicgstab<T: Scalar>(
    a: &mut dyn LinearOperator<T>,
    b: &[T],
    x: &mut [T],
    preconditioner: Option<&mut dyn Preconditioner<T>>,
    settings: &Settings<T>,
    callback: Option<Callback<'_, T>>,
) -> SolveInfo {
    solve_with::<T, Bicgstab<T>>(a, b, x, preconditioner, settings, callback).0
}

struct Bicgstab<T> {
    /// The residual, which is `s` after the first half of an iteration.
    r: Vec<T>,
    /// The fixed shadow residual `r̃ = r₀`.
    r_tilde: Vec<T>,
    p: Vec<T>,
    p_hat: Vec<T>,
    v: Vec<T>,
    s_hat: Vec<T>,
    t: Vec<T>,
    /// `ρ`, `α` and `ω` of the previous full iteration, or `None` at a (re)start.
    previous: Option<(f64, f64, f64)>,
}

impl<T: Scalar> KrylovStep<T> for Bicgstab<T> {
    fn default_max_iterations(n: usize, _settings: &Settings<T>) -> usize {
        10 * n
    }

    fn start(
        _ctx: &mut Context<'_, T>,
        r0: Vec<T>,
        _settings: &Settings<T>,
    ) -> Result<Self, StopReason> {
        let n = r0.len();
        Ok(Bicgstab {
            r_tilde: r0.clone(),
            r: r0,
            p: vec![T::zero(); n],
            p_hat: vec![T::zero(); n],
            v: vec![T::zero(); n],
            s_hat: vec![T::zero(); n],
            t: vec![T::zero(); n],
            previous: None,
        })
    }

    fn step(&mut self, ctx: &mut Context<'_, T>, x: &mut [T]) -> Result<Estimate, StopReason> {
        let rho = divisor("rho = r̃ᵀr", tensor::dot(&self.r_tilde, &self.r))?;
        self.update_direction(rho)?;

        // First half: p̂ = M⁻¹ p, v = A p̂, α = ρ / r̃ᵀv, s = r − α v.
        ctx.precondition(&self.p, &mut self.p_hat);
        ctx.apply(&self.p_hat, &mut self.v);
        let r_tilde_v = divisor("r̃ᵀAp̂", tensor::dot(&self.r_tilde, &self.v))?;
        let alpha = driver::finite("alpha = r̃ᵀr / r̃ᵀAp̂", rho / r_tilde_v)?;
        axpy(-alpha, &self.v, &mut self.r);

        let s_norm = tensor::norm(&self.r);
        if s_norm <= ctx.trigger {
            add_checked(x, &[(alpha, &self.p_hat)])?;
            // The loop now checks the true residual. Should that fail, `resume` restarts.
            self.previous = None;
            return Ok(Estimate::Recursive(s_norm));
        }

        // Second half: ŝ = M⁻¹ s, t = A ŝ, ω = tᵀs / tᵀt, r = s − ω t.
        ctx.precondition(&self.r, &mut self.s_hat);
        ctx.apply(&self.s_hat, &mut self.t);
        let t_norm_squared = divisor("tᵀt", tensor::dot(&self.t, &self.t))?;
        let omega = driver::finite("omega = tᵀs / tᵀt", tensor::dot(&self.t, &self.r))?;
        let omega = driver::finite("omega = tᵀs / tᵀt", omega / t_norm_squared)?;

        add_checked(x, &[(alpha, &self.p_hat), (omega, &self.s_hat)])?;
        axpy(-omega, &self.t, &mut self.r);
        self.previous = Some((rho, alpha, omega));
        Ok(Estimate::Recursive(tensor::norm(&self.r)))
    }

    /// Restarts from the true residual, keeping the shadow residual.
    fn resume(&mut self, _ctx: &mut Context<'_, T>, r: &[T]) -> bool {
        self.r.copy_from_slice(r);
        self.previous = None;
        true
    }
}

impl<T: Scalar> Bicgstab<T> {
    /// Sets `p = r + β (p − ω v)` with `β = (ρ / ρ_previous)(α / ω)`, or `p = r` at a start.
    fn update_direction(&mut self, rho: f64) -> Result<(), StopReason> {
        let Some((rho_previous, alpha, omega)) = self.previous else {
            self.p.copy_from_slice(&self.r);
            return Ok(());
        };
        let omega = divisor("omega", omega)?;
        let beta = driver::finite("beta", (rho / rho_previous) * (alpha / omega))?;
        axpy(-omega, &self.v, &mut self.p);
        driver::xpby(&self.r, beta, &mut self.p);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krylov::testing::{self, assert_solves};
    use crate::krylov::{Diagonal, KrylovMethod};

    #[test]
    fn bicgstab_poisson() {
        assert_solves(&testing::poisson(50), KrylovMethod::Bicgstab, 1e-10);
    }

    #[test]
    fn bicgstab_indefinite() {
        assert_solves(&testing::indefinite(40), KrylovMethod::Bicgstab, 1e-10);
    }

    #[test]
    fn bicgstab_convection_diffusion() {
        assert_solves(
            &testing::convection_diffusion(50, 0.4),
            KrylovMethod::Bicgstab,
            1e-10,
        );
    }

    #[test]
    fn bicgstab_random_nonsymmetric() {
        assert_solves(
            &testing::random_nonsymmetric(30, 11),
            KrylovMethod::Bicgstab,
            1e-10,
        );
    }

    #[test]
    fn bicgstab_hilbert() {
        assert_solves(&testing::hilbert(6), KrylovMethod::Bicgstab, 1e-12);
    }

    #[test]
    fn bicgstab_condition_1e8() {
        assert_solves(
            &testing::log_diagonal(20, 8.0),
            KrylovMethod::Bicgstab,
            1e-12,
        );
    }

    #[test]
    fn bicgstab_jacobi_preconditioned() {
        let problem = testing::scaled_poisson(40);
        let diagonal = (0..40).map(|i| problem.a.get(i, i)).collect();
        let mut jacobi = Diagonal::new(diagonal).unwrap();
        let settings = Settings {
            rtol: 1e-10,
            ..Settings::default()
        };
        let mut a = problem.a.clone();
        let mut x = vec![0.0; 40];
        let info = bicgstab(
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
    fn bicgstab_two_products_per_iteration() {
        let problem = testing::convection_diffusion(30, 0.2);
        let mut a = problem.a.clone();
        let mut x = vec![0.0; 30];
        let settings = Settings {
            max_iterations: Some(5),
            ..Settings::default()
        };
        let info = bicgstab(&mut a, &problem.b, &mut x, None, &settings, None);
        assert_eq!(info.reason, StopReason::IterationLimit);
        // 2 per iteration, plus the final residual; x₀ = 0 needs no product.
        assert_eq!(info.operator_applications, 2 * 5 + 1);
    }
}
