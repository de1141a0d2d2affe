//! L-BFGS: Nocedal (1980), "Updating quasi-Newton matrices with limited storage", Math. Comp.
//! 35(151); Liu & Nocedal (1989), "On the limited memory BFGS method for large scale
//! optimization", Math. Prog. 45. The direction comes from the two-loop recursion over the
//! last `history` pairs `s = θ_{k+1} − θ_k`, `y = ∇f_{k+1} − ∇f_k`, with the initial matrix
//! `γ I`, `γ = sᵀy / yᵀy` from the newest pair, and the step from a strong-Wolfe search.

use super::line_search::{LineSearch, StrongWolfe};
use super::{restore_vectors, StartPoint};
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::{dot, norm, Scalar};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Settings of [`Lbfgs`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LbfgsSettings {
    /// Number of `(s, y)` pairs kept.
    pub history: usize,
    /// L-BFGS iterations per call of `step`. The training loop calls `step` once per epoch
    /// on the full batch; small problems can take many iterations per call.
    pub max_iterations_per_step: usize,
    /// The method reports `finished` once `‖∇f‖₂` is at most this.
    pub gradient_tolerance: f64,
    /// A pair is skipped unless `sᵀy > curvature_tolerance ‖s‖ ‖y‖`, which keeps the
    /// inverse-Hessian approximation positive definite under rounding.
    pub curvature_tolerance: f64,
    /// Sufficient-decrease constant of the line search.
    pub c1: f64,
    /// Curvature constant of the line search.
    pub c2: f64,
    /// Maximum evaluations in one line search.
    pub line_search_evaluations: usize,
}

impl Default for LbfgsSettings {
    fn default() -> Self {
        LbfgsSettings {
            history: 10,
            max_iterations_per_step: 1,
            gradient_tolerance: 1e-5,
            curvature_tolerance: 1e-8,
            c1: 1e-4,
            c2: 0.9,
            line_search_evaluations: 20,
        }
    }
}

impl LbfgsSettings {
    /// Checks every setting against its valid range.
    pub fn validate(&self) -> Result<()> {
        if self.history == 0 {
            return Err(Error::setting(
                "history",
                self.history,
                "expected at least 1",
            ));
        }
        if self.max_iterations_per_step == 0 {
            return Err(Error::setting(
                "max_iterations_per_step",
                self.max_iterations_per_step,
                "expected at least 1",
            ));
        }
        if !(self.gradient_tolerance >= 0.0 && self.gradient_tolerance.is_finite()) {
            return Err(Error::setting(
                "gradient_tolerance",
                self.gradient_tolerance,
                "expected a finite value >= 0",
            ));
        }
        if !(0.0..1.0).contains(&self.curvature_tolerance) {
            return Err(Error::setting(
                "curvature_tolerance",
                self.curvature_tolerance,
                "expected 0 <= curvature_tolerance < 1",
            ));
        }
        self.line_search().validate()
    }

    fn line_search(&self) -> StrongWolfe {
        StrongWolfe {
            c1: self.c1,
            c2: self.c2,
            max_evaluations: self.line_search_evaluations,
        }
    }
}

/// One curvature pair with `ρ = 1 / sᵀy`.
#[derive(Debug)]
struct Pair<T> {
    s: Vec<T>,
    y: Vec<T>,
    rho: f64,
}

/// The L-BFGS method.
#[derive(Debug)]
pub struct Lbfgs<T: Scalar> {
    settings: LbfgsSettings,
    pairs: VecDeque<Pair<T>>,
    start: StartPoint<T>,
    line_search: LineSearch<T>,
    direction: Vec<T>,
    alphas: Vec<f64>,
}

impl<T: Scalar> Lbfgs<T> {
    /// Creates the method after validating `settings`.
    pub fn new(settings: LbfgsSettings) -> Result<Self> {
        settings.validate()?;
        Ok(Lbfgs {
            line_search: LineSearch::new(settings.line_search()),
            settings,
            pairs: VecDeque::new(),
            start: StartPoint::default(),
            direction: Vec::new(),
            alphas: Vec::new(),
        })
    }

    /// Number of pairs currently stored.
    pub fn stored_pairs(&self) -> usize {
        self.pairs.len()
    }

    /// Writes `d = −H g` into `self.direction` by the two-loop recursion (Nocedal & Wright,
    /// Algorithm 7.4).
    fn compute_direction(&mut self, gradient: &[T]) {
        let q = &mut self.direction;
        q.clear();
        q.extend_from_slice(gradient);
        self.alphas.clear();
        for pair in self.pairs.iter().rev() {
            let alpha = pair.rho * dot(&pair.s, q);
            axpy(-alpha, &pair.y, q);
            self.alphas.push(alpha);
        }
        if let Some(newest) = self.pairs.back() {
            let gamma = T::of(1.0 / (newest.rho * dot(&newest.y, &newest.y)));
            q.iter_mut().for_each(|v| *v *= gamma);
        }
        for (pair, alpha) in self.pairs.iter().zip(self.alphas.iter().rev()) {
            let beta = pair.rho * dot(&pair.y, q);
            axpy(alpha - beta, &pair.s, q);
        }
        q.iter_mut().for_each(|v| *v = -*v);
    }
}

impl<T: Scalar> Method<T> for Lbfgs<T> {
    fn name(&self) -> &'static str {
        "lbfgs"
    }

    fn batching(&self) -> Batching {
        Batching::FullBatch
    }

    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        _context: &StepContext,
    ) -> Result<StepReport> {
        let mut value = self.start.evaluate(objective, params);
        let mut gradient_norm = norm(&self.start.gradient);
        let mut report = StepReport {
            loss: value,
            gradient_norm: Some(gradient_norm),
            ..StepReport::default()
        };
        if !value.is_finite() || !gradient_norm.is_finite() {
            report.skipped = true;
            report.finished = true;
            return Ok(report);
        }

        let mut gradient = std::mem::take(&mut self.start.gradient);
        for _ in 0..self.settings.max_iterations_per_step {
            if gradient_norm <= self.settings.gradient_tolerance {
                break;
            }
            self.compute_direction(&gradient);
            let mut slope = dot(&gradient, &self.direction);
            if slope >= 0.0 || slope.is_nan() {
                // Rounding can leave the approximation indefinite, so fall back to −g.
                self.pairs.clear();
                self.compute_direction(&gradient);
                slope = -gradient_norm * gradient_norm;
            }
            let initial_step = if self.pairs.is_empty() {
                (1.0 / gradient_norm).min(1.0)
            } else {
                1.0
            };
            let search = self.line_search.search(
                objective,
                params,
                &self.direction,
                value,
                slope,
                initial_step,
            );
            match search {
                Ok(trial) => {
                    let new = (self.line_search.point(), self.line_search.gradient());
                    push_pair(&mut self.pairs, &self.settings, (params, &gradient), new);
                    params.copy_from_slice(self.line_search.point());
                    gradient.copy_from_slice(self.line_search.gradient());
                    value = trial.value;
                    gradient_norm = norm(&gradient);
                }
                Err(_) if self.pairs.is_empty() => {
                    // Steepest descent found no acceptable step either.
                    report.finished = true;
                    break;
                }
                Err(_) => self.pairs.clear(),
            }
        }
        if gradient_norm <= self.settings.gradient_tolerance {
            report.finished = true;
        }
        self.start.gradient = gradient;
        self.start.remember(params, value);
        Ok(report)
    }

    fn save_state(&self) -> MethodState {
        let mut state = MethodState::default();
        for (i, pair) in self.pairs.iter().enumerate() {
            let s = pair.s.iter().map(|v| v.as_f64()).collect();
            let y = pair.y.iter().map(|v| v.as_f64()).collect();
            state.vectors.push((format!("s{i}"), s));
            state.vectors.push((format!("y{i}"), y));
        }
        state
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        let s = restore_vectors::<T>(state, "s");
        let y = restore_vectors::<T>(state, "y");
        if s.len() != y.len() || s.len() > self.settings.history {
            return Err(Error::setting(
                "lbfgs state",
                format!("{} s and {} y vectors", s.len(), y.len()),
                "expected equal counts of at most `history` pairs",
            ));
        }
        self.pairs.clear();
        self.start = StartPoint::default();
        for (s, y) in s.into_iter().zip(y) {
            let sy = dot(&s, &y);
            if s.len() != y.len() || sy <= 0.0 || sy.is_nan() {
                return Err(Error::setting(
                    "lbfgs state",
                    format!("pair with sᵀy = {sy}"),
                    "expected vectors of equal length with positive curvature",
                ));
            }
            self.pairs.push_back(Pair {
                s,
                y,
                rho: 1.0 / sy,
            });
        }
        Ok(())
    }
}

/// Stores the pair from `old` to `new` (each a point and its gradient) unless its curvature
/// `sᵀy` is too small, dropping the oldest pair when the history is full.
fn push_pair<T: Scalar>(
    pairs: &mut VecDeque<Pair<T>>,
    settings: &LbfgsSettings,
    old: (&[T], &[T]),
    new: (&[T], &[T]),
) {
    let s: Vec<T> = new.0.iter().zip(old.0).map(|(&a, &b)| a - b).collect();
    let y: Vec<T> = new.1.iter().zip(old.1).map(|(&a, &b)| a - b).collect();
    let sy = dot(&s, &y);
    if sy <= 0.0 || sy <= settings.curvature_tolerance * norm(&s) * norm(&y) {
        return;
    }
    if pairs.len() == settings.history {
        pairs.pop_front();
    }
    pairs.push_back(Pair {
        s,
        y,
        rho: 1.0 / sy,
    });
}

/// Computes `y += a x`.
fn axpy<T: Scalar>(a: f64, x: &[T], y: &mut [T]) {
    let a = T::of(a);
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::second_order::test_functions::{Blobs, NanBeyond, Quadratic, Rosenbrock};

    fn tight_settings() -> LbfgsSettings {
        LbfgsSettings {
            max_iterations_per_step: 50,
            gradient_tolerance: 1e-10,
            ..LbfgsSettings::default()
        }
    }

    /// Calls `step` until the method finishes or `max_steps` calls; returns the calls made.
    fn run(
        method: &mut dyn Method<f64>,
        params: &mut [f64],
        objective: &mut dyn Objective<f64>,
        max_steps: usize,
    ) -> usize {
        for call in 1..=max_steps {
            let report = method
                .step(params, objective, &StepContext::default())
                .expect("step succeeds");
            if report.finished {
                return call;
            }
        }
        max_steps
    }

    #[test]
    fn lbfgs_minimises_rosenbrock() {
        for dim in [2, 10] {
            let mut f = Rosenbrock::new(dim);
            let mut x = f.start();
            let mut method = Lbfgs::new(tight_settings()).expect("valid settings");
            let calls = run(&mut method, &mut x, &mut f, 20);
            assert!(calls < 20, "{dim}-D Rosenbrock did not finish");
            for (i, xi) in x.iter().enumerate() {
                assert!((xi - 1.0).abs() < 1e-6, "{dim}-D: x[{i}] = {xi}");
            }
            assert!(f.value(&x) < 1e-12, "{dim}-D: f = {}", f.value(&x));
        }
    }

    #[test]
    fn lbfgs_matches_quadratic_minimiser() {
        let mut f = Quadratic::random(20, 3);
        let expected = f.minimiser();
        let mut x = vec![0.0; 20];
        let mut method = Lbfgs::new(tight_settings()).expect("valid settings");
        let calls = run(&mut method, &mut x, &mut f, 20);
        assert!(calls < 20, "quadratic did not finish");
        // Function values resolve `x` to about √ε_f64 ≈ 1.5e-8 near the minimum, so a
        // value-based line search stops near there.
        for (i, (x, e)) in x.iter().zip(&expected).enumerate() {
            assert!((x - e).abs() < 1e-6, "x[{i}] = {x}, expected {e}");
        }
        let mut gradient = vec![0.0; 20];
        f.gradient(&x, &mut gradient);
        assert!(norm(&gradient) < 1e-6, "‖g‖ = {}", norm(&gradient));
    }

    #[test]
    fn nan_region_never_becomes_iterate() {
        let mut f = NanBeyond { evaluations: 0 };
        let mut x = vec![0.0, 0.0];
        let mut method = Lbfgs::new(LbfgsSettings::default()).expect("valid settings");
        let mut previous = f.value(&x);
        for call in 0..30 {
            let report = method
                .step(&mut x, &mut f, &StepContext::default())
                .expect("step succeeds");
            let value = f.value(&x);
            assert!(value.is_finite(), "step {call} left a NaN iterate {x:?}");
            assert!(value <= previous, "step {call} increased the value");
            assert!(!report.skipped, "step {call} was skipped");
            previous = value;
            if report.finished {
                break;
            }
        }
        // From the origin every gradient points along (1, 1), so the iterates stop at the
        // edge near (1, 1).
        assert!(x[0] <= NanBeyond::EDGE);
        assert!(x[0] > 0.99, "x = {x:?}");
    }

    /// A quadratic that is NaN everywhere except at one point, so every line search fails.
    struct FiniteOnlyAt {
        inner: Quadratic,
        point: Vec<f64>,
    }

    impl Objective<f64> for FiniteOnlyAt {
        fn dim(&self) -> usize {
            self.point.len()
        }

        fn value(&mut self, x: &[f64]) -> f64 {
            if x == self.point {
                self.inner.value(x)
            } else {
                f64::NAN
            }
        }

        fn gradient(&mut self, x: &[f64], grad: &mut [f64]) -> f64 {
            self.inner.gradient(x, grad);
            self.value(x)
        }

        fn evaluations(&self) -> u64 {
            self.inner.evaluations
        }
    }

    #[test]
    fn failed_search_resets_history_and_keeps_params() {
        let point = vec![0.5; 4];
        let mut f = FiniteOnlyAt {
            inner: Quadratic::random(4, 5),
            point: point.clone(),
        };
        let mut method = Lbfgs::new(LbfgsSettings::default()).expect("valid settings");
        let state = MethodState {
            vectors: vec![
                ("s0".to_string(), vec![1.0, 0.0, 0.0, 0.0]),
                ("y0".to_string(), vec![2.0, 0.0, 0.0, 0.0]),
            ],
            scalars: Vec::new(),
        };
        method.load_state(&state).expect("valid state");
        assert_eq!(method.stored_pairs(), 1);

        let mut x = point.clone();
        let context = StepContext::default();
        let first = method.step(&mut x, &mut f, &context).expect("step");
        assert_eq!(x, point, "params changed after a failed search");
        assert_eq!(
            method.stored_pairs(),
            0,
            "history kept after a failed search"
        );
        assert!(!first.finished, "finished before trying steepest descent");
        assert!(!first.skipped);

        let second = method.step(&mut x, &mut f, &context).expect("step");
        assert_eq!(x, point);
        assert!(
            second.finished,
            "steepest descent failed but the method goes on"
        );
    }

    #[test]
    fn unchanged_batch_reuses_gradient() {
        let mut f = Quadratic::random(5, 9);
        let mut x = vec![0.0; 5];
        let mut method = Lbfgs::new(LbfgsSettings::default()).expect("valid settings");
        let context = StepContext::default();
        method.step(&mut x, &mut f, &context).expect("step");
        let after_first = f.gradient_calls;
        let searches = method.line_search.evaluations() as u64;
        method.step(&mut x, &mut f, &context).expect("step");
        let second_search = method.line_search.evaluations() as u64;
        assert_eq!(after_first, 1 + searches);
        assert_eq!(f.gradient_calls, after_first + second_search);
    }

    #[test]
    fn saved_state_reproduces_next_step() {
        let mut f = Rosenbrock::new(4);
        let mut x = f.start();
        let mut method = Lbfgs::new(LbfgsSettings::default()).expect("valid settings");
        let context = StepContext::default();
        for _ in 0..5 {
            method.step(&mut x, &mut f, &context).expect("step");
        }
        let mut restored = Lbfgs::new(LbfgsSettings::default()).expect("valid settings");
        restored
            .load_state(&method.save_state())
            .expect("valid state");
        assert_eq!(restored.stored_pairs(), method.stored_pairs());

        let mut y = x.clone();
        method.step(&mut x, &mut f, &context).expect("step");
        restored.step(&mut y, &mut f, &context).expect("step");
        assert_eq!(x, y);
    }

    #[test]
    fn lbfgs_trains_mlp_in_f32() {
        let problem = Blobs::<f32>::new(60, 8, 1);
        let mut params = problem.init_params(2);
        let mut objective = problem.objective();
        let initial = objective.value(&params);
        let mut method = Lbfgs::new(LbfgsSettings::default()).expect("valid settings");
        let mut previous = initial;
        for epoch in 0..200 {
            let report = method
                .step(&mut params, &mut objective, &StepContext::default())
                .expect("step succeeds");
            assert!(
                report.loss <= previous,
                "epoch {epoch}: loss rose to {}",
                report.loss
            );
            previous = report.loss;
            if report.finished {
                break;
            }
        }
        let last = objective.value(&params);
        assert!(last < 0.1, "loss {initial} -> {last}");
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let cases = [
            (
                "history",
                LbfgsSettings {
                    history: 0,
                    ..Default::default()
                },
            ),
            (
                "max_iterations_per_step",
                LbfgsSettings {
                    max_iterations_per_step: 0,
                    ..Default::default()
                },
            ),
            (
                "gradient_tolerance",
                LbfgsSettings {
                    gradient_tolerance: -1.0,
                    ..Default::default()
                },
            ),
            (
                "c2",
                LbfgsSettings {
                    c2: 1e-5,
                    ..Default::default()
                },
            ),
        ];
        for (name, settings) in cases {
            match Lbfgs::<f64>::new(settings) {
                Err(Error::InvalidSetting { name: got, .. }) => assert_eq!(got, name),
                other => panic!("{name}: expected an invalid-setting error, got {other:?}"),
            }
        }
    }
}
