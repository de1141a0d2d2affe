//! Restarted GMRES, after Y. Saad and M. H. Schultz, "GMRES: a generalized minimal residual
//! algorithm for solving nonsymmetric linear systems", SIAM J. Sci. Stat. Comput. 7(3), 1986:
//! Arnoldi with modified Gram–Schmidt and Givens rotations, as in `scipy.sparse.linalg.gmres`.
//!
//! Unlike scipy, which preconditions from the left, this solver preconditions from the
//! right. It minimizes `‖b − A M⁻¹ u‖` over the Krylov space and sets `x = x₀ + M⁻¹ u`, so
//! the norm that the rotations give is the true residual norm `‖b − A x‖` in exact arithmetic.
//! The inner stopping test and the callback then see the same quantity as the final test.

use super::driver::{self, add_checked, axpy, solve_with, Context, Estimate, KrylovStep};
use super::{Callback, LinearOperator, Preconditioner, Settings, SolveInfo, StopReason};
use crate::tensor::{self, Scalar};

/// Solves `A x = b` by restarted, right-preconditioned GMRES for any nonsingular `A`. `x`
/// contains the initial guess on entry and the solution on return.
///
/// One iteration is one Arnoldi step, and a cycle has `settings.restart` of them (clamped to
/// `1..=n`). Each cycle ends by computing `b − A x`, which starts the next cycle. The default
/// iteration limit is 10·n cycles, the same budget as scipy's default.
///
/// The callback receives the iterate that the current cycle would give if it ended now. To
/// form it the solver applies the preconditioner once more per iteration, but the operator
/// not at all.
///
/// # Panics
///
/// If `b` or `x` differs in length from `a.dim()`.
pub fn gmres<T: Scalar>(
    a: &mut dyn LinearOperator<T>,
    b: &[T],
    x: &mut [T],
    preconditioner: Option<&mut dyn Preconditioner<T>>,
    settings: &Settings<T>,
    callback: Option<Callback<'_, T>>,
) -> SolveInfo {
    solve_with::<T, Gmres<T>>(a, b, x, preconditioner, settings, callback).0
}

/// The Arnoldi basis and the rotated Hessenberg matrix of the current cycle.
struct Gmres<T> {
    n: usize,
    restart: usize,
    /// `restart + 1` basis vectors of length `n`, vector `j` at `j * n`.
    basis: Vec<T>,
    /// The Hessenberg matrix by columns, `restart + 1` entries each. After the rotations its
    /// first `columns` columns are upper triangular.
    hessenberg: Vec<f64>,
    /// The Givens rotations, one per column.
    cosines: Vec<f64>,
    sines: Vec<f64>,
    /// The rotated right-hand side `Qᵀ β e₁`. Entry `columns` is the residual norm estimate.
    rhs: Vec<f64>,
    /// The least-squares coefficients of the basis vectors.
    coefficients: Vec<f64>,
    /// The residual at the start of the cycle.
    r: Vec<T>,
    /// `M⁻¹ v` in a step, and `M⁻¹ V y` when updating `x`.
    z: Vec<T>,
    /// `V y`.
    combination: Vec<T>,
    /// The iterate shown to the callback, allocated on first use.
    candidate: Option<Vec<T>>,
    /// Arnoldi steps done in this cycle.
    columns: usize,
    /// Whether `x` already contains this cycle's update.
    committed: bool,
    /// `‖r‖` at the start of the cycle.
    cycle_start_norm: f64,
    /// Whether a cycle ended on an invariant subspace without lowering the residual.
    stalled: bool,
}

impl<T: Scalar> KrylovStep<T> for Gmres<T> {
    fn default_max_iterations(n: usize, settings: &Settings<T>) -> usize {
        10 * n * settings.restart.clamp(1, n.max(1))
    }

    fn start(
        _ctx: &mut Context<'_, T>,
        r0: Vec<T>,
        settings: &Settings<T>,
    ) -> Result<Self, StopReason> {
        let n = r0.len();
        let restart = settings.restart.clamp(1, n);
        let mut state = Gmres {
            n,
            restart,
            basis: vec![T::zero(); (restart + 1) * n],
            hessenberg: vec![0.0; (restart + 1) * restart],
            cosines: vec![0.0; restart],
            sines: vec![0.0; restart],
            rhs: vec![0.0; restart + 1],
            coefficients: vec![0.0; restart],
            r: r0,
            z: vec![T::zero(); n],
            combination: vec![T::zero(); n],
            candidate: None,
            columns: 0,
            committed: false,
            cycle_start_norm: 0.0,
            stalled: false,
        };
        state.begin_cycle(tensor::norm(&state.r));
        Ok(state)
    }

    fn step(&mut self, ctx: &mut Context<'_, T>, x: &mut [T]) -> Result<Estimate, StopReason> {
        if self.stalled {
            return Err(StopReason::Breakdown(format!(
                "the Krylov subspace became invariant (h[j+1][j] = 0) but the residual stays \
                 at {}, above the tolerance {}; A may be singular",
                self.cycle_start_norm, ctx.tolerance
            )));
        }
        let j = self.columns;
        let invariant = self.arnoldi(ctx, j)?;
        self.rotate_column(j)?;
        self.columns = j + 1;

        if invariant || self.columns == self.restart {
            return self.end_cycle(ctx, x, invariant);
        }
        Ok(Estimate::Recursive(self.rhs[self.columns].abs()))
    }

    /// Adds `M⁻¹ V y` to `x`, where `y` solves the cycle's least-squares problem.
    fn commit(&mut self, ctx: &mut Context<'_, T>, x: &mut [T]) -> Result<bool, StopReason> {
        if self.committed || self.columns == 0 {
            return Ok(false);
        }
        self.form_update(ctx);
        add_checked(x, &[(1.0, &self.z)])?;
        self.committed = true;
        Ok(true)
    }

    fn current<'s>(&'s mut self, ctx: &mut Context<'_, T>, x: &'s [T]) -> &'s [T] {
        if self.committed || self.columns == 0 {
            return x;
        }
        self.form_update(ctx);
        let candidate = self
            .candidate
            .get_or_insert_with(|| vec![T::zero(); x.len()]);
        for ((c, &xi), &zi) in candidate.iter_mut().zip(x).zip(&self.z) {
            *c = xi + zi;
        }
        candidate
    }

    /// Starts a new cycle from the true residual.
    fn resume(&mut self, _ctx: &mut Context<'_, T>, r: &[T]) -> bool {
        self.r.copy_from_slice(r);
        self.begin_cycle(tensor::norm(r));
        true
    }
}

impl<T: Scalar> Gmres<T> {
    /// Sets `v₀ = r / ‖r‖` and the right-hand side `‖r‖ e₁`.
    fn begin_cycle(&mut self, r_norm: f64) {
        let n = self.n;
        self.basis[..n].copy_from_slice(&self.r);
        driver::scale(1.0 / r_norm, &mut self.basis[..n]);
        self.rhs.fill(0.0);
        self.rhs[0] = r_norm;
        self.columns = 0;
        self.committed = false;
        self.cycle_start_norm = r_norm;
    }

    /// Computes `v_{j+1}` from `A M⁻¹ v_j` by modified Gram–Schmidt and stores column `j` of
    /// the Hessenberg matrix. Returns whether the subspace became invariant, that is
    /// `h[j+1][j] ≤ ε ‖A M⁻¹ v_j‖`.
    fn arnoldi(&mut self, ctx: &mut Context<'_, T>, j: usize) -> Result<bool, StopReason> {
        let n = self.n;
        let (previous, next) = self.basis.split_at_mut((j + 1) * n);
        let w = &mut next[..n];
        ctx.precondition(&previous[j * n..], &mut self.z);
        ctx.apply(&self.z, w);
        let w_norm = driver::finite("‖A M⁻¹ v‖", tensor::norm(w))?;

        let column = &mut self.hessenberg[j * (self.restart + 1)..(j + 1) * (self.restart + 1)];
        for (i, v) in previous.chunks_exact(n).enumerate() {
            let h = tensor::dot(v, w);
            column[i] = h;
            axpy(-h, v, w);
        }
        let h_next = driver::finite("h[j+1][j]", tensor::norm(w))?;

        let invariant = h_next <= f64::EPSILON * w_norm;
        if invariant {
            column[j + 1] = 0.0;
        } else {
            column[j + 1] = h_next;
            driver::scale(1.0 / h_next, w);
        }
        Ok(invariant)
    }

    /// Applies the previous rotations to column `j`, then the rotation that zeroes
    /// `h[j+1][j]`, to the column and to the right-hand side.
    fn rotate_column(&mut self, j: usize) -> Result<(), StopReason> {
        let column = &mut self.hessenberg[j * (self.restart + 1)..(j + 1) * (self.restart + 1)];
        for i in 0..j {
            let (c, s) = (self.cosines[i], self.sines[i]);
            let (upper, lower) = (column[i], column[i + 1]);
            column[i] = c * upper + s * lower;
            column[i + 1] = -s * upper + c * lower;
        }

        let (c, s, diagonal) = givens(column[j], column[j + 1]);
        if diagonal == 0.0 {
            return Err(StopReason::Breakdown(
                "the rotated Hessenberg diagonal is 0, so A is singular on the Krylov \
                 subspace and GMRES stagnates"
                    .into(),
            ));
        }
        column[j] = diagonal;
        column[j + 1] = 0.0;
        self.cosines[j] = c;
        self.sines[j] = s;
        self.rhs[j + 1] = -s * self.rhs[j];
        self.rhs[j] *= c;
        Ok(())
    }

    /// Adds the cycle's update to `x`, computes `r = b − A x` and starts the next cycle.
    fn end_cycle(
        &mut self,
        ctx: &mut Context<'_, T>,
        x: &mut [T],
        invariant: bool,
    ) -> Result<Estimate, StopReason> {
        self.commit(ctx, x)?;
        let r_norm = ctx.residual(x, &mut self.r);
        if r_norm.is_finite() && r_norm > ctx.tolerance {
            self.stalled = invariant && r_norm >= self.cycle_start_norm;
            self.begin_cycle(r_norm);
        }
        Ok(Estimate::True(r_norm))
    }

    /// Solves the triangular system `R y = g` of this cycle and sets `z = M⁻¹ V y`.
    fn form_update(&mut self, ctx: &mut Context<'_, T>) {
        let k = self.columns;
        let stride = self.restart + 1;
        for i in (0..k).rev() {
            let tail: f64 = (i + 1..k)
                .map(|j| self.hessenberg[j * stride + i] * self.coefficients[j])
                .sum();
            self.coefficients[i] = (self.rhs[i] - tail) / self.hessenberg[i * stride + i];
        }

        self.combination.fill(T::zero());
        for (&y, v) in self.coefficients[..k]
            .iter()
            .zip(self.basis.chunks_exact(self.n))
        {
            axpy(y, v, &mut self.combination);
        }
        ctx.precondition(&self.combination, &mut self.z);
    }
}

/// Returns `(c, s, r)` with `c f + s g = r` and `−s f + c g = 0`, like LAPACK's `dlartg`.
fn givens(f: f64, g: f64) -> (f64, f64, f64) {
    if g == 0.0 {
        (1.0, 0.0, f)
    } else if f == 0.0 {
        (0.0, 1.0, g)
    } else {
        let r = f.hypot(g).copysign(f);
        (f / r, g / r, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krylov::testing::{self, assert_solves};
    use crate::krylov::{DenseMatrix, Diagonal, KrylovMethod};

    #[test]
    fn givens_zeroes_second_entry() {
        for (f, g) in [
            (3.0, 4.0),
            (-3.0, 4.0),
            (0.0, 2.0),
            (2.0, 0.0),
            (1e-300, 1e300),
        ] {
            let (c, s, r) = givens(f, g);
            assert!((c * f + s * g - r).abs() <= 1e-12 * r.abs(), "{f} {g}");
            assert!((-s * f + c * g).abs() <= 1e-12 * r.abs(), "{f} {g}");
            assert!((c * c + s * s - 1.0).abs() < 1e-12, "{f} {g}");
        }
    }

    #[test]
    fn gmres_poisson() {
        assert_solves(&testing::poisson(50), KrylovMethod::Gmres, 1e-10);
    }

    #[test]
    fn gmres_indefinite() {
        assert_solves(&testing::indefinite(40), KrylovMethod::Gmres, 1e-10);
    }

    #[test]
    fn gmres_convection_diffusion() {
        assert_solves(
            &testing::convection_diffusion(50, 0.4),
            KrylovMethod::Gmres,
            1e-10,
        );
    }

    #[test]
    fn gmres_random_nonsymmetric() {
        assert_solves(
            &testing::random_nonsymmetric(30, 11),
            KrylovMethod::Gmres,
            1e-10,
        );
    }

    #[test]
    fn gmres_hilbert() {
        assert_solves(&testing::hilbert(6), KrylovMethod::Gmres, 1e-12);
    }

    #[test]
    fn gmres_condition_1e8() {
        assert_solves(&testing::log_diagonal(20, 8.0), KrylovMethod::Gmres, 1e-12);
    }

    #[test]
    fn gmres_short_restart_converges() {
        let problem = testing::convection_diffusion(40, 0.3);
        let settings = Settings {
            rtol: 1e-8,
            restart: 5,
            ..Settings::default()
        };
        let mut a = problem.a.clone();
        let mut x = vec![0.0; 40];
        let info = gmres(&mut a, &problem.b, &mut x, None, &settings, None);
        assert!(info.converged(), "{info:?}");
        assert!(
            info.iterations > 40,
            "restarts should cost iterations: {info:?}"
        );
        testing::assert_close(&x, &problem.x, 1e-5);
    }

    #[test]
    fn gmres_full_space_in_n_steps() {
        let problem = testing::random_nonsymmetric(12, 5);
        let settings = Settings {
            rtol: 1e-12,
            ..Settings::default()
        };
        let mut a = problem.a.clone();
        let mut x = vec![0.0; 12];
        let info = gmres(&mut a, &problem.b, &mut x, None, &settings, None);
        assert!(info.converged(), "{info:?}");
        assert!(info.iterations <= 12, "{info:?}");
    }

    #[test]
    fn gmres_jacobi_preconditioned() {
        let problem = testing::scaled_poisson(40);
        let diagonal = (0..40).map(|i| problem.a.get(i, i)).collect();
        let mut jacobi = Diagonal::new(diagonal).unwrap();
        let settings = Settings {
            rtol: 1e-10,
            restart: 40,
            ..Settings::default()
        };
        let mut a = problem.a.clone();
        let mut x = vec![0.0; 40];
        let info = gmres(
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
    fn gmres_callback_sees_current_iterate() {
        let problem = testing::convection_diffusion(20, 0.2);
        let mut a = problem.a.clone();
        let mut check = problem.a.clone();
        let b = problem.b.clone();
        let mut gaps = Vec::new();
        let mut callback = |_: usize, x: &[f64], estimate: f64| {
            let mut r = vec![0.0; 20];
            check.apply(x, &mut r);
            let true_norm = r
                .iter()
                .zip(&b)
                .map(|(ri, bi)| (bi - ri).powi(2))
                .sum::<f64>();
            gaps.push((true_norm.sqrt() - estimate).abs() / tensor::norm(&b));
            true
        };
        let mut x = vec![0.0; 20];
        let settings = Settings::default();
        let info = gmres(
            &mut a,
            &problem.b,
            &mut x,
            None,
            &settings,
            Some(&mut callback),
        );
        assert!(info.converged(), "{info:?}");
        assert_eq!(gaps.len(), info.iterations);
        assert!(gaps.iter().all(|&gap| gap < 1e-10), "{gaps:?}");
    }

    #[test]
    fn gmres_singular_operator_breaks_down() {
        // A e₁ = 0 and b = e₁ is outside the range of A.
        let mut a = DenseMatrix::from_rows(&[vec![0.0, 0.0], vec![0.0, 1.0]]).unwrap();
        let mut x = [0.0, 0.0];
        let info = gmres(
            &mut a,
            &[1.0, 0.0],
            &mut x,
            None,
            &Settings::default(),
            None,
        );
        assert!(matches!(info.reason, StopReason::Breakdown(_)), "{info:?}");
        assert_eq!(x, [0.0, 0.0]);
    }
}
