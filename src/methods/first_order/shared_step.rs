//! The part of a step that every first-order method shares: compute the gradient, check that
//! it is finite, clip it, add coupled weight decay, then hand it to the method's update rule.

use super::state::{flush_denormals_once, State};
use crate::methods::clip::Clip;
use crate::methods::{MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::norm;
use crate::tensor::Scalar;
use crate::{Error, Result};

/// The inputs of an update rule for one step.
pub(super) struct Update<'a, T, const N: usize> {
    /// Parameters to update in place.
    pub params: &'a mut [T],
    /// Gradient after clipping and coupled weight decay.
    pub grad: &'a [T],
    /// The method's state vectors, each as long as `params`.
    pub state: [&'a mut [T]; N],
    /// Learning rate for this step, after the schedule's factor.
    pub lr: f64,
    /// Number of this step, from 1. Skipped steps do not count.
    pub step: u64,
}

/// Gradient buffer, clipping, coupled weight decay and state of a first-order method.
///
/// The buffer and the state vectors are allocated at the first step, from the objective's
/// dimension. Later steps allocate nothing.
pub(super) struct SharedStep<T, const N: usize> {
    grad: Vec<T>,
    clip: Clip,
    coupled_decay: f64,
    state: State<T, N>,
}

impl<T: Scalar, const N: usize> SharedStep<T, N> {
    /// Creates the shared part of a method. `coupled_decay` is the L2 coefficient added to
    /// the gradient (`g += coupled_decay · w`), 0 for none.
    pub fn new(
        method: &'static str,
        names: [&'static str; N],
        clip: Clip,
        coupled_decay: f64,
    ) -> Self {
        SharedStep {
            grad: Vec::new(),
            clip,
            coupled_decay,
            state: State::new(method, names),
        }
    }

    /// Runs one step: computes and prepares the gradient, then calls `update` unless the loss
    /// or the gradient norm is NaN or infinite. A skipped step leaves `params` and the state
    /// unchanged and sets [`StepReport::skipped`].
    pub fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        context: &StepContext,
        base_lr: f64,
        update: impl FnOnce(Update<'_, T, N>),
    ) -> Result<StepReport> {
        let lr = scaled_lr(base_lr, context)?;
        let dim = objective.dim();
        if params.len() != dim {
            return Err(Error::Shape(format!(
                "{} parameters given to an objective of {dim} parameters",
                params.len()
            )));
        }
        flush_denormals_once();
        self.grad.resize(dim, T::zero());
        self.state.prepare(dim)?;

        // Processes that split the update each update their range of the parameters from
        // their range of the gradient. Norm clipping does not split, because the norm added
        // up from the ranges would differ in the last bits from one process's. Every process
        // takes the same branch, even with an empty or whole range, because its calls are
        // collectives.
        let split_range = objective
            .update_range()
            .filter(|_| self.clip.max_norm.is_none());
        let split = split_range.is_some();
        let range = split_range.unwrap_or(0..dim);
        let (loss, norm) = if split {
            let loss = objective.gradient_in_range(params, &mut self.grad);
            let part = &mut self.grad[range.clone()];
            let squares = norm(part).powi(2);
            let norm = objective.sum_over_ranges(squares).sqrt();
            (loss, self.clip.apply_with_norm(part, norm))
        } else {
            let loss = objective.gradient(params, &mut self.grad);
            (loss, self.clip.apply(&mut self.grad))
        };
        let mut report = StepReport {
            loss,
            gradient_norm: Some(norm),
            skipped: false,
            finished: false,
        };
        if !loss.is_finite() || !norm.is_finite() {
            report.skipped = true;
            return Ok(report);
        }
        let grad = &mut self.grad[range.clone()];
        if self.coupled_decay != 0.0 {
            let decay = T::of(self.coupled_decay);
            for (g, &w) in grad.iter_mut().zip(&params[range.clone()]) {
                *g += decay * w;
            }
        }

        self.state.steps += 1;
        update(Update {
            params: &mut params[range.clone()],
            grad,
            state: self.state.vectors.each_mut().map(|v| &mut v[range.clone()]),
            lr,
            step: self.state.steps,
        });
        if split {
            objective.share_updates(params);
        }
        Ok(report)
    }

    /// Returns the state vectors and step count for a checkpoint.
    pub fn save_state(&self) -> MethodState {
        self.state.save()
    }

    /// Restores state saved by [`SharedStep::save_state`].
    pub fn load_state(&mut self, saved: &MethodState) -> Result<()> {
        self.state.load(saved)
    }
}

/// Returns `lr` times the schedule's factor, and rejects a factor that is negative or not
/// finite.
fn scaled_lr(lr: f64, context: &StepContext) -> Result<f64> {
    let factor = context.lr_factor;
    if factor.is_finite() && factor >= 0.0 {
        Ok(lr * factor)
    } else {
        Err(Error::setting(
            "lr_factor",
            factor,
            "expected a finite learning-rate multiplier >= 0 from the schedule",
        ))
    }
}
