//! An [`Objective`] seen as an argmin problem, and a loop that drives an argmin solver a few
//! iterations at a time so that each [`crate::methods::Method::step`] can stop between them.
//!
//! argmin (version 0.11) works on `Vec<f64>` and calls `CostFunction::cost(&self, ...)`, so the
//! objective sits in a `RefCell`: argmin is built without its `rayon` feature and calls the
//! problem from one thread. Batches of points (particle swarm) are evaluated in parallel here
//! instead, through [`evaluate_candidates`].

use super::common::{evaluate_candidates, Rng};
use crate::objective::Objective;
use crate::tensor::Scalar;
use argmin::core::{CostFunction, Error as ArgminError, Gradient, Problem, Solver, State};
use argmin::solver::simulatedannealing::Anneal;
use rand::Rng as _;
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

/// Simulated annealing's move: a uniform step in `±step · T / T₀` on every coordinate, kept
/// inside the optional bounds.
pub(crate) struct AnnealMove<'r> {
    pub rng: RefCell<&'r mut Rng>,
    pub step: f64,
    pub initial_temperature: f64,
    pub bounds: Option<(f64, f64)>,
}

/// An objective, as argmin's cost function, gradient and annealing move.
pub(crate) struct ArgminProblem<'a, 'o, 'r, T: Scalar> {
    objective: RefCell<&'a mut (dyn Objective<T> + 'o)>,
    point: RefCell<Vec<T>>,
    gradient: RefCell<Vec<T>>,
    anneal: Option<AnnealMove<'r>>,
}

impl<'a, 'o, 'r, T: Scalar> ArgminProblem<'a, 'o, 'r, T> {
    pub fn new(objective: &'a mut (dyn Objective<T> + 'o), anneal: Option<AnnealMove<'r>>) -> Self {
        ArgminProblem {
            objective: RefCell::new(objective),
            point: RefCell::new(Vec::new()),
            gradient: RefCell::new(Vec::new()),
            anneal,
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

impl<T: Scalar> CostFunction for ArgminProblem<'_, '_, '_, T> {
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

impl<T: Scalar> Gradient for ArgminProblem<'_, '_, '_, T> {
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

impl<T: Scalar> Anneal for ArgminProblem<'_, '_, '_, T> {
    type Param = Vec<f64>;
    type Output = Vec<f64>;
    type Float = f64;

    fn anneal(&self, x: &Vec<f64>, temperature: f64) -> Result<Vec<f64>, ArgminError> {
        let Some(moves) = &self.anneal else {
            return Err(ArgminError::msg("the problem has no annealing move"));
        };
        let extent = moves.step * temperature / moves.initial_temperature;
        let mut rng = moves.rng.borrow_mut();
        let moved = x
            .iter()
            .map(|&v| {
                let next = v + extent * rng.random_range(-1.0..=1.0);
                match moves.bounds {
                    Some((lower, upper)) => next.clamp(lower, upper),
                    None => next,
                }
            })
            .collect();
        Ok(moved)
    }
}

/// Reason [`iterate`] returned.
pub(crate) enum Stop {
    /// It ran the requested iterations.
    Paused,
    /// The solver's own criterion or its iteration cap ended the run.
    Terminated,
    /// The solver returned an error.
    Failed(ArgminError),
}

/// Runs up to `iterations` iterations of `solver` from `state`, as argmin's `Executor` does
/// between its `init` and its end: check termination, iterate, update the best point, count.
pub(crate) fn iterate<O, S, I>(
    solver: &mut S,
    problem: &mut Problem<O>,
    mut state: I,
    iterations: usize,
) -> (Option<I>, Stop)
where
    S: Solver<O, I>,
    I: State,
{
    for _ in 0..iterations {
        if let argmin::core::TerminationStatus::Terminated(reason) =
            solver.terminate_internal(&state)
        {
            return (Some(state.terminate_with(reason)), Stop::Terminated);
        }
        state = match solver.next_iter(problem, state) {
            Ok((next, _)) => next,
            Err(error) => return (None, Stop::Failed(error)),
        };
        state.update();
        state.increment_iter();
        if state.terminated() {
            return (Some(state), Stop::Terminated);
        }
    }
    (Some(state), Stop::Paused)
}

/// The best point an argmin state has recorded.
pub(crate) trait BestPoint {
    /// Returns the best point and its value, if the state has one.
    fn best_point(&self) -> Option<(&[f64], f64)>;
}

impl BestPoint for argmin::core::IterState<Vec<f64>, (), (), (), (), f64> {
    fn best_point(&self) -> Option<(&[f64], f64)> {
        self.get_best_param()
            .map(|x| (x.as_slice(), self.get_best_cost()))
    }
}

type Swarm = argmin::solver::particleswarm::Particle<Vec<f64>, f64>;

impl BestPoint for argmin::core::PopulationState<Swarm, f64> {
    fn best_point(&self) -> Option<(&[f64], f64)> {
        self.get_best_param()
            .map(|p| (p.position.as_slice(), self.get_best_cost()))
    }
}

/// The best point of an argmin-driven method, which starts at the start point.
#[derive(Clone, Debug, Default)]
pub(crate) struct Incumbent {
    pub x: Vec<f64>,
    pub value: f64,
}

impl Incumbent {
    /// Takes the state's best point when it is lower.
    pub fn update(&mut self, state: &impl BestPoint) {
        if let Some((x, value)) = state.best_point() {
            if value < self.value {
                self.x = x.to_vec();
                self.value = value;
            }
        }
    }
}
