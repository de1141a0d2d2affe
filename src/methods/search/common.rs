//! Helpers shared by the search methods: parallel evaluation of candidate points, setting
//! checks, conversions between the parameter type and `f64`, and the checkpoint form of the
//! random number generator.

use crate::methods::MethodState;
use crate::objective::{Counter, Objective};
use crate::tensor::Scalar;
use crate::{Error, Result};
use rand::SeedableRng;
use std::sync::Arc;

/// The generator behind every random choice of the search methods. A run is reproducible from
/// its seed because ChaCha8's stream is fixed for a seed across platforms and crate versions.
pub(crate) type Rng = rand_chacha::ChaCha8Rng;

/// Evaluates `values.len()` candidate points and writes their values into `values`; see
/// [`Objective::candidate_values`]. `fill(i, point)` writes candidate `i` into a copy of
/// `base`, so it only needs to write the coordinates that differ from `base`.
pub(crate) fn evaluate_candidates<T: Scalar>(
    objective: &mut dyn Objective<T>,
    base: &[T],
    values: &mut [f64],
    fill: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    objective.candidate_values(base, values, fill);
}

/// Returns the index of the smallest value, the first one on ties, skipping NaN. `None` when
/// every value is NaN or there are none.
pub(crate) fn min_index(values: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|b| v < values[b]) {
            best = Some(i);
        }
    }
    best
}

/// Returns `x` converted to `f64`.
pub(crate) fn to_f64<T: Scalar>(x: &[T]) -> Vec<f64> {
    x.iter().map(|v| v.as_f64()).collect()
}

/// Writes `source` into `target`, rounding to `T`.
pub(crate) fn copy_to<T: Scalar>(target: &mut [T], source: &[f64]) {
    for (t, s) in target.iter_mut().zip(source) {
        *t = T::of(*s);
    }
}

/// Clips every coordinate of `x` into its interval and returns whether any moved.
pub(crate) fn clip(x: &mut [f64], bounds: &[(f64, f64)]) -> bool {
    let mut moved = false;
    for (v, &(lower, upper)) in x.iter_mut().zip(bounds) {
        let clipped = v.clamp(lower, upper);
        if clipped != *v {
            *v = clipped;
            moved = true;
        }
    }
    moved
}

/// Checks that `value` is finite and greater than zero.
pub(crate) fn check_positive(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::setting(name, value, "expected a finite value > 0"))
    }
}

/// Checks that `value` is finite and inside the open interval `(0, 1)`.
pub(crate) fn check_fraction(name: &str, value: f64) -> Result<()> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(Error::setting(name, value, "expected a value in (0, 1)"))
    }
}

/// Checks that a count is at least `min`.
pub(crate) fn check_count(name: &str, value: usize, min: usize) -> Result<()> {
    if value >= min {
        Ok(())
    } else {
        Err(Error::setting(
            name,
            value,
            &format!("expected at least {min}"),
        ))
    }
}

/// Checks that `lower < upper` and both are finite. `name` is the pair's setting name.
pub(crate) fn check_interval(name: &str, lower: f64, upper: f64) -> Result<()> {
    if lower.is_finite() && upper.is_finite() && lower < upper {
        Ok(())
    } else {
        Err(Error::setting(
            name,
            format!("[{lower}, {upper}]"),
            "expected finite bounds with lower < upper",
        ))
    }
}

/// Returns the named vector of a saved method state.
pub(crate) fn saved_vector<'a>(
    state: &'a MethodState,
    method: &str,
    name: &str,
) -> Result<&'a [f64]> {
    state
        .vectors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
        .ok_or_else(|| missing_entry(method, name))
}

/// Returns the named scalar of a saved method state.
pub(crate) fn saved_scalar(state: &MethodState, method: &str, name: &str) -> Result<f64> {
    state
        .scalars
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| missing_entry(method, name))
}

fn missing_entry(method: &str, name: &str) -> Error {
    Error::Data(format!(
        "the saved {method} state has no entry {name}; resume from a checkpoint written by \
         {method}"
    ))
}

/// Encodes the generator's seed, stream and position as 14 integers below 2³², which `f64`
/// stores exactly.
pub(crate) fn save_rng(rng: &Rng) -> Vec<f64> {
    let mut words = Vec::with_capacity(14);
    for chunk in rng.get_seed().chunks(4) {
        let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        words.push(f64::from(word));
    }
    let stream = rng.get_stream();
    words.push((stream >> 32) as f64);
    words.push((stream & 0xffff_ffff) as f64);
    let position = rng.get_word_pos();
    for shift in [96, 64, 32, 0] {
        words.push(((position >> shift) & 0xffff_ffff) as f64);
    }
    words
}

/// Decodes a generator saved by [`save_rng`].
pub(crate) fn load_rng(words: &[f64], method: &str) -> Result<Rng> {
    let valid = words.len() == 14
        && words
            .iter()
            .all(|w| w.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(w));
    if !valid {
        return Err(Error::Data(format!(
            "the saved {method} state has an invalid random number generator entry; resume \
             from a checkpoint written by {method}"
        )));
    }
    let mut seed = [0u8; 32];
    for (chunk, word) in seed.chunks_mut(4).zip(words) {
        chunk.copy_from_slice(&(*word as u32).to_le_bytes());
    }
    let mut rng = Rng::from_seed(seed);
    rng.set_stream(((words[8] as u64) << 32) | words[9] as u64);
    let position = words[10..]
        .iter()
        .fold(0u128, |acc, w| (acc << 32) | *w as u128);
    rng.set_word_pos(position);
    Ok(rng)
}

/// A gradient: writes `∇f(x)` for the point `x`, its first argument, into its second.
pub type GradientFn<'a> = &'a (dyn Fn(&[f64], &mut [f64]) + Sync);

/// A function of a point in `f64`, and optionally its gradient, as an [`Objective`], so that
/// the search methods can minimise plain closures.
///
/// Each value counts one evaluation and each gradient call (which also returns the value)
/// counts one more, as scipy counts `nfev` for a function that returns both. Without a
/// gradient closure, [`Objective::gradient`] uses central differences at a cost of `2n`
/// evaluations.
pub struct FnObjective<'a> {
    function: &'a (dyn Fn(&[f64]) -> f64 + Sync),
    gradient: Option<GradientFn<'a>>,
    dim: usize,
    counter: Arc<Counter>,
}

impl<'a> FnObjective<'a> {
    /// Creates the objective of `dim` parameters from a function and an optional gradient
    /// that writes `∇f(x)` into its second argument.
    pub fn new(
        dim: usize,
        function: &'a (dyn Fn(&[f64]) -> f64 + Sync),
        gradient: Option<GradientFn<'a>>,
    ) -> Self {
        FnObjective {
            function,
            gradient,
            dim,
            counter: Arc::new(Counter::default()),
        }
    }

    /// Returns the evaluation counter, shared with every fork.
    pub fn counter(&self) -> &Arc<Counter> {
        &self.counter
    }
}

impl Objective<f64> for FnObjective<'_> {
    fn dim(&self) -> usize {
        self.dim
    }

    fn value(&mut self, theta: &[f64]) -> f64 {
        self.counter.add(1);
        (self.function)(theta)
    }

    fn gradient(&mut self, theta: &[f64], grad: &mut [f64]) -> f64 {
        if let Some(gradient) = self.gradient {
            self.counter.add(1);
            self.counter.add_gradient();
            gradient(theta, grad);
            return (self.function)(theta);
        }
        let mut point = theta.to_vec();
        for i in 0..theta.len() {
            // A step of about cbrt(ε) · |x| balances truncation and rounding error.
            let h = 6e-6 * theta[i].abs().max(1.0);
            point[i] = theta[i] + h;
            let upper = (self.function)(&point);
            point[i] = theta[i] - h;
            let lower = (self.function)(&point);
            point[i] = theta[i];
            grad[i] = (upper - lower) / (2.0 * h);
        }
        self.counter.add(2 * theta.len() as u64 + 1);
        self.counter.add_gradient();
        (self.function)(theta)
    }

    fn evaluations(&self) -> u64 {
        self.counter.units()
    }

    fn fork(&self) -> Option<Box<dyn Objective<f64> + Send + '_>> {
        Some(Box::new(FnObjective {
            function: self.function,
            gradient: self.gradient,
            dim: self.dim,
            counter: Arc::clone(&self.counter),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;

    #[test]
    fn parallel_values_match_sequential() {
        let function = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>();
        let mut objective = FnObjective::new(3, &function, None);
        let fill = |i: usize, point: &mut [f64]| point[1] = i as f64;
        let mut values = vec![0.0; 101];
        evaluate_candidates(&mut objective, &[1.0, 0.0, 2.0], &mut values, &fill);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(*v, 5.0 + (i * i) as f64, "candidate {i}");
        }
        assert_eq!(objective.evaluations(), 101);
    }

    #[test]
    fn min_index_skips_nan_and_keeps_first() {
        assert_eq!(min_index(&[f64::NAN, 2.0, 1.0, 1.0]), Some(2));
        assert_eq!(min_index(&[f64::NAN]), None);
        assert_eq!(min_index(&[]), None);
    }

    #[test]
    fn rng_round_trips_mid_stream() {
        let mut rng = Rng::seed_from_u64(42);
        rng.set_stream(7);
        for _ in 0..13 {
            let _: u64 = rng.random();
        }
        let mut restored = load_rng(&save_rng(&rng), "test").expect("valid state");
        for _ in 0..5 {
            assert_eq!(rng.random::<u64>(), restored.random::<u64>());
        }
    }

    #[test]
    fn finite_difference_gradient_is_close() {
        let function = |x: &[f64]| x[0].powi(3) + x[0] * x[1];
        let mut objective = FnObjective::new(2, &function, None);
        let mut grad = [0.0; 2];
        objective.gradient(&[2.0, 3.0], &mut grad);
        assert!((grad[0] - 15.0).abs() < 1e-7, "d/dx0 {}", grad[0]);
        assert!((grad[1] - 2.0).abs() < 1e-7, "d/dx1 {}", grad[1]);
    }
}
