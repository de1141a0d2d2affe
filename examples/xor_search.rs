//! Counts how many of 50 seeded starts each method solves XOR from, on a 2-2-1 network with
//! sigmoid hidden and output units and the MSE loss.
//!
//! A run solves XOR when its MSE falls below 0.01, which puts every output within 0.2 of its
//! target. Starts are nine weights uniform in ±1 from ChaCha8 seeds 0..50.
//!
//! Run with `cargo run --release --example xor_search`.

use gradus::methods::search::{
    ArgminLbfgs, BasinHopping, BasinHoppingSettings, LbfgsSettings, LocalMinimizer, RandomSearch,
    RandomSearchSettings,
};
use gradus::methods::{Method, StepContext};
use gradus::nn::{Activation, LayerSpec, Loss, Mode, Network};
use gradus::objective::{Counter, NetworkObjective};
use gradus::tensor::Cpu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

const SEEDS: u64 = 50;
const SOLVED_BELOW: f64 = 0.01;
const RANDOM_SAMPLES: usize = 10_000;

fn main() -> gradus::Result<()> {
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
    let network = Network::<f64>::new(&[2], &specs, Arc::new(Cpu::new(1)))?;
    let inputs = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    let targets = [0.0, 1.0, 1.0, 0.0];
    let objective = || {
        let counter = Arc::new(Counter::default());
        let loss = Loss::MeanSquaredError;
        NetworkObjective::new(&network, loss, &inputs, &targets, 4, Mode::Eval, 0, counter)
    };
    let start = |seed: u64| -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..network.param_count())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect()
    };

    let mut lbfgs_solved = 0;
    let mut lbfgs = ArgminLbfgs::new(LbfgsSettings::default())?;
    for seed in 0..SEEDS {
        let result = lbfgs.minimize(&mut objective(), &start(seed))?;
        lbfgs_solved += usize::from(result.success && result.value < SOLVED_BELOW);
    }

    let mut basin_solved = 0;
    let mut basin_evaluations = 0;
    for seed in 0..SEEDS {
        // Steps of up to ±max(1, |w|) can flip the sign of a saturated weight.
        let settings = BasinHoppingSettings {
            niter: 100,
            stepsize: 1.0,
            scale_steps_by_magnitude: true,
            seed,
            ..BasinHoppingSettings::default()
        };
        let mut method = BasinHopping::<f64>::new(settings)?
            .with_callback(Box::new(|_, f, accepted| accepted && f < SOLVED_BELOW));
        let result = method.minimize(&mut objective(), &start(seed))?;
        basin_solved += usize::from(result.fun < SOLVED_BELOW);
        basin_evaluations += result.nfev;
    }

    println!("XOR 2-2-1 sigmoid network, MSE < {SOLVED_BELOW}, {SEEDS} seeds");
    println!("{:<46} {:>7}", "method", "solved");
    println!(
        "{:<46} {:>7}",
        "L-BFGS alone (argmin, default settings)", lbfgs_solved
    );
    println!(
        "{:<46} {:>7}   ({} forward-sample evaluations per run on average)",
        "basin hopping (niter 100, scaled stepsize 1)",
        basin_solved,
        basin_evaluations / SEEDS
    );
    for width in [1.0, 5.0, 10.0] {
        let mut solved = 0;
        for seed in 0..SEEDS {
            let settings = RandomSearchSettings {
                lower: -width,
                upper: width,
                samples_per_step: RANDOM_SAMPLES,
                seed,
                ..RandomSearchSettings::default()
            };
            let mut method = RandomSearch::new(settings)?;
            let mut params = start(seed);
            let report = method.step(&mut params, &mut objective(), &StepContext::default())?;
            solved += usize::from(report.loss < SOLVED_BELOW);
        }
        let name = format!("random search, {RANDOM_SAMPLES} uniform samples in ±{width}");
        println!("{name:<46} {solved:>7}");
    }
    Ok(())
}
