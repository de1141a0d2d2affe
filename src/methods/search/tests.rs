//! Tests across the search methods: the registry, seeds, thread counts and saved state, on
//! XOR with a 2-2-1 sigmoid network.

use super::testing::{run, sphere, Xor};
use super::*;
use crate::methods::{MethodState, StepContext};
use crate::objective::Objective;

#[test]
fn argmin_methods_reduce_xor_loss() {
    let xor = Xor::new();
    let start = xor.start(4);
    let initial = xor.objective().value(&start);
    for name in ["nelder-mead", "simulated-annealing", "particle-swarm"] {
        let mut method = SearchSpec::default_for(name)
            .and_then(|spec| spec.build::<f64>())
            .expect("valid defaults");
        let mut objective = xor.objective();
        let mut params = start.clone();
        let loss = run(method.as_mut(), &mut params, &mut objective, 30);
        assert!(loss < initial, "{name}: loss {loss} from {initial}");
        assert_eq!(
            xor.objective().value(&params),
            loss,
            "{name}: params hold the best point"
        );

        let mut method = SearchSpec::default_for(name)
            .and_then(|spec| spec.build::<f64>())
            .expect("valid defaults");
        let mut objective = FnObjective::new(4, &sphere, None);
        let mut params = vec![0.5, -0.4, 0.3, 0.6];
        let initial = sphere(&params);
        let loss = run(method.as_mut(), &mut params, &mut objective, 30);
        assert!(
            loss < 0.1 * initial,
            "{name}: sphere loss {loss} from {initial}"
        );
    }
}

/// Runs `steps` steps of the method `spec` builds on XOR and returns the parameters and the
/// reports' losses.
fn xor_trajectory(spec: &SearchSpec, steps: usize) -> (Vec<f64>, Vec<f64>) {
    let xor = Xor::new();
    let mut method = spec.build::<f64>().expect("valid settings");
    let mut objective = xor.objective();
    let mut params = xor.start(1);
    let mut losses = Vec::new();
    for step in 0..steps {
        let context = StepContext {
            step: step as u64,
            ..StepContext::default()
        };
        let report = method
            .step(&mut params, &mut objective, &context)
            .expect("step succeeds");
        losses.push(report.loss);
    }
    (params, losses)
}

/// One spec of each method with a seed, cheap enough for a few steps.
fn seeded_specs(seed: u64) -> Vec<SearchSpec> {
    vec![
        SearchSpec::RandomSearch(RandomSearchSettings {
            sampling: Sampling::Adaptive,
            seed,
            ..Default::default()
        }),
        SearchSpec::RandomSearch(RandomSearchSettings {
            seed,
            ..Default::default()
        }),
        SearchSpec::GridSearch(GridSearchSettings {
            points: 3,
            evaluations_per_step: 5000,
            ..Default::default()
        }),
        SearchSpec::BasinHopping(BasinHoppingSettings {
            seed,
            ..Default::default()
        }),
        SearchSpec::CmaEs(CmaEsSettings {
            seed,
            ..Default::default()
        }),
        SearchSpec::NelderMead(NelderMeadSettings::default()),
        SearchSpec::SimulatedAnnealing(SimulatedAnnealingSettings {
            seed,
            ..Default::default()
        }),
        SearchSpec::ParticleSwarm(ParticleSwarmSettings {
            seed,
            ..Default::default()
        }),
    ]
}

#[test]
fn every_method_reproducible_from_seed() {
    for (spec, other) in seeded_specs(7).iter().zip(seeded_specs(8)) {
        let (params, losses) = xor_trajectory(spec, 5);
        let (again, again_losses) = xor_trajectory(spec, 5);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&params), bits(&again), "{}", spec.name());
        assert_eq!(bits(&losses), bits(&again_losses), "{}", spec.name());
        let seeded = !matches!(spec, SearchSpec::GridSearch(_) | SearchSpec::NelderMead(_));
        if seeded {
            let (different, _) = xor_trajectory(&other, 5);
            assert_ne!(
                bits(&params),
                bits(&different),
                "{} ignores its seed",
                spec.name()
            );
        }
    }
}

#[test]
fn results_independent_of_thread_count() {
    for spec in seeded_specs(7) {
        let on_threads = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool")
                .install(|| xor_trajectory(&spec, 3))
        };
        assert_eq!(on_threads(1), on_threads(3), "{}", spec.name());
    }
}

/// Runs `steps` steps, then checks that a fresh method loading the saved state continues
/// exactly as the original does.
fn check_resume(spec: &SearchSpec, steps: usize) {
    let xor = Xor::new();
    let mut objective = xor.objective();
    let mut method = spec.build::<f64>().expect("valid settings");
    let mut params = xor.start(2);
    let context = StepContext::default();
    for _ in 0..steps {
        method
            .step(&mut params, &mut objective, &context)
            .expect("step succeeds");
    }
    let state: MethodState = method.save_state();
    let mut resumed = spec.build::<f64>().expect("valid settings");
    resumed.load_state(&state).expect("loads");
    let mut resumed_params = params.clone();
    for _ in 0..steps {
        let a = method
            .step(&mut params, &mut objective, &context)
            .expect("step");
        let b = resumed
            .step(&mut resumed_params, &mut objective, &context)
            .expect("step");
        assert_eq!(a, b, "{}", spec.name());
        assert_eq!(params, resumed_params, "{}", spec.name());
    }
}

#[test]
fn saved_state_resumes_run() {
    for spec in seeded_specs(3).iter().take(5) {
        check_resume(spec, 3);
    }
}

#[test]
fn load_state_rejects_foreign_state() {
    let mut method = SearchSpec::default_for("cma-es")
        .and_then(|s| s.build::<f64>())
        .expect("valid defaults");
    let error = method
        .load_state(&MethodState::default())
        .expect_err("missing entries");
    assert!(error.to_string().contains("no entry rng"), "{error}");
}

#[test]
fn registry_names_round_trip() {
    for &name in SearchSpec::names() {
        let spec = SearchSpec::default_for(name).expect("known name");
        assert_eq!(spec.name(), name);
        spec.validate().expect("defaults are valid");
        let method = spec.build::<f32>().expect("builds for f32");
        assert_eq!(method.name(), name);
        assert_eq!(method.batching(), crate::methods::Batching::FullBatch);
    }
    let error = SearchSpec::default_for("hill-climbing").expect_err("unknown");
    assert!(error.to_string().contains("cma-es"), "{error}");
}

#[test]
fn registry_toml_round_trip() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Config {
        method: SearchSpec,
    }
    let mut specs: Vec<SearchSpec> = SearchSpec::names()
        .iter()
        .map(|n| SearchSpec::default_for(n).expect("known name"))
        .collect();
    specs.extend(seeded_specs(11));
    specs.push(SearchSpec::GridSearch(GridSearchSettings {
        ranges: Some(vec![[-2.0, 2.0], [0.0, 1.0]]),
        indices: Some(vec![4, 1]),
        polish: Some(LocalMethod::Lbfgs(LbfgsSettings {
            memory: 5,
            ..Default::default()
        })),
        ..Default::default()
    }));
    specs.push(SearchSpec::BasinHopping(BasinHoppingSettings {
        niter_success: Some(20),
        bounds: Some([-3.0, 3.0]),
        ..Default::default()
    }));
    for method in specs {
        let config = Config { method };
        let text = toml::to_string(&config).expect("serializes");
        let back: Config = toml::from_str(&text).expect("deserializes");
        assert_eq!(back, config, "{text}");
    }

    let text =
        "[method]\nname = \"basin-hopping\"\nniter = 7\nlocal = { name = \"lbfgs\", memory = 3 }\n";
    let config: Config = toml::from_str(text).expect("parses");
    let SearchSpec::BasinHopping(settings) = config.method else {
        panic!("parsed {:?}", config.method);
    };
    assert_eq!(settings.niter, 7);
    assert_eq!(settings.t, 1.0);
    assert_eq!(
        settings.local,
        LocalMethod::Lbfgs(LbfgsSettings {
            memory: 3,
            ..Default::default()
        })
    );
    let unknown = toml::from_str::<Config>("[method]\nname = \"cma-es\"\nsigma0 = 1.0\n");
    assert!(unknown.is_err(), "unknown field accepted");
}

#[test]
fn invalid_settings_name_the_value() {
    let cases = [
        (
            SearchSpec::BasinHopping(BasinHoppingSettings {
                stepsize: -1.0,
                ..Default::default()
            }),
            "invalid stepsize -1",
        ),
        (
            SearchSpec::CmaEs(CmaEsSettings {
                population: Some(1),
                ..Default::default()
            }),
            "invalid population 1",
        ),
        (
            SearchSpec::GridSearch(GridSearchSettings {
                points: 1,
                ..Default::default()
            }),
            "invalid points 1",
        ),
        (
            SearchSpec::RandomSearch(RandomSearchSettings {
                lower: 1.0,
                upper: -1.0,
                ..Default::default()
            }),
            "invalid lower/upper [1, -1]",
        ),
        (
            SearchSpec::NelderMead(NelderMeadSettings {
                rho: 0.7,
                ..Default::default()
            }),
            "invalid rho 0.7",
        ),
        (
            SearchSpec::SimulatedAnnealing(SimulatedAnnealingSettings {
                initial_temperature: 0.0,
                ..Default::default()
            }),
            "invalid initial_temperature 0",
        ),
        (
            SearchSpec::ParticleSwarm(ParticleSwarmSettings {
                particles: 1,
                ..Default::default()
            }),
            "invalid particles 1",
        ),
    ];
    for (spec, expected) in cases {
        let error = spec.validate().expect_err("invalid").to_string();
        assert!(error.starts_with(expected), "{error}");
    }
}
