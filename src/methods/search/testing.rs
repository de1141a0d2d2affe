//! Problems and helpers shared by the search-method tests: XOR with a 2-2-1 sigmoid network,
//! and the Rastrigin, Rosenbrock and sphere functions.

use super::common::Rng;
use crate::methods::{Method, StepContext};
use crate::nn::{Activation, LayerSpec, Loss, Mode, Network};
use crate::objective::{Counter, NetworkObjective, Objective};
use crate::tensor::Cpu;
use rand::{Rng as _, SeedableRng};
use std::sync::Arc;

/// XOR on a 2-2-1 network with sigmoid hidden and output units and the MSE loss.
pub(super) struct Xor {
    network: Network<f64>,
    inputs: Vec<f64>,
    targets: Vec<f64>,
}

/// A run solves XOR when its MSE is below this, which puts every output within 0.2 of its
/// target and so on the right side of 0.5. The XOR local minima of this network have MSE of
/// 1/8 or more.
pub(super) const XOR_SOLVED_BELOW: f64 = 0.01;

impl Xor {
    pub(super) fn new() -> Xor {
        let specs = [
            LayerSpec::Dense { units: 2 },
            LayerSpec::Activation {
                function: Activation::Sigmoid,
            },
            LayerSpec::Dense { units: 1 },
            LayerSpec::Activation {
                function: Activation::Sigmoid,
            },
        ];
        let network = Network::new(&[2], &specs, Arc::new(Cpu::new(1))).expect("valid network");
        Xor {
            network,
            inputs: vec![0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0],
            targets: vec![0.0, 1.0, 1.0, 0.0],
        }
    }

    pub(super) fn objective(&self) -> NetworkObjective<'_, f64> {
        let counter = Arc::new(Counter::default());
        let (x, t) = (&self.inputs, &self.targets);
        NetworkObjective::new(
            &self.network,
            Loss::MeanSquaredError,
            x,
            t,
            4,
            Mode::Eval,
            0,
            counter,
        )
    }

    /// Nine weights uniform in ±1 from `seed`.
    pub(super) fn start(&self, seed: u64) -> Vec<f64> {
        let mut rng = Rng::seed_from_u64(seed);
        (0..self.network.param_count())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect()
    }
}

pub(super) fn rastrigin(x: &[f64]) -> f64 {
    let tau = 2.0 * std::f64::consts::PI;
    10.0 * x.len() as f64
        + x.iter()
            .map(|v| v * v - 10.0 * (tau * v).cos())
            .sum::<f64>()
}

pub(super) fn rastrigin_gradient(x: &[f64], g: &mut [f64]) {
    let tau = 2.0 * std::f64::consts::PI;
    for (g, v) in g.iter_mut().zip(x) {
        *g = 2.0 * v + 10.0 * tau * (tau * v).sin();
    }
}

pub(super) fn rosenbrock(x: &[f64]) -> f64 {
    x.windows(2)
        .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
        .sum()
}

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
