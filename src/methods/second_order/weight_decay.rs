//! L2 weight decay as part of the objective: `f(θ) + ½ w ‖θ‖²`, whose gradient gains `w θ`
//! and whose Gauss-Newton matrix and Hessian gain `w I`. Hessian-free training minimises
//! this objective when its `weight_decay` setting is above zero, so that the value, the
//! gradient and the curvature products of every step agree on one function.

use crate::objective::Objective;
use crate::tensor::{dot, Scalar};

/// The wrapped objective, borrowed from the caller or owned as a subset of another one.
enum Inner<'a, T: Scalar> {
    Borrowed(&'a mut dyn Objective<T>),
    Owned(Box<dyn Objective<T> + 'a>),
}

/// An objective plus `½ w ‖θ‖²` over every parameter, biases included.
///
/// NOTE: the penalty covers biases too, because the objective does not expose which
/// parameters are biases. L2 regularisation usually leaves biases out.
pub struct WeightDecay<'a, T: Scalar> {
    inner: Inner<'a, T>,
    decay: f64,
}

impl<'a, T: Scalar> WeightDecay<'a, T> {
    /// Wraps `objective` with the penalty `½ decay ‖θ‖²`.
    pub fn new(objective: &'a mut dyn Objective<T>, decay: f64) -> Self {
        WeightDecay {
            inner: Inner::Borrowed(objective),
            decay,
        }
    }

    fn inner(&mut self) -> &mut dyn Objective<T> {
        match &mut self.inner {
            Inner::Borrowed(objective) => &mut **objective,
            Inner::Owned(objective) => objective.as_mut(),
        }
    }

    fn inner_ref(&self) -> &dyn Objective<T> {
        match &self.inner {
            Inner::Borrowed(objective) => &**objective,
            Inner::Owned(objective) => objective.as_ref(),
        }
    }

    /// Adds `w x` to `out`: the penalty's share of a gradient (`x = θ`) or of a curvature
    /// product (`x = v`).
    fn add_decay_term(&self, x: &[T], out: &mut [T]) {
        let w = T::of(self.decay);
        for (o, &x) in out.iter_mut().zip(x) {
            *o += w * x;
        }
    }
}

impl<T: Scalar> Objective<T> for WeightDecay<'_, T> {
    fn dim(&self) -> usize {
        self.inner_ref().dim()
    }

    fn value(&mut self, theta: &[T]) -> f64 {
        let penalty = 0.5 * self.decay * dot(theta, theta);
        self.inner().value(theta) + penalty
    }

    fn gradient(&mut self, theta: &[T], grad: &mut [T]) -> f64 {
        let value = self.inner().gradient(theta, grad);
        self.add_decay_term(theta, grad);
        value + 0.5 * self.decay * dot(theta, theta)
    }

    fn gauss_newton_product(&mut self, theta: &[T], v: &[T], out: &mut [T]) -> bool {
        if !self.inner().gauss_newton_product(theta, v, out) {
            return false;
        }
        self.add_decay_term(v, out);
        true
    }

    fn hessian_product(&mut self, theta: &[T], v: &[T], out: &mut [T]) -> bool {
        if !self.inner().hessian_product(theta, v, out) {
            return false;
        }
        self.add_decay_term(v, out);
        true
    }

    /// Returns the inner objective's diagonal unchanged. The penalty has no per-sample part,
    /// so Hessian-free adds its curvature `w` to the preconditioner itself.
    fn empirical_fisher_diagonal(&mut self, theta: &[T], out: &mut [T]) -> bool {
        self.inner().empirical_fisher_diagonal(theta, out)
    }

    fn evaluations(&self) -> u64 {
        self.inner_ref().evaluations()
    }

    fn subset(&self, fraction: f64) -> Option<Box<dyn Objective<T> + '_>> {
        let part = self.inner_ref().subset(fraction)?;
        Some(Box::new(WeightDecay {
            inner: Inner::Owned(part),
            decay: self.decay,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::second_order::test_functions::{
        central_difference_product, Blobs, Quadratic,
    };

    const DECAY: f64 = 0.3;

    fn direction(n: usize) -> Vec<f64> {
        (0..n).map(|i| ((i * 7 % 11) as f64 - 5.0) / 5.0).collect()
    }

    #[test]
    fn value_adds_half_squared_norm() {
        let problem = Blobs::<f64>::new(30, 5, 1);
        let params = problem.init_params(2);
        let mut plain = problem.objective();
        let expected = plain.value(&params) + 0.5 * DECAY * dot(&params, &params);
        let mut inner = problem.objective();
        let value = WeightDecay::new(&mut inner, DECAY).value(&params);
        assert!((value - expected).abs() < 1e-12, "{value} vs {expected}");
    }

    #[test]
    fn gradient_matches_central_differences() {
        let problem = Blobs::<f64>::new(30, 5, 1);
        let params = problem.init_params(2);
        let mut inner = problem.objective();
        let mut objective = WeightDecay::new(&mut inner, DECAY);
        let mut grad = vec![0.0; params.len()];
        objective.gradient(&params, &mut grad);
        let h = 1e-6;
        for i in 0..params.len() {
            let mut plus = params.clone();
            let mut minus = params.clone();
            plus[i] += h;
            minus[i] -= h;
            let difference = (objective.value(&plus) - objective.value(&minus)) / (2.0 * h);
            assert!(
                (grad[i] - difference).abs() < 1e-6,
                "parameter {i}: gradient {} vs difference {difference}",
                grad[i]
            );
        }
    }

    #[test]
    fn gauss_newton_product_matches_differences() {
        // The quadratic's Gauss-Newton matrix is its Hessian, so the product must match
        // central differences of the penalised gradient.
        let mut quadratic = Quadratic::random(8, 5);
        let mut objective = WeightDecay::new(&mut quadratic, DECAY);
        let x: Vec<f64> = (0..8).map(|i| 0.2 * i as f64 - 0.5).collect();
        let v = direction(8);
        let mut product = vec![0.0; 8];
        assert!(objective.gauss_newton_product(&x, &v, &mut product));
        let mut expected = vec![0.0; 8];
        central_difference_product(&mut objective, &x, &v, &mut expected);
        for (i, (p, e)) in product.iter().zip(&expected).enumerate() {
            assert!((p - e).abs() < 1e-6, "component {i}: {p} vs {e}");
        }
    }

    #[test]
    fn network_curvature_products_gain_decay() {
        let problem = Blobs::<f64>::new(30, 5, 1);
        let params = problem.init_params(2);
        let v = direction(params.len());
        let mut plain = problem.objective();
        let mut inner = problem.objective();
        let mut objective = WeightDecay::new(&mut inner, DECAY);

        let mut g_plain = vec![0.0; v.len()];
        let mut g_decay = vec![0.0; v.len()];
        assert!(plain.gauss_newton_product(&params, &v, &mut g_plain));
        assert!(objective.gauss_newton_product(&params, &v, &mut g_decay));
        for i in 0..v.len() {
            let expected = g_plain[i] + DECAY * v[i];
            assert!((g_decay[i] - expected).abs() < 1e-12, "G v component {i}");
        }

        let mut h_decay = vec![0.0; v.len()];
        assert!(objective.hessian_product(&params, &v, &mut h_decay));
        let mut expected = vec![0.0; v.len()];
        central_difference_product(&mut objective, &params, &v, &mut expected);
        for (i, (h, e)) in h_decay.iter().zip(&expected).enumerate() {
            assert!((h - e).abs() < 1e-6, "H v component {i}: {h} vs {e}");
        }
    }

    #[test]
    fn fisher_diagonal_is_the_inner_one() {
        let problem = Blobs::<f64>::new(30, 5, 1);
        let params = problem.init_params(2);
        let mut plain = problem.objective();
        let mut inner = problem.objective();
        let mut objective = WeightDecay::new(&mut inner, DECAY);

        let mut expected = vec![0.0; params.len()];
        let mut diagonal = vec![0.0; params.len()];
        assert!(plain.empirical_fisher_diagonal(&params, &mut expected));
        assert!(objective.empirical_fisher_diagonal(&params, &mut diagonal));
        assert_eq!(diagonal, expected);
        assert!(expected.iter().any(|&f| f > 0.0), "zero diagonal");
    }

    #[test]
    fn subset_keeps_decay() {
        let problem = Blobs::<f64>::new(30, 5, 1);
        let params = problem.init_params(2);
        let plain = problem.objective();
        let expected =
            plain.subset(0.5).expect("subset").value(&params) + 0.5 * DECAY * dot(&params, &params);
        let mut inner = problem.objective();
        let objective = WeightDecay::new(&mut inner, DECAY);
        let value = objective.subset(0.5).expect("subset").value(&params);
        assert!((value - expected).abs() < 1e-12, "{value} vs {expected}");
    }
}
