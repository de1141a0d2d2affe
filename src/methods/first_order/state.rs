//! Per-parameter state vectors of a first-order method, their checkpoint form, and the guard
//! against subnormal numbers in them.

use crate::methods::MethodState;
use crate::tensor::{flush_denormals, Scalar};
use crate::{Error, Result};
use std::cell::Cell;

/// Name of the applied-step count in a saved [`MethodState`].
const STEP_KEY: &str = "step";

/// `N` state vectors of one value per parameter, such as Adam's two moments, and the number
/// of steps applied so far. Skipped steps do not count.
pub(super) struct State<T, const N: usize> {
    method: &'static str,
    names: [&'static str; N],
    /// The vectors, empty until the first step or a load gives them a length.
    pub vectors: [Vec<T>; N],
    /// Steps applied so far.
    pub steps: u64,
}

impl<T: Scalar, const N: usize> State<T, N> {
    /// Creates empty state. `names` label the vectors in checkpoints, so a rename breaks
    /// loading old checkpoints.
    pub fn new(method: &'static str, names: [&'static str; N]) -> Self {
        State {
            method,
            names,
            vectors: std::array::from_fn(|_| Vec::new()),
            steps: 0,
        }
    }

    /// Allocates zeroed vectors of length `dim` on the first step, and checks the length of
    /// vectors that a load restored.
    pub fn prepare(&mut self, dim: usize) -> Result<()> {
        for (name, vector) in self.names.iter().zip(&mut self.vectors) {
            if vector.is_empty() {
                vector.resize(dim, T::zero());
            } else if vector.len() != dim {
                return Err(Error::Shape(format!(
                    "{} state `{name}` has {} values but the model has {dim} parameters",
                    self.method,
                    vector.len()
                )));
            }
        }
        Ok(())
    }

    /// Returns the vectors (as `f64`) and the step count for a checkpoint.
    pub fn save(&self) -> MethodState {
        let vectors = self
            .names
            .iter()
            .zip(&self.vectors)
            .map(|(name, vector)| {
                let values = vector.iter().map(|v| v.as_f64()).collect();
                (name.to_string(), values)
            })
            .collect();
        MethodState {
            vectors,
            scalars: vec![(STEP_KEY.to_string(), self.steps as f64)],
        }
    }

    /// Restores vectors and step count saved by [`State::save`]. Fails when a vector or the
    /// step count is missing or the vectors differ in length, and leaves the state unchanged
    /// then.
    pub fn load(&mut self, saved: &MethodState) -> Result<()> {
        let steps = saved
            .scalars
            .iter()
            .find(|(name, _)| name == STEP_KEY)
            .map(|&(_, value)| value)
            .ok_or_else(|| self.missing(STEP_KEY))?;
        if !(steps.is_finite() && steps >= 0.0 && steps.fract() == 0.0) {
            return Err(Error::Data(format!(
                "saved {} state has step count {steps}; expected a whole number >= 0",
                self.method
            )));
        }
        let mut loaded: [Vec<T>; N] = std::array::from_fn(|_| Vec::new());
        for (name, slot) in self.names.iter().zip(&mut loaded) {
            let values = saved
                .vectors
                .iter()
                .find(|(saved_name, _)| saved_name == name)
                .map(|(_, values)| values)
                .ok_or_else(|| self.missing(name))?;
            *slot = values.iter().map(|&v| T::of(v)).collect();
        }
        if let Some(first) = loaded.first() {
            if let Some(other) = loaded.iter().find(|v| v.len() != first.len()) {
                return Err(Error::Shape(format!(
                    "saved {} state vectors differ in length ({} and {})",
                    self.method,
                    first.len(),
                    other.len()
                )));
            }
        }
        self.vectors = loaded;
        self.steps = steps as u64;
        Ok(())
    }

    fn missing(&self, name: &str) -> Error {
        Error::Data(format!(
            "saved {} state has no `{name}`; was the checkpoint written by another method?",
            self.method
        ))
    }
}

thread_local! {
    static DENORMALS_FLUSHED: Cell<bool> = const { Cell::new(false) };
}

/// Sets flush-to-zero on the calling thread the first time it is called there. This also
/// affects the objective's arithmetic on that thread, which only loses values below the
/// smallest normal number.
pub(super) fn flush_denormals_once() {
    DENORMALS_FLUSHED.with(|done| {
        if !done.get() {
            flush_denormals();
            done.set(true);
        }
    });
}

/// Returns 0 for a subnormal `x` and `x` otherwise. Decaying averages reach subnormal values
/// after a long run of zero gradients, and arithmetic on them is many times slower on CPUs
/// without flush-to-zero.
#[inline]
pub(super) fn zero_if_subnormal<T: Scalar>(x: T) -> T {
    if x.abs() < T::min_positive_value() {
        T::zero()
    } else {
        x
    }
}
