//! Objectives for the first-order tests.

use crate::objective::Objective;
use crate::tensor::Scalar;

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
