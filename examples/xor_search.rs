//! Counts how many of 50 seeded starts each method solves XOR from, on a 2-2-1 network with
//! sigmoid hidden and output units and the MSE loss.
//!
//! A run solves XOR when its MSE falls below 0.01, which puts every output within 0.2 of its
//! target. Starts are nine weights uniform in ±1 from ChaCha8 seeds 0..50.
//!
//! Run with `cargo run --release --example xor_search`.

use gradus::methods::search::{
    BasinHopping, BasinHoppingSettings, CmaEsSettings, LbfgsSettings, LocalMethod,
    NelderMeadSettings, ParticleSwarmSettings, RandomSearch, RandomSearchSettings, SearchSpec,
    SimulatedAnnealingSettings,
};
use gradus::methods::{Method, StepContext};
use gradus::nn::{Activation, LayerSpec, Loss, Mode, Network};
use gradus::objective::{Counter, NetworkObjective};
use gradus::tensor::Cpu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// Builds a method's settings for one seed.
type SpecForSeed = fn(u64) -> SearchSpec;

const SEEDS: u64 = 50;
const SOLVED_BELOW: f64 = 0.01;
const RANDOM_SAMPLES: usize = 10_000;
/// Steps each remaining search method may take, as 200 training epochs would.
const SEARCH_STEPS: usize = 200;

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

    println!("XOR 2-2-1 sigmoid network, MSE < {SOLVED_BELOW}, {SEEDS} seeds");
    println!("{:<48} {:>7}", "method", "solved");
    let locals = [
        ("gradus", LocalMethod::Lbfgs(LbfgsSettings::default())),
        ("argmin", LocalMethod::ArgminLbfgs(LbfgsSettings::default())),
    ];
    for (name, local) in &locals {
        let mut solved = 0;
        let mut lbfgs = local.build::<f64>()?;
        for seed in 0..SEEDS {
            let result = lbfgs.minimize(&mut objective(), &start(seed))?;
            solved += usize::from(result.success && result.value < SOLVED_BELOW);
        }
        let label = format!("L-BFGS alone ({name}, default settings)");
        println!("{label:<48} {solved:>7}");
    }
    for (name, local) in &locals {
        let mut solved = 0;
        let mut evaluations = 0;
        for seed in 0..SEEDS {
            // Steps of up to ±max(1, |w|) can flip the sign of a saturated weight.
            let settings = BasinHoppingSettings {
                niter: 100,
                stepsize: 1.0,
                scale_steps_by_magnitude: true,
                seed,
                local: local.clone(),
                ..BasinHoppingSettings::default()
            };
            let mut method = BasinHopping::<f64>::new(settings)?
                .with_callback(Box::new(|_, f, accepted| accepted && f < SOLVED_BELOW));
            let result = method.minimize(&mut objective(), &start(seed))?;
            solved += usize::from(result.fun < SOLVED_BELOW);
            evaluations += result.nfev;
        }
        let label = format!("basin hopping ({name} L-BFGS, niter 100)");
        println!(
            "{label:<48} {solved:>7}   ({} forward-sample evaluations per run on average)",
            evaluations / SEEDS
        );
    }
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
        println!("{name:<48} {solved:>7}");
    }

    // The other search methods with default settings apart from the seed, stopped after
    // SEARCH_STEPS steps, when they finish, or once they solve XOR.
    let searches: [(&str, SpecForSeed); 4] = [
        ("CMA-ES", |seed| {
            SearchSpec::CmaEs(CmaEsSettings {
                seed,
                ..CmaEsSettings::default()
            })
        }),
        ("Nelder-Mead", |_| {
            SearchSpec::NelderMead(NelderMeadSettings::default())
        }),
        ("simulated annealing", |seed| {
            SearchSpec::SimulatedAnnealing(SimulatedAnnealingSettings {
                seed,
                ..SimulatedAnnealingSettings::default()
            })
        }),
        ("particle swarm", |seed| {
            SearchSpec::ParticleSwarm(ParticleSwarmSettings {
                seed,
                ..ParticleSwarmSettings::default()
            })
        }),
    ];
    for (name, spec) in searches {
        let mut solved = 0;
        let mut evaluations = 0;
        for seed in 0..SEEDS {
            let mut method = spec(seed).build::<f64>()?;
            let mut params = start(seed);
            let mut objective = objective();
            for step in 0..SEARCH_STEPS {
                let context = StepContext {
                    step: step as u64,
                    ..StepContext::default()
                };
                let report = method.step(&mut params, &mut objective, &context)?;
                if report.loss < SOLVED_BELOW {
                    solved += 1;
                    break;
                }
                if report.finished {
                    break;
                }
            }
            evaluations += objective.counter().units();
        }
        let label = format!("{name} (defaults, up to {SEARCH_STEPS} steps)");
        println!(
            "{label:<48} {solved:>7}   ({} forward-sample evaluations per run on average)",
            evaluations / SEEDS
        );
    }
    Ok(())
}
