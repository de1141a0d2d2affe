//! An [`Objective`] seen as an argmin problem.
//!
//! argmin (version 0.11) works on `Vec<f64>` and calls `CostFunction::cost(&self, ...)`, so the
//! objective sits in a `RefCell`: argmin is built without its `rayon` feature and calls the
//! problem from one thread. Batches of points (particle swarm) are evaluated in parallel here
//! instead, through [`evaluate_candidates`].

use super::common::evaluate_candidates;
use crate::objective::Objective;
use crate::tensor::Scalar;
use argmin::core::{CostFunction, Error as ArgminError, Gradient};
use std::cell::RefCell;

/// Returns `value`, or +∞ when it is NaN, so that argmin's comparisons treat a failed
/// evaluation as the worst point instead of reaching an inconsistent branch.
fn finite_or_worst(value: f64) -> f64 {
    if value.is_nan() {
        f64::INFINITY
    } else {
        value
    }
}

/// An objective, as argmin's cost function and gradient.
pub(crate) struct ArgminProblem<'a, 'o, T: Scalar> {
    objective: RefCell<&'a mut (dyn Objective<T> + 'o)>,
    point: RefCell<Vec<T>>,
    gradient: RefCell<Vec<T>>,
}

impl<'a, 'o, T: Scalar> ArgminProblem<'a, 'o, T> {
    pub fn new(objective: &'a mut (dyn Objective<T> + 'o)) -> Self {
        ArgminProblem {
            objective: RefCell::new(objective),
            point: RefCell::new(Vec::new()),
            gradient: RefCell::new(Vec::new()),
        }
    }

    /// Converts `x` into the point buffer, in `T`.
    fn load(&self, x: &[f64]) -> std::cell::RefMut<'_, Vec<T>> {
        let mut point = self.point.borrow_mut();
        point.clear();
        point.extend(x.iter().map(|&v| T::of(v)));
        point
    }
}

impl<T: Scalar> CostFunction for ArgminProblem<'_, '_, T> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, x: &Vec<f64>) -> Result<f64, ArgminError> {
        let point = self.load(x);
        Ok(finite_or_worst(self.objective.borrow_mut().value(&point)))
    }

    fn bulk_cost<P>(&self, params: &[P]) -> Result<Vec<f64>, ArgminError>
    where
        P: std::borrow::Borrow<Vec<f64>>,
    {
        let dim = params.first().map_or(0, |p| p.borrow().len());
        let flat: Vec<f64> = params
            .iter()
            .flat_map(|p| p.borrow().iter().copied())
            .collect();
        let fill = |i: usize, point: &mut [T]| {
            for (t, s) in point.iter_mut().zip(&flat[i * dim..(i + 1) * dim]) {
                *t = T::of(*s);
            }
        };
        let mut values = vec![0.0; params.len()];
        let base = vec![T::zero(); dim];
        let mut objective = self.objective.borrow_mut();
        evaluate_candidates(&mut **objective, &base, &mut values, &fill);
        Ok(values.into_iter().map(finite_or_worst).collect())
    }
}

impl<T: Scalar> Gradient for ArgminProblem<'_, '_, T> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, ArgminError> {
        let point = self.load(x);
        let mut gradient = self.gradient.borrow_mut();
        gradient.clear();
        gradient.resize(x.len(), T::zero());
        self.objective.borrow_mut().gradient(&point, &mut gradient);
        Ok(gradient.iter().map(|g| g.as_f64()).collect())
    }
}
