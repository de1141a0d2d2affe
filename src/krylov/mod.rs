//! Matrix-free Krylov solvers for `A x = b`, as Hessian-free training needs them to solve
//! `(G + λI) d = −g`.
//!
//! Every solver takes a [`LinearOperator`] that computes `y = A x`, an optional
//! [`Preconditioner`] that computes `z = M⁻¹ r`, the right-hand side `b`, an initial guess in
//! `x` (overwritten with the solution) and [`Settings`]. It returns a [`SolveInfo`] that records
//! how many iterations ran, the residual norm and why the solver stopped.
//!
//! | solver | systems | source |
//! |---|---|---|
//! | [`cg`] | symmetric positive definite | Hestenes and Stiefel (1952) |
//! | [`minres`] | symmetric, possibly indefinite | Paige and Saunders (1975) |
//! | [`gmres`] | any nonsingular | Saad and Schultz (1986) |
//! | [`bicg`] | any nonsingular, needs `Aᵀ` | Fletcher (1976) |
//! | [`bicgstab`] | any nonsingular | van der Vorst (1992) |
//!
//! # Stopping rule
//!
//! A solver converges when `‖b − A x‖ ≤ max(rtol·‖b‖, atol)`, the test of
//! `scipy.sparse.linalg` 1.12 and later. Solvers track a cheap residual estimate (the
//! recursively updated residual, or the norm GMRES and MINRES get from their rotations). When
//! the estimate meets the tolerance, the solver computes the true residual `b − A x` with one
//! extra operator application and reports [`StopReason::Converged`] only if that passes. When
//! it fails, CG, BiCG, BiCGSTAB and GMRES continue from the true residual, and MINRES lowers
//! the threshold for its estimate by the ratio between estimate and true norm. scipy stops on
//! the estimate alone, so near the tolerance the two can differ by an iteration.
//!
//! At exit every solver recomputes `‖b − A x‖` for [`SolveInfo::residual_norm`], unless it
//! already has it. A run that reaches the iteration limit with a residual that meets the
//! tolerance counts as converged.
//!
//! GMRES preconditions from the right, unlike scipy's from the left; the others precondition
//! as scipy does.
//!
//! If `b = 0` every solver sets `x = 0` and returns converged after zero iterations.
//!
//! # Breakdown
//!
//! A non-finite or zero value where the method divides stops the solver with
//! [`StopReason::Breakdown`], whose text names the quantity. Updates of `x` are checked before
//! they are written, so `x` then contains the last finite iterate. A result with NaN in `x` is
//! never reported as converged.
//!
//! # Work vectors
//!
//! Each call allocates its work vectors once and nothing per iteration, except that GMRES
//! allocates one more vector on the first callback call.

mod bicg;
mod bicgstab;
mod cg;
mod dense;
mod driver;
mod gmres;
mod minres;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use crate::tensor::Scalar;
use crate::{Error, Result};

pub use bicg::bicg;
pub use bicgstab::bicgstab;
pub use cg::{cg, cg_with_curvature, CurvatureDirection};
pub use dense::DenseMatrix;
pub use gmres::gmres;
pub use minres::minres;

/// A linear operator `y = A x` on vectors of length [`dim`](LinearOperator::dim), given
/// without forming `A`.
pub trait LinearOperator<T: Scalar> {
    /// Returns the length of `x` and `y`.
    fn dim(&self) -> usize;

    /// Computes `y = A x`. Takes `&mut self` so that an operator can keep workspaces, such as
    /// the activations of a network for Gauss–Newton products.
    fn apply(&mut self, x: &[T], y: &mut [T]);

    /// Computes `y = Aᵀ x` and returns true, or returns false without touching `y` when the
    /// operator has no transpose. Only [`bicg`] calls it.
    fn apply_transpose(&mut self, x: &[T], y: &mut [T]) -> bool {
        let _ = (x, y);
        false
    }

    /// Returns whether `A = Aᵀ`. If so, [`bicg`] uses [`apply`](LinearOperator::apply) for
    /// `Aᵀ` when [`apply_transpose`](LinearOperator::apply_transpose) is missing. No solver
    /// verifies the claim.
    fn is_symmetric(&self) -> bool {
        false
    }
}

/// A preconditioner `M ≈ A` that computes `z = M⁻¹ r`.
///
/// CG and MINRES need `M` symmetric positive definite.
pub trait Preconditioner<T: Scalar> {
    /// Computes `z = M⁻¹ r`.
    fn solve(&mut self, r: &[T], z: &mut [T]);

    /// Computes `z = M⁻ᵀ r` and returns true, or returns false without touching `z` when it
    /// is not available. Only [`bicg`] calls it.
    fn solve_transpose(&mut self, r: &[T], z: &mut [T]) -> bool {
        let _ = (r, z);
        false
    }

    /// Returns whether `M = Mᵀ`, which lets [`bicg`] use [`solve`](Preconditioner::solve)
    /// for `M⁻ᵀ`.
    fn is_symmetric(&self) -> bool {
        false
    }
}

/// The identity preconditioner, `z = r`. Passing `None` as the preconditioner does the same.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl<T: Scalar> Preconditioner<T> for Identity {
    fn solve(&mut self, r: &[T], z: &mut [T]) {
        z.copy_from_slice(r);
    }

    fn is_symmetric(&self) -> bool {
        true
    }
}

/// A diagonal (Jacobi) preconditioner `M = diag(d)`, so `z = r / d` elementwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagonal<T>(Vec<T>);

impl<T: Scalar> Diagonal<T> {
    /// Creates the preconditioner from the diagonal `d` of `M`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] if an entry of `d` is zero or not finite.
    pub fn new(d: Vec<T>) -> Result<Self> {
        if let Some((i, v)) = d
            .iter()
            .enumerate()
            .find(|(_, v)| v.is_zero() || !v.is_finite())
        {
            return Err(Error::setting(
                "preconditioner diagonal entry",
                format!("d[{i}] = {v}"),
                "expected finite, nonzero entries",
            ));
        }
        Ok(Diagonal(d))
    }

    /// Returns the diagonal of `M`.
    pub fn diagonal(&self) -> &[T] {
        &self.0
    }
}

impl<T: Scalar> Preconditioner<T> for Diagonal<T> {
    fn solve(&mut self, r: &[T], z: &mut [T]) {
        debug_assert_eq!(r.len(), self.0.len());
        for ((zi, &ri), &di) in z.iter_mut().zip(r).zip(&self.0) {
            *zi = ri / di;
        }
    }

    fn is_symmetric(&self) -> bool {
        true
    }
}

/// Solver settings. The defaults are those of `scipy.sparse.linalg` 1.17.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings<T> {
    /// Relative tolerance: converged when `‖b − A x‖ ≤ max(rtol·‖b‖, atol)`. Default 1e-5.
    pub rtol: T,
    /// Absolute tolerance on `‖b − A x‖`. Default 0.
    pub atol: T,
    /// Maximum number of iterations. `None` means 10·n for CG, BiCG and BiCGSTAB, 5·n for
    /// MINRES and 10·n restart cycles (10·n·restart iterations) for GMRES, as in scipy.
    /// A GMRES iteration is one Arnoldi step, so the count is comparable across solvers.
    pub max_iterations: Option<usize>,
    /// GMRES iterations between restarts, clamped to `1..=n`. Default 20.
    pub restart: usize,
}

impl<T: Scalar> Default for Settings<T> {
    fn default() -> Self {
        Settings {
            rtol: T::of(1e-5),
            atol: T::zero(),
            max_iterations: None,
            restart: 20,
        }
    }
}

impl<T: Scalar> Settings<T> {
    /// Checks that the tolerances are finite and non-negative and that `restart` is positive.
    /// Solvers do not call it: with a negative or NaN tolerance they run to the iteration limit.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [("rtol", self.rtol), ("atol", self.atol)] {
            if !value.is_finite() || value < T::zero() {
                return Err(Error::setting(name, value, "expected a finite number ≥ 0"));
            }
        }
        if self.restart == 0 {
            return Err(Error::setting("restart", 0, "expected at least 1"));
        }
        Ok(())
    }

    /// Returns `max(rtol·‖b‖, atol)` for a right-hand side with norm `b_norm`.
    pub fn tolerance(&self, b_norm: f64) -> f64 {
        (self.rtol.as_f64() * b_norm).max(self.atol.as_f64())
    }
}

/// The reason a solver stopped.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// `‖b − A x‖ ≤ max(rtol·‖b‖, atol)` for the returned `x`.
    Converged,
    /// The iteration limit was reached before convergence.
    IterationLimit,
    /// A quantity the method divides by became zero or non-finite. The text names it.
    Breakdown(String),
    /// CG found a direction `p` with `pᵀAp ≤ 0`, so `A` is not positive definite.
    NegativeCurvature,
    /// The callback returned false.
    UserStop,
    /// The operator or preconditioner lacks something the method needs, which the text names.
    Unsupported(String),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Converged => write!(f, "converged"),
            StopReason::IterationLimit => write!(f, "iteration limit reached"),
            StopReason::Breakdown(what) => write!(f, "breakdown: {what}"),
            StopReason::NegativeCurvature => write!(f, "negative curvature: pᵀAp ≤ 0"),
            StopReason::UserStop => write!(f, "stopped by the callback"),
            StopReason::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

/// The outcome of a solve.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SolveInfo {
    /// Completed iterations; `x` is the iterate after this many.
    pub iterations: usize,
    /// `‖b − A x‖` for the returned `x`, recomputed at exit. If that recomputation is not
    /// finite, this is the last finite residual estimate and `reason` is a breakdown.
    pub residual_norm: f64,
    /// The reason the solver stopped.
    pub reason: StopReason,
    /// Calls to `apply` and successful calls to `apply_transpose`, including the residual
    /// checks.
    pub operator_applications: usize,
}

impl SolveInfo {
    /// Returns whether the solver met the tolerance.
    pub fn converged(&self) -> bool {
        self.reason == StopReason::Converged
    }
}

/// A progress callback: it receives the iteration count, the current iterate and the
/// solver's residual norm estimate after each iteration, and returns false to stop.
pub type Callback<'a, T> = &'a mut dyn FnMut(usize, &[T], f64) -> bool;

/// A Krylov method, chosen by name on the command line or in a configuration file.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum KrylovMethod {
    /// Conjugate gradients, [`cg`].
    #[default]
    Cg,
    /// Minimum residual, [`minres`].
    Minres,
    /// Restarted generalized minimum residual, [`gmres`].
    Gmres,
    /// Biconjugate gradients, [`bicg`].
    Bicg,
    /// Stabilized biconjugate gradients, [`bicgstab`].
    Bicgstab,
}

impl KrylovMethod {
    /// Every method, in the order of the module table.
    pub const ALL: [KrylovMethod; 5] = [
        KrylovMethod::Cg,
        KrylovMethod::Minres,
        KrylovMethod::Gmres,
        KrylovMethod::Bicg,
        KrylovMethod::Bicgstab,
    ];

    /// Returns the method's name as [`FromStr`] accepts it.
    pub fn name(self) -> &'static str {
        match self {
            KrylovMethod::Cg => "cg",
            KrylovMethod::Minres => "minres",
            KrylovMethod::Gmres => "gmres",
            KrylovMethod::Bicg => "bicg",
            KrylovMethod::Bicgstab => "bicgstab",
        }
    }

    /// Solves `A x = b` with this method; see the solver functions for the arguments.
    pub fn solve<T: Scalar>(
        self,
        a: &mut dyn LinearOperator<T>,
        b: &[T],
        x: &mut [T],
        preconditioner: Option<&mut dyn Preconditioner<T>>,
        settings: &Settings<T>,
        callback: Option<Callback<'_, T>>,
    ) -> SolveInfo {
        let m = preconditioner;
        match self {
            KrylovMethod::Cg => cg(a, b, x, m, settings, callback),
            KrylovMethod::Minres => minres(a, b, x, m, settings, callback),
            KrylovMethod::Gmres => gmres(a, b, x, m, settings, callback),
            KrylovMethod::Bicg => bicg(a, b, x, m, settings, callback),
            KrylovMethod::Bicgstab => bicgstab(a, b, x, m, settings, callback),
        }
    }
}

impl fmt::Display for KrylovMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KrylovMethod {
    type Err = Error;

    /// Parses a method name, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self> {
        KrylovMethod::ALL
            .into_iter()
            .find(|method| method.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::setting(
                    "Krylov method",
                    format!("{s:?}"),
                    "expected one of cg, minres, gmres, bicg, bicgstab",
                )
            })
    }
}
