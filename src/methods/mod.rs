//! Training methods. Every method implements [`Method`]: it steps over the flat parameter
//! vector using only what an [`Objective`] gives (values, gradients, curvature products).

pub mod clip;
pub mod first_order;
pub mod schedule;
pub mod search;
pub mod second_order;
mod spec;

pub use clip::Clip;
pub use first_order::FirstOrderSpec;
pub use schedule::{LrSchedule, Schedule};
pub use search::SearchSpec;
pub use second_order::SecondOrderSpec;
pub use spec::MethodSpec;

use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::Result;

/// How much data a method wants per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batching {
    /// One minibatch per step, many steps per epoch.
    MiniBatch,
    /// The whole training set (or one large batch) per step, one step per epoch.
    FullBatch,
}

/// Step information that the training loop passes to a method.
#[derive(Clone, Copy, Debug)]
pub struct StepContext {
    /// Learning-rate multiplier from the schedule, 1 when no schedule is set.
    pub lr_factor: f64,
    /// Steps taken before this one.
    pub step: u64,
    /// Current epoch, from 0.
    pub epoch: usize,
}

impl Default for StepContext {
    fn default() -> Self {
        StepContext {
            lr_factor: 1.0,
            step: 0,
            epoch: 0,
        }
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepReport {
    /// Loss at the parameters the step started from, on the step's batch.
    pub loss: f64,
    /// Gradient norm before clipping, when the method computed one.
    pub gradient_norm: Option<f64>,
    /// True when the step left the parameters unchanged because of a non-finite value.
    pub skipped: bool,
    /// True when the method has converged or cannot make progress; the loop may stop.
    pub finished: bool,
}

/// Saved internal state of a method (moments, histories), for checkpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MethodState {
    /// Named vectors, such as Adam's first and second moments.
    pub vectors: Vec<(String, Vec<f64>)>,
    /// Named scalars, such as the step count or a damping value.
    pub scalars: Vec<(String, f64)>,
}

/// A training method over a flat parameter vector.
pub trait Method<T: Scalar>: Send {
    /// The method's name as the command line writes it.
    fn name(&self) -> &'static str;

    /// How much data the method wants per step.
    fn batching(&self) -> Batching {
        Batching::MiniBatch
    }

    /// Updates `params` in place using `objective`, which is fixed to this step's batch.
    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        context: &StepContext,
    ) -> Result<StepReport>;

    /// Returns the internal state for a checkpoint.
    fn save_state(&self) -> MethodState {
        MethodState::default()
    }

    /// Restores state saved by [`Method::save_state`].
    fn load_state(&mut self, _state: &MethodState) -> Result<()> {
        Ok(())
    }
}
