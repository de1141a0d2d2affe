//! Objectives with known minimisers for the tests of this module, and a small real network
//! problem.

use crate::nn::{self, Activation, Init, Loss, Mode, Network};
use crate::objective::{Counter, NetworkObjective, Objective};
use crate::tensor::{Cpu, Scalar};
use rand::{Rng as _, SeedableRng};
use std::sync::Arc;

/// The extended Rosenbrock function `Σ 100 (x_{i+1} − x_i²)² + (1 − x_i)²`, minimum 0 at
/// `x = (1, ..., 1)`.
pub struct Rosenbrock {
    pub dim: usize,
    pub evaluations: u64,
}

impl Rosenbrock {
    pub fn new(dim: usize) -> Self {
        Rosenbrock {
            dim,
            evaluations: 0,
        }
    }

    /// Returns the standard start `(−1.2, 1, −1.2, 1, ...)`.
    pub fn start(&self) -> Vec<f64> {
        (0..self.dim)
            .map(|i| if i % 2 == 0 { -1.2 } else { 1.0 })
            .collect()
    }
}

impl Objective<f64> for Rosenbrock {
    fn dim(&self) -> usize {
        self.dim
    }

    fn value(&mut self, x: &[f64]) -> f64 {
        self.evaluations += 1;
        x.windows(2)
            .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
            .sum()
    }

    fn gradient(&mut self, x: &[f64], grad: &mut [f64]) -> f64 {
        grad.iter_mut().for_each(|g| *g = 0.0);
        for i in 0..x.len() - 1 {
            let r = x[i + 1] - x[i] * x[i];
            grad[i] += -400.0 * x[i] * r - 2.0 * (1.0 - x[i]);
            grad[i + 1] += 200.0 * r;
        }
        self.value(x)
    }

    fn hessian_product(&mut self, x: &[f64], v: &[f64], out: &mut [f64]) -> bool {
        central_difference_product(self, x, v, out);
        true
    }

    fn evaluations(&self) -> u64 {
        self.evaluations
    }
}

/// Writes `(∇f(x + h v) − ∇f(x − h v)) / 2h` into `out`.
pub fn central_difference_product(
    f: &mut dyn Objective<f64>,
    x: &[f64],
    v: &[f64],
    out: &mut [f64],
) {
    let h = 1e-6;
    let plus: Vec<f64> = x.iter().zip(v).map(|(x, v)| x + h * v).collect();
    let minus: Vec<f64> = x.iter().zip(v).map(|(x, v)| x - h * v).collect();
    let mut g_minus = vec![0.0; x.len()];
    f.gradient(&plus, out);
    f.gradient(&minus, &mut g_minus);
    for (o, m) in out.iter_mut().zip(&g_minus) {
        *o = (*o - m) / (2.0 * h);
    }
}

/// `½ xᵀ A x − bᵀ x` with a symmetric positive definite `A`, minimised by `x = A⁻¹ b`.
pub struct Quadratic {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub evaluations: u64,
    pub gradient_calls: u64,
}

impl Quadratic {
    /// Builds a random well-posed quadratic: `A = Mᵀ M + I` for a random `M`.
    pub fn random(dim: usize, seed: u64) -> Self {
        let mut rng = nn::Rng::seed_from_u64(seed);
        let m: Vec<f64> = (0..dim * dim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let mut a = vec![0.0; dim * dim];
        for i in 0..dim {
            for j in 0..dim {
                a[i * dim + j] = (0..dim).map(|k| m[k * dim + i] * m[k * dim + j]).sum();
            }
            a[i * dim + i] += 1.0;
        }
        let b = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        Quadratic {
            a,
            b,
            evaluations: 0,
            gradient_calls: 0,
        }
    }

    /// Solves `A x = b` by Gaussian elimination with partial pivoting.
    pub fn minimiser(&self) -> Vec<f64> {
        let n = self.b.len();
        let mut m = self.a.clone();
        let mut x = self.b.clone();
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs()))
                .expect("non-empty range");
            for k in 0..n {
                m.swap(col * n + k, pivot * n + k);
            }
            x.swap(col, pivot);
            for row in col + 1..n {
                let factor = m[row * n + col] / m[col * n + col];
                for k in col..n {
                    m[row * n + k] -= factor * m[col * n + k];
                }
                x[row] -= factor * x[col];
            }
        }
        for row in (0..n).rev() {
            let tail: f64 = (row + 1..n).map(|k| m[row * n + k] * x[k]).sum();
            x[row] = (x[row] - tail) / m[row * n + row];
        }
        x
    }

    pub fn product(&self, v: &[f64], out: &mut [f64]) {
        let n = self.b.len();
        for (i, o) in out.iter_mut().enumerate() {
            *o = (0..n).map(|j| self.a[i * n + j] * v[j]).sum();
        }
    }
}

impl Objective<f64> for Quadratic {
    fn dim(&self) -> usize {
        self.b.len()
    }

    fn value(&mut self, x: &[f64]) -> f64 {
        self.evaluations += 1;
        let mut ax = vec![0.0; x.len()];
        self.product(x, &mut ax);
        let quadratic: f64 = x.iter().zip(&ax).map(|(x, ax)| x * ax).sum();
        let linear: f64 = x.iter().zip(&self.b).map(|(x, b)| x * b).sum();
        0.5 * quadratic - linear
    }

    fn gradient(&mut self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.gradient_calls += 1;
        self.product(x, grad);
        grad.iter_mut().zip(&self.b).for_each(|(g, b)| *g -= b);
        self.value(x)
    }

    fn gauss_newton_product(&mut self, _x: &[f64], v: &[f64], out: &mut [f64]) -> bool {
        self.product(v, out);
        true
    }

    fn hessian_product(&mut self, _x: &[f64], v: &[f64], out: &mut [f64]) -> bool {
        self.product(v, out);
        true
    }

    fn evaluations(&self) -> u64 {
        self.evaluations
    }
}

/// `Σ (x_i − 2)²`, which returns NaN (value and gradient) wherever `x_0 > 1`, so that its
/// minimiser over the finite region lies on the edge `x_0 = 1`.
pub struct NanBeyond {
    pub evaluations: u64,
}

impl NanBeyond {
    pub const EDGE: f64 = 1.0;
}

impl Objective<f64> for NanBeyond {
    fn dim(&self) -> usize {
        2
    }

    fn value(&mut self, x: &[f64]) -> f64 {
        self.evaluations += 1;
        if x[0] > Self::EDGE {
            return f64::NAN;
        }
        x.iter().map(|x| (x - 2.0).powi(2)).sum()
    }

    fn gradient(&mut self, x: &[f64], grad: &mut [f64]) -> f64 {
        let value = self.value(x);
        for (g, x) in grad.iter_mut().zip(x) {
            *g = if value.is_nan() {
                f64::NAN
            } else {
                2.0 * (x - 2.0)
            };
        }
        value
    }

    fn evaluations(&self) -> u64 {
        self.evaluations
    }
}

/// A small classification problem for a real network: `samples` points in the plane, three
/// classes separated by angle, with one-hot targets.
pub struct Blobs<T: Scalar> {
    pub network: Network<T>,
    pub x: Vec<T>,
    pub t: Vec<T>,
    pub samples: usize,
    pub loss: Loss,
}

impl<T: Scalar> Blobs<T> {
    /// Builds the data and an MLP with one tanh hidden layer of `hidden` units.
    pub fn new(samples: usize, hidden: usize, seed: u64) -> Self {
        let specs = nn::mlp(&[hidden], Activation::Tanh, 0.0, 3);
        let network = Network::new(&[2], &specs, Arc::new(Cpu::new(1))).expect("valid network");
        let mut rng = nn::Rng::seed_from_u64(seed);
        let mut x = Vec::with_capacity(2 * samples);
        let mut t = vec![T::zero(); 3 * samples];
        for i in 0..samples {
            let class = i % 3;
            let angle =
                class as f64 * 2.0 * std::f64::consts::PI / 3.0 + rng.random_range(-0.4..0.4);
            let radius: f64 = rng.random_range(0.5..1.5);
            x.push(T::of(radius * angle.cos()));
            x.push(T::of(radius * angle.sin()));
            t[3 * i + class] = T::one();
        }
        Blobs {
            network,
            x,
            t,
            samples,
            loss: Loss::SoftmaxCrossEntropy,
        }
    }

    pub fn init_params(&self, seed: u64) -> Vec<T> {
        self.network.init_params(Init::GlorotUniform, seed)
    }

    pub fn objective(&self) -> NetworkObjective<'_, T> {
        let counter = Arc::new(Counter::default());
        let (x, t, n) = (&self.x, &self.t, self.samples);
        NetworkObjective::new(&self.network, self.loss, x, t, n, Mode::Train, 7, counter)
    }
}
