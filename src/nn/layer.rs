//! The layer interface: forward, backward, tangent and differentiated backward passes over a
//! slice of the network's flat parameter buffer.

use crate::tensor::{Kernels, Scalar};
use std::ops::Range;

/// Whether a pass is part of training or of evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: dropout samples masks, and batch normalisation uses the batch statistics
    /// and updates its running statistics.
    Train,
    /// Evaluation: dropout is the identity, and batch normalisation uses its running
    /// statistics.
    Eval,
}

/// What every pass of one batch shares.
#[derive(Clone, Copy)]
pub struct Pass<'a, T: Scalar> {
    /// The kernels to compute with.
    pub kernels: &'a dyn Kernels<T>,
    /// Samples in the batch.
    pub batch: usize,
    /// Training or evaluation.
    pub mode: Mode,
    /// Seed for random masks, fixed for one batch so that repeated passes agree.
    pub seed: u64,
    /// This layer's non-trainable buffers (see [`Layer::buffer_tensors`]) as they were when
    /// the forward pass of this batch started, so that every pass over the batch uses the
    /// same values. Empty for layers without buffers.
    pub buffers: &'a [T],
}

/// A named parameter tensor inside a layer's slice, for saving and export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamTensor {
    /// Name within the layer, for example `weight` or `bias`.
    pub name: &'static str,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Position within the layer's parameter slice.
    pub range: Range<usize>,
}

/// Buffers of one layer for one batch. `x` is the input and `y` the output, both
/// `batch × size` row-major.
pub struct Activations<'a, T> {
    /// Layer input.
    pub x: &'a [T],
    /// Layer output as computed by the forward pass.
    pub y: &'a [T],
}

/// A network layer. A layer owns no parameters: it works on the slice of the flat buffer that
/// the network hands it, and keeps per-batch data (masks, statistics) in its scratch slice.
/// Non-trainable state, such as running statistics, lives in the network's buffers, which
/// the layer reads through [`Pass::buffers`] and updates in [`Layer::update_buffers`].
///
/// Notation for the passes: `y = f(x; θ)`, a gradient `dy = ∂L/∂y`, a tangent (directional
/// derivative along `v = (vθ, vx)`) written `R{·}` after Pearlmutter (1994), "Fast exact
/// multiplication by the Hessian", Neural Computation 6(1).
pub trait Layer<T: Scalar>: Send + Sync {
    /// Short name for messages, for example `dense(64)`.
    fn describe(&self) -> String;

    /// Per-sample input shape.
    fn input_shape(&self) -> &[usize];

    /// Per-sample output shape.
    fn output_shape(&self) -> &[usize];

    /// Per-sample input size.
    fn input_size(&self) -> usize {
        self.input_shape().iter().product()
    }

    /// Per-sample output size.
    fn output_size(&self) -> usize {
        self.output_shape().iter().product()
    }

    /// Number of trainable parameters.
    fn param_count(&self) -> usize {
        0
    }

    /// Named tensors inside the parameter slice.
    fn param_tensors(&self) -> Vec<ParamTensor> {
        Vec::new()
    }

    /// Named non-trainable buffers, such as batch normalisation's running statistics. They
    /// live in the network, outside the flat parameter vector, so that training methods
    /// neither step nor decay them.
    fn buffer_tensors(&self) -> Vec<ParamTensor> {
        Vec::new()
    }

    /// Number of buffer elements: the end of the last range in [`Layer::buffer_tensors`].
    fn buffer_count(&self) -> usize {
        self.buffer_tensors()
            .iter()
            .map(|t| t.range.end)
            .max()
            .unwrap_or(0)
    }

    /// Writes the initial buffer values into `buffers` (length [`Layer::buffer_count`]).
    fn init_buffers(&self, _buffers: &mut [T]) {}

    /// Updates `buffers` after a forward pass in [`Mode::Train`], from what that pass left
    /// in `scratch`.
    fn update_buffers(&self, _pass: &Pass<T>, _buffers: &mut [T], _scratch: &[T]) {}

    /// Scratch elements the layer needs for a batch of `batch` samples.
    fn scratch_size(&self, _batch: usize) -> usize {
        0
    }

    /// Writes initial values into `params` (length [`Layer::param_count`]).
    fn init_params(&self, _params: &mut [T], _init: super::Init, _rng: &mut super::Rng) {}

    /// Computes `y = f(x; θ)`.
    fn forward(&self, pass: &Pass<T>, params: &[T], x: &[T], y: &mut [T], scratch: &mut [T]);

    /// Computes `dθ = (∂y/∂θ)ᵀ dy` into `dparams` (overwritten) and, when `dx` is given,
    /// `dx = (∂y/∂x)ᵀ dy`.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        pass: &Pass<T>,
        params: &[T],
        act: Activations<T>,
        dy: &[T],
        dx: Option<&mut [T]>,
        dparams: &mut [T],
        scratch: &mut [T],
    );

    /// Writes the sum over the batch of each sample's squared parameter gradient into
    /// `dparams` (overwritten). The inputs are the layer input `act.x` and the output gradient
    /// `dy` of a backward pass, whose row `i` is sample `i`'s share of the gradient. Returns
    /// `false` when the layer cannot separate the samples' shares. The default serves layers
    /// without parameters that treat each sample on its own. A layer that mixes samples must
    /// return `false`, because the gradients before it then mix them too.
    fn squared_sample_gradients(
        &self,
        _pass: &Pass<T>,
        _act: Activations<T>,
        _dy: &[T],
        _dparams: &mut [T],
    ) -> bool {
        self.param_count() == 0
    }

    /// Computes the output tangent `R{y} = ∂y/∂θ · vθ + ∂y/∂x · R{x}`. `rx` is `None` when the
    /// input tangent is zero, as for the first layer.
    #[allow(clippy::too_many_arguments)]
    fn tangent(
        &self,
        pass: &Pass<T>,
        params: &[T],
        vparams: &[T],
        act: Activations<T>,
        rx: Option<&[T]>,
        ry: &mut [T],
        scratch: &mut [T],
    );

    /// Differentiates the backward pass along the tangent: given `dy`, `R{dy}` and `R{x}`,
    /// computes `R{dθ}` into `rdparams` (overwritten) and, when `rdx` is given, `R{dx}`.
    /// Together with [`Layer::tangent`] this gives exact Hessian-vector products.
    #[allow(clippy::too_many_arguments)]
    fn backward_tangent(
        &self,
        pass: &Pass<T>,
        params: &[T],
        vparams: &[T],
        act: Activations<T>,
        rx: Option<&[T]>,
        dy: &[T],
        rdy: &[T],
        rdx: Option<&mut [T]>,
        rdparams: &mut [T],
        scratch: &mut [T],
    );
}
