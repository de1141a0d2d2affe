//! The objective that every method uses: a function of the flat parameter vector θ that gives
//! its value, its gradient, and its Gauss-Newton and Hessian products with a vector.
//!
//! # Cost units
//!
//! Evaluations are counted in one unit for every method: one forward pass of one sample. The
//! other passes count by their matrix products relative to the forward pass of a dense layer,
//! which does one product: a backward pass does two (parameter and input gradients), a tangent
//! pass two (`x R{W}ᵀ` and `R{x} Wᵀ`), and a differentiated backward pass four.

mod grouped;

pub use grouped::{BatchGroups, GroupScratch, GroupedObjective, DEFAULT_BATCH_GROUPS};

use crate::nn::{Loss, Mode, Network, Workspace};
use crate::tensor::Scalar;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Cost of a backward pass, in forward-pass units.
pub const BACKWARD_COST: u64 = 2;
/// Cost of a tangent pass, in forward-pass units.
pub const TANGENT_COST: u64 = 2;
/// Cost of a differentiated backward pass, in forward-pass units.
pub const BACKWARD_TANGENT_COST: u64 = 4;
/// Cost of the per-sample squared gradients after a backward pass, in forward-pass units.
pub const SQUARED_GRADIENT_COST: u64 = 1;

/// Counts evaluations and gradient evaluations across objectives, threads and steps.
#[derive(Debug, Default)]
pub struct Counter {
    units: AtomicU64,
    gradients: AtomicU64,
}

impl Counter {
    /// Adds `units` forward-sample units.
    pub fn add(&self, units: u64) {
        self.units.fetch_add(units, Ordering::Relaxed);
    }

    /// Adds one gradient evaluation (of any batch size).
    pub fn add_gradient(&self) {
        self.gradients.fetch_add(1, Ordering::Relaxed);
    }

    /// Forward-sample units so far.
    pub fn units(&self) -> u64 {
        self.units.load(Ordering::Relaxed)
    }

    /// Gradient evaluations so far.
    pub fn gradients(&self) -> u64 {
        self.gradients.load(Ordering::Relaxed)
    }
}

/// A differentiable function of the flat parameter vector.
///
/// Values are returned as `f64` and may be NaN or infinite; methods decide what to do with
/// them. Curvature products are optional: an objective without them returns `false`.
pub trait Objective<T: Scalar> {
    /// Number of parameters.
    fn dim(&self) -> usize;

    /// Returns `f(θ)`.
    fn value(&mut self, theta: &[T]) -> f64;

    /// Writes `∇f(θ)` into `grad` and returns `f(θ)`.
    fn gradient(&mut self, theta: &[T], grad: &mut [T]) -> f64;

    /// Writes the Gauss-Newton product `G(θ) v = Jᵀ H_L J v` into `out`. Returns `false` when
    /// the objective has no Gauss-Newton structure.
    fn gauss_newton_product(&mut self, _theta: &[T], _v: &[T], _out: &mut [T]) -> bool {
        false
    }

    /// Writes the Hessian product `H(θ) v` into `out`. Returns `false` when not available.
    fn hessian_product(&mut self, _theta: &[T], _v: &[T], _out: &mut [T]) -> bool {
        false
    }

    /// Writes the diagonal of the empirical Fisher matrix into `out`. For `f = (1/n) Σ_i ℓ_i`
    /// over the `n` samples of the batch, it is `(1/n) Σ_i ∇ℓ_i ⊙ ∇ℓ_i`, and a part of a
    /// larger batch writes its share of that sum. Returns `false` when the objective cannot
    /// give per-sample gradients.
    fn empirical_fisher_diagonal(&mut self, _theta: &[T], _out: &mut [T]) -> bool {
        false
    }

    /// Evaluations so far, in forward-sample units.
    fn evaluations(&self) -> u64;

    /// Returns an independent copy for evaluating values on another thread, sharing the
    /// evaluation counter; `None` when the objective cannot be copied.
    fn fork(&self) -> Option<Box<dyn Objective<T> + Send + '_>> {
        None
    }

    /// Writes the values of `values.len()` candidate points into `values`, for search
    /// methods. `fill(i, point)` writes candidate `i` into a copy of `base`. The default is
    /// [`values_by_forks`].
    fn candidate_values(
        &mut self,
        base: &[T],
        values: &mut [f64],
        fill: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        values_by_forks(self, base, values, fill);
    }

    /// Returns the same function over the first `ceil(fraction · batch)` samples of this
    /// batch (at least one), sharing the evaluation counter, for curvature products on part
    /// of the batch. `None` when the objective cannot be restricted.
    fn subset(&self, _fraction: f64) -> Option<Box<dyn Objective<T> + '_>> {
        None
    }

    /// Returns the range of parameters whose update this process makes when the processes
    /// behind the objective split an elementwise optimiser step between them, and `None`
    /// when they do not. Every process returns `Some` or every one returns `None`, but a
    /// range may be empty or whole. A method that splits its step must then call
    /// [`Objective::gradient_in_range`], [`Objective::sum_over_ranges`] and
    /// [`Objective::share_updates`] on every process, because each is a collective.
    fn update_range(&self) -> Option<Range<usize>> {
        None
    }

    /// Like [`Objective::gradient`], but only `grad[update_range()]` need be right
    /// afterwards, which saves the processes adding the rest. Returns the value.
    fn gradient_in_range(&mut self, theta: &[T], grad: &mut [T]) -> f64 {
        self.gradient(theta, grad)
    }

    /// Returns the sum of `x` over the processes that split the update, which is `x` itself
    /// with one process.
    fn sum_over_ranges(&mut self, x: f64) -> f64 {
        x
    }

    /// Copies into `params` the values that the other processes wrote in their update
    /// ranges, after each updated its own.
    fn share_updates(&mut self, _params: &mut [T]) {}
}

/// Evaluates candidate points as [`Objective::candidate_values`] describes: split into one
/// contiguous chunk per rayon thread, each evaluated by its own [`Objective::fork`], or in
/// order on this thread when the objective cannot fork. Either way `values[i]` depends only
/// on candidate `i`, not on the thread count.
pub fn values_by_forks<T: Scalar, O: Objective<T> + ?Sized>(
    objective: &mut O,
    base: &[T],
    values: &mut [f64],
    fill: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    use rayon::prelude::*;
    let count = values.len();
    let threads = rayon::current_num_threads().min(count);
    if threads > 1 {
        let forks: Option<Vec<_>> = (0..threads).map(|_| objective.fork()).collect();
        if let Some(forks) = forks {
            let chunk = count.div_ceil(threads);
            forks
                .into_par_iter()
                .zip(values.par_chunks_mut(chunk))
                .enumerate()
                .for_each(|(c, (mut fork, out))| {
                    let mut point = base.to_vec();
                    for (j, value) in out.iter_mut().enumerate() {
                        fill(c * chunk + j, &mut point);
                        *value = fork.value(&point);
                    }
                });
            return;
        }
    }
    let mut point = base.to_vec();
    for (i, value) in values.iter_mut().enumerate() {
        fill(i, &mut point);
        *value = objective.value(&point);
    }
}

/// Samples that [`Objective::subset`] keeps of a batch of `batch > 0`: `ceil(fraction ·
/// batch)`, at least one.
pub fn subset_size(fraction: f64, batch: usize) -> usize {
    ((fraction * batch as f64).ceil() as usize).clamp(1, batch)
}

/// Which derived quantities the workspace holds for the cached parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cached {
    Nothing,
    Forward,
    Backward,
}

/// A network and a loss on one batch of inputs `x` and targets `t`, as a function of θ.
pub struct NetworkObjective<'a, T: Scalar> {
    network: &'a Network<T>,
    loss: Loss,
    x: &'a [T],
    t: &'a [T],
    batch: usize,
    /// Samples of the whole batch whose mean loss this batch is part of.
    mean_over: usize,
    /// Whether each gradient adds one to the counter's gradient evaluations.
    counts_gradients: bool,
    mode: Mode,
    seed: u64,
    workspace: Workspace<T>,
    /// Whether passes keep a copy of θ so that curvature products at the same θ can reuse
    /// them. Off until the first curvature product, so that a step that only takes
    /// gradients copies nothing.
    reuse_passes: bool,
    cached_theta: Vec<T>,
    cached: Cached,
    gradient_buffer: Vec<T>,
    counter: Arc<Counter>,
}

impl<'a, T: Scalar> NetworkObjective<'a, T> {
    /// Creates the objective for a batch. `seed` fixes dropout masks for every evaluation on
    /// this batch, so that line searches see one function.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        network: &'a Network<T>,
        loss: Loss,
        x: &'a [T],
        t: &'a [T],
        batch: usize,
        mode: Mode,
        seed: u64,
        counter: Arc<Counter>,
    ) -> Self {
        Self::with_workspace(network, loss, x, t, batch, mode, seed, counter, None)
    }

    /// Creates the objective reusing a workspace, so that a training loop allocates nothing
    /// per step. Take the workspace back with [`NetworkObjective::into_workspace`].
    #[allow(clippy::too_many_arguments)]
    pub fn with_workspace(
        network: &'a Network<T>,
        loss: Loss,
        x: &'a [T],
        t: &'a [T],
        batch: usize,
        mode: Mode,
        seed: u64,
        counter: Arc<Counter>,
        workspace: Option<Workspace<T>>,
    ) -> Self {
        assert_eq!(
            x.len(),
            batch * network.input_size(),
            "inputs do not match the batch"
        );
        assert_eq!(
            t.len(),
            batch * network.output_size(),
            "targets do not match the batch"
        );
        let workspace = workspace.unwrap_or_else(|| network.workspace(batch));
        NetworkObjective {
            network,
            loss,
            x,
            t,
            batch,
            mean_over: batch,
            counts_gradients: true,
            mode,
            seed,
            workspace,
            reuse_passes: false,
            cached_theta: Vec::new(),
            cached: Cached::Nothing,
            gradient_buffer: Vec::new(),
            counter,
        }
    }

    /// Makes this batch part of a larger one of `samples` samples: values, gradients and
    /// curvature products become this batch's share of that batch's mean loss, so that the
    /// shares of its parts add up to it without further scaling.
    pub fn mean_over(mut self, samples: usize) -> Self {
        assert!(
            samples >= self.batch,
            "a batch of {} samples is not part of {samples}",
            self.batch
        );
        self.mean_over = samples;
        self
    }

    /// Stops counting gradient evaluations, for a part of a batch whose whole counts them.
    pub fn without_gradient_count(mut self) -> Self {
        self.counts_gradients = false;
        self
    }

    /// Returns the workspace for reuse.
    pub fn into_workspace(self) -> Workspace<T> {
        self.workspace
    }

    /// The shared evaluation counter.
    pub fn counter(&self) -> &Arc<Counter> {
        &self.counter
    }

    /// Returns the same function over the first `samples` samples of this batch, sharing the
    /// evaluation counter.
    pub fn first(&self, samples: usize) -> NetworkObjective<'a, T> {
        assert!(
            samples <= self.batch,
            "{samples} samples exceed the batch of {}",
            self.batch
        );
        let x = &self.x[..samples * self.network.input_size()];
        let t = &self.t[..samples * self.network.output_size()];
        let counter = Arc::clone(&self.counter);
        let (network, loss, mode, seed) = (self.network, self.loss, self.mode, self.seed);
        let mut first = NetworkObjective::new(network, loss, x, t, samples, mode, seed, counter);
        first.counts_gradients = self.counts_gradients;
        first
    }

    /// Returns an independent copy with a workspace of its own, sharing the evaluation
    /// counter.
    pub fn copy(&self) -> NetworkObjective<'a, T> {
        let counter = Arc::clone(&self.counter);
        let (network, loss, mode, seed) = (self.network, self.loss, self.mode, self.seed);
        let mut copy = NetworkObjective::new(
            network, loss, self.x, self.t, self.batch, mode, seed, counter,
        )
        .mean_over(self.mean_over);
        copy.counts_gradients = self.counts_gradients;
        copy
    }

    /// Samples in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Network output of the last forward pass.
    pub fn output(&self) -> &[T] {
        self.workspace.output()
    }

    fn is_cached(&self, theta: &[T], need: Cached) -> bool {
        self.cached >= need && self.cached_theta.as_slice() == theta
    }

    /// Runs the forward pass at `theta`, leaving the output in the workspace.
    fn forward(&mut self, theta: &[T]) {
        let n = self.batch;
        self.network
            .forward(&mut self.workspace, theta, self.x, n, self.mode, self.seed);
        self.counter.add(n as u64);
        self.cached_theta.clear();
        if self.reuse_passes {
            self.cached_theta.extend_from_slice(theta);
            self.cached = Cached::Forward;
        } else {
            self.cached = Cached::Nothing;
        }
    }

    /// Makes sure forward and backward passes at `theta` are in the workspace.
    fn ensure_backward(&mut self, theta: &[T]) {
        self.reuse_passes = true;
        if self.is_cached(theta, Cached::Backward) {
            return;
        }
        let mut grad = std::mem::take(&mut self.gradient_buffer);
        grad.resize(theta.len(), T::zero());
        self.gradient(theta, &mut grad);
        self.gradient_buffer = grad;
    }

    /// Places `H_L J v` at the output: the start of both curvature products.
    fn output_curvature(&mut self, theta: &[T], v: &[T]) {
        self.reuse_passes = true;
        if !self.is_cached(theta, Cached::Forward) {
            self.forward(theta);
        }
        let net = self.network;
        net.tangent(&mut self.workspace, theta, self.x, v);
        let n = self.batch;
        let (z, rz, u) = self.workspace.output_tangent_and_rgrad_mut();
        self.loss
            .hessian_product_of_part(z, self.t, n, self.mean_over, rz, u);
        self.counter.add(TANGENT_COST * n as u64);
    }
}

impl<T: Scalar> Objective<T> for NetworkObjective<'_, T> {
    fn dim(&self) -> usize {
        self.network.param_count()
    }

    fn value(&mut self, theta: &[T]) -> f64 {
        self.forward(theta);
        let (n, mean_over) = (self.batch, self.mean_over);
        self.loss
            .value_of_part(self.workspace.output(), self.t, n, mean_over)
    }

    fn gradient(&mut self, theta: &[T], grad: &mut [T]) -> f64 {
        self.forward(theta);
        let n = self.batch;
        let (z, dz) = self.workspace.output_and_gradient_mut();
        let value = self.loss.gradient_of_part(z, self.t, n, self.mean_over, dz);
        self.network
            .backward(&mut self.workspace, theta, self.x, grad);
        self.counter.add(BACKWARD_COST * n as u64);
        if self.counts_gradients {
            self.counter.add_gradient();
        }
        if self.reuse_passes {
            self.cached = Cached::Backward;
        }
        value
    }

    fn gauss_newton_product(&mut self, theta: &[T], v: &[T], out: &mut [T]) -> bool {
        self.output_curvature(theta, v);
        self.network
            .transpose_jacobian_product(&mut self.workspace, theta, self.x, out);
        self.counter.add(BACKWARD_COST * self.batch as u64);
        true
    }

    fn hessian_product(&mut self, theta: &[T], v: &[T], out: &mut [T]) -> bool {
        self.ensure_backward(theta);
        self.output_curvature(theta, v);
        self.network
            .backward_tangent(&mut self.workspace, theta, self.x, v, out);
        self.counter.add(BACKWARD_TANGENT_COST * self.batch as u64);
        true
    }

    fn empirical_fisher_diagonal(&mut self, theta: &[T], out: &mut [T]) -> bool {
        self.ensure_backward(theta);
        if !self
            .network
            .squared_sample_gradients(&self.workspace, self.x, out)
        {
            return false;
        }
        // Row i of the output gradient is ∇ℓ_i / n for the n samples of the whole batch, so
        // the sums of squares carry 1/n², and n times them is this part's share of the mean.
        self.counter.add(SQUARED_GRADIENT_COST * self.batch as u64);
        let n = T::of(self.mean_over as f64);
        out.iter_mut().for_each(|v| *v *= n);
        true
    }

    fn evaluations(&self) -> u64 {
        self.counter.units()
    }

    fn fork(&self) -> Option<Box<dyn Objective<T> + Send + '_>> {
        Some(Box::new(self.copy()))
    }

    fn subset(&self, fraction: f64) -> Option<Box<dyn Objective<T> + '_>> {
        if self.batch == 0 {
            return None;
        }
        let samples = subset_size(fraction, self.batch);
        Some(Box::new(self.first(samples)))
    }
}
