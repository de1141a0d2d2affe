//! Properties that every solver shares: the `b = 0` shortcut, callbacks, iteration limits,
//! breakdown on NaN, and the method names.

use super::testing::{self, NanAfter, Problem};
use super::*;
use crate::tensor;

/// Returns a system that `method` is meant for, which is symmetric for CG and MINRES and
/// nonsymmetric otherwise.
fn problem_for(method: KrylovMethod) -> Problem {
    match method {
        KrylovMethod::Cg | KrylovMethod::Minres => testing::random_spd(25, 2),
        _ => testing::convection_diffusion(25, 0.3),
    }
}

fn solve(
    method: KrylovMethod,
    a: &mut dyn LinearOperator<f64>,
    b: &[f64],
    settings: &Settings<f64>,
    callback: Option<Callback<'_, f64>>,
) -> (SolveInfo, Vec<f64>) {
    let mut x = vec![0.0; b.len()];
    let info = method.solve(a, b, &mut x, None, settings, callback);
    (info, x)
}

fn limited(max_iterations: usize) -> Settings<f64> {
    Settings {
        rtol: 1e-10,
        max_iterations: Some(max_iterations),
        restart: 8,
        ..Settings::default()
    }
}

#[test]
fn zero_rhs_returns_zero() {
    for method in KrylovMethod::ALL {
        let mut a = problem_for(method).a;
        let mut x = vec![1.0; 25];
        let info = method.solve(&mut a, &[0.0; 25], &mut x, None, &Settings::default(), None);
        assert!(info.converged(), "{method}: {info:?}");
        assert_eq!(info.iterations, 0, "{method}");
        assert_eq!(info.residual_norm, 0.0, "{method}");
        assert_eq!(info.operator_applications, 0, "{method}");
        assert_eq!(x, vec![0.0; 25], "{method}");
    }
}

#[test]
fn exact_initial_guess_needs_no_iteration() {
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        let mut a = problem.a.clone();
        let mut x = problem.x.clone();
        let info = method.solve(&mut a, &problem.b, &mut x, None, &Settings::default(), None);
        assert!(info.converged(), "{method}: {info:?}");
        assert_eq!(info.iterations, 0, "{method}");
        assert_eq!(info.operator_applications, 1, "{method}");
        assert_eq!(x, problem.x, "{method}");
    }
}

#[test]
fn warm_start_converges() {
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        let mut a = problem.a.clone();
        let mut x: Vec<f64> = problem.x.iter().map(|v| v + 0.1).collect();
        let settings = Settings {
            rtol: 1e-10,
            ..Settings::default()
        };
        let info = method.solve(&mut a, &problem.b, &mut x, None, &settings, None);
        assert!(info.converged(), "{method}: {info:?}");
        let residual = testing::residual_norm(&problem.a, &problem.b, &x);
        assert!(
            residual <= 1e-10 * tensor::norm(&problem.b),
            "{method}: {residual:e}"
        );
    }
}

#[test]
fn callback_changes_nothing() {
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        for settings in [limited(7), limited(1000)] {
            let mut a = problem.a.clone();
            let (plain, x_plain) = solve(method, &mut a, &problem.b, &settings, None);

            let mut seen = Vec::new();
            let mut callback = |k: usize, _: &[f64], _: f64| {
                seen.push(k);
                true
            };
            let mut a = problem.a.clone();
            let (watched, x_watched) =
                solve(method, &mut a, &problem.b, &settings, Some(&mut callback));

            assert_eq!(plain, watched, "{method}");
            assert_eq!(x_plain, x_watched, "{method}");
            assert_eq!(seen, (1..=plain.iterations).collect::<Vec<_>>(), "{method}");
        }
        // The limited run stops early and the long one converges.
        let mut a = problem.a.clone();
        let (info, _) = solve(method, &mut a, &problem.b, &limited(7), None);
        assert_eq!(info.reason, StopReason::IterationLimit, "{method}");
    }
}

#[test]
fn callback_false_stops() {
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        let settings = limited(1000);
        let mut callback = |k: usize, _: &[f64], _: f64| k < 3;
        let mut a = problem.a.clone();
        let (info, x) = solve(method, &mut a, &problem.b, &settings, Some(&mut callback));
        assert_eq!(info.reason, StopReason::UserStop, "{method}");
        assert_eq!(info.iterations, 3, "{method}");

        let mut a = problem.a.clone();
        let (_, x_limited) = solve(method, &mut a, &problem.b, &limited(3), None);
        assert_eq!(x, x_limited, "{method}");
    }
}

#[test]
fn callback_gets_current_iterate() {
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        let mut last = Vec::new();
        let mut callback = |_: usize, x: &[f64], _: f64| {
            last = x.to_vec();
            true
        };
        let mut a = problem.a.clone();
        let settings = limited(5);
        let (_, x) = solve(method, &mut a, &problem.b, &settings, Some(&mut callback));
        assert_eq!(last, x, "{method}");
    }
}

#[test]
fn iteration_limit_reports_true_residual() {
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        let mut a = problem.a.clone();
        let (info, x) = solve(method, &mut a, &problem.b, &limited(4), None);
        assert_eq!(info.reason, StopReason::IterationLimit, "{method}");
        assert_eq!(info.iterations, 4, "{method}");
        let residual = testing::residual_norm(&problem.a, &problem.b, &x);
        assert!(
            (info.residual_norm - residual).abs() <= 1e-12 * residual,
            "{method}"
        );
    }
}

#[test]
fn zero_iterations_keep_guess() {
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        let mut a = problem.a.clone();
        let mut x = vec![0.25; 25];
        let settings = limited(0);
        let info = method.solve(&mut a, &problem.b, &mut x, None, &settings, None);
        assert_eq!(info.reason, StopReason::IterationLimit, "{method}");
        assert_eq!(info.iterations, 0, "{method}");
        assert_eq!(info.operator_applications, 1, "{method}");
        assert_eq!(x, vec![0.25; 25], "{method}");
    }
}

#[test]
fn nan_operator_breaks_down() {
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        for limit in 1..12 {
            let mut a = NanAfter {
                inner: problem.a.clone(),
                limit,
                applications: 0,
            };
            let (info, x) = solve(method, &mut a, &problem.b, &limited(1000), None);
            assert!(
                matches!(info.reason, StopReason::Breakdown(_)),
                "{method} after {limit}: {info:?}"
            );
            assert!(
                x.iter().all(|v| v.is_finite()),
                "{method} after {limit}: {x:?}"
            );
            assert!(
                info.residual_norm.is_finite(),
                "{method} after {limit}: {info:?}"
            );

            // x is the iterate that a clean run stops at after the same count.
            let mut clean = problem.a.clone();
            let settings = limited(info.iterations);
            let (_, x_clean) = solve(method, &mut clean, &problem.b, &settings, None);
            assert_eq!(x, x_clean, "{method} after {limit}: {info:?}");
        }
    }
}

#[test]
fn nan_preconditioner_breaks_down() {
    struct NanPreconditioner;
    impl Preconditioner<f64> for NanPreconditioner {
        fn solve(&mut self, _: &[f64], z: &mut [f64]) {
            z.fill(f64::NAN);
        }

        fn is_symmetric(&self) -> bool {
            true
        }
    }
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        let mut a = problem.a.clone();
        let mut x = vec![0.0; 25];
        let mut m = NanPreconditioner;
        let info = method.solve(
            &mut a,
            &problem.b,
            &mut x,
            Some(&mut m),
            &limited(100),
            None,
        );
        assert!(
            matches!(info.reason, StopReason::Breakdown(_)),
            "{method}: {info:?}"
        );
        assert!(!info.converged(), "{method}");
        assert!(x.iter().all(|v| v.is_finite()), "{method}");
    }
}

#[test]
fn non_finite_inputs_break_down() {
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        let mut a = problem.a.clone();
        let mut b = problem.b.clone();
        b[3] = f64::INFINITY;
        let mut x = vec![0.0; 25];
        let info = method.solve(&mut a, &b, &mut x, None, &Settings::default(), None);
        assert!(
            matches!(info.reason, StopReason::Breakdown(_)),
            "{method}: {info:?}"
        );

        let mut x = vec![0.0; 25];
        x[0] = f64::NAN;
        let info = method.solve(&mut a, &problem.b, &mut x, None, &Settings::default(), None);
        assert!(
            matches!(info.reason, StopReason::Breakdown(_)),
            "{method}: {info:?}"
        );
    }
}

#[test]
fn atol_alone_stops() {
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        let mut a = problem.a.clone();
        let settings = Settings {
            rtol: 0.0,
            atol: 1e-3,
            ..Settings::default()
        };
        let (info, x) = solve(method, &mut a, &problem.b, &settings, None);
        assert!(info.converged(), "{method}: {info:?}");
        assert!(
            testing::residual_norm(&problem.a, &problem.b, &x) <= 1e-3,
            "{method}"
        );
    }
}

#[test]
fn f32_solves() {
    for method in KrylovMethod::ALL {
        let problem = problem_for(method);
        let data = problem.a.as_slice().iter().map(|&v| v as f32).collect();
        let mut a = DenseMatrix::new(25, data).unwrap();
        let b: Vec<f32> = problem.b.iter().map(|&v| v as f32).collect();
        let mut x = vec![0.0f32; 25];
        let settings = Settings {
            rtol: 1e-4f32,
            ..Settings::default()
        };
        let info = method.solve(&mut a, &b, &mut x, None, &settings, None);
        assert!(info.converged(), "{method}: {info:?}");
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        testing::assert_close(&x64, &problem.x, 1e-2);
    }
}

#[test]
fn method_names_round_trip() {
    for method in KrylovMethod::ALL {
        assert_eq!(method.to_string().parse::<KrylovMethod>().unwrap(), method);
        let json = serde_json::to_string(&method).unwrap();
        assert_eq!(json, format!("\"{method}\""));
        assert_eq!(serde_json::from_str::<KrylovMethod>(&json).unwrap(), method);
    }
    assert_eq!(
        "BiCGSTAB".parse::<KrylovMethod>().unwrap(),
        KrylovMethod::Bicgstab
    );
    assert_eq!(KrylovMethod::default(), KrylovMethod::Cg);
}

#[test]
fn unknown_method_is_rejected() {
    let error = "cgs".parse::<KrylovMethod>().unwrap_err();
    let message = error.to_string();
    assert!(message.contains("\"cgs\""), "{message}");
    assert!(message.contains("bicgstab"), "{message}");
}

#[test]
fn settings_validate() {
    assert!(Settings::<f64>::default().validate().is_ok());
    let negative = Settings {
        rtol: -1.0,
        ..Settings::default()
    };
    assert!(negative
        .validate()
        .unwrap_err()
        .to_string()
        .contains("rtol"));
    let nan = Settings {
        atol: f64::NAN,
        ..Settings::default()
    };
    assert!(nan.validate().unwrap_err().to_string().contains("atol"));
    let no_restart = Settings::<f64> {
        restart: 0,
        ..Settings::default()
    };
    assert!(no_restart
        .validate()
        .unwrap_err()
        .to_string()
        .contains("restart"));
}

#[test]
fn settings_defaults_match_scipy() {
    let settings = Settings::<f64>::default();
    assert_eq!(settings.rtol, 1e-5);
    assert_eq!(settings.atol, 0.0);
    assert_eq!(settings.max_iterations, None);
    assert_eq!(settings.restart, 20);
    assert_eq!(settings.tolerance(2.0), 2e-5);
}

#[test]
fn diagonal_rejects_zero() {
    assert!(Diagonal::new(vec![1.0, 0.0]).is_err());
    assert!(Diagonal::new(vec![1.0, f64::NAN]).is_err());
    let mut m = Diagonal::new(vec![2.0, -4.0]).unwrap();
    let mut z = [0.0; 2];
    m.solve(&[1.0, 1.0], &mut z);
    assert_eq!(z, [0.5, -0.25]);
}

#[test]
fn stop_reason_display() {
    let reason = StopReason::Breakdown("rho = 0".into());
    assert_eq!(reason.to_string(), "breakdown: rho = 0");
    assert_eq!(
        StopReason::IterationLimit.to_string(),
        "iteration limit reached"
    );
}
