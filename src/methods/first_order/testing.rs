//! Objectives and a small classification problem for the first-order tests.

use crate::nn::{self, Activation, Init, Loss, Mode, Network, Rng};
use crate::objective::{Counter, NetworkObjective, Objective};
use crate::tensor::{Cpu, Scalar};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::sync::Arc;

/// `f(w) = ½ Σ a_i (w_i − c_i)²`, with gradient `a_i (w_i − c_i)`. All-zero curvature gives
/// a zero loss with a zero gradient.
pub struct Quadratic {
    curvature: Vec<f64>,
    center: Vec<f64>,
}

impl Quadratic {
    pub fn new(curvature: Vec<f64>, center: Vec<f64>) -> Self {
        assert_eq!(curvature.len(), center.len());
        Quadratic { curvature, center }
    }
}

impl<T: Scalar> Objective<T> for Quadratic {
    fn dim(&self) -> usize {
        self.curvature.len()
    }

    fn value(&mut self, theta: &[T]) -> f64 {
        let terms = self.curvature.iter().zip(&self.center).zip(theta);
        terms
            .map(|((a, c), w)| 0.5 * a * (w.as_f64() - c).powi(2))
            .sum()
    }

    fn gradient(&mut self, theta: &[T], grad: &mut [T]) -> f64 {
        let terms = self.curvature.iter().zip(&self.center).zip(theta);
        for (g, ((a, c), w)) in grad.iter_mut().zip(terms) {
            *g = T::of(a * (w.as_f64() - c));
        }
        Objective::<T>::value(self, theta)
    }

    fn evaluations(&self) -> u64 {
        0
    }
}

/// A zero loss whose gradient is 1 in every component at the first call and 0 after.
pub struct Impulse {
    dim: usize,
    calls: u64,
}

impl Impulse {
    pub fn new(dim: usize) -> Self {
        Impulse { dim, calls: 0 }
    }
}

impl<T: Scalar> Objective<T> for Impulse {
    fn dim(&self) -> usize {
        self.dim
    }

    fn value(&mut self, _theta: &[T]) -> f64 {
        0.0
    }

    fn gradient(&mut self, _theta: &[T], grad: &mut [T]) -> f64 {
        let value = if self.calls == 0 { T::one() } else { T::zero() };
        grad.iter_mut().for_each(|g| *g = value);
        self.calls += 1;
        0.0
    }

    fn evaluations(&self) -> u64 {
        self.calls
    }
}

/// An objective that returns a fixed loss and sets one gradient component to a fixed value,
/// the others to 1. With NaN or infinite values it models a diverged batch.
pub struct Fixed {
    pub dim: usize,
    pub loss: f64,
    pub first_component: f64,
}

impl<T: Scalar> Objective<T> for Fixed {
    fn dim(&self) -> usize {
        self.dim
    }

    fn value(&mut self, _theta: &[T]) -> f64 {
        self.loss
    }

    fn gradient(&mut self, _theta: &[T], grad: &mut [T]) -> f64 {
        grad.iter_mut().for_each(|g| *g = T::one());
        grad[0] = T::of(self.first_component);
        self.loss
    }

    fn evaluations(&self) -> u64 {
        0
    }
}

/// Three Gaussian clusters in the plane, 30 samples each, centred on a circle of radius 2
/// with standard deviation 0.5: separable except for rare outliers. Targets are one-hot.
pub struct Clusters {
    pub network: Network<f64>,
    pub x: Vec<f64>,
    pub t: Vec<f64>,
    pub batch: usize,
}

impl Clusters {
    pub fn new(seed: u64) -> Self {
        let specs = nn::mlp(&[16], Activation::Tanh, 0.0, 3);
        let network = Network::new(&[2], &specs, Arc::new(Cpu::new(1))).expect("valid network");
        let mut rng = Rng::seed_from_u64(seed);
        let noise = Normal::new(0.0, 0.5).expect("valid deviation");
        let (per_class, classes) = (30, 3);
        let mut x = Vec::new();
        let mut t = Vec::new();
        for class in 0..classes {
            let angle = 2.0 * std::f64::consts::PI * class as f64 / classes as f64;
            for _ in 0..per_class {
                x.push(2.0 * angle.cos() + noise.sample(&mut rng));
                x.push(2.0 * angle.sin() + noise.sample(&mut rng));
                t.extend((0..classes).map(|c| if c == class { 1.0 } else { 0.0 }));
            }
        }
        Clusters {
            network,
            x,
            t,
            batch: per_class * classes,
        }
    }

    pub fn initial_params(&self) -> Vec<f64> {
        self.network.init_params(Init::Auto, 7)
    }

    /// Returns the full-batch softmax cross-entropy objective of the network.
    pub fn objective(&self) -> NetworkObjective<'_, f64> {
        let counter = Arc::new(Counter::default());
        let (x, t, batch) = (&self.x, &self.t, self.batch);
        let loss = Loss::SoftmaxCrossEntropy;
        NetworkObjective::new(&self.network, loss, x, t, batch, Mode::Train, 0, counter)
    }
}
