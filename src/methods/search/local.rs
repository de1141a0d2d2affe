//! Local minimisers for basin hopping and for polishing a grid search: the
//! [`LocalMinimizer`] interface, an adapter over any [`Method`], gradus' L-BFGS through that
//! adapter, and argmin's L-BFGS.

use super::argmin_bridge::ArgminProblem;
use super::common::{check_count, copy_to, to_f64};
use crate::methods::second_order::{Lbfgs, LbfgsSettings as SecondOrderLbfgsSettings};
use crate::methods::{Method, StepContext};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::{Error, Result};
use argmin::core::{Executor, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use serde::{Deserialize, Serialize};

/// The outcome of one local minimisation.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalResult {
    /// The final point.
    pub x: Vec<f64>,
    /// The objective at `x`.
    pub value: f64,
    /// False when the minimiser reports a failure or `value` is not finite. Basin hopping
    /// never takes a failed result as its best point.
    pub success: bool,
    /// Iterations the minimiser ran.
    pub iterations: u64,
    /// Reason the minimiser stopped.
    pub message: String,
}

/// A gradient-based local minimiser: runs from `start` on `objective` to a nearby minimum.
pub trait LocalMinimizer<T: Scalar>: Send {
    /// Minimises from `start`. An error means the minimiser itself is misconfigured; a search
    /// that merely fails returns a result with `success` false.
    fn minimize(&mut self, objective: &mut dyn Objective<T>, start: &[f64]) -> Result<LocalResult>;
}

/// Creates a fresh method for each local search.
pub type MethodFactory<T> = Box<dyn FnMut() -> Result<Box<dyn Method<T>>> + Send>;

/// A [`LocalMinimizer`] over any [`Method`]: a fresh method from the factory takes steps on
/// the whole objective until it reports `finished` or `max_steps` steps have run.
///
/// The result counts as a success when the final value is finite and no step failed with an
/// error. Reaching `max_steps` is not a failure, because the point is still the method's
/// descent result.
pub struct MethodMinimizer<T: Scalar> {
    factory: MethodFactory<T>,
    max_steps: u64,
}

impl<T: Scalar> MethodMinimizer<T> {
    /// Creates the adapter. `max_steps` must be at least 1.
    pub fn new(factory: MethodFactory<T>, max_steps: u64) -> Result<Self> {
        if max_steps == 0 {
            return Err(Error::setting("max_steps", 0, "expected at least 1"));
        }
        Ok(MethodMinimizer { factory, max_steps })
    }
}

impl<T: Scalar> LocalMinimizer<T> for MethodMinimizer<T> {
    fn minimize(&mut self, objective: &mut dyn Objective<T>, start: &[f64]) -> Result<LocalResult> {
        let mut method = (self.factory)()?;
        let mut params = vec![T::zero(); start.len()];
        copy_to(&mut params, start);
        let mut message = format!("reached max_steps = {}", self.max_steps);
        let mut failed = false;
        let mut iterations = 0;
        for step in 0..self.max_steps {
            let context = StepContext {
                step,
                ..StepContext::default()
            };
            iterations = step + 1;
            match method.step(&mut params, objective, &context) {
                Ok(report) if report.finished => {
                    message = format!("{} finished", method.name());
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    message = format!("{} failed: {error}", method.name());
                    failed = true;
                    break;
                }
            }
        }
        let value = objective.value(&params);
        Ok(LocalResult {
            x: to_f64(&params),
            value,
            success: !failed && value.is_finite(),
            iterations,
            message,
        })
    }
}

/// Settings of the L-BFGS local minimiser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LbfgsSettings {
    /// Correction pairs kept, >= 1. Default 10, as scipy's L-BFGS-B `maxcor`.
    pub memory: usize,
    /// Iteration cap of one local search, >= 1. Default 1000.
    pub max_iterations: u64,
    /// Stop when the gradient's L2 norm falls below this, > 0. Default 1e-8.
    pub gradient_tolerance: f64,
    /// Stop when one iteration changes the value by less than this, >= 0. Default 1e-15.
    pub cost_tolerance: f64,
}

impl Default for LbfgsSettings {
    fn default() -> Self {
        LbfgsSettings {
            memory: 10,
            max_iterations: 1000,
            gradient_tolerance: 1e-8,
            cost_tolerance: 1e-15,
        }
    }
}

/// The local method of basin hopping and of a grid-search polish, as a config names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum LocalMethod {
    /// gradus' own L-BFGS (strong-Wolfe line search) through [`MethodMinimizer`]. It ignores
    /// `cost_tolerance`.
    Lbfgs(LbfgsSettings),
    /// argmin's L-BFGS with a Moré-Thuente line search.
    ArgminLbfgs(LbfgsSettings),
}

impl Default for LocalMethod {
    fn default() -> Self {
        LocalMethod::Lbfgs(LbfgsSettings::default())
    }
}

impl LocalMethod {
    /// Builds the minimiser after checking its settings.
    pub fn build<T: Scalar>(&self) -> Result<Box<dyn LocalMinimizer<T>>> {
        match self {
            LocalMethod::Lbfgs(settings) => Ok(Box::new(gradus_lbfgs(settings)?)),
            LocalMethod::ArgminLbfgs(settings) => Ok(Box::new(ArgminLbfgs::new(settings.clone())?)),
        }
    }
}

/// Builds gradus' L-BFGS as a [`MethodMinimizer`] that runs one L-BFGS iteration per step, so
/// `max_iterations` caps the steps and the result counts iterations.
fn gradus_lbfgs<T: Scalar>(settings: &LbfgsSettings) -> Result<MethodMinimizer<T>> {
    // Checks the shared settings with the same messages as argmin's minimiser.
    ArgminLbfgs::new(settings.clone())?;
    let method_settings = SecondOrderLbfgsSettings {
        history: settings.memory,
        max_iterations_per_step: 1,
        gradient_tolerance: settings.gradient_tolerance,
        ..SecondOrderLbfgsSettings::default()
    };
    method_settings.validate()?;
    let factory: MethodFactory<T> = Box::new(move || {
        let method = Lbfgs::<T>::new(method_settings.clone())?;
        Ok(Box::new(method) as Box<dyn Method<T>>)
    });
    MethodMinimizer::new(factory, settings.max_iterations)
}

/// argmin's L-BFGS (version 0.11) with its Moré-Thuente line search, as a [`LocalMinimizer`].
///
/// A search succeeds when it converges (gradient or value tolerance) or reaches
/// `max_iterations` with a finite value. It fails when the line search fails, because argmin
/// then ends the run without a new point, or when the value is not finite.
pub struct ArgminLbfgs {
    settings: LbfgsSettings,
}

impl ArgminLbfgs {
    /// Creates the minimiser after checking its settings.
    pub fn new(settings: LbfgsSettings) -> Result<Self> {
        check_count("memory", settings.memory, 1)?;
        if settings.max_iterations == 0 {
            return Err(Error::setting("max_iterations", 0, "expected at least 1"));
        }
        super::common::check_positive("gradient_tolerance", settings.gradient_tolerance)?;
        let tolerance = settings.cost_tolerance;
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            return Err(Error::setting(
                "cost_tolerance",
                tolerance,
                "expected a finite value >= 0",
            ));
        }
        Ok(ArgminLbfgs { settings })
    }
}

impl<T: Scalar> LocalMinimizer<T> for ArgminLbfgs {
    fn minimize(&mut self, objective: &mut dyn Objective<T>, start: &[f64]) -> Result<LocalResult> {
        let settings = &self.settings;
        let invalid = |error: argmin::core::Error| {
            Error::setting("lbfgs", error, "expected valid L-BFGS tolerances")
        };
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), settings.memory)
            .with_tolerance_grad(settings.gradient_tolerance)
            .map_err(invalid)?
            .with_tolerance_cost(settings.cost_tolerance)
            .map_err(invalid)?;
        let problem = ArgminProblem::new(objective, None);
        let run = Executor::new(problem, solver)
            .configure(|state| {
                state
                    .param(start.to_vec())
                    .max_iters(settings.max_iterations)
            })
            .run();
        let mut state = match run {
            Ok(result) => result.state,
            Err(error) => {
                return Ok(LocalResult {
                    x: start.to_vec(),
                    value: f64::NAN,
                    success: false,
                    iterations: 0,
                    message: format!("L-BFGS failed: {error}"),
                })
            }
        };
        let value = state.get_best_cost();
        let iterations = state.get_iter();
        let (converged, message) = match state.get_termination_reason() {
            Some(TerminationReason::SolverConverged) => (true, "converged".to_string()),
            Some(TerminationReason::MaxItersReached) => (true, "reached max_iterations".into()),
            Some(reason) => (false, reason.text().to_string()),
            None => (false, "stopped without a reason".to_string()),
        };
        let x = state.take_best_param().unwrap_or_else(|| start.to_vec());
        Ok(LocalResult {
            x,
            value,
            success: converged && value.is_finite(),
            iterations,
            message,
        })
    }
}
