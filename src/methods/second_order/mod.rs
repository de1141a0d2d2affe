//! Second-order and quasi-Newton methods: L-BFGS, nonlinear conjugate gradients,
//! Levenberg-Marquardt and Hessian-free optimisation. All of them take full-batch steps.
//!
//! [`SecondOrderSpec`] names a method with its settings for the command line and the TOML
//! config, and builds it for any scalar type.

pub mod lbfgs;
pub mod levenberg_marquardt;
pub mod line_search;
pub mod nonlinear_cg;

pub use lbfgs::{Lbfgs, LbfgsSettings};
pub use levenberg_marquardt::{LevenbergMarquardt, LmSettings};
pub use line_search::{LineSearch, LineSearchError, LineSearchFailure, StrongWolfe, Trial};
pub use nonlinear_cg::{NcgSettings, NcgVariant, NonlinearCg};

use crate::methods::MethodState;
use crate::objective::Objective;
use crate::tensor::Scalar;

#[cfg(test)]
mod test_functions;

/// The value and gradient at the parameters a step starts from, kept from the last step.
#[derive(Debug, Default)]
struct StartPoint<T> {
    params: Vec<T>,
    value: f64,
    gradient: Vec<T>,
    valid: bool,
}

impl<T: Scalar> StartPoint<T> {
    /// Writes `∇f(params)` into `self.gradient` and returns `f(params)`.
    ///
    /// When `params` are those the last step ended at and the objective returns bitwise the
    /// same value there, the stored gradient is reused at the cost of one value evaluation.
    /// That happens when the training loop passes the same full batch again. A new batch or
    /// new dropout masks change the value, so the gradient is then recomputed.
    fn evaluate(&mut self, objective: &mut dyn Objective<T>, params: &[T]) -> f64 {
        if self.valid && self.params == params {
            let value = objective.value(params);
            if value.to_bits() == self.value.to_bits() {
                return value;
            }
        }
        self.gradient.resize(params.len(), T::zero());
        self.value = objective.gradient(params, &mut self.gradient);
        self.params.clear();
        self.params.extend_from_slice(params);
        self.valid = true;
        self.value
    }

    /// Records that `self.gradient` is the gradient at `params`, where the value is `value`.
    fn remember(&mut self, params: &[T], value: f64) {
        self.params.clear();
        self.params.extend_from_slice(params);
        self.value = value;
        self.valid = self.gradient.len() == params.len();
    }

    fn forget(&mut self) {
        self.valid = false;
    }
}

/// Returns the vectors named `{prefix}0`, `{prefix}1`, ... from `state`, up to the first
/// missing index.
fn restore_vectors<T: Scalar>(state: &MethodState, prefix: &str) -> Vec<Vec<T>> {
    let mut vectors = Vec::new();
    loop {
        let name = format!("{prefix}{}", vectors.len());
        match state.vectors.iter().find(|(n, _)| *n == name) {
            Some((_, v)) => vectors.push(v.iter().map(|&x| T::of(x)).collect()),
            None => return vectors,
        }
    }
}

/// Returns the vector named `name` from `state`.
fn restore_vector<T: Scalar>(state: &MethodState, name: &str) -> Option<Vec<T>> {
    state
        .vectors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.iter().map(|&x| T::of(x)).collect())
}

/// Returns the scalar named `name` from `state`.
fn restore_scalar(state: &MethodState, name: &str) -> Option<f64> {
    state
        .scalars
        .iter()
        .find(|(n, _)| n == name)
        .map(|&(_, v)| v)
}
