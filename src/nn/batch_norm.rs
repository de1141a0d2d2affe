//! Batch normalisation after Ioffe and Szegedy (2015), "Batch normalization: accelerating deep
//! network training by reducing internal covariate shift", ICML, with PyTorch's conventions:
//! the biased batch variance normalises, the unbiased one enters the running variance, and
//! `running = (1 − momentum) · running + momentum · batch statistic`.
//!
//! Per channel `c`, over the `M` values of the batch (every sample and spatial position):
//!
//! ```text
//! μ = mean(x),  σ² = mean((x − μ)²),  s = 1 / sqrt(σ² + ε)
//! x̂ = (x − μ) s,  y = γ x̂ + β
//! ```
//!
//! In evaluation `μ` and `σ²` are the running statistics, so the layer is affine in `x`. In
//! training they depend on the whole batch, and the passes carry those terms:
//!
//! ```text
//! dx     = γ s (dy − mean(dy) − x̂ mean(dy x̂))
//! R{x̂}   = s (R{x} − mean(R{x}) − x̂ q),          q = mean(x̂ R{x}),  R{s} = −s² q
//! R{y}   = R{γ} x̂ + R{β} + γ R{x̂}
//! R{dx}  = s (R{γ} − γ s q) g + γ s (R{dy} − mean(R{dy}) − R{x̂} b − x̂ R{b})
//!          with g = dy − mean(dy) − x̂ b,  b = mean(dy x̂),  R{b} = mean(R{dy} x̂ + dy R{x̂})
//! ```

use super::layer::{Activations, Layer, Mode, ParamTensor, Pass};
use super::{Init, Rng};
use crate::tensor::Scalar;
use rayon::prelude::*;

/// Added to the variance before the square root, as PyTorch's default.
pub const BATCH_NORM_EPSILON: f64 = 1e-5;

/// Weight of the current batch in the running statistics, as PyTorch's default.
pub const BATCH_NORM_MOMENTUM: f64 = 0.1;

/// Below this many elements a loop runs on the calling thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// Per-channel sums that the differentiated backward pass needs, the most of any pass.
const MAX_SUMS: usize = 7;

/// Batch normalisation over features for flat `[D]` inputs (PyTorch's `BatchNorm1d`), and over
/// channels, dimension 0, for inputs of two or more dimensions such as `[C, H, W]`
/// (`BatchNorm2d`).
///
/// The parameter slice contains `γ` (`weight`, `[C]`) then `β` (`bias`, `[C]`). The buffers are
/// `running_mean` then `running_var`, both `[C]`. The scratch contains the batch's mean, `1 / s`
/// and variance per channel, then room for per-channel sums.
pub struct BatchNorm {
    shape: Vec<usize>,
    channels: usize,
    /// Values per channel in one sample: 1 for flat inputs, `H · W` for images.
    spatial: usize,
}

/// The statistics in use for one batch: the batch's own in training, the running ones in
/// evaluation.
struct Stats<'s, T> {
    mean: &'s [T],
    inv_std: &'s [T],
}

impl<T: Scalar> Stats<'_, T> {
    fn normalise(&self, c: usize, x: T) -> T {
        (x - self.mean[c]) * self.inv_std[c]
    }
}

impl BatchNorm {
    /// Creates batch normalisation for inputs of `shape`.
    pub fn new(shape: &[usize]) -> Self {
        let (channels, spatial) = match shape {
            [features] => (*features, 1),
            [channels, rest @ ..] => (*channels, rest.iter().product()),
            [] => (1, 1),
        };
        BatchNorm {
            shape: shape.to_vec(),
            channels,
            spatial,
        }
    }

    /// Values per channel in a batch.
    fn count(&self, batch: usize) -> usize {
        batch * self.spatial
    }

    /// Splits the scratch into the statistics (mean, `1 / s`, variance) and the sums.
    fn split_scratch<'s, T>(&self, scratch: &'s mut [T]) -> ([&'s mut [T]; 3], &'s mut [T]) {
        let c = self.channels;
        let (mean, rest) = scratch.split_at_mut(c);
        let (inv_std, rest) = rest.split_at_mut(c);
        let (var, sums) = rest.split_at_mut(c);
        ([mean, inv_std, var], sums)
    }

    fn stats<'s, T>(&self, scratch: &'s [T]) -> Stats<'s, T> {
        let c = self.channels;
        Stats {
            mean: &scratch[..c],
            inv_std: &scratch[c..2 * c],
        }
    }

    /// Writes `sums[c · K + k] = Σ term(c, i)[k]` over the elements `i` of channel `c` in a
    /// batch, accumulated in `f64`.
    fn reduce<T: Scalar, const K: usize>(
        &self,
        batch: usize,
        sums: &mut [T],
        term: impl Fn(usize, usize) -> [T; K] + Sync,
    ) {
        let (channels, spatial) = (self.channels, self.spatial);
        let per_channel = |c: usize, out: &mut [T]| {
            let mut total = [0.0f64; K];
            for n in 0..batch {
                let start = (n * channels + c) * spatial;
                for i in start..start + spatial {
                    let values = term(c, i);
                    total
                        .iter_mut()
                        .zip(values)
                        .for_each(|(t, v)| *t += v.as_f64());
                }
            }
            out.iter_mut().zip(total).for_each(|(o, t)| *o = T::of(t));
        };
        let sums = &mut sums[..channels * K];
        if batch * channels * spatial >= PARALLEL_ELEMENTS {
            sums.par_chunks_mut(K)
                .enumerate()
                .for_each(|(c, out)| per_channel(c, out));
        } else {
            sums.chunks_mut(K)
                .enumerate()
                .for_each(|(c, out)| per_channel(c, out));
        }
    }

    /// Writes `out[i] = value(c, i)` for every element `i` of a batch, `c` its channel.
    fn map<T: Scalar>(&self, out: &mut [T], value: impl Fn(usize, usize) -> T + Sync) {
        let spatial = self.spatial;
        let size = self.channels * spatial;
        let fill = |n: usize, out: &mut [T]| {
            for (c, block) in out.chunks_mut(spatial).enumerate() {
                let start = n * size + c * spatial;
                block
                    .iter_mut()
                    .zip(start..)
                    .for_each(|(o, i)| *o = value(c, i));
            }
        };
        if out.len() >= PARALLEL_ELEMENTS {
            out.par_chunks_mut(size)
                .enumerate()
                .for_each(|(n, out)| fill(n, out));
        } else {
            out.chunks_mut(size)
                .enumerate()
                .for_each(|(n, out)| fill(n, out));
        }
    }

    /// Computes the batch mean and biased variance of `x` into the scratch statistics.
    fn batch_statistics<T: Scalar>(&self, batch: usize, x: &[T], scratch: &mut [T]) {
        let count = T::of_usize(self.count(batch));
        let ([mean, inv_std, var], sums) = self.split_scratch(scratch);
        // Two passes, mean first, because E[x²] − E[x]² cancels badly when |μ| ≫ σ.
        self.reduce(batch, sums, |_, i| [x[i]]);
        mean.iter_mut()
            .zip(sums.iter())
            .for_each(|(m, &s)| *m = s / count);
        let mean = &*mean;
        self.reduce(batch, sums, |c, i| [(x[i] - mean[c]).powi(2)]);
        var.iter_mut()
            .zip(sums.iter())
            .for_each(|(v, &s)| *v = s / count);
        set_inv_std(var, inv_std);
    }
}

/// Writes `inv_std = 1 / sqrt(var + ε)`.
fn set_inv_std<T: Scalar>(var: &[T], inv_std: &mut [T]) {
    let eps = T::of(BATCH_NORM_EPSILON);
    inv_std
        .iter_mut()
        .zip(var)
        .for_each(|(s, &v)| *s = T::one() / (v + eps).sqrt());
}

impl<T: Scalar> Layer<T> for BatchNorm {
    fn describe(&self) -> String {
        format!("batch-norm({})", self.channels)
    }

    fn input_shape(&self) -> &[usize] {
        &self.shape
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn param_count(&self) -> usize {
        2 * self.channels
    }

    fn param_tensors(&self) -> Vec<ParamTensor> {
        let c = self.channels;
        vec![
            ParamTensor {
                name: "weight",
                shape: vec![c],
                range: 0..c,
            },
            ParamTensor {
                name: "bias",
                shape: vec![c],
                range: c..2 * c,
            },
        ]
    }

    fn buffer_tensors(&self) -> Vec<ParamTensor> {
        let c = self.channels;
        vec![
            ParamTensor {
                name: "running_mean",
                shape: vec![c],
                range: 0..c,
            },
            ParamTensor {
                name: "running_var",
                shape: vec![c],
                range: c..2 * c,
            },
        ]
    }

    fn init_buffers(&self, buffers: &mut [T]) {
        let (mean, var) = buffers.split_at_mut(self.channels);
        mean.fill(T::zero());
        var.fill(T::one());
    }

    fn update_buffers(&self, pass: &Pass<T>, buffers: &mut [T], scratch: &[T]) {
        let c = self.channels;
        let momentum = T::of(BATCH_NORM_MOMENTUM);
        let keep = T::one() - momentum;
        let (running_mean, running_var) = buffers.split_at_mut(c);
        let (mean, var) = (&scratch[..c], &scratch[2 * c..3 * c]);
        for (r, &m) in running_mean.iter_mut().zip(mean) {
            *r = keep * *r + momentum * m;
        }
        // The unbiased variance needs two values per channel; with one (a single flat
        // sample) the running variance keeps its value. PyTorch rejects that case instead.
        let count = self.count(pass.batch);
        if count > 1 {
            let unbias = T::of_usize(count) / T::of_usize(count - 1);
            for (r, &v) in running_var.iter_mut().zip(var) {
                *r = keep * *r + momentum * v * unbias;
            }
        }
    }

    fn scratch_size(&self, _batch: usize) -> usize {
        (3 + MAX_SUMS) * self.channels
    }

    fn init_params(&self, params: &mut [T], _: Init, _: &mut Rng) {
        let (gamma, beta) = params.split_at_mut(self.channels);
        gamma.fill(T::one());
        beta.fill(T::zero());
    }

    fn forward(&self, pass: &Pass<T>, params: &[T], x: &[T], y: &mut [T], scratch: &mut [T]) {
        let c = self.channels;
        match pass.mode {
            Mode::Train => self.batch_statistics(pass.batch, x, scratch),
            Mode::Eval => {
                let ([mean, inv_std, var], _) = self.split_scratch(scratch);
                mean.copy_from_slice(&pass.buffers[..c]);
                var.copy_from_slice(&pass.buffers[c..2 * c]);
                set_inv_std(var, inv_std);
            }
        }
        let (gamma, beta) = params.split_at(c);
        let stats = self.stats(scratch);
        self.map(y, |c, i| gamma[c] * stats.normalise(c, x[i]) + beta[c]);
    }

    fn backward(
        &self,
        pass: &Pass<T>,
        params: &[T],
        act: Activations<T>,
        dy: &[T],
        dx: Option<&mut [T]>,
        dparams: &mut [T],
        scratch: &mut [T],
    ) {
        let c = self.channels;
        let (stats_part, sums) = scratch.split_at_mut(3 * c);
        let stats = self.stats(stats_part);
        let x = act.x;
        // Σ dy and Σ dy x̂ per channel, which are dβ and dγ.
        self.reduce(pass.batch, sums, |c, i| {
            [dy[i], dy[i] * stats.normalise(c, x[i])]
        });
        let (dgamma, dbeta) = dparams.split_at_mut(c);
        for ((g, b), s) in dgamma.iter_mut().zip(dbeta.iter_mut()).zip(sums.chunks(2)) {
            (*b, *g) = (s[0], s[1]);
        }
        let Some(dx) = dx else { return };
        let gamma = &params[..c];
        match pass.mode {
            Mode::Train => {
                let count = T::of_usize(self.count(pass.batch));
                self.map(dx, |c, i| {
                    let (a, b) = (dbeta[c] / count, dgamma[c] / count);
                    let xhat = stats.normalise(c, x[i]);
                    gamma[c] * stats.inv_std[c] * (dy[i] - a - xhat * b)
                });
            }
            Mode::Eval => self.map(dx, |c, i| gamma[c] * stats.inv_std[c] * dy[i]),
        }
    }

    fn tangent(
        &self,
        pass: &Pass<T>,
        params: &[T],
        vparams: &[T],
        act: Activations<T>,
        rx: Option<&[T]>,
        ry: &mut [T],
        scratch: &mut [T],
    ) {
        let c = self.channels;
        let (gamma, vgamma, vbeta) = (&params[..c], &vparams[..c], &vparams[c..2 * c]);
        let (stats_part, sums) = scratch.split_at_mut(3 * c);
        let stats = self.stats(stats_part);
        let x = act.x;
        let Some(rx) = rx else {
            self.map(ry, |c, i| vgamma[c] * stats.normalise(c, x[i]) + vbeta[c]);
            return;
        };
        match pass.mode {
            Mode::Train => {
                // mean(R{x}) and q = mean(x̂ R{x}) per channel.
                self.reduce(pass.batch, sums, |c, i| {
                    [rx[i], stats.normalise(c, x[i]) * rx[i]]
                });
                let count = T::of_usize(self.count(pass.batch));
                let sums = &*sums;
                self.map(ry, |c, i| {
                    let (mean_rx, q) = (sums[2 * c] / count, sums[2 * c + 1] / count);
                    let xhat = stats.normalise(c, x[i]);
                    let rxhat = stats.inv_std[c] * (rx[i] - mean_rx - xhat * q);
                    vgamma[c] * xhat + vbeta[c] + gamma[c] * rxhat
                });
            }
            Mode::Eval => self.map(ry, |c, i| {
                let xhat = stats.normalise(c, x[i]);
                vgamma[c] * xhat + vbeta[c] + gamma[c] * stats.inv_std[c] * rx[i]
            }),
        }
    }

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
    ) {
        match pass.mode {
            Mode::Train => self.backward_tangent_train(
                pass, params, vparams, act, rx, dy, rdy, rdx, rdparams, scratch,
            ),
            Mode::Eval => self.backward_tangent_eval(
                pass, params, vparams, act, rx, dy, rdy, rdx, rdparams, scratch,
            ),
        }
    }
}

impl BatchNorm {
    /// [`Layer::backward_tangent`] with the running statistics, where the layer is affine:
    /// `R{dγ} = Σ (R{dy} x̂ + dy s R{x})`, `R{dβ} = Σ R{dy}`, `R{dx} = s (R{γ} dy + γ R{dy})`.
    #[allow(clippy::too_many_arguments)]
    fn backward_tangent_eval<T: Scalar>(
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
    ) {
        let c = self.channels;
        let (stats_part, sums) = scratch.split_at_mut(3 * c);
        let stats = self.stats(stats_part);
        let x = act.x;
        self.reduce(pass.batch, sums, |c, i| {
            let rx_term = rx.map_or(T::zero(), |rx| dy[i] * stats.inv_std[c] * rx[i]);
            [rdy[i], rdy[i] * stats.normalise(c, x[i]) + rx_term]
        });
        let (rdgamma, rdbeta) = rdparams.split_at_mut(c);
        for ((g, b), s) in rdgamma
            .iter_mut()
            .zip(rdbeta.iter_mut())
            .zip(sums.chunks(2))
        {
            (*b, *g) = (s[0], s[1]);
        }
        if let Some(rdx) = rdx {
            let (gamma, vgamma) = (&params[..c], &vparams[..c]);
            self.map(rdx, |c, i| {
                stats.inv_std[c] * (vgamma[c] * dy[i] + gamma[c] * rdy[i])
            });
        }
    }

    /// [`Layer::backward_tangent`] with batch statistics, following the formulas in the
    /// module documentation.
    #[allow(clippy::too_many_arguments)]
    fn backward_tangent_train<T: Scalar>(
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
    ) {
        let c = self.channels;
        let (stats_part, sums) = scratch.split_at_mut(3 * c);
        let stats = self.stats(stats_part);
        let x = act.x;
        let count = T::of_usize(self.count(pass.batch));

        // Per channel: Σ dy, Σ dy x̂, Σ R{dy}, Σ R{dy} x̂, Σ R{x}, Σ x̂ R{x}, Σ dy R{x}.
        self.reduce(pass.batch, sums, |c, i| {
            let xhat = stats.normalise(c, x[i]);
            let r = rx.map_or(T::zero(), |rx| rx[i]);
            [
                dy[i],
                dy[i] * xhat,
                rdy[i],
                rdy[i] * xhat,
                r,
                xhat * r,
                dy[i] * r,
            ]
        });

        // The parameter part, R{dγ} = Σ (R{dy} x̂ + dy R{x̂}) and R{dβ} = Σ R{dy}. Each
        // channel's sums are then replaced by the means that the input part needs:
        // mean(dy), b, mean(R{x}), q, mean(R{dy}) and R{b}.
        let (rdgamma, rdbeta) = rdparams.split_at_mut(c);
        for (channel, sum) in sums.chunks_mut(MAX_SUMS).take(c).enumerate() {
            let [sum_dy, sum_dy_xhat, sum_rdy, sum_rdy_xhat, sum_rx, sum_xhat_rx, sum_dy_rx] =
                [sum[0], sum[1], sum[2], sum[3], sum[4], sum[5], sum[6]];
            let (mean_rx, q) = (sum_rx / count, sum_xhat_rx / count);
            // Σ dy R{x̂} = s (Σ dy R{x} − mean(R{x}) Σ dy − q Σ dy x̂).
            let inv_std = stats.inv_std[channel];
            let sum_dy_rxhat = inv_std * (sum_dy_rx - mean_rx * sum_dy - q * sum_dy_xhat);
            rdgamma[channel] = sum_rdy_xhat + sum_dy_rxhat;
            rdbeta[channel] = sum_rdy;
            sum[..6].copy_from_slice(&[
                sum_dy / count,
                sum_dy_xhat / count,
                mean_rx,
                q,
                sum_rdy / count,
                rdgamma[channel] / count,
            ]);
        }

        // The input part, elementwise.
        let Some(rdx) = rdx else { return };
        let (gamma, vgamma) = (&params[..c], &vparams[..c]);
        let means = &*sums;
        self.map(rdx, |c, i| {
            let k = &means[c * MAX_SUMS..(c + 1) * MAX_SUMS];
            let (a, b, mean_rx, q, mean_rdy, rb) = (k[0], k[1], k[2], k[3], k[4], k[5]);
            let s = stats.inv_std[c];
            let xhat = stats.normalise(c, x[i]);
            let r = rx.map_or(T::zero(), |rx| rx[i]);
            let rxhat = s * (r - mean_rx - xhat * q);
            let g = dy[i] - a - xhat * b;
            s * ((vgamma[c] - gamma[c] * s * q) * g
                + gamma[c] * (rdy[i] - mean_rdy - rxhat * b - xhat * rb))
        });
    }
}
