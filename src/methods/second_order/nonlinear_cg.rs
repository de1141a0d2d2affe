//! Nonlinear conjugate gradients (Nocedal & Wright, *Numerical Optimization*, 2nd ed.,
//! section 5.2): `d_k = −g_k + β_k d_{k−1}` with the Polak–Ribière+ or Fletcher–Reeves `β`.
//! Each step length comes from a strong-Wolfe line search with `c2 = 0.1`. The method
//! restarts along `−g` every `n` iterations and whenever `d_k` is not a descent direction.

use super::line_search::{LineSearch, StrongWolfe};
use super::{restore_scalar, restore_vector, StartPoint};
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::{dot, norm, Scalar};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The formula for `β`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NcgVariant {
    /// `β = max(0, gₖᵀ(gₖ − gₖ₋₁) / ‖gₖ₋₁‖²)`, which restarts by itself when progress stalls.
    #[default]
    PolakRibierePlus,
    /// `β = ‖gₖ‖² / ‖gₖ₋₁‖²`.
    FletcherReeves,
}

/// Settings of [`NonlinearCg`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NcgSettings {
    /// The formula for `β`.
    pub variant: NcgVariant,
    /// Iterations between restarts along `−g`; 0 restarts every `n` iterations, where `n` is
    /// the number of parameters.
    pub restart_interval: usize,
    /// Iterations per call of `step`.
    pub max_iterations_per_step: usize,
    /// The method reports `finished` once `‖∇f‖₂` is at most this.
    pub gradient_tolerance: f64,
    /// Sufficient-decrease constant of the line search.
    pub c1: f64,
    /// Curvature constant of the line search. With `c2 < 1/2`, every Fletcher–Reeves
    /// direction descends; other directions are caught and replaced by `−g`.
    pub c2: f64,
    /// Maximum evaluations in one line search.
    pub line_search_evaluations: usize,
}

impl Default for NcgSettings {
    fn default() -> Self {
        NcgSettings {
            variant: NcgVariant::PolakRibierePlus,
            restart_interval: 0,
            max_iterations_per_step: 1,
            gradient_tolerance: 1e-5,
            c1: 1e-4,
            c2: 0.1,
            line_search_evaluations: 20,
        }
    }
}

impl NcgSettings {
    /// Checks every setting against its valid range.
    pub fn validate(&self) -> Result<()> {
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

/// The nonlinear conjugate gradient method.
#[derive(Debug)]
pub struct NonlinearCg<T: Scalar> {
    settings: NcgSettings,
    start: StartPoint<T>,
    line_search: LineSearch<T>,
    /// The last search direction, valid while `since_restart > 0`.
    direction: Vec<T>,
    previous_gradient: Vec<T>,
    /// Iterations since the last restart; 0 means the next direction is `−g`.
    since_restart: usize,
    /// `α_{k−1} ∇f_{k−1}ᵀ d_{k−1}` of the last accepted step, for the initial step length.
    previous_decrease: Option<f64>,
}

impl<T: Scalar> NonlinearCg<T> {
    /// Creates the method after validating `settings`.
    pub fn new(settings: NcgSettings) -> Result<Self> {
        settings.validate()?;
        Ok(NonlinearCg {
            line_search: LineSearch::new(settings.line_search()),
            settings,
            start: StartPoint::default(),
            direction: Vec::new(),
            previous_gradient: Vec::new(),
            since_restart: 0,
            previous_decrease: None,
        })
    }

    fn beta(&self, gradient: &[T]) -> f64 {
        let previous_squared = dot(&self.previous_gradient, &self.previous_gradient);
        match self.settings.variant {
            NcgVariant::FletcherReeves => dot(gradient, gradient) / previous_squared,
            NcgVariant::PolakRibierePlus => {
                let overlap = dot(gradient, &self.previous_gradient);
                ((dot(gradient, gradient) - overlap) / previous_squared).max(0.0)
            }
        }
    }

    /// Sets `self.direction` for this iteration and returns its slope `gᵀd`. Restarts
    /// along `−g` when due or when the conjugate direction does not descend.
    fn update_direction(&mut self, gradient: &[T]) -> f64 {
        let interval = match self.settings.restart_interval {
            0 => gradient.len(),
            k => k,
        };
        if self.since_restart > 0 && self.since_restart < interval {
            let beta = T::of(self.beta(gradient));
            for (d, &g) in self.direction.iter_mut().zip(gradient) {
                *d = beta * *d - g;
            }
            let slope = dot(gradient, &self.direction);
            if slope < 0.0 {
                return slope;
            }
        }
        self.since_restart = 0;
        self.direction.clear();
        self.direction.extend(gradient.iter().map(|&g| -g));
        -dot(gradient, gradient)
    }

    /// Returns the first trial step: Nocedal & Wright's equation 3.60, which assumes the first-order
    /// decrease `α ∇fᵀd` repeats from the last iteration, or `min(1, 1/‖g‖)` without one.
    fn initial_step(&self, slope: f64, gradient_norm: f64) -> f64 {
        let guess = self.previous_decrease.map(|decrease| decrease / slope);
        match guess {
            Some(step) if step > 0.0 && step.is_finite() => step,
            _ => (1.0 / gradient_norm).min(1.0),
        }
    }
}

impl<T: Scalar> Method<T> for NonlinearCg<T> {
    fn name(&self) -> &'static str {
        "nonlinear-cg"
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
            let slope = self.update_direction(&gradient);
            let restarted = self.since_restart == 0;
            let initial_step = self.initial_step(slope, gradient_norm);
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
                    params.copy_from_slice(self.line_search.point());
                    self.previous_gradient.clear();
                    self.previous_gradient.extend_from_slice(&gradient);
                    gradient.copy_from_slice(self.line_search.gradient());
                    value = trial.value;
                    gradient_norm = norm(&gradient);
                    self.previous_decrease = Some(trial.step * slope);
                    self.since_restart += 1;
                }
                Err(_) if restarted => {
                    // A search along −g found no acceptable step either.
                    report.finished = true;
                    break;
                }
                Err(_) => {
                    self.since_restart = 0;
                    self.previous_decrease = None;
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
        let mut state = MethodState::default();
        if self.since_restart > 0 {
            let to_f64 = |v: &[T]| v.iter().map(|x| x.as_f64()).collect();
            state
                .vectors
                .push(("direction".to_string(), to_f64(&self.direction)));
            state.vectors.push((
                "previous-gradient".to_string(),
                to_f64(&self.previous_gradient),
            ));
            let since_restart = self.since_restart as f64;
            state
                .scalars
                .push(("iterations-since-restart".to_string(), since_restart));
        }
        if let Some(decrease) = self.previous_decrease {
            state
                .scalars
                .push(("previous-decrease".to_string(), decrease));
        }
        state
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.start.forget();
        self.previous_decrease = restore_scalar(state, "previous-decrease");
        let direction = restore_vector(state, "direction");
        let gradient = restore_vector(state, "previous-gradient");
        let since_restart = restore_scalar(state, "iterations-since-restart");
        match (direction, gradient, since_restart) {
            (Some(d), Some(g), Some(k)) if d.len() == g.len() && k >= 1.0 => {
                self.direction = d;
                self.previous_gradient = g;
                self.since_restart = k as usize;
            }
            (None, None, None) => self.since_restart = 0,
            _ => {
                return Err(Error::setting(
                    "nonlinear-cg state",
                    "incomplete direction, previous-gradient or iterations-since-restart",
                    "expected all three with equal lengths, or none",
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::second_order::test_functions::{Quadratic, Rosenbrock};

    fn minimise(variant: NcgVariant, objective: &mut dyn Objective<f64>, x: &mut [f64]) -> usize {
        let settings = NcgSettings {
            variant,
            max_iterations_per_step: 100,
            gradient_tolerance: 1e-9,
            ..NcgSettings::default()
        };
        let mut method = NonlinearCg::new(settings).expect("valid settings");
        for call in 1..=100 {
            let report = method
                .step(x, objective, &StepContext::default())
                .expect("step succeeds");
            assert!(!report.skipped);
            if report.finished {
                return call;
            }
        }
        100
    }

    #[test]
    fn both_variants_minimise_rosenbrock() {
        for variant in [NcgVariant::PolakRibierePlus, NcgVariant::FletcherReeves] {
            for dim in [2, 10] {
                let mut f = Rosenbrock::new(dim);
                let mut x = f.start();
                let calls = minimise(variant, &mut f, &mut x);
                assert!(calls < 100, "{variant:?} on {dim}-D did not finish");
                for (i, xi) in x.iter().enumerate() {
                    assert!(
                        (xi - 1.0).abs() < 1e-5,
                        "{variant:?} {dim}-D: x[{i}] = {xi}"
                    );
                }
            }
        }
    }

    #[test]
    fn polak_ribiere_solves_quadratic() {
        let mut f = Quadratic::random(10, 4);
        let expected = f.minimiser();
        let mut x = vec![0.0; 10];
        let calls = minimise(NcgVariant::PolakRibierePlus, &mut f, &mut x);
        assert!(calls < 100);
        for (i, (x, e)) in x.iter().zip(&expected).enumerate() {
            assert!((x - e).abs() < 1e-6, "x[{i}] = {x}, expected {e}");
        }
    }

    #[test]
    fn restart_interval_one_is_steepest_descent() {
        let settings = NcgSettings {
            restart_interval: 1,
            ..NcgSettings::default()
        };
        let mut method = NonlinearCg::<f64>::new(settings).expect("valid settings");
        let mut f = Quadratic::random(4, 2);
        let mut x = vec![0.0; 4];
        for _ in 0..3 {
            method
                .step(&mut x, &mut f, &StepContext::default())
                .expect("step");
            let mut gradient = vec![0.0; 4];
            f.gradient(&x, &mut gradient);
            method.update_direction(&gradient);
            let expected: Vec<f64> = gradient.iter().map(|g| -g).collect();
            assert_eq!(method.direction, expected);
        }
    }

    #[test]
    fn saved_state_reproduces_next_step() {
        let mut f = Rosenbrock::new(4);
        let mut x = f.start();
        let mut method = NonlinearCg::new(NcgSettings::default()).expect("valid settings");
        let context = StepContext::default();
        for _ in 0..3 {
            method.step(&mut x, &mut f, &context).expect("step");
        }
        let mut restored = NonlinearCg::new(NcgSettings::default()).expect("valid settings");
        restored
            .load_state(&method.save_state())
            .expect("valid state");
        let mut y = x.clone();
        method.step(&mut x, &mut f, &context).expect("step");
        restored.step(&mut y, &mut f, &context).expect("step");
        assert_eq!(x, y);
    }

    #[test]
    fn variant_names_deserialize() {
        let settings: NcgSettings =
            toml::from_str("variant = \"fletcher-reeves\"\nrestart_interval = 5").expect("toml");
        assert_eq!(settings.variant, NcgVariant::FletcherReeves);
        assert_eq!(settings.restart_interval, 5);
        assert!(toml::from_str::<NcgSettings>("restart = 5").is_err());
    }
}
