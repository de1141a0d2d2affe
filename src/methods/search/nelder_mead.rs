//! The Nelder-Mead simplex method through argmin's `NelderMead` (argmin 0.11).

use super::argmin_bridge::{iterate, ArgminProblem, Incumbent, Stop};
use super::common::{check_count, check_positive, copy_to, saved_scalar, saved_vector, to_f64};
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::{Error, Result};
use argmin::core::{IterState, Problem, Solver, State};
use argmin::solver::neldermead::NelderMead as ArgminNelderMead;
use serde::{Deserialize, Serialize};

const NAME: &str = "nelder-mead";

/// Settings of [`NelderMead`]. The coefficients and their defaults are argmin's, which are
/// those of Nelder and Mead (1965).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NelderMeadSettings {
    /// The initial simplex is the start point and the start point moved by this along each
    /// coordinate, > 0. Default 0.1.
    pub initial_step: f64,
    /// Reflection coefficient, > 0. Default 1.
    pub alpha: f64,
    /// Expansion coefficient, > 1. Default 2.
    pub gamma: f64,
    /// Contraction coefficient, in (0, 0.5]. Default 0.5.
    pub rho: f64,
    /// Shrink coefficient, in (0, 1]. Default 0.5.
    pub sigma: f64,
    /// The method finishes when the standard deviation of the simplex values falls below
    /// this, >= 0. Default `f64::EPSILON`, argmin's default.
    pub sd_tolerance: f64,
    /// Nelder-Mead iterations per step, >= 1; each costs one to `n + 2` evaluations.
    /// Default 100.
    pub iterations_per_step: usize,
}

impl Default for NelderMeadSettings {
    fn default() -> Self {
        NelderMeadSettings {
            initial_step: 0.1,
            alpha: 1.0,
            gamma: 2.0,
            rho: 0.5,
            sigma: 0.5,
            sd_tolerance: f64::EPSILON,
            iterations_per_step: 100,
        }
    }
}

impl NelderMeadSettings {
    /// Checks every setting and names the first invalid one.
    pub fn validate(&self) -> Result<()> {
        check_positive("initial_step", self.initial_step)?;
        check_positive("alpha", self.alpha)?;
        if !(self.gamma.is_finite() && self.gamma > 1.0) {
            return Err(Error::setting(
                "gamma",
                self.gamma,
                "expected a finite value > 1",
            ));
        }
        if !(self.rho > 0.0 && self.rho <= 0.5) {
            return Err(Error::setting(
                "rho",
                self.rho,
                "expected a value in (0, 0.5]",
            ));
        }
        if !(self.sigma > 0.0 && self.sigma <= 1.0) {
            return Err(Error::setting(
                "sigma",
                self.sigma,
                "expected a value in (0, 1]",
            ));
        }
        if !(self.sd_tolerance.is_finite() && self.sd_tolerance >= 0.0) {
            return Err(Error::setting(
                "sd_tolerance",
                self.sd_tolerance,
                "expected a finite value >= 0",
            ));
        }
        check_count("iterations_per_step", self.iterations_per_step, 1)
    }

    fn solver(&self, start: &[f64]) -> Result<ArgminNelderMead<Vec<f64>, f64>> {
        let mut simplex = vec![start.to_vec()];
        for i in 0..start.len() {
            let mut vertex = start.to_vec();
            vertex[i] += self.initial_step;
            simplex.push(vertex);
        }
        let invalid = |e: argmin::core::Error| Error::setting(NAME, e, "expected valid settings");
        ArgminNelderMead::new(simplex)
            .with_alpha(self.alpha)
            .and_then(|s| s.with_gamma(self.gamma))
            .and_then(|s| s.with_rho(self.rho))
            .and_then(|s| s.with_sigma(self.sigma))
            .and_then(|s| s.with_sd_tolerance(self.sd_tolerance))
            .map_err(invalid)
    }
}

type NmState = IterState<Vec<f64>, (), (), (), (), f64>;

/// Nelder-Mead over the flat parameters. One [`Method::step`] runs `iterations_per_step`
/// iterations; the first step also builds and evaluates the simplex around the start point.
pub struct NelderMead {
    settings: NelderMeadSettings,
    solver: Option<ArgminNelderMead<Vec<f64>, f64>>,
    state: Option<NmState>,
    best: Incumbent,
    finished: bool,
}

impl NelderMead {
    /// Creates the method after checking its settings.
    pub fn new(settings: NelderMeadSettings) -> Result<Self> {
        settings.validate()?;
        Ok(NelderMead {
            settings,
            solver: None,
            state: None,
            best: Incumbent::default(),
            finished: false,
        })
    }
}

impl<T: Scalar> Method<T> for NelderMead {
    fn name(&self) -> &'static str {
        NAME
    }

    fn batching(&self) -> Batching {
        Batching::FullBatch
    }

    /// Runs the step's iterations and writes the best point so far into `params`. The
    /// report's loss is that point's value.
    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        _context: &StepContext,
    ) -> Result<StepReport> {
        if !self.finished {
            if self.solver.is_none() {
                let start = to_f64(params);
                self.best = Incumbent {
                    value: objective.value(params),
                    x: start.clone(),
                };
                self.solver = Some(self.settings.solver(&start)?);
            }
            let solver = self.solver.as_mut().expect("built above");
            let mut problem = Problem::new(ArgminProblem::new(objective, None));
            let state = match self.state.take() {
                Some(state) => Ok(state),
                None => solver
                    .init(&mut problem, NmState::new())
                    .map(|(mut state, _)| {
                        state.update();
                        state
                    }),
            };
            let (state, stop) = match state {
                Ok(state) => iterate(
                    solver,
                    &mut problem,
                    state,
                    self.settings.iterations_per_step,
                ),
                Err(error) => (None, Stop::Failed(error)),
            };
            if let Some(state) = &state {
                self.best.update(state);
            }
            match stop {
                Stop::Paused => self.state = state,
                Stop::Terminated => self.finished = true,
                Stop::Failed(error) => {
                    tracing::warn!(%error, "Nelder-Mead stopped on an argmin error");
                    self.finished = true;
                }
            }
        }
        copy_to(params, &self.best.x);
        Ok(StepReport {
            loss: self.best.value,
            finished: self.finished,
            ..StepReport::default()
        })
    }

    /// Saves the best point only: argmin's simplex is private, so a resumed run builds a new
    /// simplex around that point.
    fn save_state(&self) -> MethodState {
        MethodState {
            vectors: vec![("best".into(), self.best.x.clone())],
            scalars: vec![("best_value".into(), self.best.value)],
        }
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        let best = saved_vector(state, NAME, "best")?.to_vec();
        self.solver = Some(self.settings.solver(&best)?);
        self.best = Incumbent {
            x: best,
            value: saved_scalar(state, NAME, "best_value")?,
        };
        self.state = None;
        self.finished = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::search::common::FnObjective;
    use crate::methods::search::testing::{rosenbrock, run};

    #[test]
    fn nelder_mead_minimises_rosenbrock_2d() {
        let mut objective = FnObjective::new(2, &rosenbrock, None);
        let mut method = NelderMead::new(NelderMeadSettings::default()).expect("valid settings");
        let mut params = vec![-1.2, 1.0];
        let loss = run(&mut method, &mut params, &mut objective, 100);
        assert!(loss < 1e-10, "loss {loss} at {params:?}");
    }
}
