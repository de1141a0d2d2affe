//! Flattening: a change of the per-sample shape to one dimension. Buffers are row-major, so
//! the values are copied unchanged.

use super::layer::{Activations, Layer, Pass};
use crate::tensor::Scalar;

/// A layer that reshapes each sample to `[size]`.
pub struct Flatten {
    input: Vec<usize>,
    output: [usize; 1],
}

impl Flatten {
    /// Creates a flattening layer for inputs of `shape`.
    pub fn new(shape: &[usize]) -> Self {
        Flatten {
            input: shape.to_vec(),
            output: [shape.iter().product()],
        }
    }
}

impl<T: Scalar> Layer<T> for Flatten {
    fn describe(&self) -> String {
        "flatten".to_string()
    }

    fn input_shape(&self) -> &[usize] {
        &self.input
    }

    fn output_shape(&self) -> &[usize] {
        &self.output
    }

    fn forward(&self, _: &Pass<T>, _: &[T], x: &[T], y: &mut [T], _: &mut [T]) {
        y.copy_from_slice(x);
    }

    fn backward(
        &self,
        _: &Pass<T>,
        _: &[T],
        _: Activations<T>,
        dy: &[T],
        dx: Option<&mut [T]>,
        _: &mut [T],
        _: &mut [T],
    ) {
        if let Some(dx) = dx {
            dx.copy_from_slice(dy);
        }
    }

    fn tangent(
        &self,
        _: &Pass<T>,
        _: &[T],
        _: &[T],
        _: Activations<T>,
        rx: Option<&[T]>,
        ry: &mut [T],
        _: &mut [T],
    ) {
        match rx {
            Some(rx) => ry.copy_from_slice(rx),
            None => ry.fill(T::zero()),
        }
    }

    fn backward_tangent(
        &self,
        _: &Pass<T>,
        _: &[T],
        _: &[T],
        _: Activations<T>,
        _: Option<&[T]>,
        _: &[T],
        rdy: &[T],
        rdx: Option<&mut [T]>,
        _: &mut [T],
        _: &mut [T],
    ) {
        if let Some(rdx) = rdx {
            rdx.copy_from_slice(rdy);
        }
    }
}
