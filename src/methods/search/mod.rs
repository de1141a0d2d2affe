//! Derivative-free and global search methods: random search, grid search, basin hopping,
//! CMA-ES, and argmin's Nelder-Mead, simulated annealing and particle swarm.
//!
//! Every method implements [`Method`] with [`crate::methods::Batching::FullBatch`]. One step
//! is one generation or iteration (or a configured number of them, or of evaluations); the
//! first step also evaluates the start point. After every step `params` contains the best point
//! found so far, and the report's `loss` is that point's value, not the value at the point
//! the step started from. Evaluations are counted by the objective. Every random choice comes
//! from a ChaCha8 generator seeded from the settings, so the same seed gives bitwise the same
//! run for any thread count.

mod annealing;
mod argmin_bridge;
mod basin_hopping;
mod cma_es;
mod common;
mod eigen;
mod grid;
mod local;
mod nelder_mead;
mod particle_swarm;
mod random;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use annealing::{Schedule, SimulatedAnnealing, SimulatedAnnealingSettings};
pub use basin_hopping::{
    basin_hopping, AcceptDecision, AcceptTest, BasinHopping, BasinHoppingResult,
    BasinHoppingSettings, Callback,
};
pub use cma_es::{CmaEs, CmaEsSettings, CmaVariant, AUTO_SEPARABLE_ABOVE};
pub use common::{FnObjective, GradientFn};
pub use grid::{GridSearch, GridSearchSettings};
pub use local::{
    ArgminLbfgs, LbfgsSettings, LocalMethod, LocalMinimizer, LocalResult, MethodFactory,
    MethodMinimizer,
};
pub use nelder_mead::{NelderMead, NelderMeadSettings};
pub use particle_swarm::{ParticleSwarm, ParticleSwarmSettings};
pub use random::{RandomSearch, RandomSearchSettings, Sampling};

use crate::methods::Method;
use crate::tensor::Scalar;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A search method and its settings, as a config file or the command line names it.
///
/// In TOML the method's name sits beside its settings, and omitted settings take their
/// defaults:
///
/// ```toml
/// [method]
/// name = "basin-hopping"
/// niter = 200
/// scale_steps_by_magnitude = true
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum SearchSpec {
    /// Random search from a fixed or adaptive distribution.
    RandomSearch(RandomSearchSettings),
    /// Uniform grid search.
    GridSearch(GridSearchSettings),
    /// Basin hopping with a local minimiser.
    BasinHopping(BasinHoppingSettings),
    /// CMA-ES with IPOP restarts.
    CmaEs(CmaEsSettings),
    /// The Nelder-Mead simplex method.
    NelderMead(NelderMeadSettings),
    /// Simulated annealing.
    SimulatedAnnealing(SimulatedAnnealingSettings),
    /// Particle swarm optimisation.
    ParticleSwarm(ParticleSwarmSettings),
}

/// Method names in the order of [`SearchSpec`]'s variants.
const NAMES: [&str; 7] = [
    "random-search",
    "grid-search",
    "basin-hopping",
    "cma-es",
    "nelder-mead",
    "simulated-annealing",
    "particle-swarm",
];

impl SearchSpec {
    /// Names of every search method, as `name` in a config and on the command line.
    pub fn names() -> &'static [&'static str] {
        &NAMES
    }

    /// Returns the method `name` with default settings. Fails on an unknown name and lists
    /// the valid ones.
    pub fn default_for(name: &str) -> Result<Self> {
        Ok(match name {
            "random-search" => SearchSpec::RandomSearch(Default::default()),
            "grid-search" => SearchSpec::GridSearch(Default::default()),
            "basin-hopping" => SearchSpec::BasinHopping(Default::default()),
            "cma-es" => SearchSpec::CmaEs(Default::default()),
            "nelder-mead" => SearchSpec::NelderMead(Default::default()),
            "simulated-annealing" => SearchSpec::SimulatedAnnealing(Default::default()),
            "particle-swarm" => SearchSpec::ParticleSwarm(Default::default()),
            _ => {
                let expected = format!("expected one of {}", NAMES.join(", "));
                return Err(Error::setting("method", name, &expected));
            }
        })
    }

    /// Returns the method's name, as in [`SearchSpec::names`].
    pub fn name(&self) -> &'static str {
        match self {
            SearchSpec::RandomSearch(_) => NAMES[0],
            SearchSpec::GridSearch(_) => NAMES[1],
            SearchSpec::BasinHopping(_) => NAMES[2],
            SearchSpec::CmaEs(_) => NAMES[3],
            SearchSpec::NelderMead(_) => NAMES[4],
            SearchSpec::SimulatedAnnealing(_) => NAMES[5],
            SearchSpec::ParticleSwarm(_) => NAMES[6],
        }
    }

    /// Builds the method after checking its settings. The error names the first invalid
    /// setting and its valid range.
    pub fn build<T: Scalar>(&self) -> Result<Box<dyn Method<T>>> {
        Ok(match self {
            SearchSpec::RandomSearch(s) => Box::new(RandomSearch::new(s.clone())?),
            SearchSpec::GridSearch(s) => Box::new(GridSearch::<T>::new(s.clone())?),
            SearchSpec::BasinHopping(s) => Box::new(BasinHopping::<T>::new(s.clone())?),
            SearchSpec::CmaEs(s) => Box::new(CmaEs::new(s.clone())?),
            SearchSpec::NelderMead(s) => Box::new(NelderMead::new(s.clone())?),
            SearchSpec::SimulatedAnnealing(s) => Box::new(SimulatedAnnealing::new(s.clone())?),
            SearchSpec::ParticleSwarm(s) => Box::new(ParticleSwarm::new(s.clone())?),
        })
    }

    /// Checks the settings without building the method.
    pub fn validate(&self) -> Result<()> {
        self.build::<f64>().map(|_| ())
    }
}
