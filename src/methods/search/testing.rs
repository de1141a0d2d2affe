//! Problems and helpers shared by the search-method tests.

use crate::methods::{Method, StepContext};
use crate::objective::Objective;

pub(super) fn sphere(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum()
}

/// Runs `method` for `steps` steps or until it finishes and returns the last loss.
pub(super) fn run(
    method: &mut dyn Method<f64>,
    params: &mut [f64],
    objective: &mut dyn Objective<f64>,
    steps: usize,
) -> f64 {
    let mut loss = f64::NAN;
    for step in 0..steps {
        let context = StepContext {
            step: step as u64,
            ..StepContext::default()
        };
        let report = method
            .step(params, objective, &context)
            .expect("step succeeds");
        loss = report.loss;
        if report.finished {
            break;
        }
    }
    loss
}
