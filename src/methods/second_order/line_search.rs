//! Strong-Wolfe line search along `θ + α d`: Nocedal & Wright, *Numerical Optimization*
//! (2nd ed., 2006), Algorithm 3.5 (bracketing) and Algorithm 3.6 (zoom), with the cubic
//! interpolation of their equation 3.59.
//!
//! Notation: `φ(α) = f(θ + α d)` and `φ'(α) = ∇f(θ + α d)ᵀ d`. A step is accepted when
//!
//! - `φ(α) ≤ φ(0) + c1 α φ'(0)` (sufficient decrease), and
//! - `|φ'(α)| ≤ c2 |φ'(0)|` (strong curvature condition).
//!
//! A trial whose value or slope is NaN or infinite counts as a failed trial: the search
//! bisects towards the last finite point, so a non-finite region never becomes the result.

use crate::objective::Objective;
use crate::tensor::{dot, Scalar};
use crate::{Error, Result};

/// Fraction of the bracket kept clear at each end when interpolating in the zoom phase.
/// An interpolated step closer to an end than this is replaced by the midpoint.
const INTERPOLATION_MARGIN: f64 = 0.1;

/// Bounds for the next step in the bracketing phase, as multiples of the last step length
/// `α_i − α_{i−1}` beyond `α_i`. These are the `xtrapl` and `xtrapu` values of MINPACK-2's
/// `dcsrch` (Moré & Thuente, 1994).
const EXTRAPOLATION_MIN: f64 = 1.1;
const EXTRAPOLATION_MAX: f64 = 4.0;

/// Conditions and limits of a strong-Wolfe line search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StrongWolfe {
    /// Sufficient-decrease constant `c1`.
    pub c1: f64,
    /// Curvature constant `c2`, with `c1 < c2 < 1`.
    pub c2: f64,
    /// Maximum number of evaluations (value and gradient together) in one search.
    pub max_evaluations: usize,
}

impl Default for StrongWolfe {
    /// Uses the constants Nocedal & Wright recommend for quasi-Newton methods, `c1 = 1e-4`
    /// and `c2 = 0.9`, and a budget of 20 evaluations.
    fn default() -> Self {
        StrongWolfe {
            c1: 1e-4,
            c2: 0.9,
            max_evaluations: 20,
        }
    }
}

impl StrongWolfe {
    /// Checks `0 < c1 < c2 < 1` and a positive evaluation budget.
    pub fn validate(&self) -> Result<()> {
        if !(self.c1 > 0.0 && self.c1 < 1.0) {
            return Err(Error::setting("c1", self.c1, "expected 0 < c1 < c2 < 1"));
        }
        if !(self.c2 > self.c1 && self.c2 < 1.0) {
            return Err(Error::setting("c2", self.c2, "expected 0 < c1 < c2 < 1"));
        }
        if self.max_evaluations == 0 {
            return Err(Error::setting(
                "line_search_evaluations",
                self.max_evaluations,
                "expected at least 1",
            ));
        }
        Ok(())
    }
}

/// One evaluated point on the search line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trial {
    /// Step length `α`.
    pub step: f64,
    /// `φ(α)`, the objective value.
    pub value: f64,
    /// `φ'(α)`, the directional derivative.
    pub slope: f64,
}

impl Trial {
    fn is_finite(&self) -> bool {
        self.value.is_finite() && self.slope.is_finite()
    }
}

/// Reason a line search found no point that satisfies both conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineSearchFailure {
    /// `φ(0)` or `φ'(0)` is NaN or infinite.
    NonFiniteStart,
    /// `φ'(0) ≥ 0`, so the direction does not descend.
    NotDescent,
    /// The evaluation budget ran out.
    MaxEvaluations,
    /// The bracket shrank to the rounding level of the step length.
    IntervalTooSmall,
}

impl std::fmt::Display for LineSearchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LineSearchFailure::NonFiniteStart => "the start value or slope is not finite",
            LineSearchFailure::NotDescent => "the direction is not a descent direction",
            LineSearchFailure::MaxEvaluations => "the evaluation budget ran out",
            LineSearchFailure::IntervalTooSmall => "the bracket shrank to rounding level",
        })
    }
}

/// A failed search: the reason and the finite trial with the lowest value, if any. The
/// best trial may lie above `φ(0)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LineSearchError {
    /// Reason the search stopped.
    pub reason: LineSearchFailure,
    /// The finite trial with the lowest value; its point is [`LineSearch::point`].
    pub best: Option<Trial>,
}

/// A strong-Wolfe line search with its buffers, reused across searches.
#[derive(Debug)]
pub struct LineSearch<T> {
    conditions: StrongWolfe,
    trial_point: Vec<T>,
    trial_gradient: Vec<T>,
    best_point: Vec<T>,
    best_gradient: Vec<T>,
    best: Option<Trial>,
    result_is_best: bool,
    evaluations: usize,
}

impl<T: Scalar> LineSearch<T> {
    /// Creates a line search with the given conditions.
    pub fn new(conditions: StrongWolfe) -> Self {
        LineSearch {
            conditions,
            trial_point: Vec::new(),
            trial_gradient: Vec::new(),
            best_point: Vec::new(),
            best_gradient: Vec::new(),
            best: None,
            result_is_best: false,
            evaluations: 0,
        }
    }

    /// Returns the conditions this search enforces.
    pub fn conditions(&self) -> &StrongWolfe {
        &self.conditions
    }

    /// Evaluations spent by the last search.
    pub fn evaluations(&self) -> usize {
        self.evaluations
    }

    /// Returns the point of the trial the last search returned: the accepted point, or the
    /// best finite point of a failed search. Empty or stale when the failure has no best trial.
    pub fn point(&self) -> &[T] {
        if self.result_is_best {
            &self.best_point
        } else {
            &self.trial_point
        }
    }

    /// Returns the gradient at [`LineSearch::point`].
    pub fn gradient(&self) -> &[T] {
        if self.result_is_best {
            &self.best_gradient
        } else {
            &self.trial_gradient
        }
    }

    /// Searches along `direction` from `theta`, where `value = f(θ)` and `slope = ∇f(θ)ᵀd`,
    /// starting with the step `initial_step`. Returns the accepted trial, whose point and
    /// gradient are then in [`LineSearch::point`] and [`LineSearch::gradient`].
    pub fn search(
        &mut self,
        objective: &mut dyn Objective<T>,
        theta: &[T],
        direction: &[T],
        value: f64,
        slope: f64,
        initial_step: f64,
    ) -> Result<Trial, LineSearchError> {
        let n = theta.len();
        self.trial_point.resize(n, T::zero());
        self.trial_gradient.resize(n, T::zero());
        self.best_point.resize(n, T::zero());
        self.best_gradient.resize(n, T::zero());
        self.best = None;
        self.result_is_best = false;
        self.evaluations = 0;

        let start = Trial {
            step: 0.0,
            value,
            slope,
        };
        if !start.is_finite() {
            return Err(self.fail(LineSearchFailure::NonFiniteStart));
        }
        if slope >= 0.0 {
            return Err(self.fail(LineSearchFailure::NotDescent));
        }
        let initial_step = if initial_step > 0.0 && initial_step.is_finite() {
            initial_step
        } else {
            1.0
        };
        let mut line = Line {
            objective,
            theta,
            direction,
        };
        self.bracket(&mut line, start, initial_step)
    }

    /// Algorithm 3.5: grows the step until it brackets an acceptable point or finds one.
    fn bracket(
        &mut self,
        line: &mut Line<'_, '_, T>,
        start: Trial,
        initial_step: f64,
    ) -> Result<Trial, LineSearchError> {
        let c2 = self.conditions.c2;
        let mut previous = start;
        let mut step = initial_step;
        loop {
            if self.evaluations >= self.conditions.max_evaluations {
                return Err(self.fail(LineSearchFailure::MaxEvaluations));
            }
            let trial = self.evaluate(line, step);
            if !trial.is_finite()
                || trial.value > self.armijo_bound(&start, trial.step)
                || trial.value >= previous.value
            {
                return self.zoom(line, &start, previous, trial);
            }
            if trial.slope.abs() <= -c2 * start.slope {
                return Ok(trial);
            }
            if trial.slope >= 0.0 {
                return self.zoom(line, &start, trial, previous);
            }
            step = extrapolate(&previous, &trial);
            previous = trial;
        }
    }

    /// Algorithm 3.6: shrinks the bracket between `lo` (the best point so far that satisfies
    /// sufficient decrease) and `hi` until a trial satisfies both conditions.
    fn zoom(
        &mut self,
        line: &mut Line<'_, '_, T>,
        start: &Trial,
        mut lo: Trial,
        mut hi: Trial,
    ) -> Result<Trial, LineSearchError> {
        let c2 = self.conditions.c2;
        loop {
            if self.evaluations >= self.conditions.max_evaluations {
                return Err(self.fail(LineSearchFailure::MaxEvaluations));
            }
            let width = (hi.step - lo.step).abs();
            if width <= f64::EPSILON * hi.step.abs().max(lo.step.abs()) {
                return Err(self.fail(LineSearchFailure::IntervalTooSmall));
            }
            let step = interpolate(&lo, &hi);
            let trial = self.evaluate(line, step);
            if !trial.is_finite()
                || trial.value > self.armijo_bound(start, trial.step)
                || trial.value >= lo.value
            {
                hi = trial;
                continue;
            }
            if trial.slope.abs() <= -c2 * start.slope {
                return Ok(trial);
            }
            if trial.slope * (hi.step - lo.step) >= 0.0 {
                hi = lo;
            }
            lo = trial;
        }
    }

    fn armijo_bound(&self, start: &Trial, step: f64) -> f64 {
        start.value + self.conditions.c1 * step * start.slope
    }

    /// Evaluates `φ` and `φ'` at `step` into the trial buffers and keeps a copy of the best
    /// finite trial.
    fn evaluate(&mut self, line: &mut Line<'_, '_, T>, step: f64) -> Trial {
        let alpha = T::of(step);
        let points = self
            .trial_point
            .iter_mut()
            .zip(line.theta)
            .zip(line.direction);
        for ((x, &t), &d) in points {
            *x = t + alpha * d;
        }
        let value = line
            .objective
            .gradient(&self.trial_point, &mut self.trial_gradient);
        self.evaluations += 1;
        let trial = Trial {
            step,
            value,
            slope: dot(&self.trial_gradient, line.direction),
        };
        if trial.is_finite() && self.best.is_none_or(|best| trial.value < best.value) {
            self.best_point.copy_from_slice(&self.trial_point);
            self.best_gradient.copy_from_slice(&self.trial_gradient);
            self.best = Some(trial);
        }
        trial
    }

    fn fail(&mut self, reason: LineSearchFailure) -> LineSearchError {
        self.result_is_best = true;
        LineSearchError {
            reason,
            best: self.best,
        }
    }
}

/// The objective restricted to one line.
struct Line<'o, 'a, T: Scalar> {
    objective: &'o mut dyn Objective<T>,
    theta: &'a [T],
    direction: &'a [T],
}

/// Returns the minimiser of the cubic that matches value and slope at `a` and `b`
/// (Nocedal & Wright, equation 3.59), or `None` when the cubic has no local minimum.
fn cubic_minimizer(a: &Trial, b: &Trial) -> Option<f64> {
    let d1 = a.slope + b.slope - 3.0 * (a.value - b.value) / (a.step - b.step);
    let discriminant = d1 * d1 - a.slope * b.slope;
    if discriminant < 0.0 {
        return None;
    }
    let d2 = (b.step - a.step).signum() * discriminant.sqrt();
    let step = b.step - (b.step - a.step) * (b.slope + d2 - d1) / (b.slope - a.slope + 2.0 * d2);
    step.is_finite().then_some(step)
}

/// Picks the next trial inside the bracket: the cubic minimiser when both ends are finite
/// and it lies clear of the ends, the midpoint otherwise.
fn interpolate(lo: &Trial, hi: &Trial) -> f64 {
    let midpoint = 0.5 * (lo.step + hi.step);
    if !lo.is_finite() || !hi.is_finite() {
        return midpoint;
    }
    let (left, right) = (lo.step.min(hi.step), lo.step.max(hi.step));
    let margin = INTERPOLATION_MARGIN * (right - left);
    match cubic_minimizer(lo, hi) {
        Some(step) if step >= left + margin && step <= right - margin => step,
        _ => midpoint,
    }
}

/// Picks the next, larger trial in the bracketing phase: the cubic minimiser through the
/// last two trials, clamped to `[1.1, 4]` step lengths beyond the current one.
fn extrapolate(previous: &Trial, current: &Trial) -> f64 {
    let length = current.step - previous.step;
    let lower = current.step + EXTRAPOLATION_MIN * length;
    let upper = current.step + EXTRAPOLATION_MAX * length;
    match cubic_minimizer(previous, current) {
        Some(step) => step.clamp(lower, upper),
        None => upper,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::second_order::test_functions::{NanBeyond, Rosenbrock};

    /// Runs a search from `theta` along `−∇f(θ)` and returns the start and the outcome.
    fn search_downhill(
        objective: &mut dyn Objective<f64>,
        search: &mut LineSearch<f64>,
        theta: &[f64],
        initial_step: f64,
    ) -> (Trial, Vec<f64>, Result<Trial, LineSearchError>) {
        let mut gradient = vec![0.0; theta.len()];
        let value = objective.gradient(theta, &mut gradient);
        let direction: Vec<f64> = gradient.iter().map(|g| -g).collect();
        let slope = dot(&gradient, &direction);
        let start = Trial {
            step: 0.0,
            value,
            slope,
        };
        let outcome = search.search(objective, theta, &direction, value, slope, initial_step);
        (start, direction, outcome)
    }

    #[test]
    fn accepted_step_satisfies_strong_wolfe_on_rosenbrock() {
        for c2 in [0.9, 0.1] {
            for initial_step in [1.0, 1e-6, 1e-2] {
                let mut f = Rosenbrock::new(2);
                let theta = f.start();
                let conditions = StrongWolfe {
                    c2,
                    ..StrongWolfe::default()
                };
                let mut search = LineSearch::new(conditions);
                let (start, d, outcome) =
                    search_downhill(&mut f, &mut search, &theta, initial_step);
                let trial = outcome.expect("search succeeds");
                let case = format!("c2 = {c2}, initial step {initial_step}");

                let bound = start.value + conditions.c1 * trial.step * start.slope;
                assert!(trial.value <= bound, "sufficient decrease fails for {case}");
                let curvature = trial.slope.abs() <= c2 * start.slope.abs();
                assert!(curvature, "curvature condition fails for {case}");

                let expected: Vec<f64> = theta
                    .iter()
                    .zip(&d)
                    .map(|(t, d)| t + trial.step * d)
                    .collect();
                assert_eq!(search.point(), expected.as_slice(), "point for {case}");
                let mut gradient = vec![0.0; 2];
                let value = f.gradient(&expected, &mut gradient);
                assert_eq!(trial.value, value, "value for {case}");
                assert_eq!(
                    search.gradient(),
                    gradient.as_slice(),
                    "gradient for {case}"
                );
            }
        }
    }

    #[test]
    fn non_finite_trials_shrink_the_step() {
        let mut f = NanBeyond { evaluations: 0 };
        let mut search = LineSearch::new(StrongWolfe::default());
        let (start, _, outcome) = search_downhill(&mut f, &mut search, &[0.0, 0.0], 1.0);
        let trial = outcome.expect("search succeeds");
        assert!(trial.value.is_finite());
        assert!(trial.value < start.value);
        assert!(search.point()[0] <= NanBeyond::EDGE);
        assert!(
            search.evaluations() > 1,
            "the first trial lands in the NaN region"
        );
    }

    #[test]
    fn failure_returns_best_finite_trial() {
        let mut f = NanBeyond { evaluations: 0 };
        let conditions = StrongWolfe {
            max_evaluations: 3,
            ..StrongWolfe::default()
        };
        let mut search = LineSearch::new(conditions);
        // Steps 10, 5 and 2.5 along (4, 4) all land beyond the edge x_0 = 1.
        let (_, _, outcome) = search_downhill(&mut f, &mut search, &[0.0, 0.0], 10.0);
        let error = outcome.expect_err("budget of 3 is too small");
        assert_eq!(error.reason, LineSearchFailure::MaxEvaluations);
        assert_eq!(error.best, None);

        // Bisection reaches the finite region at step 0.15625, the 7th trial. The slope stays
        // negative up to the edge, so no trial satisfies the curvature condition.
        let conditions = StrongWolfe {
            max_evaluations: 9,
            c2: 0.01,
            ..StrongWolfe::default()
        };
        let mut search = LineSearch::new(conditions);
        let (_, _, outcome) = search_downhill(&mut f, &mut search, &[0.0, 0.0], 10.0);
        let error = outcome.expect_err("no trial satisfies c2 = 0.01");
        let best = error.best.expect("a finite trial was seen");
        assert!(best.value.is_finite());
        assert!(search.point()[0] <= NanBeyond::EDGE);
        assert_eq!(f.value(search.point()), best.value);
    }

    #[test]
    fn ascent_direction_is_rejected() {
        let mut f = Rosenbrock::new(2);
        let theta = f.start();
        let mut gradient = vec![0.0; 2];
        let value = f.gradient(&theta, &mut gradient);
        let slope = dot(&gradient, &gradient);
        let mut search = LineSearch::new(StrongWolfe::default());
        let error = search
            .search(&mut f, &theta, &gradient.clone(), value, slope, 1.0)
            .expect_err("ascent direction");
        assert_eq!(error.reason, LineSearchFailure::NotDescent);
        assert_eq!(search.evaluations(), 0);
    }

    #[test]
    fn non_finite_start_is_rejected() {
        let mut f = NanBeyond { evaluations: 0 };
        let mut search = LineSearch::new(StrongWolfe::default());
        let (_, _, outcome) = search_downhill(&mut f, &mut search, &[3.0, 0.0], 1.0);
        let error = outcome.expect_err("start is NaN");
        assert_eq!(error.reason, LineSearchFailure::NonFiniteStart);
    }

    #[test]
    fn invalid_conditions_are_rejected() {
        let cases = [
            (0.0, 0.9, 20),
            (0.5, 0.4, 20),
            (1e-4, 1.0, 20),
            (1e-4, 0.9, 0),
        ];
        for (c1, c2, max_evaluations) in cases {
            let conditions = StrongWolfe {
                c1,
                c2,
                max_evaluations,
            };
            assert!(conditions.validate().is_err(), "{conditions:?} accepted");
        }
        assert!(StrongWolfe::default().validate().is_ok());
    }
}
