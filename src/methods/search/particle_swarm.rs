//! Particle swarm optimisation through argmin's `ParticleSwarm` (argmin 0.11), with the
//! swarm evaluated in parallel.

use super::argmin_bridge::{iterate, ArgminProblem, Incumbent, Stop};
use super::common::{
    check_count, check_interval, copy_to, evaluate_candidates, saved_scalar, saved_vector, to_f64,
    Rng,
};
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::{Error, Result};
use argmin::core::{PopulationState, Problem, Solver, State};
use argmin::solver::particleswarm::{Particle, ParticleSwarm as ArgminSwarm};
use rand::{Rng as _, SeedableRng};
use serde::{Deserialize, Serialize};

const NAME: &str = "particle-swarm";

/// Settings of [`ParticleSwarm`]. The weights and their defaults are argmin's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParticleSwarmSettings {
    /// Particles, >= 2. Default 40.
    pub particles: usize,
    /// Lower bound of every coordinate, which also bounds the initial positions. Default -5.
    pub lower: f64,
    /// Upper bound of every coordinate. Default 5.
    pub upper: f64,
    /// Weight of the previous velocity, >= 0. Default `1 / (2 ln 2)`.
    pub inertia: f64,
    /// Weight of the pull toward the particle's best point, >= 0. Default `0.5 + ln 2`.
    pub cognitive: f64,
    /// Weight of the pull toward the swarm's best point, >= 0. Default `0.5 + ln 2`.
    pub social: f64,
    /// Swarm iterations per step, >= 1; each costs `particles` evaluations. Default 1.
    pub iterations_per_step: usize,
    /// Seed of the initial swarm and the moves. Default 0.
    pub seed: u64,
}

impl Default for ParticleSwarmSettings {
    fn default() -> Self {
        let ln2 = std::f64::consts::LN_2;
        ParticleSwarmSettings {
            particles: 40,
            lower: -5.0,
            upper: 5.0,
            inertia: 1.0 / (2.0 * ln2),
            cognitive: 0.5 + ln2,
            social: 0.5 + ln2,
            iterations_per_step: 1,
            seed: 0,
        }
    }
}

impl ParticleSwarmSettings {
    /// Checks every setting and names the first invalid one.
    pub fn validate(&self) -> Result<()> {
        check_count("particles", self.particles, 2)?;
        check_interval("lower/upper", self.lower, self.upper)?;
        for (name, value) in [
            ("inertia", self.inertia),
            ("cognitive", self.cognitive),
            ("social", self.social),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::setting(name, value, "expected a finite value >= 0"));
            }
        }
        check_count("iterations_per_step", self.iterations_per_step, 1)
    }

    fn solver(&self, dim: usize) -> Result<ArgminSwarm<Vec<f64>, f64, Rng>> {
        // The initial swarm draws from stream 0 of the seed and argmin's moves from stream 1.
        let mut rng = Rng::seed_from_u64(self.seed);
        rng.set_stream(1);
        let bounds = (vec![self.lower; dim], vec![self.upper; dim]);
        let invalid = |e: argmin::core::Error| Error::setting(NAME, e, "expected weights >= 0");
        ArgminSwarm::new(bounds, self.particles)
            .with_rng_generator(rng)
            .with_inertia_factor(self.inertia)
            .and_then(|s| s.with_cognitive_factor(self.cognitive))
            .and_then(|s| s.with_social_factor(self.social))
            .map_err(invalid)
    }
}

type SwarmState = PopulationState<Particle<Vec<f64>, f64>, f64>;

/// Particle swarm over the flat parameters. One [`Method::step`] runs `iterations_per_step`
/// swarm iterations. The first step places particle 0 at the start point (clipped into the
/// bounds) and the others uniformly in the bounds, with velocities uniform in
/// `±(upper - lower)` as argmin draws them.
pub struct ParticleSwarm {
    settings: ParticleSwarmSettings,
    solver: Option<ArgminSwarm<Vec<f64>, f64, Rng>>,
    state: Option<SwarmState>,
    best: Incumbent,
    finished: bool,
}

impl ParticleSwarm {
    /// Creates the method after checking its settings.
    pub fn new(settings: ParticleSwarmSettings) -> Result<Self> {
        settings.validate()?;
        Ok(ParticleSwarm {
            settings,
            solver: None,
            state: None,
            best: Incumbent::default(),
            finished: false,
        })
    }

    /// Draws and evaluates the initial swarm around `start`.
    fn initial_swarm<T: Scalar>(
        &self,
        start: &[f64],
        params: &[T],
        objective: &mut dyn Objective<T>,
    ) -> Vec<Particle<Vec<f64>, f64>> {
        let s = &self.settings;
        let (dim, count) = (start.len(), s.particles);
        let mut rng = Rng::seed_from_u64(s.seed);
        let width = s.upper - s.lower;
        let mut positions: Vec<Vec<f64>> = (0..count)
            .map(|_| {
                (0..dim)
                    .map(|_| rng.random_range(s.lower..=s.upper))
                    .collect()
            })
            .collect();
        positions[0] = start.iter().map(|x| x.clamp(s.lower, s.upper)).collect();
        let velocities: Vec<Vec<f64>> = (0..count)
            .map(|_| (0..dim).map(|_| rng.random_range(-width..=width)).collect())
            .collect();
        let mut values = vec![0.0; count];
        let fill = |i: usize, point: &mut [T]| copy_to(point, &positions[i]);
        evaluate_candidates(objective, params, &mut values, &fill);
        positions
            .drain(..)
            .zip(velocities)
            .zip(values)
            .map(|((x, v), f)| Particle::new(x, if f.is_nan() { f64::INFINITY } else { f }, v))
            .collect()
    }
}

impl<T: Scalar> Method<T> for ParticleSwarm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn batching(&self) -> Batching {
        Batching::FullBatch
    }

    /// Runs the step's swarm iterations and writes the best point so far into `params`. The
    /// report's loss is that point's value.
    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        _context: &StepContext,
    ) -> Result<StepReport> {
        if !self.finished {
            let mut swarm = None;
            if self.solver.is_none() {
                let start = to_f64(params);
                self.best = Incumbent {
                    value: objective.value(params),
                    x: start.clone(),
                };
                swarm = Some(self.initial_swarm(&start, params, objective));
                self.solver = Some(self.settings.solver(start.len())?);
            }
            let solver = self.solver.as_mut().expect("built above");
            let mut problem = Problem::new(ArgminProblem::new(objective, None));
            let state = match (self.state.take(), swarm) {
                (Some(state), _) => Ok(state),
                (None, swarm) => {
                    let mut start = SwarmState::new();
                    if let Some(swarm) = swarm {
                        start = start.population(swarm);
                    }
                    solver.init(&mut problem, start).map(|(mut state, _)| {
                        state.update();
                        state
                    })
                }
            };
            let iterations = self.settings.iterations_per_step;
            let (state, stop) = match state {
                Ok(state) => iterate(solver, &mut problem, state, iterations),
                Err(error) => (None, Stop::Failed(error)),
            };
            if let Some(state) = &state {
                self.best.update(state);
            }
            match stop {
                Stop::Paused => self.state = state,
                Stop::Terminated => self.finished = true,
                Stop::Failed(error) => {
                    tracing::warn!(%error, "particle swarm stopped on an argmin error");
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

    /// Saves the best point only: argmin's swarm is private, so a resumed run draws a new
    /// swarm (argmin's, uniform in the bounds) and keeps the saved point as its best.
    fn save_state(&self) -> MethodState {
        MethodState {
            vectors: vec![("best".into(), self.best.x.clone())],
            scalars: vec![("best_value".into(), self.best.value)],
        }
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        let best = saved_vector(state, NAME, "best")?.to_vec();
        self.solver = Some(self.settings.solver(best.len())?);
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
    use crate::methods::search::testing::run;

    #[test]
    fn swarm_reduces_shifted_sphere() {
        // The minimum at (3, 3, 3) lies inside the default bounds but far from the start.
        let shifted = |x: &[f64]| x.iter().map(|v| (v - 3.0).powi(2)).sum::<f64>();
        let mut method = ParticleSwarm::new(ParticleSwarmSettings::default()).expect("valid");
        let mut objective = FnObjective::new(3, &shifted, None);
        let mut params = vec![0.0; 3];
        let loss = run(&mut method, &mut params, &mut objective, 100);
        assert!(loss < 1e-3, "loss {loss} at {params:?}");
        assert_eq!(objective.evaluations(), 1 + 40 * 101);
    }
}
