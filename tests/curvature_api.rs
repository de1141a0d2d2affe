//! The public curvature API: a user solves a Gauss-Newton or Hessian system on a network of
//! their own with the library's Krylov solvers.

use gradus::krylov::{cg, minres, LinearOperator, Settings};
use gradus::methods::second_order::{Curvature, CurvatureOperator};
use gradus::nn::{mlp, Activation, Init, Loss, Mode, Network};
use gradus::objective::{Counter, NetworkObjective, Objective};
use gradus::tensor::{norm, Cpu};
use std::sync::Arc;

fn network() -> (Network<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let specs = mlp(&[6, 5], Activation::Tanh, 0.0, 3);
    let net = Network::new(&[4], &specs, Arc::new(Cpu::new(1))).expect("network");
    let theta = net.init_params(Init::GlorotNormal, 3);
    let x: Vec<f64> = (0..32).map(|i| (i as f64 * 0.7).sin()).collect();
    let mut t = vec![0.0; 8 * 3];
    for i in 0..8 {
        t[i * 3 + i % 3] = 1.0;
    }
    (net, theta, x, t)
}

#[test]
fn gauss_newton_system_solves_with_cg() {
    let (net, theta, x, t) = network();
    let counter = Arc::new(Counter::default());
    let mut obj = NetworkObjective::new(
        &net,
        Loss::SoftmaxCrossEntropy,
        &x,
        &t,
        8,
        Mode::Eval,
        0,
        counter,
    );
    let b: Vec<f64> = (0..net.param_count()).map(|i| (i as f64).cos()).collect();
    let mut d = vec![0.0; b.len()];
    let damping = 1e-2;
    let settings = Settings {
        rtol: 1e-10,
        max_iterations: Some(2000),
        ..Settings::default()
    };
    let info = {
        let mut op = CurvatureOperator::new(&mut obj, Curvature::GaussNewton, &theta, damping);
        cg(&mut op, &b, &mut d, None, &settings, None)
    };
    assert!(info.converged(), "{info:?}");

    // Check (G + λI) d = b with products taken afresh through the objective.
    let mut gd = vec![0.0; d.len()];
    assert!(obj.gauss_newton_product(&theta, &d, &mut gd));
    let residual: Vec<f64> = gd
        .iter()
        .zip(&d)
        .zip(&b)
        .map(|((g, d), b)| g + damping * d - b)
        .collect();
    assert!(
        norm(&residual) <= 1e-8 * norm(&b),
        "residual {}",
        norm(&residual)
    );
}

#[test]
fn hessian_system_solves_with_minres() {
    let (net, theta, x, t) = network();
    let counter = Arc::new(Counter::default());
    let mut obj = NetworkObjective::new(
        &net,
        Loss::SoftmaxCrossEntropy,
        &x,
        &t,
        8,
        Mode::Eval,
        0,
        counter,
    );
    let b: Vec<f64> = (0..net.param_count())
        .map(|i| (i as f64 * 0.3).sin())
        .collect();
    let mut d = vec![0.0; b.len()];
    let settings = Settings {
        rtol: 1e-9,
        max_iterations: Some(5000),
        ..Settings::default()
    };
    let mut op = CurvatureOperator::new(&mut obj, Curvature::Hessian, &theta, 0.5);
    assert!(op.is_symmetric());
    let info = minres(&mut op, &b, &mut d, None, &settings, None);
    assert!(info.converged(), "{info:?}");
    assert!(info.residual_norm <= 1e-8 * norm(&b), "{info:?}");
}
