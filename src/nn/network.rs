//! A network: a sequence of layers over one flat parameter buffer, and the workspace that
//! contains one batch's activations, gradients and tangents.

use super::layer::{Activations, Layer, Mode, Pass};
use super::{build_layer, Activation, Dense, Init, LayerSpec, Rng};
use crate::tensor::{Kernels, Scalar};
use crate::{Error, Result};
use rand::SeedableRng;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A feed-forward network. Parameters live outside it, in one flat slice whose layout
/// [`Network::param_ranges`] gives, and the network can be shared between threads.
///
/// The network owns the layers' non-trainable buffers (batch normalisation's running
/// statistics), laid out as [`Network::buffer_ranges`] gives. Every forward pass in
/// [`Mode::Train`] updates them, as in PyTorch, so a method that evaluates one batch several
/// times moves them once per evaluation.
pub struct Network<T: Scalar> {
    layers: Vec<Box<dyn Layer<T>>>,
    /// At index `i`, the dense layer `i` when layer `i + 1` is a ReLU: the forward and
    /// gradient passes run the pair as one, with bias and ReLU in the product's epilogue.
    fused: Vec<Option<Dense>>,
    ranges: Vec<Range<usize>>,
    buffer_ranges: Vec<Range<usize>>,
    buffers: Mutex<Vec<T>>,
    specs: Vec<LayerSpec>,
    input_shape: Vec<usize>,
    kernels: Arc<dyn Kernels<T>>,
}

/// Buffers for the passes over one batch, allocated for a capacity and reused; a larger batch
/// grows them once.
///
/// Index `i` of `act`, `grad`, `tan` and `rgrad` is the boundary before layer `i`; the last
/// index is the network output. Index 0 is the network input, which the passes read from
/// the caller's slice, so its buffers stay empty.
pub struct Workspace<T> {
    capacity: usize,
    batch: usize,
    mode: Mode,
    seed: u64,
    act: Vec<Vec<T>>,
    grad: Vec<Vec<T>>,
    tan: Vec<Vec<T>>,
    rgrad: Vec<Vec<T>>,
    scratch: Vec<Vec<T>>,
    /// The network's buffers as of the last forward pass, read by all passes of the batch.
    buffers: Vec<T>,
}

impl<T: Scalar> Workspace<T> {
    /// Samples in the batch of the last forward pass.
    pub fn batch(&self) -> usize {
        self.batch
    }

    fn output_len(&self) -> usize {
        let last = self.act.len() - 1;
        self.batch * self.act[last].len() / self.capacity
    }

    /// Output of the last forward pass, `batch × output_size`.
    pub fn output(&self) -> &[T] {
        let n = self.output_len();
        &self.act[self.act.len() - 1][..n]
    }

    /// The output and the output gradient, which the loss fills before a backward pass.
    pub fn output_and_gradient_mut(&mut self) -> (&[T], &mut [T]) {
        let (n, last) = (self.output_len(), self.act.len() - 1);
        (&self.act[last][..n], &mut self.grad[last][..n])
    }

    /// The output, its tangent, and the vector that starts the second backward chain, which
    /// the loss Hessian fills from the tangent.
    pub fn output_tangent_and_rgrad_mut(&mut self) -> (&[T], &[T], &mut [T]) {
        let (n, last) = (self.output_len(), self.act.len() - 1);
        (
            &self.act[last][..n],
            &self.tan[last][..n],
            &mut self.rgrad[last][..n],
        )
    }
}

impl<T: Scalar> Network<T> {
    /// Builds a network for samples of `input_shape` from layer descriptions. Shapes are
    /// checked here: a layer that cannot take its input shape is an error naming the layer.
    pub fn new(
        input_shape: &[usize],
        specs: &[LayerSpec],
        kernels: Arc<dyn Kernels<T>>,
    ) -> Result<Self> {
        if input_shape.iter().product::<usize>() == 0 {
            return Err(Error::Shape(format!(
                "input shape {input_shape:?} has no elements"
            )));
        }
        let mut layers: Vec<Box<dyn Layer<T>>> = Vec::with_capacity(specs.len());
        let mut ranges = Vec::with_capacity(specs.len());
        let mut buffer_ranges = Vec::with_capacity(specs.len());
        let mut shape = input_shape.to_vec();
        let (mut offset, mut buffer_offset) = (0, 0);
        for (index, spec) in specs.iter().enumerate() {
            let layer = build_layer::<T>(spec, &shape, index)?;
            shape = layer.output_shape().to_vec();
            ranges.push(offset..offset + layer.param_count());
            offset += layer.param_count();
            buffer_ranges.push(buffer_offset..buffer_offset + layer.buffer_count());
            buffer_offset += layer.buffer_count();
            layers.push(layer);
        }
        let mut buffers = vec![T::zero(); buffer_offset];
        for (layer, range) in layers.iter().zip(&buffer_ranges) {
            layer.init_buffers(&mut buffers[range.clone()]);
        }
        let fused = fused_pairs(specs, &layers);
        Ok(Network {
            layers,
            fused,
            ranges,
            buffer_ranges,
            buffers: Mutex::new(buffers),
            specs: specs.to_vec(),
            input_shape: input_shape.to_vec(),
            kernels,
        })
    }

    /// The layer descriptions this network was built from.
    pub fn specs(&self) -> &[LayerSpec] {
        &self.specs
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Box<dyn Layer<T>>] {
        &self.layers
    }

    /// Each layer's range within the flat parameter buffer.
    pub fn param_ranges(&self) -> &[Range<usize>] {
        &self.ranges
    }

    /// Each layer's range within the buffer vector of [`Network::buffers`].
    pub fn buffer_ranges(&self) -> &[Range<usize>] {
        &self.buffer_ranges
    }

    /// Total number of buffer elements.
    pub fn buffer_count(&self) -> usize {
        self.buffer_ranges.last().map_or(0, |r| r.end)
    }

    /// Returns a copy of the non-trainable buffers, laid out as [`Network::buffer_ranges`]
    /// gives.
    pub fn buffers(&self) -> Vec<T> {
        self.lock_buffers().clone()
    }

    /// Replaces the non-trainable buffers, for example with values read from a model file.
    /// Forward passes that start afterwards use them.
    pub fn set_buffers(&self, values: &[T]) -> Result<()> {
        let mut buffers = self.lock_buffers();
        if values.len() != buffers.len() {
            return Err(Error::Shape(format!(
                "{} buffer values given but the network has {} buffer elements",
                values.len(),
                buffers.len()
            )));
        }
        buffers.copy_from_slice(values);
        Ok(())
    }

    /// Locks the buffers. A panic while the lock was held leaves plain numbers behind, so a
    /// poisoned lock is still usable.
    fn lock_buffers(&self) -> MutexGuard<'_, Vec<T>> {
        self.buffers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kernels the network computes with.
    pub fn kernels(&self) -> &dyn Kernels<T> {
        self.kernels.as_ref()
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Per-sample input size.
    pub fn input_size(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Per-sample output size.
    pub fn output_size(&self) -> usize {
        self.layers
            .last()
            .map_or(self.input_size(), |l| l.output_size())
    }

    /// Total number of parameters.
    pub fn param_count(&self) -> usize {
        self.ranges.last().map_or(0, |r| r.end)
    }

    /// Returns freshly initialised parameters. `Init::Auto` picks He uniform for a layer
    /// followed by a ReLU-like activation and Glorot uniform otherwise.
    pub fn init_params(&self, init: Init, seed: u64) -> Vec<T> {
        let mut params = vec![T::zero(); self.param_count()];
        let mut rng = Rng::seed_from_u64(seed);
        for (i, layer) in self.layers.iter().enumerate() {
            let scheme = match init {
                Init::Auto => auto_init(&self.specs[i + 1..]),
                other => other,
            };
            layer.init_params(&mut params[self.ranges[i].clone()], scheme, &mut rng);
        }
        params
    }

    /// Allocates a workspace for batches of up to `capacity` samples.
    pub fn workspace(&self, capacity: usize) -> Workspace<T> {
        let capacity = capacity.max(1);
        let sizes: Vec<usize> = std::iter::once(0)
            .chain(self.layers.iter().map(|l| l.output_size()))
            .collect();
        let buffers = || {
            sizes
                .iter()
                .map(|s| vec![T::zero(); s * capacity])
                .collect()
        };
        Workspace {
            capacity,
            batch: 0,
            mode: Mode::Eval,
            seed: 0,
            act: buffers(),
            grad: buffers(),
            tan: buffers(),
            rgrad: buffers(),
            scratch: self
                .layers
                .iter()
                .map(|l| vec![T::zero(); l.scratch_size(capacity)])
                .collect(),
            buffers: vec![T::zero(); self.buffer_count()],
        }
    }

    fn ensure_capacity(&self, ws: &mut Workspace<T>, batch: usize) {
        if batch > ws.capacity || ws.act.len() != self.layers.len() + 1 {
            *ws = self.workspace(batch);
        }
    }

    fn pass<'k>(&'k self, ws: &Workspace<T>) -> Pass<'k, T> {
        Pass {
            kernels: self.kernels.as_ref(),
            batch: ws.batch,
            mode: ws.mode,
            seed: ws.seed,
            buffers: &[],
        }
    }

    /// Checks that `x` is a batch of the size of the last forward pass.
    fn check_input(&self, ws: &Workspace<T>, x: &[T]) {
        assert_eq!(
            x.len(),
            ws.batch * self.input_size(),
            "input has {} elements but the forward pass ran on {} samples of {}",
            x.len(),
            ws.batch,
            self.input_size()
        );
    }

    fn check_params(&self, params: &[T]) {
        assert_eq!(
            params.len(),
            self.param_count(),
            "parameter buffer has {} elements but the network has {}",
            params.len(),
            self.param_count()
        );
    }

    /// Runs the forward pass on `batch` samples `x` and returns the output. The workspace
    /// keeps the activations for the backward and tangent passes that follow, which take
    /// the same `x` again because the workspace does not copy it. `seed` fixes
    /// the dropout masks of this batch. In [`Mode::Train`] the pass also updates the
    /// network's buffers.
    pub fn forward<'w>(
        &self,
        ws: &'w mut Workspace<T>,
        params: &[T],
        x: &[T],
        batch: usize,
        mode: Mode,
        seed: u64,
    ) -> &'w [T] {
        self.check_params(params);
        assert_eq!(
            x.len(),
            batch * self.input_size(),
            "input length does not match batch"
        );
        self.ensure_capacity(ws, batch);
        ws.batch = batch;
        ws.mode = mode;
        ws.seed = seed;

        if ws.buffers.len() != self.buffer_count() {
            ws.buffers = vec![T::zero(); self.buffer_count()];
        }
        if !ws.buffers.is_empty() {
            ws.buffers.copy_from_slice(&self.lock_buffers());
        }

        let base = self.pass(ws);
        let mut i = 0;
        while i < self.layers.len() {
            let layer = &self.layers[i];
            let layer_params = &params[self.ranges[i].clone()];
            let (lo, hi) = ws.act.split_at_mut(i + 1);
            let x = layer_input(lo, x, i, batch * layer.input_size());
            let (y, rest) = hi.split_at_mut(1);
            let y = &mut y[0][..batch * layer.output_size()];
            let buffer_range = self.buffer_ranges[i].clone();
            let pass = Pass {
                buffers: &ws.buffers[buffer_range.clone()],
                ..base
            };
            if let Some(dense) = &self.fused[i] {
                // A dense layer and the ReLU after it, in one pass; neither has buffers.
                let relu = &mut rest[0][..y.len()];
                dense.forward_relu(&pass, layer_params, x, y, Some(relu));
                i += 2;
                continue;
            }
            let scratch = &mut ws.scratch[i];
            layer.forward(&pass, layer_params, x, y, scratch);
            if mode == Mode::Train && !buffer_range.is_empty() {
                let mut buffers = self.lock_buffers();
                layer.update_buffers(&pass, &mut buffers[buffer_range], scratch);
            }
            i += 1;
        }
        ws.output()
    }

    /// Runs the backward pass from the output gradient already placed by
    /// [`Workspace::output_and_gradient_mut`], writing the parameter gradient into `grad`.
    /// `x` is the input of the forward pass. The input gradient of the first layer is not
    /// computed.
    pub fn backward(&self, ws: &mut Workspace<T>, params: &[T], x: &[T], grad: &mut [T]) {
        self.check_params(params);
        self.check_input(ws, x);
        self.backward_chain(ws, params, x, grad, Chain::Gradient);
    }

    /// Runs the tangent pass along the parameter direction `v` (input tangent zero) after a
    /// forward pass on the input `x`, and returns `J v`, the output tangent.
    pub fn tangent<'w>(&self, ws: &'w mut Workspace<T>, params: &[T], x: &[T], v: &[T]) -> &'w [T] {
        self.check_params(params);
        self.check_params(v);
        self.check_input(ws, x);
        let base = self.pass(ws);
        let n = ws.batch;
        for (i, layer) in self.layers.iter().enumerate() {
            let r = self.ranges[i].clone();
            let pass = Pass {
                buffers: &ws.buffers[self.buffer_ranges[i].clone()],
                ..base
            };
            let act = Activations {
                x: layer_input(&ws.act, x, i, n * layer.input_size()),
                y: &ws.act[i + 1][..n * layer.output_size()],
            };
            let (lo, hi) = ws.tan.split_at_mut(i + 1);
            let rx = (i > 0).then(|| &lo[i][..n * layer.input_size()]);
            let ry = &mut hi[0][..n * layer.output_size()];
            let scratch = &mut ws.scratch[i];
            layer.tangent(&pass, &params[r.clone()], &v[r], act, rx, ry, scratch);
        }
        let last = self.layers.len();
        &ws.tan[last][..n * self.output_size()]
    }

    /// Computes `Jᵀ u` for the vector `u` already placed by
    /// [`Workspace::output_tangent_and_rgrad_mut`], writing it into `out`, after a forward
    /// pass on the input `x`. With `u = H_L J v` this completes a Gauss-Newton product.
    pub fn transpose_jacobian_product(
        &self,
        ws: &mut Workspace<T>,
        params: &[T],
        x: &[T],
        out: &mut [T],
    ) {
        self.check_params(params);
        self.check_input(ws, x);
        self.backward_chain(ws, params, x, out, Chain::Transpose);
    }

    /// Differentiates the backward pass along `v`, after forward, backward and tangent passes
    /// on the same input `x` and with `R{dy}` of the output placed by
    /// [`Workspace::output_tangent_and_rgrad_mut`]. Writes `H v` into `out`.
    pub fn backward_tangent(
        &self,
        ws: &mut Workspace<T>,
        params: &[T],
        x: &[T],
        v: &[T],
        out: &mut [T],
    ) {
        self.check_params(params);
        self.check_input(ws, x);
        let base = self.pass(ws);
        let n = ws.batch;
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let r = self.ranges[i].clone();
            let pass = Pass {
                buffers: &ws.buffers[self.buffer_ranges[i].clone()],
                ..base
            };
            let (ni, no) = (n * layer.input_size(), n * layer.output_size());
            let act = Activations {
                x: layer_input(&ws.act, x, i, ni),
                y: &ws.act[i + 1][..no],
            };
            let rx = (i > 0).then(|| &ws.tan[i][..ni]);
            let dy = &ws.grad[i + 1][..no];
            let (lo, hi) = ws.rgrad.split_at_mut(i + 1);
            let rdy = &hi[0][..no];
            let rdx = (i > 0).then(|| &mut lo[i][..ni]);
            let (p, vp, rdp) = (&params[r.clone()], &v[r.clone()], &mut out[r]);
            layer.backward_tangent(&pass, p, vp, act, rx, dy, rdy, rdx, rdp, &mut ws.scratch[i]);
        }
    }

    /// Writes, after a backward pass on the input `x`, the sum over the batch of each
    /// sample's squared parameter gradient into `out`. Returns `false`, with `out`
    /// unspecified, when a layer cannot separate the samples' gradients (see
    /// [`Layer::squared_sample_gradients`]).
    pub fn squared_sample_gradients(&self, ws: &Workspace<T>, x: &[T], out: &mut [T]) -> bool {
        self.check_params(out);
        self.check_input(ws, x);
        let base = self.pass(ws);
        let n = ws.batch;
        for (i, layer) in self.layers.iter().enumerate() {
            let pass = Pass {
                buffers: &ws.buffers[self.buffer_ranges[i].clone()],
                ..base
            };
            let (ni, no) = (n * layer.input_size(), n * layer.output_size());
            let act = Activations {
                x: layer_input(&ws.act, x, i, ni),
                y: &ws.act[i + 1][..no],
            };
            // The backward pass leaves each layer's output gradient in grad[i + 1], for a
            // dense layer fused with its ReLU too.
            let dy = &ws.grad[i + 1][..no];
            let dparams = &mut out[self.ranges[i].clone()];
            if !layer.squared_sample_gradients(&pass, act, dy, dparams) {
                return false;
            }
        }
        true
    }

    /// Runs a backward pass over either the gradient buffers or the second-chain buffers.
    fn backward_chain(
        &self,
        ws: &mut Workspace<T>,
        params: &[T],
        input: &[T],
        out: &mut [T],
        chain: Chain,
    ) {
        let base = self.pass(ws);
        let n = ws.batch;
        let mut i = self.layers.len();
        while i > 0 {
            i -= 1;
            let buffers = match chain {
                Chain::Gradient => &mut ws.grad,
                Chain::Transpose => &mut ws.rgrad,
            };
            // A ReLU after a fused dense layer: run both backward passes as one.
            if let Some(dense) = i.checked_sub(1).and_then(|d| self.fused[d].as_ref()) {
                i -= 1;
                let r = self.ranges[i].clone();
                let (ni, no) = (
                    n * self.layers[i].input_size(),
                    n * self.layers[i].output_size(),
                );
                let (x, z) = (layer_input(&ws.act, input, i, ni), &ws.act[i + 1][..no]);
                let (lo, hi) = buffers.split_at_mut(i + 1);
                let (dz, dy) = hi.split_at_mut(1);
                let (dz, dy) = (&mut dz[0][..no], &dy[0][..no]);
                let dx = (i > 0).then(|| &mut lo[i][..ni]);
                let (p, dp) = (&params[r.clone()], &mut out[r]);
                dense.backward_relu(&base, p, x, z, dy, dz, dx, dp);
                continue;
            }
            let layer = &self.layers[i];
            let r = self.ranges[i].clone();
            let pass = Pass {
                buffers: &ws.buffers[self.buffer_ranges[i].clone()],
                ..base
            };
            let (ni, no) = (n * layer.input_size(), n * layer.output_size());
            let act = Activations {
                x: layer_input(&ws.act, input, i, ni),
                y: &ws.act[i + 1][..no],
            };
            let (lo, hi) = buffers.split_at_mut(i + 1);
            let dy = &hi[0][..no];
            let dx = (i > 0).then(|| &mut lo[i][..ni]);
            let (p, dp) = (&params[r.clone()], &mut out[r]);
            layer.backward(&pass, p, act, dy, dx, dp, &mut ws.scratch[i]);
        }
    }
}

/// Returns the first `len` values of the input of layer `i`: the network input `x` for the
/// first layer and the activation buffer `acts[i]` for the others.
fn layer_input<'a, T>(acts: &'a [Vec<T>], x: &'a [T], i: usize, len: usize) -> &'a [T] {
    if i == 0 {
        &x[..len]
    } else {
        &acts[i][..len]
    }
}

#[derive(Clone, Copy)]
enum Chain {
    Gradient,
    Transpose,
}

/// Finds the dense layers followed by a ReLU, which the forward and gradient passes fuse.
fn fused_pairs<T: Scalar>(specs: &[LayerSpec], layers: &[Box<dyn Layer<T>>]) -> Vec<Option<Dense>> {
    (0..specs.len())
        .map(|i| match (&specs[i], specs.get(i + 1)) {
            (
                LayerSpec::Dense { .. },
                Some(LayerSpec::Activation {
                    function: Activation::Relu,
                }),
            ) => Some(Dense::new(layers[i].input_size(), layers[i].output_size())),
            _ => None,
        })
        .collect()
}

/// Picks the initialisation for a layer from the layers after it, looking past batch
/// normalisation to the activation that follows.
fn auto_init(rest: &[LayerSpec]) -> Init {
    use super::Activation as A;
    let next = rest.iter().find(|s| !matches!(s, LayerSpec::BatchNorm));
    match next {
        Some(LayerSpec::Activation {
            function: A::Relu | A::LeakyRelu | A::Gelu,
        }) => Init::HeUniform,
        _ => Init::GlorotUniform,
    }
}
