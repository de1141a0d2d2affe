//! Basin hopping with the semantics of scipy's `scipy.optimize.basinhopping` (scipy 1.11 and
//! later): each iteration perturbs the current point, runs a local minimisation from there,
//! and accepts the local minimum with the Metropolis criterion.
//!
//! Following scipy: the step size adapts every `interval` steps toward `target_accept_rate`,
//! custom accept tests run before the Metropolis test and can force acceptance, and the global
//! minimum only changes on an accepted step with a successful local search. The callback
//! receives every local minimum with its acceptance and can stop the run. Beyond scipy: bounds
//! hold for every reported point, steps can scale with the coordinate's magnitude, the start
//! point itself counts as found, and a non-finite local minimum is never accepted.

use super::common::{
    check_fraction, check_interval, check_positive, clip, copy_to, load_rng, save_rng,
    saved_scalar, saved_vector, to_f64, FnObjective, Rng,
};
use super::local::{LocalMethod, LocalMinimizer, LocalResult};
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::{Error, Result};
use rand::{Rng as _, SeedableRng};
use serde::{Deserialize, Serialize};

const NAME: &str = "basin-hopping";

/// Settings of [`BasinHopping`]. Names and defaults are scipy's where scipy has the setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BasinHoppingSettings {
    /// Basin-hopping iterations, >= 1. Default 100.
    pub niter: usize,
    /// Temperature `T` of the Metropolis test, which accepts a worse minimum with probability
    /// `exp(-(f_new - f_old) / T)`, >= 0. `T = 0` accepts only minima that are not worse.
    /// Default 1.
    pub t: f64,
    /// Initial maximum displacement of each coordinate, > 0. Default 0.5.
    pub stepsize: f64,
    /// Steps between step-size updates, >= 1. Default 50.
    pub interval: usize,
    /// Acceptance rate the step size is adapted toward, in (0, 1). Default 0.5.
    pub target_accept_rate: f64,
    /// Factor of each step-size update: the step shrinks by it when fewer steps than the
    /// target are accepted and grows by its inverse otherwise, in (0, 1). Default 0.9.
    pub stepwise_factor: f64,
    /// Stop after this many iterations without a new global minimum. Unset: `niter + 2`, as
    /// scipy, which never stops early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub niter_success: Option<usize>,
    /// Scale the step of coordinate `i` by `max(1, |x_i|)`. Saturated sigmoid units sit on
    /// plateaus that only a step comparable to their weights leaves. Default false.
    pub scale_steps_by_magnitude: bool,
    /// Lower and upper bound for every coordinate; unset for none. Perturbed points are
    /// clipped into the box, and so are local minima, which are then evaluated again.
    /// NOTE: the local search itself ignores the bounds, so a clipped minimum is a boundary
    /// point of the unconstrained descent, not a constrained minimum as L-BFGS-B would find.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounds: Option<[f64; 2]>,
    /// The local minimiser. Default L-BFGS.
    pub local: LocalMethod,
    /// Seed of the steps and the Metropolis test. Default 0.
    pub seed: u64,
}

impl Default for BasinHoppingSettings {
    fn default() -> Self {
        BasinHoppingSettings {
            niter: 100,
            t: 1.0,
            stepsize: 0.5,
            interval: 50,
            target_accept_rate: 0.5,
            stepwise_factor: 0.9,
            niter_success: None,
            scale_steps_by_magnitude: false,
            bounds: None,
            local: LocalMethod::default(),
            seed: 0,
        }
    }
}

impl BasinHoppingSettings {
    /// Checks every setting and names the first invalid one.
    pub fn validate(&self) -> Result<()> {
        super::common::check_count("niter", self.niter, 1)?;
        if !(self.t.is_finite() && self.t >= 0.0) {
            return Err(Error::setting("t", self.t, "expected a finite value >= 0"));
        }
        check_positive("stepsize", self.stepsize)?;
        super::common::check_count("interval", self.interval, 1)?;
        check_fraction("target_accept_rate", self.target_accept_rate)?;
        check_fraction("stepwise_factor", self.stepwise_factor)?;
        if let Some([lower, upper]) = self.bounds {
            check_interval("bounds", lower, upper)?;
        }
        Ok(())
    }
}

/// A custom accept test's decision. Any `Reject` vetoes the step unless a test returns
/// `ForceAccept`, which accepts it without running the remaining tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptDecision {
    /// Accept, subject to the other tests.
    Accept,
    /// Reject the step.
    Reject,
    /// Accept the step whatever the other tests return.
    ForceAccept,
}

/// A custom accept test, called as `test(f_new, x_new, f_old, x_old)` with the new local
/// minimum and the current point.
pub type AcceptTest = Box<dyn FnMut(f64, &[f64], f64, &[f64]) -> AcceptDecision + Send>;

/// A callback, called as `callback(x, f, accepted)` with every local minimum found; returning
/// true stops the run.
pub type Callback = Box<dyn FnMut(&[f64], f64, bool) -> bool + Send>;

/// The outcome of a basin-hopping run, with scipy's field names.
#[derive(Clone, Debug, PartialEq)]
pub struct BasinHoppingResult {
    /// The lowest minimum found.
    pub x: Vec<f64>,
    /// The objective at `x`.
    pub fun: f64,
    /// Basin-hopping iterations run.
    pub nit: usize,
    /// Objective evaluations, in the objective's unit. For [`basin_hopping`] one call of `f`
    /// or of `grad` counts one.
    pub nfev: u64,
    /// Local searches that failed.
    pub minimization_failures: usize,
    /// True when `x` is the result of a successful local search.
    pub success: bool,
    /// Reason the run stopped, in scipy's wording.
    pub message: String,
}

/// A point with its value and whether a successful local search produced it.
#[derive(Clone, Debug)]
struct Minimum {
    x: Vec<f64>,
    value: f64,
    success: bool,
}

/// Basin hopping over the flat parameters. One [`Method::step`] is one basin-hopping
/// iteration; the first also runs the local search from the start point.
pub struct BasinHopping<T: Scalar> {
    settings: BasinHoppingSettings,
    bounds: Option<Vec<(f64, f64)>>,
    local: Box<dyn LocalMinimizer<T>>,
    accept_tests: Vec<AcceptTest>,
    callback: Option<Callback>,
    rng: Rng,
    stepsize: f64,
    /// Steps taken and accepted, for the step-size update.
    steps: u64,
    accepted: u64,
    /// Iterations since the last new global minimum.
    since_improvement: usize,
    nit: usize,
    minimization_failures: usize,
    current: Option<Minimum>,
    best: Option<Minimum>,
    message: Option<String>,
}

impl<T: Scalar> BasinHopping<T> {
    /// Creates the method with the local minimiser that `settings.local` names.
    pub fn new(settings: BasinHoppingSettings) -> Result<Self> {
        settings.validate()?;
        let local = settings.local.build::<T>()?;
        Ok(BasinHopping {
            rng: Rng::seed_from_u64(settings.seed),
            stepsize: settings.stepsize,
            settings,
            bounds: None,
            local,
            accept_tests: Vec::new(),
            callback: None,
            steps: 0,
            accepted: 0,
            since_improvement: 0,
            nit: 0,
            minimization_failures: 0,
            current: None,
            best: None,
            message: None,
        })
    }

    /// Replaces the local minimiser, for example with a [`super::MethodMinimizer`] over any
    /// gradus method.
    pub fn with_local_minimizer(mut self, local: Box<dyn LocalMinimizer<T>>) -> Self {
        self.local = local;
        self
    }

    /// Adds a custom accept test, run before the Metropolis test in the order added.
    pub fn with_accept_test(mut self, test: AcceptTest) -> Self {
        self.accept_tests.push(test);
        self
    }

    /// Sets the callback.
    pub fn with_callback(mut self, callback: Callback) -> Self {
        self.callback = Some(callback);
        self
    }

    /// Sets a `(lower, upper)` interval per coordinate, replacing `settings.bounds`.
    pub fn with_bounds(mut self, bounds: Vec<(f64, f64)>) -> Result<Self> {
        for &(lower, upper) in &bounds {
            if lower.is_nan() || upper.is_nan() || lower > upper {
                return Err(Error::setting(
                    "bounds",
                    format!("[{lower}, {upper}]"),
                    "expected lower <= upper for every coordinate",
                ));
            }
        }
        self.bounds = Some(bounds);
        Ok(self)
    }

    /// Runs every iteration from `x0` on `objective` and returns the result.
    pub fn minimize(
        &mut self,
        objective: &mut dyn Objective<T>,
        x0: &[f64],
    ) -> Result<BasinHoppingResult> {
        let evaluations = objective.evaluations();
        let mut params = vec![T::zero(); x0.len()];
        copy_to(&mut params, x0);
        let context = StepContext::default();
        while !self.step(&mut params, objective, &context)?.finished {}
        let best = self.best.clone().expect("a step sets the best point");
        Ok(BasinHoppingResult {
            x: best.x,
            fun: best.value,
            nit: self.nit,
            nfev: objective.evaluations() - evaluations,
            minimization_failures: self.minimization_failures,
            success: best.success,
            message: self.message.clone().unwrap_or_default(),
        })
    }

    /// Returns the per-coordinate bounds for `dim` coordinates, if any.
    fn box_for(&self, dim: usize) -> Result<Option<Vec<(f64, f64)>>> {
        match (&self.bounds, self.settings.bounds) {
            (Some(bounds), _) if bounds.len() != dim => Err(Error::Shape(format!(
                "basin-hopping bounds have {} intervals but the problem has {dim} parameters",
                bounds.len()
            ))),
            (Some(bounds), _) => Ok(Some(bounds.clone())),
            (None, Some([lower, upper])) => Ok(Some(vec![(lower, upper); dim])),
            (None, None) => Ok(None),
        }
    }

    /// Runs the local search from `start` and keeps its result inside the bounds.
    fn local_search(
        &mut self,
        objective: &mut dyn Objective<T>,
        start: &[f64],
        bounds: Option<&[(f64, f64)]>,
    ) -> Result<Minimum> {
        let LocalResult {
            mut x,
            mut value,
            mut success,
            ..
        } = self.local.minimize(objective, start)?;
        if let Some(bounds) = bounds {
            if clip(&mut x, bounds) {
                value = evaluate(objective, &x);
            }
        }
        success &= value.is_finite();
        if !success {
            self.minimization_failures += 1;
        }
        Ok(Minimum { x, value, success })
    }

    /// Evaluates the start, runs the first local search and sets the current and best points.
    fn initialize(
        &mut self,
        params: &[T],
        objective: &mut dyn Objective<T>,
        bounds: Option<&[(f64, f64)]>,
    ) -> Result<()> {
        let mut x0 = to_f64(params);
        if let Some(bounds) = bounds {
            clip(&mut x0, bounds);
        }
        let start = Minimum {
            value: evaluate(objective, &x0),
            x: x0,
            success: false,
        };
        let minimum = self.local_search(objective, &start.x, bounds)?;
        let improves = start.value.is_nan() || minimum.value <= start.value;
        let best = if minimum.success && improves {
            minimum.clone()
        } else {
            start.clone()
        };
        self.current = Some(if minimum.value.is_finite() {
            minimum
        } else {
            start
        });
        self.best = Some(best);
        Ok(())
    }

    /// Adapts the step size as scipy's `AdaptiveStepsize` does, then returns a perturbed copy
    /// of `x` clipped into the bounds.
    fn take_step(&mut self, x: &[f64], bounds: Option<&[(f64, f64)]>) -> Vec<f64> {
        self.steps += 1;
        if self.steps.is_multiple_of(self.settings.interval as u64) {
            let rate = self.accepted as f64 / self.steps as f64;
            if rate > self.settings.target_accept_rate {
                self.stepsize /= self.settings.stepwise_factor;
            } else {
                self.stepsize *= self.settings.stepwise_factor;
            }
        }
        let mut trial: Vec<f64> = x
            .iter()
            .map(|&v| {
                let scale = if self.settings.scale_steps_by_magnitude {
                    v.abs().max(1.0)
                } else {
                    1.0
                };
                let step = self.stepsize * scale;
                v + self.rng.random_range(-step..=step)
            })
            .collect();
        if let Some(bounds) = bounds {
            clip(&mut trial, bounds);
        }
        trial
    }

    /// Runs the custom tests, then the Metropolis test, as scipy does.
    fn accept(&mut self, new: &Minimum, old: &Minimum) -> bool {
        if !new.value.is_finite() {
            return false;
        }
        let mut accept = true;
        for test in &mut self.accept_tests {
            match test(new.value, &new.x, old.value, &old.x) {
                AcceptDecision::ForceAccept => return true,
                AcceptDecision::Reject => accept = false,
                AcceptDecision::Accept => {}
            }
        }
        let rise = new.value - old.value;
        let weight = if self.settings.t == 0.0 {
            if rise <= 0.0 {
                1.0
            } else {
                0.0
            }
        } else {
            (-rise / self.settings.t).min(0.0).exp()
        };
        let draw: f64 = self.rng.random();
        let metropolis = weight >= draw && (new.success || !old.success);
        accept && metropolis
    }

    /// Sets `message` and returns true when the run should stop after this iteration.
    fn stop_reason(&mut self, new_global_minimum: bool, callback_stop: bool) -> bool {
        let patience = self
            .settings
            .niter_success
            .unwrap_or(self.settings.niter + 2);
        let message = if callback_stop {
            "callback function requested stop early by returning True"
        } else if new_global_minimum {
            self.since_improvement = 0;
            ""
        } else if self.since_improvement > patience {
            "success condition satisfied"
        } else {
            ""
        };
        let message = if message.is_empty() && self.nit >= self.settings.niter {
            "requested number of basinhopping iterations completed successfully"
        } else {
            message
        };
        if message.is_empty() {
            return false;
        }
        self.message = Some(message.to_string());
        true
    }
}

/// Evaluates `x` given in `f64`.
fn evaluate<T: Scalar>(objective: &mut dyn Objective<T>, x: &[f64]) -> f64 {
    let mut point = vec![T::zero(); x.len()];
    copy_to(&mut point, x);
    objective.value(&point)
}

impl<T: Scalar> Method<T> for BasinHopping<T> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn batching(&self) -> Batching {
        Batching::FullBatch
    }

    /// Runs one basin-hopping iteration and writes the lowest minimum so far into `params`.
    /// The report's loss is that minimum's value.
    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        _context: &StepContext,
    ) -> Result<StepReport> {
        let bounds = self.box_for(params.len())?;
        let bounds = bounds.as_deref();
        if self.message.is_none() {
            if self.current.is_none() {
                self.initialize(params, objective, bounds)?;
            }
            let current = self.current.clone().expect("initialised above");
            let trial = self.take_step(&current.x, bounds);
            let minimum = self.local_search(objective, &trial, bounds)?;
            let accepted = self.accept(&minimum, &current);
            if accepted {
                self.accepted += 1;
            }
            let best_value = self.best.as_ref().map_or(f64::INFINITY, |b| b.value);
            let new_global_minimum = accepted && minimum.success && minimum.value < best_value;
            let callback_stop = match &mut self.callback {
                Some(callback) => callback(&minimum.x, minimum.value, accepted),
                None => false,
            };
            if new_global_minimum {
                self.best = Some(minimum.clone());
            }
            if accepted {
                self.current = Some(minimum);
            }
            self.nit += 1;
            self.since_improvement += 1;
            self.stop_reason(new_global_minimum, callback_stop);
        }
        let best = self.best.as_ref().expect("initialised in the first step");
        copy_to(params, &best.x);
        Ok(StepReport {
            loss: best.value,
            finished: self.message.is_some(),
            ..StepReport::default()
        })
    }

    fn save_state(&self) -> MethodState {
        let mut state = MethodState::default();
        state.vectors.push(("rng".into(), save_rng(&self.rng)));
        for (name, minimum) in [("current", &self.current), ("best", &self.best)] {
            if let Some(m) = minimum {
                state.vectors.push((format!("{name}_x"), m.x.clone()));
                state.scalars.push((format!("{name}_value"), m.value));
                state
                    .scalars
                    .push((format!("{name}_success"), f64::from(u8::from(m.success))));
            }
        }
        state.scalars.extend([
            ("stepsize".to_string(), self.stepsize),
            ("steps".to_string(), self.steps as f64),
            ("accepted".to_string(), self.accepted as f64),
            (
                "since_improvement".to_string(),
                self.since_improvement as f64,
            ),
            ("nit".to_string(), self.nit as f64),
            (
                "minimization_failures".to_string(),
                self.minimization_failures as f64,
            ),
        ]);
        state
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        let scalar = |name: &str| saved_scalar(state, NAME, name);
        let minimum = |name: &str| -> Result<Minimum> {
            Ok(Minimum {
                x: saved_vector(state, NAME, &format!("{name}_x"))?.to_vec(),
                value: scalar(&format!("{name}_value"))?,
                success: scalar(&format!("{name}_success"))? != 0.0,
            })
        };
        self.rng = load_rng(saved_vector(state, NAME, "rng")?, NAME)?;
        self.current = Some(minimum("current")?);
        self.best = Some(minimum("best")?);
        self.stepsize = scalar("stepsize")?;
        self.steps = scalar("steps")? as u64;
        self.accepted = scalar("accepted")? as u64;
        self.since_improvement = scalar("since_improvement")? as usize;
        self.nit = scalar("nit")? as usize;
        self.minimization_failures = scalar("minimization_failures")? as usize;
        self.message = None;
        Ok(())
    }
}

/// Runs basin hopping on a function `f` with gradient `grad` (which writes `∇f(x)` into its
/// second argument) from `x0`. `bounds`, one `(lower, upper)` per coordinate, replaces
/// `settings.bounds`.
///
/// ```
/// use gradus::methods::search::{basin_hopping, BasinHoppingSettings};
///
/// let f = |x: &[f64]| (x[0] - 1.0).powi(2);
/// let grad = |x: &[f64], g: &mut [f64]| g[0] = 2.0 * (x[0] - 1.0);
/// let settings = BasinHoppingSettings { niter: 5, ..Default::default() };
/// let result = basin_hopping(f, grad, &[3.0], &settings, None).unwrap();
/// assert!((result.x[0] - 1.0).abs() < 1e-6);
/// ```
pub fn basin_hopping(
    f: impl Fn(&[f64]) -> f64 + Sync,
    grad: impl Fn(&[f64], &mut [f64]) + Sync,
    x0: &[f64],
    settings: &BasinHoppingSettings,
    bounds: Option<&[(f64, f64)]>,
) -> Result<BasinHoppingResult> {
    let mut objective = FnObjective::new(x0.len(), &f, Some(&grad));
    let mut method = BasinHopping::<f64>::new(settings.clone())?;
    if let Some(bounds) = bounds {
        method = method.with_bounds(bounds.to_vec())?;
    }
    method.minimize(&mut objective, x0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::search::local::{MethodFactory, MethodMinimizer};
    use crate::methods::search::testing::{
        rastrigin, rastrigin_gradient, sphere, Xor, XOR_SOLVED_BELOW,
    };
    use rand::SeedableRng;
    use std::sync::{Arc, Mutex};

    /// Basin hopping as the XOR tests run it: steps of up to `±max(1, |w|)`, large enough to
    /// flip the sign of a saturated weight, and a callback that stops at the first solution.
    pub(super) fn xor_basin_hopping(seed: u64) -> BasinHopping<f64> {
        let settings = BasinHoppingSettings {
            niter: 100,
            stepsize: 1.0,
            scale_steps_by_magnitude: true,
            seed,
            ..BasinHoppingSettings::default()
        };
        BasinHopping::new(settings)
            .expect("valid settings")
            .with_callback(Box::new(|_, f, accepted| accepted && f < XOR_SOLVED_BELOW))
    }

    /// Counts the seeds in `seeds` for which basin hopping solves XOR.
    fn xor_basin_hopping_solved(seeds: std::ops::Range<u64>) -> usize {
        let xor = Xor::new();
        let mut solved = 0;
        for seed in seeds {
            let mut objective = xor.objective();
            let result = xor_basin_hopping(seed)
                .minimize(&mut objective, &xor.start(seed))
                .expect("runs");
            if result.fun < XOR_SOLVED_BELOW {
                solved += 1;
            }
        }
        solved
    }

    #[test]
    fn basin_hopping_solves_xor_50_seeds() {
        let solved = xor_basin_hopping_solved(0..50);
        assert!(solved >= 45, "solved {solved} of 50");
    }

    #[test]
    fn basin_hopping_finds_rastrigin_2d_minimum() {
        let bounds = vec![(-5.12, 5.12); 2];
        let settings = BasinHoppingSettings {
            niter: 200,
            stepsize: 2.5,
            seed: 1,
            ..BasinHoppingSettings::default()
        };
        let x0 = [4.3, -3.7];
        let result = basin_hopping(rastrigin, rastrigin_gradient, &x0, &settings, Some(&bounds))
            .expect("valid settings");
        assert!(result.fun < 1e-10, "f = {} at {:?}", result.fun, result.x);
        assert!(
            result.x.iter().all(|v| v.abs() < 1e-6),
            "x = {:?}",
            result.x
        );
        assert!(result.success, "{}", result.message);
        assert_eq!(result.nit, 200);
    }

    #[test]
    fn basin_hopping_finds_rastrigin_10d_minimum() {
        // A low temperature walks down the funnel of Rastrigin's minima one coordinate unit at a
        // time. Not every seed gets there in 2000 iterations: 5 of seeds 0..8 did.
        let bounds = vec![(-5.12, 5.12); 10];
        let settings = BasinHoppingSettings {
            niter: 2000,
            t: 0.3,
            stepsize: 1.0,
            seed: 0,
            ..BasinHoppingSettings::default()
        };
        let mut rng = Rng::seed_from_u64(100);
        let x0: Vec<f64> = (0..10).map(|_| rng.random_range(-5.12..5.12)).collect();
        let result = basin_hopping(rastrigin, rastrigin_gradient, &x0, &settings, Some(&bounds))
            .expect("valid settings");
        assert!(result.fun < 1e-10, "f = {} at {:?}", result.fun, result.x);
        assert!(
            result.x.iter().all(|v| v.abs() < 1e-6),
            "x = {:?}",
            result.x
        );
    }

    #[test]
    fn basin_hopping_keeps_points_in_bounds() {
        // The unconstrained minimum (7, 7) lies outside the box, so every local search leaves it.
        let f = |x: &[f64]| x.iter().map(|v| (v - 7.0).powi(2)).sum::<f64>();
        let grad = |x: &[f64], g: &mut [f64]| {
            for (g, v) in g.iter_mut().zip(x) {
                *g = 2.0 * (v - 7.0);
            }
        };

        let points = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&points);
        let mut objective = FnObjective::new(2, &f, Some(&grad));
        let settings = BasinHoppingSettings {
            niter: 30,
            stepsize: 3.0,
            bounds: Some([-5.12, 5.12]),
            ..BasinHoppingSettings::default()
        };
        let mut method = BasinHopping::<f64>::new(settings)
            .expect("valid settings")
            .with_callback(Box::new(move |x, _, _| {
                seen.lock().expect("not poisoned").push(x.to_vec());
                false
            }));
        let result = method.minimize(&mut objective, &[9.0, -8.0]).expect("runs");

        let points = points.lock().expect("not poisoned");
        assert_eq!(points.len(), 30);
        for x in points.iter().chain([&result.x]) {
            assert!(
                x.iter().all(|v| (-5.12..=5.12).contains(v)),
                "{x:?} leaves the box"
            );
        }
        assert_eq!(result.x, vec![5.12, 5.12]);
        assert_eq!(result.fun, 2.0 * 1.88f64.powi(2));
    }

    /// The `(f, accepted)` arguments of every callback call.
    type CallbackLog = Arc<Mutex<Vec<(f64, bool)>>>;

    /// Returns a callback that records its calls, and the record.
    fn recording_callback() -> (CallbackLog, Callback) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        let callback: Callback = Box::new(move |_, f, accepted| {
            seen.lock().expect("not poisoned").push((f, accepted));
            false
        });
        (calls, callback)
    }

    #[test]
    fn basin_hopping_zero_temperature_only_descends() {
        let (calls, callback) = recording_callback();
        let settings = BasinHoppingSettings {
            niter: 60,
            t: 0.0,
            stepsize: 1.0,
            ..BasinHoppingSettings::default()
        };
        let mut objective = FnObjective::new(3, &rastrigin, Some(&rastrigin_gradient));
        let mut method = BasinHopping::<f64>::new(settings)
            .expect("valid settings")
            .with_callback(callback);
        let result = method
            .minimize(&mut objective, &[2.2, -3.1, 0.7])
            .expect("runs");
        let calls = calls.lock().expect("not poisoned");
        let mut current: Option<f64> = None;
        for &(f, accepted) in calls.iter() {
            if let Some(c) = current {
                assert_eq!(accepted, f <= c, "f {f} against current {c}");
            }
            if accepted {
                current = Some(f);
            }
        }
        assert!(calls.iter().any(|c| c.1), "nothing accepted");
        assert!(calls.iter().any(|c| !c.1), "nothing rejected");

        let lowest = calls.iter().map(|c| c.0).fold(f64::INFINITY, f64::min);
        assert!(
            result.fun <= lowest,
            "best {} above a local minimum {lowest}",
            result.fun
        );
    }

    #[test]
    fn basin_hopping_accept_tests_veto_and_force() {
        let settings = BasinHoppingSettings {
            niter: 20,
            t: 0.0,
            niter_success: Some(100),
            ..BasinHoppingSettings::default()
        };
        let start = [2.2, -3.1];

        let (calls, callback) = recording_callback();
        let mut objective = FnObjective::new(2, &rastrigin, Some(&rastrigin_gradient));
        let reject: AcceptTest = Box::new(|_, _, _, _| AcceptDecision::Reject);
        let mut method = BasinHopping::<f64>::new(settings.clone())
            .expect("valid settings")
            .with_accept_test(reject)
            .with_callback(callback);
        method.minimize(&mut objective, &start).expect("runs");
        assert!(calls.lock().expect("not poisoned").iter().all(|c| !c.1));

        let (calls, callback) = recording_callback();
        let mut objective = FnObjective::new(2, &rastrigin, Some(&rastrigin_gradient));
        let force: AcceptTest = Box::new(|_, _, _, _| AcceptDecision::ForceAccept);
        let reject: AcceptTest = Box::new(|_, _, _, _| AcceptDecision::Reject);
        let mut method = BasinHopping::<f64>::new(settings)
            .expect("valid settings")
            .with_accept_test(force)
            .with_accept_test(reject)
            .with_callback(callback);
        method.minimize(&mut objective, &start).expect("runs");
        assert!(calls.lock().expect("not poisoned").iter().all(|c| c.1));
    }

    #[test]
    fn basin_hopping_stops_on_callback_and_niter_success() {
        let mut objective = FnObjective::new(2, &rastrigin, Some(&rastrigin_gradient));
        let mut method = BasinHopping::<f64>::new(BasinHoppingSettings::default())
            .expect("valid settings")
            .with_callback(Box::new(|_, _, _| true));
        let result = method.minimize(&mut objective, &[1.5, 1.5]).expect("runs");
        assert_eq!(result.nit, 1);
        assert_eq!(
            result.message,
            "callback function requested stop early by returning True"
        );

        // With every step rejected there is never a new global minimum, so the run stops once
        // more than niter_success iterations have passed.
        let settings = BasinHoppingSettings {
            niter_success: Some(3),
            ..BasinHoppingSettings::default()
        };
        let mut objective = FnObjective::new(2, &rastrigin, Some(&rastrigin_gradient));
        let mut method = BasinHopping::<f64>::new(settings)
            .expect("valid settings")
            .with_accept_test(Box::new(|_, _, _, _| AcceptDecision::Reject));
        let result = method.minimize(&mut objective, &[1.5, 1.5]).expect("runs");
        assert_eq!(result.nit, 4);
        assert_eq!(result.message, "success condition satisfied");
    }

    /// A local minimiser that always reports failure at a very low value.
    struct FailingMinimizer;

    impl LocalMinimizer<f64> for FailingMinimizer {
        fn minimize(
            &mut self,
            _: &mut dyn Objective<f64>,
            start: &[f64],
        ) -> crate::Result<LocalResult> {
            Ok(LocalResult {
                x: start.iter().map(|v| v + 1.0).collect(),
                value: -1e9,
                success: false,
                iterations: 1,
                message: "failed on purpose".into(),
            })
        }
    }

    #[test]
    fn basin_hopping_never_keeps_failed_search() {
        let settings = BasinHoppingSettings {
            niter: 10,
            ..BasinHoppingSettings::default()
        };
        let mut objective = FnObjective::new(2, &sphere, None);
        let mut method = BasinHopping::<f64>::new(settings)
            .expect("valid settings")
            .with_local_minimizer(Box::new(FailingMinimizer));
        let result = method.minimize(&mut objective, &[0.5, -0.5]).expect("runs");
        assert_eq!(result.x, vec![0.5, -0.5]);
        assert_eq!(result.fun, 0.5);
        assert!(!result.success);
        assert_eq!(result.minimization_failures, 11);
    }

    /// Gradient descent with a fixed rate, as a stand-in for any gradus method.
    struct Descent;

    impl crate::methods::Method<f64> for Descent {
        fn name(&self) -> &'static str {
            "test-descent"
        }

        fn step(
            &mut self,
            params: &mut [f64],
            objective: &mut dyn Objective<f64>,
            _: &StepContext,
        ) -> crate::Result<crate::methods::StepReport> {
            let mut grad = vec![0.0; params.len()];
            let loss = objective.gradient(params, &mut grad);
            params
                .iter_mut()
                .zip(&grad)
                .for_each(|(p, g)| *p -= 0.1 * g);
            let norm = crate::tensor::norm(&grad);
            Ok(crate::methods::StepReport {
                loss,
                gradient_norm: Some(norm),
                finished: norm < 1e-10,
                ..Default::default()
            })
        }
    }

    #[test]
    fn method_minimizer_runs_any_method() {
        let factory: MethodFactory<f64> = Box::new(|| Ok(Box::new(Descent)));
        let mut local = MethodMinimizer::new(factory, 1000).expect("valid cap");
        let f = |x: &[f64]| (x[0] - 3.0).powi(2) + (x[1] + 1.0).powi(2);
        let mut objective = FnObjective::new(2, &f, None);
        let result = local.minimize(&mut objective, &[0.0, 0.0]).expect("runs");
        assert!(result.success, "{}", result.message);
        assert!((result.x[0] - 3.0).abs() < 1e-8, "{:?}", result.x);
        assert!((result.x[1] + 1.0).abs() < 1e-8, "{:?}", result.x);
        assert_eq!(result.message, "test-descent finished");

        // Local minima of 0.1 x² + sin 3x sit at x = 3.5848, 1.5366 and -0.5122, the global one
        // (scipy's minimize_scalar).
        let wavy = |x: &[f64]| 0.1 * x[0] * x[0] + (3.0 * x[0]).sin();
        let factory: MethodFactory<f64> = Box::new(|| Ok(Box::new(Descent)));
        let mut local = MethodMinimizer::new(factory, 200).expect("valid cap");
        let mut objective = FnObjective::new(1, &wavy, None);
        let nearby = local.minimize(&mut objective, &[4.0]).expect("runs");
        assert!((nearby.x[0] - 3.5848).abs() < 1e-3, "{:?}", nearby.x);
        let settings = BasinHoppingSettings {
            niter: 60,
            stepsize: 2.5,
            ..BasinHoppingSettings::default()
        };
        let mut method = BasinHopping::<f64>::new(settings)
            .expect("valid settings")
            .with_local_minimizer(Box::new(local));
        let result = method.minimize(&mut objective, &[4.0]).expect("runs");
        assert!((result.x[0] + 0.5122).abs() < 1e-3, "{:?}", result.x);
    }
}
