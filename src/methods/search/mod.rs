//! Derivative-free and global search methods over the flat parameters.
//!
//! Every method implements [`crate::methods::Method`] with
//! [`crate::methods::Batching::FullBatch`]. One step is one generation or iteration (or a
//! configured number of them, or of evaluations); the first step also evaluates the start
//! point. After every step `params` contains the best point found so far, and the report's
//! `loss` is that point's value, not the value at the point the step started from.
//! Evaluations are counted by the objective. Every random choice comes from a ChaCha8
//! generator seeded from the settings, so the same seed gives bitwise the same run for any
//! thread count.

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
