//! Simulated annealing through argmin's `SimulatedAnnealing` (argmin 0.11).
//!
//! argmin accepts a worse point with probability `1 / (1 + exp((f_new - f_old) / T))`. The
//! move, which argmin leaves to the problem, adds to every coordinate a uniform value in
//! `±step · T / T₀`, so moves shrink as the temperature falls.

use super::argmin_bridge::{iterate, AnnealMove, ArgminProblem, Incumbent, Stop};
use super::common::{
    check_count, check_fraction, check_interval, check_positive, copy_to, load_rng, save_rng,
    saved_scalar, saved_vector, to_f64, Rng,
};
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::Result;
use argmin::core::{IterState, Problem, Solver, State};
use argmin::solver::simulatedannealing::{SATempFunc, SimulatedAnnealing as ArgminAnnealing};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

const NAME: &str = "simulated-annealing";

/// Cooling schedule: the temperature as a function of the iteration `i`, counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// `T = T₀ / i`.
    Fast,
    /// `T = T₀ / ln i`.
    Boltzmann,
    /// `T = T₀ · cooling_factorⁱ`.
    Exponential,
}

/// Settings of [`SimulatedAnnealing`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatedAnnealingSettings {
    /// Initial temperature T₀, > 0, in units of the loss. Default 1.
    pub initial_temperature: f64,
    /// The cooling schedule. Default fast, argmin's default.
    pub schedule: Schedule,
    /// Factor of the exponential schedule, in (0, 1). Default 0.95.
    pub cooling_factor: f64,
    /// Largest move of a coordinate at T₀, > 0. Default 0.5.
    pub step: f64,
    /// Lower and upper bound for every coordinate; unset for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounds: Option<[f64; 2]>,
    /// Finish after this many iterations without a new best point; unset: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_best: Option<u64>,
    /// Reset the temperature to T₀ after this many iterations without a new best point;
    /// unset: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reanneal_best: Option<u64>,
    /// Iterations per step, >= 1; each costs one evaluation. Default 100.
    pub iterations_per_step: usize,
    /// Seed of the moves and the acceptance test. Default 0.
    pub seed: u64,
}

impl Default for SimulatedAnnealingSettings {
    fn default() -> Self {
        SimulatedAnnealingSettings {
            initial_temperature: 1.0,
            schedule: Schedule::Fast,
            cooling_factor: 0.95,
            step: 0.5,
            bounds: None,
            stall_best: None,
            reanneal_best: None,
            iterations_per_step: 100,
            seed: 0,
        }
    }
}

impl SimulatedAnnealingSettings {
    /// Checks every setting and names the first invalid one.
    pub fn validate(&self) -> Result<()> {
        check_positive("initial_temperature", self.initial_temperature)?;
        check_fraction("cooling_factor", self.cooling_factor)?;
        check_positive("step", self.step)?;
        if let Some([lower, upper]) = self.bounds {
            check_interval("bounds", lower, upper)?;
        }
        check_count("iterations_per_step", self.iterations_per_step, 1)
    }

    fn solver(&self) -> Result<ArgminAnnealing<f64, Rng>> {
        // The acceptance test draws from stream 0 of the seed and the moves from stream 1.
        let rng = Rng::seed_from_u64(self.seed);
        let invalid = |e: argmin::core::Error| {
            crate::Error::setting("initial_temperature", e, "expected a finite value > 0")
        };
        let schedule = match self.schedule {
            Schedule::Fast => SATempFunc::TemperatureFast,
            Schedule::Boltzmann => SATempFunc::Boltzmann,
            Schedule::Exponential => SATempFunc::Exponential(self.cooling_factor),
        };
        let mut solver = ArgminAnnealing::new_with_rng(self.initial_temperature, rng)
            .map_err(invalid)?
            .with_temp_func(schedule);
        if let Some(iterations) = self.stall_best {
            solver = solver.with_stall_best(iterations);
        }
        if let Some(iterations) = self.reanneal_best {
            solver = solver.with_reannealing_best(iterations);
        }
        Ok(solver)
    }

    fn move_rng(&self) -> Rng {
        let mut rng = Rng::seed_from_u64(self.seed);
        rng.set_stream(1);
        rng
    }
}

type SaState = IterState<Vec<f64>, (), (), (), (), f64>;

/// Simulated annealing over the flat parameters. One [`Method::step`] runs
/// `iterations_per_step` iterations; the first step also evaluates the start point.
pub struct SimulatedAnnealing {
    settings: SimulatedAnnealingSettings,
    solver: ArgminAnnealing<f64, Rng>,
    move_rng: Rng,
    state: Option<SaState>,
    best: Incumbent,
    started: bool,
    finished: bool,
}

impl SimulatedAnnealing {
    /// Creates the method after checking its settings.
    pub fn new(settings: SimulatedAnnealingSettings) -> Result<Self> {
        settings.validate()?;
        Ok(SimulatedAnnealing {
            solver: settings.solver()?,
            move_rng: settings.move_rng(),
            settings,
            state: None,
            best: Incumbent::default(),
            started: false,
            finished: false,
        })
    }
}

impl<T: Scalar> Method<T> for SimulatedAnnealing {
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
            if !self.started {
                self.best = Incumbent {
                    x: to_f64(params),
                    value: objective.value(params),
                };
                self.started = true;
            }
            let moves = AnnealMove {
                rng: RefCell::new(&mut self.move_rng),
                step: self.settings.step,
                initial_temperature: self.settings.initial_temperature,
                bounds: self.settings.bounds.map(|[lower, upper]| (lower, upper)),
            };
            let mut problem = Problem::new(ArgminProblem::new(objective, Some(moves)));
            let state = match self.state.take() {
                Some(state) => Ok(state),
                None => {
                    let start = SaState::new()
                        .param(self.best.x.clone())
                        .cost(self.best.value);
                    self.solver.init(&mut problem, start).map(|(mut state, _)| {
                        state.update();
                        state
                    })
                }
            };
            let iterations = self.settings.iterations_per_step;
            let (state, stop) = match state {
                Ok(state) => iterate(&mut self.solver, &mut problem, state, iterations),
                Err(error) => (None, Stop::Failed(error)),
            };
            if let Some(state) = &state {
                self.best.update(state);
            }
            match stop {
                Stop::Paused => self.state = state,
                Stop::Terminated => self.finished = true,
                Stop::Failed(error) => {
                    tracing::warn!(%error, "simulated annealing stopped on an argmin error");
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

    /// Saves the best point and the move generator only: argmin's temperature and
    /// acceptance generator are private, so a resumed run starts cooling again from T₀ at
    /// the best point.
    fn save_state(&self) -> MethodState {
        MethodState {
            vectors: vec![
                ("best".into(), self.best.x.clone()),
                ("move_rng".into(), save_rng(&self.move_rng)),
            ],
            scalars: vec![("best_value".into(), self.best.value)],
        }
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.best = Incumbent {
            x: saved_vector(state, NAME, "best")?.to_vec(),
            value: saved_scalar(state, NAME, "best_value")?,
        };
        self.move_rng = load_rng(saved_vector(state, NAME, "move_rng")?, NAME)?;
        self.solver = self.settings.solver()?;
        self.state = None;
        self.started = true;
        self.finished = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::search::common::FnObjective;
    use crate::methods::search::testing::{run, sphere};

    #[test]
    fn annealing_reduces_sphere_within_bounds() {
        let settings = SimulatedAnnealingSettings {
            bounds: Some([-0.2, 1.0]),
            ..SimulatedAnnealingSettings::default()
        };
        let mut method = SimulatedAnnealing::new(settings).expect("valid settings");
        let mut objective = FnObjective::new(3, &sphere, None);
        let mut params = vec![0.9, 0.8, 0.7];
        let loss = run(&mut method, &mut params, &mut objective, 20);
        assert!(loss < 0.2 * sphere(&[0.9, 0.8, 0.7]), "loss {loss}");
        assert!(
            params.iter().all(|p| (-0.2..=1.0).contains(p)),
            "{params:?}"
        );
    }
}
