//! The iteration loop that all solvers share, and the vector helpers they use.
//!
//! A solver is a state machine: [`KrylovStep::start`] builds it from the initial residual,
//! and each [`KrylovStep::step`] runs one iteration. The loop here owns everything else: the
//! `b = 0` shortcut, the iteration limit, the true-residual check, the callback and the final
//! [`SolveInfo`].

use super::{Callback, Identity, LinearOperator, Preconditioner, Settings, SolveInfo, StopReason};
use crate::tensor::{self, Scalar};

/// The operator, preconditioner and right-hand side of one solve, with the thresholds and the
/// operator counter that the loop and the solver share.
pub(crate) struct Context<'a, T: Scalar> {
    a: &'a mut dyn LinearOperator<T>,
    m: &'a mut dyn Preconditioner<T>,
    /// The right-hand side.
    pub b: &'a [T],
    /// `max(rtol·‖b‖, atol)`.
    pub tolerance: f64,
    /// The residual estimate at or below which the loop checks the true residual. It starts
    /// at `tolerance` and only moves below it.
    pub trigger: f64,
    /// Operator applications so far.
    pub applications: usize,
}

impl<T: Scalar> Context<'_, T> {
    /// Computes `y = A x`.
    pub fn apply(&mut self, x: &[T], y: &mut [T]) {
        self.applications += 1;
        self.a.apply(x, y);
    }

    /// Computes `y = Aᵀ x`, using `A` itself when the operator declares itself symmetric.
    pub fn apply_transpose(&mut self, x: &[T], y: &mut [T]) -> Result<(), StopReason> {
        if self.a.apply_transpose(x, y) {
            self.applications += 1;
        } else if self.a.is_symmetric() {
            self.apply(x, y);
        } else {
            return Err(StopReason::Unsupported(
                "the operator has no apply_transpose and is not symmetric, but BiCG needs Aᵀ; \
                 use BiCGSTAB or GMRES instead"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Computes `z = M⁻¹ r`.
    pub fn precondition(&mut self, r: &[T], z: &mut [T]) {
        self.m.solve(r, z);
    }

    /// Computes `z = M⁻ᵀ r`, using `M⁻¹` when the preconditioner declares itself symmetric.
    pub fn precondition_transpose(&mut self, r: &[T], z: &mut [T]) -> Result<(), StopReason> {
        if self.m.solve_transpose(r, z) {
            Ok(())
        } else if self.m.is_symmetric() {
            self.m.solve(r, z);
            Ok(())
        } else {
            Err(StopReason::Unsupported(
                "the preconditioner has no solve_transpose and is not symmetric, but BiCG \
                 needs M⁻ᵀ; use BiCGSTAB or GMRES instead"
                    .into(),
            ))
        }
    }

    /// Computes `r = b − A x` and returns `‖r‖`.
    pub fn residual(&mut self, x: &[T], r: &mut [T]) -> f64 {
        self.apply(x, r);
        for (ri, &bi) in r.iter_mut().zip(self.b) {
            *ri = bi - *ri;
        }
        tensor::norm(r)
    }
}

/// A residual norm that a step reports.
pub(crate) enum Estimate {
    /// A norm the solver updates by recursion, which can drift from `‖b − A x‖`.
    Recursive(f64),
    /// `‖b − A x‖` for the current `x`, which the solver computed itself.
    True(f64),
}

/// One Krylov method as a state machine driven by [`solve_with`].
pub(crate) trait KrylovStep<T: Scalar>: Sized {
    /// Returns the iteration limit when the settings give none, for a system of dimension `n`.
    fn default_max_iterations(n: usize, settings: &Settings<T>) -> usize;

    /// Builds the state from the initial residual `r0 = b − A x₀`, which is not zero.
    fn start(
        ctx: &mut Context<'_, T>,
        r0: Vec<T>,
        settings: &Settings<T>,
    ) -> Result<Self, StopReason>;

    /// Runs one iteration. On an error `x` contains the last finite iterate.
    fn step(&mut self, ctx: &mut Context<'_, T>, x: &mut [T]) -> Result<Estimate, StopReason>;

    /// Writes updates that the solver holds back into `x`, as GMRES does within a cycle.
    /// Returns whether `x` changed. Calling it twice in a row changes nothing the second time.
    fn commit(&mut self, _ctx: &mut Context<'_, T>, _x: &mut [T]) -> Result<bool, StopReason> {
        Ok(false)
    }

    /// Returns the current iterate for the callback, which is `x` unless the solver holds back
    /// updates.
    fn current<'s>(&'s mut self, _ctx: &mut Context<'_, T>, x: &'s [T]) -> &'s [T] {
        x
    }

    /// Continues from the true residual `r` after it failed the tolerance. Returns true when
    /// the solver's estimate now tracks `r`, and false when the estimate keeps its recursion.
    fn resume(&mut self, _ctx: &mut Context<'_, T>, _r: &[T]) -> bool {
        false
    }
}

/// The loop's progress: the count, the last finite estimate and, when known, the true
/// residual norm of the current `x`.
struct Progress {
    iterations: usize,
    last_estimate: f64,
    true_norm: Option<f64>,
}

/// Solves `A x = b` with the method `S`. Returns the final state too, except when the solve
/// ended before the state was built.
///
/// # Panics
///
/// If `b` or `x` differs in length from `a.dim()`.
pub(crate) fn solve_with<T: Scalar, S: KrylovStep<T>>(
    a: &mut dyn LinearOperator<T>,
    b: &[T],
    x: &mut [T],
    preconditioner: Option<&mut dyn Preconditioner<T>>,
    settings: &Settings<T>,
    callback: Option<Callback<'_, T>>,
) -> (SolveInfo, Option<S>) {
    let n = a.dim();
    assert!(
        b.len() == n && x.len() == n,
        "b and x have lengths {} and {}, but the operator has dimension {n}",
        b.len(),
        x.len()
    );
    let b_norm = tensor::norm(b);
    if let Some(info) = check_inputs(b_norm, x) {
        return (info, None);
    }

    let mut identity = Identity;
    let m: &mut dyn Preconditioner<T> = match preconditioner {
        Some(m) => m,
        None => &mut identity,
    };
    let tolerance = settings.tolerance(b_norm);
    let mut ctx = Context {
        a,
        m,
        b,
        tolerance,
        trigger: tolerance,
        applications: 0,
    };

    // Skip the product when x₀ = 0, as scipy does.
    let mut r0 = b.to_vec();
    let r0_norm = if x.iter().all(|v| v.is_zero()) {
        b_norm
    } else {
        ctx.residual(x, &mut r0)
    };
    let start = if !r0_norm.is_finite() {
        Err(StopReason::Breakdown(
            "the initial residual b − A x₀ is not finite".into(),
        ))
    } else if r0_norm <= tolerance {
        Err(StopReason::Converged)
    } else {
        S::start(&mut ctx, r0, settings)
    };
    let mut state = match start {
        Ok(state) => state,
        Err(reason) => return (early_exit(r0_norm, reason, ctx.applications), None),
    };

    let max_iterations = settings
        .max_iterations
        .unwrap_or_else(|| S::default_max_iterations(n, settings));
    let info = iterate(&mut state, &mut ctx, x, r0_norm, max_iterations, callback);
    (info, Some(state))
}

/// Returns the record for a right-hand side `b = 0`, which sets `x = 0`, or for non-finite
/// input, which leaves `x` as it is. Returns `None` when the solve should go ahead.
fn check_inputs<T: Scalar>(b_norm: f64, x: &mut [T]) -> Option<SolveInfo> {
    if b_norm == 0.0 {
        x.fill(T::zero());
        return Some(early_exit(0.0, StopReason::Converged, 0));
    }
    if !b_norm.is_finite() {
        let reason = StopReason::Breakdown("b contains non-finite values".into());
        return Some(early_exit(b_norm, reason, 0));
    }
    if x.iter().any(|v| !v.is_finite()) {
        let reason = StopReason::Breakdown("the initial guess x contains non-finite values".into());
        return Some(early_exit(f64::NAN, reason, 0));
    }
    None
}

fn early_exit(residual_norm: f64, reason: StopReason, applications: usize) -> SolveInfo {
    SolveInfo {
        iterations: 0,
        residual_norm,
        reason,
        operator_applications: applications,
    }
}

/// Runs steps until convergence, a stop reason or the iteration limit.
fn iterate<T: Scalar, S: KrylovStep<T>>(
    state: &mut S,
    ctx: &mut Context<'_, T>,
    x: &mut [T],
    r0_norm: f64,
    max_iterations: usize,
    mut callback: Option<Callback<'_, T>>,
) -> SolveInfo {
    let mut scratch = vec![T::zero(); x.len()];
    let mut progress = Progress {
        iterations: 0,
        last_estimate: r0_norm,
        true_norm: Some(r0_norm),
    };

    let reason = loop {
        if progress.iterations == max_iterations {
            break StopReason::IterationLimit;
        }
        let estimate = match state.step(ctx, x) {
            Ok(estimate) => estimate,
            Err(reason) => break reason,
        };
        progress.iterations += 1;
        progress.true_norm = None;

        let (estimate, converged) = match estimate {
            Estimate::True(norm) => {
                progress.true_norm = Some(norm);
                (norm, norm <= ctx.tolerance)
            }
            Estimate::Recursive(norm) if norm <= ctx.trigger => {
                match check_true_residual(state, ctx, x, norm, &mut scratch) {
                    Ok((true_norm, converged)) => {
                        progress.true_norm = Some(true_norm);
                        (norm, converged)
                    }
                    Err(reason) => break reason,
                }
            }
            Estimate::Recursive(norm) => (norm, false),
        };
        if !estimate.is_finite() {
            break StopReason::Breakdown(format!("the residual norm is not finite ({estimate})"));
        }
        progress.last_estimate = estimate;

        if let Some(callback) = callback.as_mut() {
            let current = state.current(ctx, x);
            if !callback(progress.iterations, current, estimate) && !converged {
                break StopReason::UserStop;
            }
        }
        if converged {
            break StopReason::Converged;
        }
    };
    finish(state, ctx, x, progress, reason, &mut scratch)
}

/// Computes `‖b − A x‖` after the estimate `estimate` met the trigger. Returns the norm and
/// whether it meets the tolerance. When it does not, lets the solver resume from the true
/// residual and lowers the trigger if the solver's estimate stays recursive.
fn check_true_residual<T: Scalar, S: KrylovStep<T>>(
    state: &mut S,
    ctx: &mut Context<'_, T>,
    x: &mut [T],
    estimate: f64,
    r: &mut [T],
) -> Result<(f64, bool), StopReason> {
    state.commit(ctx, x)?;
    let true_norm = ctx.residual(x, r);
    if !true_norm.is_finite() {
        return Err(StopReason::Breakdown(format!(
            "the true residual norm ‖b − A x‖ is not finite ({true_norm})"
        )));
    }
    if true_norm <= ctx.tolerance {
        return Ok((true_norm, true));
    }

    ctx.trigger = if state.resume(ctx, r) {
        ctx.tolerance
    } else {
        // The estimate must fall by the factor still missing on the true residual.
        estimate * (ctx.tolerance / true_norm)
    };
    Ok((true_norm, false))
}

/// Commits held-back updates, computes the true residual of the returned `x` and builds the
/// record. An iteration limit whose final `x` meets the tolerance becomes convergence.
fn finish<T: Scalar, S: KrylovStep<T>>(
    state: &mut S,
    ctx: &mut Context<'_, T>,
    x: &mut [T],
    mut progress: Progress,
    mut reason: StopReason,
    scratch: &mut [T],
) -> SolveInfo {
    let is_breakdown = |reason: &StopReason| matches!(reason, StopReason::Breakdown(_));
    match state.commit(ctx, x) {
        Ok(true) => progress.true_norm = None,
        Ok(false) => {}
        Err(breakdown) if !is_breakdown(&reason) => reason = breakdown,
        Err(_) => {}
    }

    let norm = match progress.true_norm {
        Some(norm) => norm,
        None => ctx.residual(x, scratch),
    };
    let residual_norm = if norm.is_finite() {
        if reason == StopReason::IterationLimit && norm <= ctx.tolerance {
            reason = StopReason::Converged;
        }
        norm
    } else {
        if !is_breakdown(&reason) {
            reason = StopReason::Breakdown(format!(
                "the true residual norm ‖b − A x‖ of the returned x is not finite ({norm})"
            ));
        }
        progress.last_estimate
    };

    SolveInfo {
        iterations: progress.iterations,
        residual_norm,
        reason,
        operator_applications: ctx.applications,
    }
}

/// Returns `value`, or a breakdown naming `quantity` when `value` is zero or not finite.
pub(crate) fn divisor(quantity: &str, value: f64) -> Result<f64, StopReason> {
    let value = finite(quantity, value)?;
    if value == 0.0 {
        return Err(StopReason::Breakdown(format!("{quantity} = 0")));
    }
    Ok(value)
}

/// Returns `value`, or a breakdown naming `quantity` when `value` is not finite.
pub(crate) fn finite(quantity: &str, value: f64) -> Result<f64, StopReason> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(StopReason::Breakdown(format!(
            "{quantity} is not finite ({value})"
        )))
    }
}

/// Computes `y += alpha x`.
pub(crate) fn axpy<T: Scalar>(alpha: f64, x: &[T], y: &mut [T]) {
    let alpha = T::of(alpha);
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// Computes `y = x + beta y`.
pub(crate) fn xpby<T: Scalar>(x: &[T], beta: f64, y: &mut [T]) {
    let beta = T::of(beta);
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = xi + beta * *yi;
    }
}

/// Computes `x *= alpha`.
pub(crate) fn scale<T: Scalar>(alpha: f64, x: &mut [T]) {
    let alpha = T::of(alpha);
    for xi in x {
        *xi *= alpha;
    }
}

/// Computes `x += Σ cₖ vₖ` over the `(cₖ, vₖ)` in `terms` if every new entry is finite.
/// Otherwise leaves `x` unchanged and returns a breakdown.
pub(crate) fn add_checked<T: Scalar>(x: &mut [T], terms: &[(f64, &[T])]) -> Result<(), StopReason> {
    let updated = |i: usize, xi: T| terms.iter().fold(xi, |sum, &(c, v)| sum + T::of(c) * v[i]);
    if let Some(i) = (0..x.len()).find(|&i| !updated(i, x[i]).is_finite()) {
        return Err(StopReason::Breakdown(format!(
            "the update of x is not finite at entry {i}"
        )));
    }
    for (i, xi) in x.iter_mut().enumerate() {
        *xi = updated(i, *xi);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krylov::DenseMatrix;

    /// A fake method for `A = I` that halves the error `b − x` each step and reports
    /// `PERCENT / 100` times the true residual norm as its estimate. `resume` returns
    /// `REPLACES`.
    struct Halving<const PERCENT: u32, const REPLACES: bool> {
        resumes: usize,
    }

    impl<const PERCENT: u32, const REPLACES: bool> KrylovStep<f64> for Halving<PERCENT, REPLACES> {
        fn default_max_iterations(_n: usize, _settings: &Settings<f64>) -> usize {
            100
        }

        fn start(
            _ctx: &mut Context<'_, f64>,
            _r0: Vec<f64>,
            _settings: &Settings<f64>,
        ) -> Result<Self, StopReason> {
            Ok(Halving { resumes: 0 })
        }

        fn step(
            &mut self,
            ctx: &mut Context<'_, f64>,
            x: &mut [f64],
        ) -> Result<Estimate, StopReason> {
            for (xi, bi) in x.iter_mut().zip(ctx.b) {
                *xi += 0.5 * (bi - *xi);
            }
            let error: f64 = x.iter().zip(ctx.b).map(|(p, q)| (q - p).powi(2)).sum();
            Ok(Estimate::Recursive(
                f64::from(PERCENT) / 100.0 * error.sqrt(),
            ))
        }

        fn resume(&mut self, _ctx: &mut Context<'_, f64>, _r: &[f64]) -> bool {
            self.resumes += 1;
            REPLACES
        }
    }

    /// Runs the fake on `I x = (3, 4)` with `rtol = 1e-6`.
    fn run<S: KrylovStep<f64>>(max_iterations: usize) -> (SolveInfo, S) {
        let mut a = DenseMatrix::from_fn(2, |i, j| if i == j { 1.0 } else { 0.0 });
        let mut x = [0.0; 2];
        let settings = Settings {
            rtol: 1e-6,
            max_iterations: Some(max_iterations),
            ..Settings::default()
        };
        let (info, state) =
            solve_with::<f64, S>(&mut a, &[3.0, 4.0], &mut x, None, &settings, None);
        (info, state.unwrap())
    }

    #[test]
    fn low_estimate_lowers_trigger() {
        // The estimate first meets 1e-6 at step 17, where the true residual is 7.6e-6 of
        // ‖b‖. The lowered trigger then waits for step 20, the first that truly converges.
        let (info, state) = run::<Halving<10, false>>(100);
        assert_eq!(info.reason, StopReason::Converged);
        assert_eq!(info.iterations, 20);
        assert_eq!(info.operator_applications, 2);
        assert_eq!(state.resumes, 1);
        assert!(info.residual_norm <= 5e-6);
    }

    #[test]
    fn replaced_residual_resets_trigger() {
        // Each resume resets the trigger to the tolerance, so steps 17 to 20 are all checked.
        let (info, state) = run::<Halving<10, true>>(100);
        assert_eq!(info.reason, StopReason::Converged);
        assert_eq!(info.iterations, 20);
        assert_eq!(info.operator_applications, 4);
        assert_eq!(state.resumes, 3);
    }

    #[test]
    fn limit_with_small_true_residual_converges() {
        // A tenfold estimate would wait for step 24, but at the limit of 21 the true
        // residual already meets the tolerance.
        let (info, state) = run::<Halving<1000, false>>(21);
        assert_eq!(info.reason, StopReason::Converged);
        assert_eq!(info.iterations, 21);
        assert_eq!(info.operator_applications, 1);
        assert_eq!(state.resumes, 0);
    }

    #[test]
    fn limit_reports_iteration_limit() {
        let (info, _) = run::<Halving<100, false>>(5);
        assert_eq!(info.reason, StopReason::IterationLimit);
        assert!((info.residual_norm - 5.0 / 32.0).abs() < 1e-12);
    }

    #[test]
    fn add_checked_keeps_x_on_overflow() {
        let mut x = [1.0f32, 2.0];
        let big = [0.0f32, f32::MAX];
        let result = add_checked(&mut x, &[(10.0, &big)]);
        assert!(matches!(result, Err(StopReason::Breakdown(_))));
        assert_eq!(x, [1.0, 2.0]);
        add_checked(&mut x, &[(1.0, &[1.0, 1.0]), (2.0, &[0.5, 0.5])]).unwrap();
        assert_eq!(x, [3.0, 4.0]);
    }

    #[test]
    fn divisor_names_quantity() {
        assert_eq!(divisor("rho", 2.0), Ok(2.0));
        let zero = divisor("rho", 0.0).unwrap_err();
        assert_eq!(zero, StopReason::Breakdown("rho = 0".into()));
        let nan = divisor("rho", f64::NAN).unwrap_err();
        assert_eq!(nan, StopReason::Breakdown("rho is not finite (NaN)".into()));
    }
}
