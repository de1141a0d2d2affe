//! Levenberg-Marquardt on the Gauss-Newton matrix, for small networks.
//!
//! Each iteration forms `G = Jᵀ H_L J` densely from `P` Gauss-Newton products `G eᵢ` and
//! solves `(G + μ I) d = −∇f` by Cholesky. For the mean squared error `G` is a multiple of
//! `JᵀJ`, so this is the classic method; for cross-entropy it is its natural
//! generalisation. The damping `μ` follows MATLAB's `trainlm`: a step that lowers the loss
//! is taken and `μ` shrinks by `mu_dec`, otherwise `μ` grows by `mu_inc` and the system is
//! solved again, and the method stops once `μ` would exceed `mu_max`.
//!
//! Memory is `P²` doubles and each iteration costs `P` curvature products and an `O(P³)`
//! factorisation, hence the `max_parameters` limit.

use super::{restore_scalar, StartPoint};
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::{norm, Scalar};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Settings of [`LevenbergMarquardt`]. The damping names and defaults are those of MATLAB's
/// `trainlm`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmSettings {
    /// Initial damping `μ`.
    pub mu: f64,
    /// Factor applied to `μ` after a step that lowers the loss, in `(0, 1)`.
    pub mu_dec: f64,
    /// Factor applied to `μ` after a step that does not, greater than 1.
    pub mu_inc: f64,
    /// Largest damping. The method reports `finished` once `μ` would exceed it.
    pub mu_max: f64,
    /// Largest network accepted, because memory grows with the square of the parameter count
    /// and time with its cube.
    pub max_parameters: usize,
    /// Iterations per call of `step`.
    pub max_iterations_per_step: usize,
    /// The method reports `finished` once `‖∇f‖₂` is at most this (`trainlm`'s `min_grad`).
    pub gradient_tolerance: f64,
}

impl Default for LmSettings {
    fn default() -> Self {
        LmSettings {
            mu: 1e-3,
            mu_dec: 0.1,
            mu_inc: 10.0,
            mu_max: 1e10,
            max_parameters: 5000,
            max_iterations_per_step: 1,
            gradient_tolerance: 1e-7,
        }
    }
}

impl LmSettings {
    /// Checks every setting against its valid range.
    pub fn validate(&self) -> Result<()> {
        if !(self.mu > 0.0 && self.mu.is_finite()) {
            return Err(Error::setting("mu", self.mu, "expected a finite value > 0"));
        }
        if !(self.mu_dec > 0.0 && self.mu_dec < 1.0) {
            return Err(Error::setting(
                "mu_dec",
                self.mu_dec,
                "expected 0 < mu_dec < 1",
            ));
        }
        if !(self.mu_inc > 1.0 && self.mu_inc.is_finite()) {
            return Err(Error::setting(
                "mu_inc",
                self.mu_inc,
                "expected a finite value > 1",
            ));
        }
        if self.mu_max < self.mu || self.mu_max.is_nan() {
            return Err(Error::setting(
                "mu_max",
                self.mu_max,
                "expected mu_max >= mu",
            ));
        }
        if self.max_parameters == 0 {
            return Err(Error::setting(
                "max_parameters",
                self.max_parameters,
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
        Ok(())
    }
}

/// The Levenberg-Marquardt method.
#[derive(Debug)]
pub struct LevenbergMarquardt<T: Scalar> {
    settings: LmSettings,
    mu: f64,
    start: StartPoint<T>,
    /// The curvature matrix `G`, `P × P` row-major.
    curvature: Vec<f64>,
    /// The Cholesky factor of `G + μ I`, lower triangle row-major.
    factor: Vec<f64>,
    step_direction: Vec<f64>,
    trial: Vec<T>,
    basis: Vec<T>,
    column: Vec<T>,
}

impl<T: Scalar> LevenbergMarquardt<T> {
    /// Creates the method after validating `settings`.
    pub fn new(settings: LmSettings) -> Result<Self> {
        settings.validate()?;
        Ok(LevenbergMarquardt {
            mu: settings.mu,
            settings,
            start: StartPoint::default(),
            curvature: Vec::new(),
            factor: Vec::new(),
            step_direction: Vec::new(),
            trial: Vec::new(),
            basis: Vec::new(),
            column: Vec::new(),
        })
    }

    /// Returns the current damping `μ`.
    pub fn mu(&self) -> f64 {
        self.mu
    }

    fn check_size(&self, parameters: usize) -> Result<()> {
        let limit = self.settings.max_parameters;
        if parameters > limit {
            return Err(Error::setting(
                "parameter count",
                parameters,
                &format!(
                    "levenberg-marquardt forms a dense {parameters}×{parameters} matrix and \
                     accepts at most max_parameters = {limit}. Use hessian-free or lbfgs for \
                     this network, or raise max_parameters"
                ),
            ));
        }
        Ok(())
    }

    /// Fills `self.curvature` with `G(θ)` column by column, symmetrised against rounding.
    /// Falls back to Hessian products when the objective has no Gauss-Newton structure.
    fn form_curvature(&mut self, objective: &mut dyn Objective<T>, params: &[T]) -> Result<()> {
        let n = params.len();
        self.curvature.resize(n * n, 0.0);
        self.basis.clear();
        self.basis.resize(n, T::zero());
        self.column.resize(n, T::zero());
        for i in 0..n {
            self.basis[i] = T::one();
            let available = objective.gauss_newton_product(params, &self.basis, &mut self.column)
                || objective.hessian_product(params, &self.basis, &mut self.column);
            self.basis[i] = T::zero();
            if !available {
                return Err(Error::setting(
                    "method",
                    "levenberg-marquardt",
                    "this objective gives neither Gauss-Newton nor Hessian products, so use lbfgs",
                ));
            }
            for (row, value) in self.column.iter().enumerate() {
                self.curvature[row * n + i] = value.as_f64();
            }
        }
        for i in 0..n {
            for j in 0..i {
                let mean = 0.5 * (self.curvature[i * n + j] + self.curvature[j * n + i]);
                self.curvature[i * n + j] = mean;
                self.curvature[j * n + i] = mean;
            }
        }
        Ok(())
    }

    /// Solves `(G + μ I) d = −g` into `self.step_direction`. Returns `false` when the matrix
    /// is not numerically positive definite.
    fn solve(&mut self, gradient: &[T]) -> bool {
        let n = gradient.len();
        self.factor.clear();
        self.factor.extend_from_slice(&self.curvature);
        for i in 0..n {
            self.factor[i * n + i] += self.mu;
        }
        if !cholesky(&mut self.factor, n) {
            return false;
        }
        self.step_direction.clear();
        self.step_direction
            .extend(gradient.iter().map(|g| -g.as_f64()));
        cholesky_solve(&self.factor, n, &mut self.step_direction);
        self.step_direction.iter().all(|d| d.is_finite())
    }

    /// Runs one Levenberg-Marquardt iteration from `params`, where the loss is `value`.
    /// Returns the new loss, or `None` when `μ` exceeded `mu_max` before a step lowered it.
    fn iterate(
        &mut self,
        objective: &mut dyn Objective<T>,
        params: &mut [T],
        value: f64,
        gradient: &[T],
    ) -> Result<Option<f64>> {
        self.form_curvature(objective, params)?;
        while self.mu <= self.settings.mu_max {
            if self.solve(gradient) {
                self.trial.clear();
                let steps = params.iter().zip(&self.step_direction);
                self.trial.extend(steps.map(|(&p, &d)| p + T::of(d)));
                let trial_value = objective.value(&self.trial);
                if trial_value < value {
                    params.copy_from_slice(&self.trial);
                    self.mu *= self.settings.mu_dec;
                    return Ok(Some(trial_value));
                }
            }
            self.mu *= self.settings.mu_inc;
        }
        Ok(None)
    }
}

impl<T: Scalar> Method<T> for LevenbergMarquardt<T> {
    fn name(&self) -> &'static str {
        "levenberg-marquardt"
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
        self.check_size(params.len())?;
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
            match self.iterate(objective, params, value, &gradient)? {
                Some(_) => {
                    value = objective.gradient(params, &mut gradient);
                    gradient_norm = norm(&gradient);
                }
                None => {
                    // `trainlm` stops here, because no damping up to mu_max lowers the loss.
                    self.mu = self.settings.mu_max;
                    report.finished = true;
                    break;
                }
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
        MethodState {
            vectors: Vec::new(),
            scalars: vec![("mu".to_string(), self.mu)],
        }
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.start.forget();
        match restore_scalar(state, "mu") {
            Some(mu) if mu > 0.0 && mu <= self.settings.mu_max => {
                self.mu = mu;
                Ok(())
            }
            Some(mu) => Err(Error::setting(
                "levenberg-marquardt state mu",
                mu,
                "expected 0 < mu <= mu_max",
            )),
            None => Err(Error::setting(
                "levenberg-marquardt state",
                "no mu",
                "expected a scalar named mu",
            )),
        }
    }
}

/// Factors the symmetric `n × n` row-major matrix `a` in place as `L Lᵀ`, leaving `L` in the
/// lower triangle. Returns `false` when a pivot is not positive and finite, that is when `a`
/// is not numerically positive definite.
fn cholesky(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let row_j = &a[j * n..j * n + j];
        let pivot = a[j * n + j] - row_j.iter().map(|l| l * l).sum::<f64>();
        if !(pivot > 0.0 && pivot.is_finite()) {
            return false;
        }
        let diagonal = pivot.sqrt();
        a[j * n + j] = diagonal;
        for i in j + 1..n {
            let (row_i, row_j) = (&a[i * n..i * n + j], &a[j * n..j * n + j]);
            let overlap: f64 = row_i.iter().zip(row_j).map(|(x, y)| x * y).sum();
            a[i * n + j] = (a[i * n + j] - overlap) / diagonal;
        }
    }
    true
}

/// Solves `L Lᵀ x = b` in place in `b`, with `L` from [`cholesky`].
fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let row = &l[i * n..i * n + i];
        let sum: f64 = row.iter().zip(&b[..i]).map(|(l, x)| l * x).sum();
        b[i] = (b[i] - sum) / l[i * n + i];
    }
    for i in (0..n).rev() {
        let sum: f64 = (i + 1..n).map(|k| l[k * n + i] * b[k]).sum();
        b[i] = (b[i] - sum) / l[i * n + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::second_order::test_functions::{Blobs, Quadratic};

    #[test]
    fn cholesky_solves_spd_system() {
        let f = Quadratic::random(6, 8);
        let mut factor = f.a.clone();
        assert!(cholesky(&mut factor, 6));
        let mut x = f.b.clone();
        cholesky_solve(&factor, 6, &mut x);
        for (i, (x, e)) in x.iter().zip(f.minimiser()).enumerate() {
            assert!((x - e).abs() < 1e-10, "x[{i}] = {x}, expected {e}");
        }
    }

    #[test]
    fn cholesky_rejects_indefinite_matrix() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        assert!(!cholesky(&mut a, 2));
        let mut nan = vec![f64::NAN, 0.0, 0.0, 1.0];
        assert!(!cholesky(&mut nan, 2));
    }

    #[test]
    fn lm_solves_quadratic() {
        let mut f = Quadratic::random(8, 6);
        let expected = f.minimiser();
        let mut x = vec![0.0; 8];
        let mut method = LevenbergMarquardt::new(LmSettings::default()).expect("valid settings");
        for _ in 0..5 {
            method
                .step(&mut x, &mut f, &StepContext::default())
                .expect("step succeeds");
        }
        // A step is taken only when the value drops, and values resolve `x` to about
        // √ε_f64 ≈ 1.5e-8 near the minimum.
        for (i, (x, e)) in x.iter().zip(&expected).enumerate() {
            assert!((x - e).abs() < 1e-6, "x[{i}] = {x}, expected {e}");
        }
    }

    #[test]
    fn lm_trains_mlp_to_low_loss() {
        let problem = Blobs::<f64>::new(60, 8, 1);
        let mut params = problem.init_params(2);
        let mut objective = problem.objective();
        let initial = objective.value(&params);
        let mut method = LevenbergMarquardt::new(LmSettings::default()).expect("valid settings");
        let mut previous = initial;
        for epoch in 0..60 {
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
        assert!(last < 0.05, "loss {initial} -> {last}");
    }

    #[test]
    fn lm_trains_mlp_in_f32() {
        let problem = Blobs::<f32>::new(60, 8, 3);
        let mut params = problem.init_params(4);
        let mut objective = problem.objective();
        let initial = objective.value(&params);
        let mut method = LevenbergMarquardt::new(LmSettings::default()).expect("valid settings");
        for _ in 0..30 {
            method
                .step(&mut params, &mut objective, &StepContext::default())
                .expect("step succeeds");
        }
        let last = objective.value(&params);
        assert!(last < 0.1, "loss {initial} -> {last}");
    }

    #[test]
    fn oversized_network_is_rejected() {
        let problem = Blobs::<f64>::new(6, 8, 1);
        let mut params = problem.init_params(2);
        let mut objective = problem.objective();
        let settings = LmSettings {
            max_parameters: 50,
            ..LmSettings::default()
        };
        let mut method = LevenbergMarquardt::new(settings).expect("valid settings");
        let error = method
            .step(&mut params, &mut objective, &StepContext::default())
            .expect_err("51 parameters exceed 50");
        let message = error.to_string();
        assert!(message.contains("51"), "{message}");
        assert!(message.contains("max_parameters = 50"), "{message}");
        assert!(message.contains("Use hessian-free or lbfgs"), "{message}");
    }

    #[test]
    fn saved_mu_is_restored() {
        let mut method = LevenbergMarquardt::<f64>::new(LmSettings::default()).expect("valid");
        let state = MethodState {
            vectors: Vec::new(),
            scalars: vec![("mu".to_string(), 0.25)],
        };
        method.load_state(&state).expect("valid state");
        assert_eq!(method.mu(), 0.25);
        assert_eq!(method.save_state(), state);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let cases = [
            (
                "mu",
                LmSettings {
                    mu: 0.0,
                    ..Default::default()
                },
            ),
            (
                "mu_dec",
                LmSettings {
                    mu_dec: 1.0,
                    ..Default::default()
                },
            ),
            (
                "mu_inc",
                LmSettings {
                    mu_inc: 0.5,
                    ..Default::default()
                },
            ),
            (
                "mu_max",
                LmSettings {
                    mu_max: 1e-6,
                    ..Default::default()
                },
            ),
            (
                "max_parameters",
                LmSettings {
                    max_parameters: 0,
                    ..Default::default()
                },
            ),
        ];
        for (name, settings) in cases {
            match LevenbergMarquardt::<f64>::new(settings) {
                Err(Error::InvalidSetting { name: got, .. }) => assert_eq!(got, name),
                other => panic!("{name}: expected an invalid-setting error, got {other:?}"),
            }
        }
    }
}
