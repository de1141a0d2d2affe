//! Tests that every first-order method must pass: training a real network, resuming from
//! saved state, skipping non-finite steps, and the registry.

use super::testing::{Clusters, Fixed, Quadratic};
use super::*;
use crate::methods::{Method, MethodState, StepContext};
use crate::objective::Objective;
use serde::{Deserialize, Serialize};

/// Every method with settings that fit the tests: a learning rate that trains the cluster
/// network in 200 full-batch steps, and a small coupled or decoupled weight decay.
fn specs_for_tests() -> Vec<FirstOrderSpec> {
    let lrs = [
        ("gradient-descent", 0.5),
        ("sgd", 0.5),
        ("momentum", 0.1),
        ("nesterov", 0.1),
        ("adagrad", 0.1),
        ("rmsprop", 0.01),
        ("adam", 0.01),
        ("adamw", 0.01),
    ];
    lrs.iter()
        .map(|&(name, lr)| {
            let mut spec = FirstOrderSpec::default_for(name).unwrap();
            spec.set_learning_rate(lr);
            spec
        })
        .collect()
}

fn with_weight_decay(spec: &FirstOrderSpec, weight_decay: f64) -> FirstOrderSpec {
    let mut spec = spec.clone();
    match &mut spec {
        FirstOrderSpec::GradientDescent(s) | FirstOrderSpec::Sgd(s) => {
            s.weight_decay = weight_decay
        }
        FirstOrderSpec::Momentum(s) | FirstOrderSpec::Nesterov(s) => s.weight_decay = weight_decay,
        FirstOrderSpec::Adagrad(s) => s.weight_decay = weight_decay,
        FirstOrderSpec::Rmsprop(s) => s.weight_decay = weight_decay,
        FirstOrderSpec::Adam(s) => s.weight_decay = weight_decay,
        FirstOrderSpec::Adamw(s) => s.weight_decay = weight_decay,
    }
    spec
}

fn run(
    method: &mut dyn Method<f64>,
    w: &mut [f64],
    objective: &mut dyn Objective<f64>,
    steps: u64,
) {
    for step in 0..steps {
        let context = StepContext {
            step,
            ..StepContext::default()
        };
        let report = method.step(w, objective, &context).unwrap();
        assert!(!report.skipped);
    }
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn state_bits(state: &MethodState) -> Vec<(String, Vec<u64>)> {
    let vectors = state.vectors.iter().map(|(n, v)| (n.clone(), bits(v)));
    let scalars = state
        .scalars
        .iter()
        .map(|(n, v)| (n.clone(), vec![v.to_bits()]));
    vectors.chain(scalars).collect()
}

#[test]
fn every_method_trains_network() {
    let problem = Clusters::new(3);
    for spec in specs_for_tests() {
        let mut method = spec.build::<f64>().unwrap();
        let mut objective = problem.objective();
        let mut w = problem.initial_params();
        let initial = objective.value(&w);
        run(method.as_mut(), &mut w, &mut objective, 200);
        let last = objective.value(&w);
        assert!(
            last <= 0.5 * initial,
            "{}: loss {initial:.4} -> {last:.4}",
            spec.name()
        );
    }
}

#[test]
fn every_method_resumes_identically() {
    for spec in specs_for_tests() {
        let spec = with_weight_decay(&spec, 0.01);
        let mut objective = Quadratic::new(vec![2.0, 0.5, 1.0], vec![1.0, -1.0, 0.0]);
        let start = vec![3.0, 2.0, -1.0];

        let mut straight = spec.build::<f64>().unwrap();
        let mut w_straight = start.clone();
        run(straight.as_mut(), &mut w_straight, &mut objective, 10);

        let mut first = spec.build::<f64>().unwrap();
        let mut w_resumed = start.clone();
        run(first.as_mut(), &mut w_resumed, &mut objective, 5);
        let saved = first.save_state();
        let mut second = spec.build::<f64>().unwrap();
        second.load_state(&saved).unwrap();
        run(second.as_mut(), &mut w_resumed, &mut objective, 5);

        assert_eq!(bits(&w_resumed), bits(&w_straight), "{}", spec.name());
        let (resumed_state, straight_state) = (second.save_state(), straight.save_state());
        assert_eq!(
            state_bits(&resumed_state),
            state_bits(&straight_state),
            "{}",
            spec.name()
        );
    }
}

#[test]
fn non_finite_step_changes_nothing() {
    let cases = [
        ("NaN gradient", 0.5, f64::NAN),
        ("infinite gradient", 0.5, f64::INFINITY),
        ("NaN loss", f64::NAN, 1.0),
        ("infinite loss", f64::INFINITY, 1.0),
    ];
    for spec in specs_for_tests() {
        let spec = with_weight_decay(&spec, 0.01);
        for (case, loss, first_component) in cases {
            let mut method = spec.build::<f64>().unwrap();
            let mut w = vec![3.0, 2.0, -1.0];
            let mut objective = Quadratic::new(vec![2.0, 0.5, 1.0], vec![1.0, -1.0, 0.0]);
            run(method.as_mut(), &mut w, &mut objective, 3);
            let (w_before, state_before) = (bits(&w), state_bits(&method.save_state()));

            let mut diverged = Fixed {
                dim: 3,
                loss,
                first_component,
            };
            let report = method
                .step(&mut w, &mut diverged, &StepContext::default())
                .unwrap();

            let name = spec.name();
            assert!(report.skipped, "{name}, {case}");
            assert_eq!(bits(&w), w_before, "{name}, {case}: parameters changed");
            let state_after = state_bits(&method.save_state());
            assert_eq!(state_after, state_before, "{name}, {case}: state changed");
            assert_eq!(report.loss.to_bits(), loss.to_bits(), "{name}, {case}");
        }
    }
}

#[test]
fn adam_skips_nan_gradient() {
    let mut method = Adam::<f64>::new(AdamSettings::default()).unwrap();
    let mut w = vec![1.0, -2.0];
    let mut objective = Quadratic::new(vec![1.0, 1.0], vec![0.0, 0.0]);
    run(&mut method, &mut w, &mut objective, 2);
    let (w_before, state_before) = (bits(&w), state_bits(&method.save_state()));

    let mut nan = Fixed {
        dim: 2,
        loss: 0.5,
        first_component: f64::NAN,
    };
    let report = method
        .step(&mut w, &mut nan, &StepContext::default())
        .unwrap();
    assert!(report.skipped);
    assert!(report.gradient_norm.unwrap().is_nan());
    assert_eq!(bits(&w), w_before);
    assert_eq!(state_bits(&method.save_state()), state_before);

    // The next finite step continues with step count 3.
    method
        .step(&mut w, &mut objective, &StepContext::default())
        .unwrap();
    assert_eq!(method.save_state().scalars, vec![("step".to_string(), 3.0)]);
}

#[test]
fn load_state_rejects_mismatched_state() {
    let mut method = Adam::<f64>::new(AdamSettings::default()).unwrap();
    let mut objective = Quadratic::new(vec![1.0, 1.0], vec![0.0, 0.0]);
    let mut w = vec![1.0, 1.0];
    run(&mut method, &mut w, &mut objective, 1);
    let saved = method.save_state();

    let mut missing = saved.clone();
    missing.vectors.remove(1);
    let message = method.load_state(&missing).unwrap_err().to_string();
    assert!(message.contains("no `exp_avg_sq`"), "{message}");

    let mut no_step = saved.clone();
    no_step.scalars.clear();
    let message = method.load_state(&no_step).unwrap_err().to_string();
    assert!(message.contains("no `step`"), "{message}");

    let mut uneven = saved.clone();
    uneven.vectors[1].1.push(0.0);
    let message = method.load_state(&uneven).unwrap_err().to_string();
    assert!(message.contains("differ in length"), "{message}");

    let mut fractional = saved.clone();
    fractional.scalars[0].1 = 1.5;
    let message = method.load_state(&fractional).unwrap_err().to_string();
    assert!(message.contains("step count 1.5"), "{message}");

    // State for three parameters loads, then fails at the first step on two parameters.
    let mut fresh = Adam::<f64>::new(AdamSettings::default()).unwrap();
    let mut longer = saved.clone();
    longer.vectors.iter_mut().for_each(|(_, v)| v.push(0.0));
    fresh.load_state(&longer).unwrap();
    let error = fresh
        .step(&mut w, &mut objective, &StepContext::default())
        .unwrap_err();
    assert!(error.to_string().contains("3 values"), "{error}");
}

#[test]
fn registry_names_build_matching_methods() {
    let names = FirstOrderSpec::names();
    assert_eq!(names.len(), 8);
    for &name in names {
        let spec = FirstOrderSpec::default_for(name).unwrap();
        assert_eq!(spec.name(), name);
        assert_eq!(spec.build::<f64>().unwrap().name(), name);
        assert_eq!(spec.build::<f32>().unwrap().name(), name);
    }
    assert_eq!(FirstOrderSpec::default().name(), "adam");
}

#[test]
fn registry_batching_is_full_only_for_gd() {
    use crate::methods::Batching;
    for &name in FirstOrderSpec::names() {
        let method = FirstOrderSpec::default_for(name)
            .unwrap()
            .build::<f64>()
            .unwrap();
        let expected = if name == "gradient-descent" {
            Batching::FullBatch
        } else {
            Batching::MiniBatch
        };
        assert_eq!(method.batching(), expected, "{name}");
    }
}

#[test]
fn unknown_method_lists_valid_names() {
    let message = FirstOrderSpec::default_for("adamax")
        .unwrap_err()
        .to_string();
    assert!(message.contains("invalid method adamax"), "{message}");
    for name in FirstOrderSpec::names() {
        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn learning_rate_round_trips() {
    for &name in FirstOrderSpec::names() {
        let mut spec = FirstOrderSpec::default_for(name).unwrap();
        spec.set_learning_rate(0.123);
        assert_eq!(spec.learning_rate(), 0.123, "{name}");
        spec.set_learning_rate(-1.0);
        let message = spec.build::<f64>().err().unwrap().to_string();
        assert!(message.contains("invalid lr -1"), "{name}: {message}");
        assert!(spec.validate().is_err());
    }
    assert_eq!(
        FirstOrderSpec::default_for("adam").unwrap().learning_rate(),
        1e-3
    );
    assert_eq!(
        FirstOrderSpec::default_for("sgd").unwrap().learning_rate(),
        0.01
    );
}

/// The part of a run's config that contains the method.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Config {
    method: FirstOrderSpec,
}

#[test]
fn toml_method_table_parses() {
    let text = "[method]\nname = \"adam\"\nlr = 0.001\nbeta1 = 0.9\n";
    let config: Config = toml::from_str(text).unwrap();
    assert_eq!(config.method, FirstOrderSpec::Adam(AdamSettings::default()));

    let text = "[method]\nname = \"adamw\"\nlr = 0.01\nclip_norm = 1.0\n";
    let config: Config = toml::from_str(text).unwrap();
    let expected = AdamWSettings {
        lr: 0.01,
        clip_norm: Some(1.0),
        ..AdamWSettings::default()
    };
    assert_eq!(config.method, FirstOrderSpec::Adamw(expected));

    let config: Config = toml::from_str("[method]\nname = \"gradient-descent\"\n").unwrap();
    assert_eq!(
        config.method,
        FirstOrderSpec::GradientDescent(GdSettings::default())
    );
}

#[test]
fn toml_round_trip_keeps_every_method() {
    for spec in specs_for_tests() {
        let spec = with_weight_decay(&spec, 0.25);
        let config = Config { method: spec };
        let text = toml::to_string(&config).unwrap();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, config, "{text}");
    }
    let config = Config {
        method: FirstOrderSpec::Momentum(MomentumSettings {
            clip_norm: Some(2.0),
            clip_value: Some(0.5),
            ..MomentumSettings::default()
        }),
    };
    let text = toml::to_string(&config).unwrap();
    assert!(text.contains("name = \"momentum\""), "{text}");
    assert_eq!(toml::from_str::<Config>(&text).unwrap(), config);
}

#[test]
fn toml_rejects_unknown_setting_and_name() {
    let misspelt = toml::from_str::<Config>("[method]\nname = \"adam\"\nbeta_1 = 0.9\n");
    let message = misspelt.unwrap_err().to_string();
    assert!(message.contains("beta_1"), "{message}");

    // A setting of another method is unknown here too.
    let foreign = toml::from_str::<Config>("[method]\nname = \"sgd\"\nmomentum = 0.9\n");
    assert!(foreign.is_err());

    let unknown = toml::from_str::<Config>("[method]\nname = \"adamax\"\n");
    assert!(unknown.unwrap_err().to_string().contains("adamax"));
}
