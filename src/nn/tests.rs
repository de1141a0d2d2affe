//! Derivative checks of every layer and loss against central finite differences in f64.

use super::*;
use crate::objective::{Counter, NetworkObjective, Objective};
use crate::tensor::Cpu;
use rand::{Rng as _, SeedableRng};
use std::sync::Arc;

const TOLERANCE: f64 = 1e-6;
const STEP: f64 = 1e-5;

pub(super) fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let scale = crate::tensor::norm(a)
        .max(crate::tensor::norm(b))
        .max(1e-12);
    diff / scale
}

pub(super) fn random_vec(n: usize, rng: &mut Rng) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// A network, its parameters and a batch with targets suited to `loss`.
pub(super) struct Case {
    pub net: Network<f64>,
    pub theta: Vec<f64>,
    pub x: Vec<f64>,
    pub t: Vec<f64>,
    pub batch: usize,
    pub loss: Loss,
}

impl Case {
    /// Builds a case for samples of shape `shape`.
    pub fn new(specs: Vec<LayerSpec>, shape: &[usize], loss: Loss, seed: u64) -> Case {
        let net = Network::new(shape, &specs, Arc::new(Cpu::new(1))).expect("valid network");
        let inputs = net.input_size();
        let mut rng = Rng::seed_from_u64(seed);
        let batch = 5;
        let mut theta = net.init_params(Init::GlorotNormal, seed);
        // Non-zero biases exercise every term of the tangent and Hessian passes.
        theta
            .iter_mut()
            .for_each(|p| *p += 0.1 * rng.random_range(-1.0..1.0));
        let x = random_vec(batch * inputs, &mut rng);
        let width = net.output_size();
        let mut t = vec![0.0; batch * width];
        for row in t.chunks_mut(width) {
            match loss {
                Loss::SoftmaxCrossEntropy => row[rng.random_range(0..width)] = 1.0,
                Loss::MeanSquaredError => row.iter_mut().for_each(|v| *v = rng.random()),
                Loss::BinaryCrossEntropy => row
                    .iter_mut()
                    .for_each(|v| *v = f64::from(rng.random_bool(0.5))),
            }
        }
        Case {
            net,
            theta,
            x,
            t,
            batch,
            loss,
        }
    }

    pub fn objective(&self, mode: Mode) -> NetworkObjective<'_, f64> {
        let counter = Arc::new(Counter::default());
        let (x, t) = (&self.x, &self.t);
        NetworkObjective::new(&self.net, self.loss, x, t, self.batch, mode, 11, counter)
    }

    fn shifted(&self, v: &[f64], h: f64) -> Vec<f64> {
        self.theta.iter().zip(v).map(|(p, v)| p + h * v).collect()
    }

    fn outputs(&self, theta: &[f64], mode: Mode) -> Vec<f64> {
        let mut ws = self.net.workspace(self.batch);
        self.net
            .forward(&mut ws, theta, &self.x, self.batch, mode, 11)
            .to_vec()
    }

    /// Checks the gradient, J v, G v and H v against central differences.
    pub fn check(&self, mode: Mode, label: &str) {
        let p = self.net.param_count();
        let mut obj = self.objective(mode);
        let mut rng = Rng::seed_from_u64(99);
        let v = random_vec(p, &mut rng);

        let mut grad = vec![0.0; p];
        obj.gradient(&self.theta, &mut grad);
        let numeric: Vec<f64> = (0..p)
            .map(|i| {
                let mut e = vec![0.0; p];
                e[i] = 1.0;
                let plus = obj.value(&self.shifted(&e, STEP));
                let minus = obj.value(&self.shifted(&e, -STEP));
                (plus - minus) / (2.0 * STEP)
            })
            .collect();
        let err = relative_error(&grad, &numeric);
        assert!(err <= TOLERANCE, "{label}: gradient relative error {err:e}");

        // J v against differences of the outputs along v.
        let mut ws = self.net.workspace(self.batch);
        self.net
            .forward(&mut ws, &self.theta, &self.x, self.batch, mode, 11);
        let jv = self.net.tangent(&mut ws, &self.theta, &self.x, &v).to_vec();
        let plus = self.outputs(&self.shifted(&v, STEP), mode);
        let minus = self.outputs(&self.shifted(&v, -STEP), mode);
        let numeric_jv: Vec<f64> = plus
            .iter()
            .zip(&minus)
            .map(|(a, b)| (a - b) / (2.0 * STEP))
            .collect();
        let err = relative_error(&jv, &numeric_jv);
        assert!(err <= TOLERANCE, "{label}: Jv relative error {err:e}");

        // G v = Jᵀ (H_L J v): H_L applied exactly to the numeric J v, then Jᵀ u as the
        // gradient of θ ↦ uᵀ z(θ) by central differences.
        let z = self.outputs(&self.theta, mode);
        let mut u = vec![0.0; z.len()];
        self.loss
            .hessian_product(&z, &self.t, self.batch, &numeric_jv, &mut u);
        let numeric_gv: Vec<f64> = (0..p)
            .map(|i| {
                let mut e = vec![0.0; p];
                e[i] = 1.0;
                let up = crate::tensor::dot(&u, &self.outputs(&self.shifted(&e, STEP), mode));
                let um = crate::tensor::dot(&u, &self.outputs(&self.shifted(&e, -STEP), mode));
                (up - um) / (2.0 * STEP)
            })
            .collect();
        let mut gv = vec![0.0; p];
        assert!(obj.gauss_newton_product(&self.theta, &v, &mut gv));
        let err = relative_error(&gv, &numeric_gv);
        assert!(err <= TOLERANCE, "{label}: Gv relative error {err:e}");

        // H v against differences of gradients along v.
        let mut hv = vec![0.0; p];
        assert!(obj.hessian_product(&self.theta, &v, &mut hv));
        let (mut gp, mut gm) = (vec![0.0; p], vec![0.0; p]);
        obj.gradient(&self.shifted(&v, STEP), &mut gp);
        obj.gradient(&self.shifted(&v, -STEP), &mut gm);
        let numeric_hv: Vec<f64> = gp
            .iter()
            .zip(&gm)
            .map(|(a, b)| (a - b) / (2.0 * STEP))
            .collect();
        let err = relative_error(&hv, &numeric_hv);
        assert!(err <= TOLERANCE, "{label}: Hv relative error {err:e}");
    }
}

fn dense_then(function: Activation) -> Vec<LayerSpec> {
    vec![
        LayerSpec::Dense { units: 4 },
        LayerSpec::Activation { function },
        LayerSpec::Dense { units: 3 },
    ]
}

#[test]
fn dense_derivatives_match_finite_differences() {
    let case = Case::new(
        vec![LayerSpec::Dense { units: 3 }],
        &[4],
        Loss::MeanSquaredError,
        1,
    );
    case.check(Mode::Eval, "dense");
}

#[test]
fn activation_derivatives_match_finite_differences() {
    use Activation::*;
    for function in [Relu, LeakyRelu, Tanh, Sigmoid, Gelu, Softplus, Identity] {
        for loss in [
            Loss::SoftmaxCrossEntropy,
            Loss::MeanSquaredError,
            Loss::BinaryCrossEntropy,
        ] {
            let case = Case::new(dense_then(function), &[3], loss, 2);
            case.check(Mode::Eval, &format!("{function} with {loss}"));
        }
    }
}

#[test]
fn dropout_derivatives_match_in_both_modes() {
    let specs = vec![
        LayerSpec::Dense { units: 6 },
        LayerSpec::Activation {
            function: Activation::Tanh,
        },
        LayerSpec::Dropout { rate: 0.5 },
        LayerSpec::Dense { units: 2 },
    ];
    let case = Case::new(specs, &[3], Loss::SoftmaxCrossEntropy, 3);
    case.check(Mode::Train, "dropout train");
    case.check(Mode::Eval, "dropout eval");
}

#[test]
fn deep_mixed_network_derivatives_match() {
    use Activation::*;
    let mut specs = Vec::new();
    for (units, function) in [
        (5, Tanh),
        (4, Gelu),
        (4, Sigmoid),
        (3, Softplus),
        (4, LeakyRelu),
    ] {
        specs.push(LayerSpec::Dense { units });
        specs.push(LayerSpec::Activation { function });
    }
    specs.push(LayerSpec::Dense { units: 3 });
    let case = Case::new(specs, &[4], Loss::SoftmaxCrossEntropy, 4);
    case.check(Mode::Eval, "deep mixed");
}

#[test]
fn gauss_newton_is_positive_semidefinite() {
    let specs = mlp(&[6, 5], Activation::Tanh, 0.0, 4);
    for loss in [
        Loss::SoftmaxCrossEntropy,
        Loss::MeanSquaredError,
        Loss::BinaryCrossEntropy,
    ] {
        let case = Case::new(specs.clone(), &[3], loss, 5);
        let mut obj = case.objective(Mode::Eval);
        let mut rng = Rng::seed_from_u64(6);
        for _ in 0..20 {
            let v = random_vec(case.net.param_count(), &mut rng);
            let mut gv = vec![0.0; v.len()];
            obj.gauss_newton_product(&case.theta, &v, &mut gv);
            let vgv = crate::tensor::dot(&v, &gv);
            assert!(vgv >= -1e-12, "{loss}: vᵀGv = {vgv}");
        }
    }
}

#[test]
fn cross_entropy_of_huge_equal_logits_is_ln_two() {
    let z = [1e8f32, 1e8];
    let t = [0.0f32, 1.0];
    let value = Loss::SoftmaxCrossEntropy.value(&z, &t, 1);
    assert!((value - std::f64::consts::LN_2).abs() < 1e-6, "got {value}");
    let z64 = [1e8f64, 1e8];
    let value = Loss::SoftmaxCrossEntropy.value(&z64, &[0.0, 1.0], 1);
    assert!(
        (value - std::f64::consts::LN_2).abs() < 1e-12,
        "got {value}"
    );
}

#[test]
fn losses_average_over_actual_batch() {
    let z = [1.0f64, 2.0, 3.0, 4.0];
    let t = [0.0f64, 2.0, 3.0, 6.0];
    // MSE over 4 elements: (1 + 0 + 0 + 4) / 4.
    assert_eq!(Loss::MeanSquaredError.value(&z, &t, 2), 1.25);
    // One sample with target [1, 0] and logits [0, 0]: ln 2; two identical rows: still ln 2.
    let ce = Loss::SoftmaxCrossEntropy.value(&[0.0f64, 0.0, 0.0, 0.0], &[1.0, 0.0, 1.0, 0.0], 2);
    assert!((ce - std::f64::consts::LN_2).abs() < 1e-15);
    // BCE of logit 0: ln 2 whatever the target.
    let bce = Loss::BinaryCrossEntropy.value(&[0.0f64, 0.0], &[1.0, 0.0], 1);
    assert!((bce - std::f64::consts::LN_2).abs() < 1e-15);
}

#[test]
fn dropout_eval_is_identity_and_train_scales() {
    let specs = vec![LayerSpec::Dropout { rate: 0.25 }];
    let net = Network::<f64>::new(&[1000], &specs, Arc::new(Cpu::new(1))).expect("network");
    let mut ws = net.workspace(1);
    let x = vec![1.0; 1000];
    let eval = net.forward(&mut ws, &[], &x, 1, Mode::Eval, 3).to_vec();
    assert_eq!(eval, x);
    let train = net.forward(&mut ws, &[], &x, 1, Mode::Train, 3).to_vec();
    let kept = train.iter().filter(|&&v| v != 0.0).count();
    assert!((700..800).contains(&kept), "kept {kept} of 1000");
    assert!(train
        .iter()
        .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-12));
}

#[test]
fn f32_network_matches_f64() {
    let specs = mlp(&[8], Activation::Relu, 0.0, 3);
    let n64 = Network::<f64>::new(&[5], &specs, Arc::new(Cpu::new(1))).expect("network");
    let n32 = Network::<f32>::new(&[5], &specs, Arc::new(Cpu::new(1))).expect("network");
    let p64 = n64.init_params(Init::HeNormal, 9);
    let p32: Vec<f32> = p64.iter().map(|&v| v as f32).collect();
    let x64: Vec<f64> = (0..10).map(|i| (i as f64).sin()).collect();
    let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
    let (mut w64, mut w32) = (n64.workspace(2), n32.workspace(2));
    let y64 = n64.forward(&mut w64, &p64, &x64, 2, Mode::Eval, 0).to_vec();
    let y32 = n32.forward(&mut w32, &p32, &x32, 2, Mode::Eval, 0);
    for (a, b) in y64.iter().zip(y32) {
        assert!((a - *b as f64).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn shape_error_names_layer() {
    let specs = vec![LayerSpec::Dense { units: 0 }];
    let err = Network::<f32>::new(&[3], &specs, Arc::new(Cpu::new(1)))
        .err()
        .expect("error");
    assert!(err.to_string().contains("layer 0"), "{err}");
}

#[test]
fn backward_reads_callers_input() {
    // A workspace reused for a second batch gives the gradient of a fresh one, because the
    // passes read the input they are given and nothing left from the first batch.
    let specs = mlp(&[4], Activation::Relu, 0.0, 2);
    let net = Network::<f64>::new(&[3], &specs, Arc::new(Cpu::new(1))).expect("network");
    let params = net.init_params(Init::HeNormal, 5);
    let mut ws = net.workspace(2);
    let gradient = |ws: &mut Workspace<f64>, x: &[f64]| {
        net.forward(ws, &params, x, 2, Mode::Train, 0);
        let (_, dz) = ws.output_and_gradient_mut();
        dz.fill(1.0);
        let mut grad = vec![0.0; net.param_count()];
        net.backward(ws, &params, x, &mut grad);
        grad
    };
    let first = gradient(&mut ws, &[0.5, -1.0, 2.0, 1.5, 0.25, -0.75]);
    let second = gradient(&mut ws, &[1.0, 2.0, -0.5, -1.5, 0.75, 0.5]);
    let fresh = gradient(&mut net.workspace(2), &[1.0, 2.0, -0.5, -1.5, 0.75, 0.5]);
    assert_ne!(first, second);
    assert_eq!(second, fresh);
}

#[test]
#[should_panic(expected = "input has 3 elements but the forward pass ran on 2 samples of 3")]
fn backward_rejects_input_of_other_batch() {
    let specs = mlp(&[4], Activation::Relu, 0.0, 2);
    let net = Network::<f64>::new(&[3], &specs, Arc::new(Cpu::new(1))).expect("network");
    let params = net.init_params(Init::HeNormal, 5);
    let mut ws = net.workspace(2);
    net.forward(&mut ws, &params, &[0.0; 6], 2, Mode::Train, 0);
    let mut grad = vec![0.0; net.param_count()];
    net.backward(&mut ws, &params, &[0.0; 3], &mut grad);
}

/// Returns `(1/n) Σ_i ∇ℓ_i ⊙ ∇ℓ_i` from gradients computed one sample at a time.
fn fisher_diagonal_by_samples(case: &Case) -> Vec<f64> {
    let p = case.net.param_count();
    let (inputs, outputs) = (case.net.input_size(), case.net.output_size());
    let mut sum = vec![0.0; p];
    for i in 0..case.batch {
        let x = &case.x[i * inputs..(i + 1) * inputs];
        let t = &case.t[i * outputs..(i + 1) * outputs];
        let counter = Arc::new(Counter::default());
        let mut single =
            NetworkObjective::new(&case.net, case.loss, x, t, 1, Mode::Eval, 11, counter);
        let mut grad = vec![0.0; p];
        single.gradient(&case.theta, &mut grad);
        sum.iter_mut().zip(&grad).for_each(|(s, g)| *s += g * g);
    }
    sum.iter().map(|s| s / case.batch as f64).collect()
}

#[test]
fn fisher_diagonal_matches_per_sample_gradients() {
    use Activation::*;
    let networks = [
        ("dense", vec![LayerSpec::Dense { units: 3 }]),
        ("sigmoid", dense_then(Sigmoid)),
        // A dense layer followed by a ReLU runs as one fused pass.
        ("relu", mlp(&[6, 5], Relu, 0.0, 3)),
        ("tanh", mlp(&[4, 2, 4], Tanh, 0.0, 3)),
    ];
    let losses = [
        Loss::SoftmaxCrossEntropy,
        Loss::MeanSquaredError,
        Loss::BinaryCrossEntropy,
    ];
    for (name, specs) in networks {
        for loss in losses {
            let case = Case::new(specs.clone(), &[4], loss, 7);
            let expected = fisher_diagonal_by_samples(&case);
            let mut obj = case.objective(Mode::Eval);
            let mut diagonal = vec![f64::NAN; expected.len()];
            assert!(
                obj.empirical_fisher_diagonal(&case.theta, &mut diagonal),
                "{name} with {loss}: no diagonal"
            );
            let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{name} with {loss}: zero diagonal");
            for (j, (a, b)) in diagonal.iter().zip(&expected).enumerate() {
                let error = (a - b).abs() / scale;
                assert!(error <= 1e-12, "{name} with {loss}: entry {j}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn fisher_diagonal_needs_separable_layers() {
    let batch_norm = vec![
        LayerSpec::Dense { units: 4 },
        LayerSpec::BatchNorm,
        LayerSpec::Dense { units: 3 },
    ];
    let conv = vec![
        LayerSpec::Conv2d {
            filters: 2,
            kernel: [2, 2],
            stride: 1,
            padding: 0,
        },
        LayerSpec::Flatten,
        LayerSpec::Dense { units: 3 },
    ];
    for (name, specs, shape) in [
        ("batch norm", batch_norm, vec![4]),
        ("conv", conv, vec![1, 3, 3]),
    ] {
        let case = Case::new(specs, &shape, Loss::MeanSquaredError, 8);
        let mut obj = case.objective(Mode::Train);
        let mut diagonal = vec![0.0; case.net.param_count()];
        assert!(
            !obj.empirical_fisher_diagonal(&case.theta, &mut diagonal),
            "{name}: gave a diagonal"
        );
    }
}
