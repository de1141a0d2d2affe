//! Random search: candidates from a fixed distribution, or adaptive step-size random search
//! around the best point.
//!
//! Candidate `k` of a run (counting from 0 over all steps) draws its coordinates from ChaCha8
//! stream `k` of the seed. Any thread can generate it, it can be regenerated later instead of
//! stored, and a run is the same for every thread count.

use super::common::{
    check_count, check_interval, check_positive, copy_to, evaluate_candidates, min_index,
    saved_scalar, saved_vector, to_f64, Rng,
};
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::{Error, Result};
use rand::{Rng as _, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

const NAME: &str = "random-search";

/// Candidate distribution of random search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// Every coordinate uniform in `[lower, upper]`, independent of the start point.
    Uniform,
    /// Normal around the start point with standard deviation `std` per coordinate.
    Normal,
    /// A random direction of length `step` from the best point so far. The length doubles
    /// (`expansion`) after an improving step and halves (`contraction`) after
    /// `failures_before_contraction` steps without one, in the manner of Schumer and
    /// Steiglitz's adaptive step-size random search, with a batch of directions per step.
    Adaptive,
}

/// Settings of [`RandomSearch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomSearchSettings {
    /// The distribution. Default uniform.
    pub sampling: Sampling,
    /// Lower bound of uniform sampling. Default -1.
    pub lower: f64,
    /// Upper bound of uniform sampling. Default 1.
    pub upper: f64,
    /// Standard deviation of normal sampling, > 0. Default 1.
    pub std: f64,
    /// Initial step length of adaptive sampling, > 0. Default 0.1.
    pub step: f64,
    /// Step-length factor after an improving adaptive step, > 1. Default 2.
    pub expansion: f64,
    /// Step-length factor after failed adaptive steps, in (0, 1). Default 0.5.
    pub contraction: f64,
    /// Consecutive steps without improvement before the step contracts, >= 1. Default 1,
    /// because a whole batch of directions failing is strong evidence of a too long step.
    pub failures_before_contraction: usize,
    /// Adaptive search finishes when the step length falls below this, >= 0. Default 1e-9.
    pub min_step: f64,
    /// Candidates evaluated per step, in parallel, >= 1. Default 100.
    pub samples_per_step: usize,
    /// Seed of the candidates. Default 0.
    pub seed: u64,
}

impl Default for RandomSearchSettings {
    fn default() -> Self {
        RandomSearchSettings {
            sampling: Sampling::Uniform,
            lower: -1.0,
            upper: 1.0,
            std: 1.0,
            step: 0.1,
            expansion: 2.0,
            contraction: 0.5,
            failures_before_contraction: 1,
            min_step: 1e-9,
            samples_per_step: 100,
            seed: 0,
        }
    }
}

impl RandomSearchSettings {
    /// Checks every setting and names the first invalid one.
    pub fn validate(&self) -> Result<()> {
        check_interval("lower/upper", self.lower, self.upper)?;
        check_positive("std", self.std)?;
        check_positive("step", self.step)?;
        if !(self.expansion.is_finite() && self.expansion > 1.0) {
            return Err(Error::setting(
                "expansion",
                self.expansion,
                "expected a finite value > 1",
            ));
        }
        super::common::check_fraction("contraction", self.contraction)?;
        check_count(
            "failures_before_contraction",
            self.failures_before_contraction,
            1,
        )?;
        if !(self.min_step.is_finite() && self.min_step >= 0.0) {
            return Err(Error::setting(
                "min_step",
                self.min_step,
                "expected a finite value >= 0",
            ));
        }
        check_count("samples_per_step", self.samples_per_step, 1)
    }
}

/// Random search over the flat parameters. One [`Method::step`] evaluates
/// `samples_per_step` candidates; the first step also evaluates the start point.
pub struct RandomSearch {
    settings: RandomSearchSettings,
    /// The start point, the centre of normal sampling.
    start: Vec<f64>,
    /// The best point so far, the centre of adaptive sampling.
    best: Vec<f64>,
    best_value: f64,
    step_length: f64,
    failures: usize,
    /// Candidates drawn so far; candidate `k` uses stream `k`.
    drawn: u64,
    started: bool,
}

impl RandomSearch {
    /// Creates the method after checking its settings.
    pub fn new(settings: RandomSearchSettings) -> Result<Self> {
        settings.validate()?;
        Ok(RandomSearch {
            step_length: settings.step,
            settings,
            start: Vec::new(),
            best: Vec::new(),
            best_value: f64::INFINITY,
            failures: 0,
            drawn: 0,
            started: false,
        })
    }

    /// Returns the current step length of adaptive sampling.
    pub fn step_length(&self) -> f64 {
        self.step_length
    }

    /// Writes candidate `index` into `point`.
    fn candidate<T: Scalar>(&self, index: u64, point: &mut [T]) {
        let s = &self.settings;
        let mut rng = Rng::seed_from_u64(s.seed);
        rng.set_stream(index);
        match s.sampling {
            Sampling::Uniform => {
                for p in point.iter_mut() {
                    *p = T::of(s.lower + (s.upper - s.lower) * rng.random::<f64>());
                }
            }
            Sampling::Normal => {
                for (p, c) in point.iter_mut().zip(&self.start) {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    *p = T::of(c + s.std * z);
                }
            }
            Sampling::Adaptive => {
                // Two passes over the same stream: the first finds the direction's norm.
                let norm = (0..point.len())
                    .map(|_| StandardNormal.sample(&mut rng))
                    .map(|z: f64| z * z)
                    .sum::<f64>()
                    .sqrt()
                    .max(f64::MIN_POSITIVE);
                let mut rng = Rng::seed_from_u64(s.seed);
                rng.set_stream(index);
                for (p, c) in point.iter_mut().zip(&self.best) {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    *p = T::of(c + self.step_length * z / norm);
                }
            }
        }
    }

    fn finished(&self) -> bool {
        self.settings.sampling == Sampling::Adaptive && self.step_length < self.settings.min_step
    }
}

impl<T: Scalar> Method<T> for RandomSearch {
    fn name(&self) -> &'static str {
        NAME
    }

    fn batching(&self) -> Batching {
        Batching::FullBatch
    }

    /// Evaluates one batch of candidates and writes the best point so far into `params`. The
    /// report's loss is that point's value.
    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        _context: &StepContext,
    ) -> Result<StepReport> {
        if !self.started {
            self.start = to_f64(params);
            self.best = self.start.clone();
            self.best_value = objective.value(params);
            self.started = true;
        }
        if self.finished() {
            copy_to(params, &self.best);
            return Ok(StepReport {
                loss: self.best_value,
                finished: true,
                ..StepReport::default()
            });
        }
        let mut values = vec![0.0; self.settings.samples_per_step];
        let first = self.drawn;
        let fill = |i: usize, point: &mut [T]| self.candidate(first + i as u64, point);
        evaluate_candidates(objective, params, &mut values, &fill);
        self.drawn += values.len() as u64;

        let improved = match min_index(&values) {
            Some(i) if values[i] < self.best_value => {
                let mut best = vec![0.0; params.len()];
                self.candidate(first + i as u64, &mut best);
                self.best = best;
                self.best_value = values[i];
                true
            }
            _ => false,
        };
        if self.settings.sampling == Sampling::Adaptive {
            if improved {
                self.step_length *= self.settings.expansion;
                self.failures = 0;
            } else {
                self.failures += 1;
                if self.failures >= self.settings.failures_before_contraction {
                    self.step_length *= self.settings.contraction;
                    self.failures = 0;
                }
            }
        }
        copy_to(params, &self.best);
        Ok(StepReport {
            loss: self.best_value,
            finished: self.finished(),
            ..StepReport::default()
        })
    }

    fn save_state(&self) -> MethodState {
        MethodState {
            vectors: vec![
                ("start".into(), self.start.clone()),
                ("best".into(), self.best.clone()),
            ],
            scalars: vec![
                ("best_value".into(), self.best_value),
                ("step_length".into(), self.step_length),
                ("failures".into(), self.failures as f64),
                ("drawn".into(), self.drawn as f64),
                ("started".into(), f64::from(u8::from(self.started))),
            ],
        }
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.start = saved_vector(state, NAME, "start")?.to_vec();
        self.best = saved_vector(state, NAME, "best")?.to_vec();
        self.best_value = saved_scalar(state, NAME, "best_value")?;
        self.step_length = saved_scalar(state, NAME, "step_length")?;
        self.failures = saved_scalar(state, NAME, "failures")? as usize;
        self.drawn = saved_scalar(state, NAME, "drawn")? as u64;
        self.started = saved_scalar(state, NAME, "started")? != 0.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::search::common::FnObjective;
    use crate::methods::search::testing::{run, sphere};

    #[test]
    fn random_search_samples_reduce_loss() {
        for sampling in [Sampling::Uniform, Sampling::Normal, Sampling::Adaptive] {
            let settings = RandomSearchSettings {
                sampling,
                ..RandomSearchSettings::default()
            };
            let mut objective = FnObjective::new(3, &sphere, None);
            let mut method = RandomSearch::new(settings).expect("valid settings");
            let mut params = vec![0.8, -0.9, 0.7];
            let loss = run(&mut method, &mut params, &mut objective, 20);
            assert!(loss < 0.1, "{sampling:?} loss {loss}");
            assert_eq!(
                sphere(&params),
                loss,
                "{sampling:?} params hold the best point"
            );
        }
    }

    #[test]
    fn random_search_adapts_step_length() {
        let settings = RandomSearchSettings {
            sampling: Sampling::Adaptive,
            samples_per_step: 10,
            ..RandomSearchSettings::default()
        };
        let mut objective = FnObjective::new(2, &sphere, None);
        let mut method = RandomSearch::new(settings).expect("valid settings");
        let mut params = vec![30.0, 40.0];
        // Far from the minimum, every batch improves, so the step doubles each time.
        run(&mut method, &mut params, &mut objective, 3);
        assert_eq!(method.step_length(), 0.8);
        // Near the minimum it shrinks until it falls below min_step and the search finishes.
        let loss = run(&mut method, &mut params, &mut objective, 10_000);
        assert!(method.step_length() < 1e-9);
        assert!(loss < 1e-12, "loss {loss}");
    }
}
