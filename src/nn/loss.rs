//! Losses over a batch of network outputs `z` and targets `t`, both `batch × d` row-major.
//!
//! Every loss is a mean over the actual batch: softmax cross-entropy divides by the number of
//! samples, MSE and binary cross-entropy by the number of elements, as PyTorch's defaults do.
//! Each loss gives its value, its gradient with respect to `z`, and its Hessian with respect
//! to `z` applied to a vector, which the Gauss-Newton and Hessian products need.

use crate::tensor::Scalar;
use serde::{Deserialize, Serialize};

/// A loss function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Softmax cross-entropy from logits: `mean_i Σ_j t_ij (lse(z_i) − z_ij)`. Targets are
    /// one-hot rows or any non-negative weights.
    SoftmaxCrossEntropy,
    /// Mean squared error over all elements: `mean_ij (z_ij − t_ij)²`.
    MeanSquaredError,
    /// Binary cross-entropy from logits over all elements, with targets in `[0, 1]`:
    /// `mean_ij softplus(z_ij) − t_ij z_ij`.
    BinaryCrossEntropy,
}

impl std::str::FromStr for Loss {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "cross-entropy" | "softmax-cross-entropy" => Ok(Loss::SoftmaxCrossEntropy),
            "mse" | "mean-squared-error" => Ok(Loss::MeanSquaredError),
            "bce" | "binary-cross-entropy" => Ok(Loss::BinaryCrossEntropy),
            _ => Err(crate::Error::setting(
                "loss",
                s,
                "expected cross-entropy, mse or bce",
            )),
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Loss::SoftmaxCrossEntropy => "cross-entropy",
            Loss::MeanSquaredError => "mse",
            Loss::BinaryCrossEntropy => "bce",
        })
    }
}

/// `ln(1 + e^x)` without overflow.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Writes the softmax of `z` into `p` and returns `(max, ln Σ exp(z − max))`.
fn softmax<T: Scalar>(z: &[T], p: &mut [T]) -> (f64, f64) {
    let max = z.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.as_f64()));
    let mut sum = 0.0;
    for (p, z) in p.iter_mut().zip(z) {
        let e = (z.as_f64() - max).exp();
        *p = T::of(e);
        sum += e;
    }
    p.iter_mut().for_each(|p| *p = T::of(p.as_f64() / sum));
    (max, sum.ln())
}

impl Loss {
    fn divisor(self, batch: usize, width: usize) -> f64 {
        match self {
            Loss::SoftmaxCrossEntropy => batch as f64,
            Loss::MeanSquaredError | Loss::BinaryCrossEntropy => (batch * width) as f64,
        }
    }

    /// Returns the mean loss over the batch.
    pub fn value<T: Scalar>(self, z: &[T], t: &[T], batch: usize) -> f64 {
        self.value_of_part(z, t, batch, batch)
    }

    /// Returns the `batch` rows' share of the mean loss over `mean_over` rows: their loss sum
    /// over `mean_over`. Parts of one batch computed apart add up to the batch's mean.
    pub fn value_of_part<T: Scalar>(self, z: &[T], t: &[T], batch: usize, mean_over: usize) -> f64 {
        debug_assert_eq!(z.len(), t.len());
        if batch == 0 {
            return 0.0;
        }
        let width = z.len() / batch;
        let total: f64 = match self {
            Loss::SoftmaxCrossEntropy => z
                .chunks(width)
                .zip(t.chunks(width))
                .map(|(z, t)| cross_entropy_row(z, t))
                .sum(),
            Loss::MeanSquaredError => z
                .iter()
                .zip(t)
                .map(|(z, t)| (z.as_f64() - t.as_f64()).powi(2))
                .sum(),
            Loss::BinaryCrossEntropy => z
                .iter()
                .zip(t)
                .map(|(z, t)| softplus(z.as_f64()) - t.as_f64() * z.as_f64())
                .sum(),
        };
        total / self.divisor(mean_over, width)
    }

    /// Writes `∂L/∂z` into `dz` and returns the mean loss.
    pub fn gradient<T: Scalar>(self, z: &[T], t: &[T], batch: usize, dz: &mut [T]) -> f64 {
        self.gradient_of_part(z, t, batch, batch, dz)
    }

    /// Writes the gradient of [`Loss::value_of_part`] with respect to `z` into `dz` and
    /// returns the value.
    pub fn gradient_of_part<T: Scalar>(
        self,
        z: &[T],
        t: &[T],
        batch: usize,
        mean_over: usize,
        dz: &mut [T],
    ) -> f64 {
        if batch == 0 {
            return 0.0;
        }
        let width = z.len() / batch;
        let scale = 1.0 / self.divisor(mean_over, width);
        match self {
            Loss::SoftmaxCrossEntropy => {
                // ∂/∂z_j of Σ_k t_k (lse − z_k) = s p_j − t_j, with s = Σ_k t_k. The loss
                // comes from the same softmax pass, as cross_entropy_row computes it.
                let mut total = 0.0;
                for ((z, t), dz) in z
                    .chunks(width)
                    .zip(t.chunks(width))
                    .zip(dz.chunks_mut(width))
                {
                    let s: f64 = t.iter().map(|t| t.as_f64()).sum();
                    let (max, log_sum) = softmax(z, dz);
                    let mut row = 0.0;
                    for ((d, t), z) in dz.iter_mut().zip(t).zip(z) {
                        row += t.as_f64() * (max - z.as_f64() + log_sum);
                        *d = T::of((s * d.as_f64() - t.as_f64()) * scale);
                    }
                    total += row;
                }
                return total / self.divisor(mean_over, width);
            }
            Loss::MeanSquaredError => {
                for ((d, z), t) in dz.iter_mut().zip(z).zip(t) {
                    *d = T::of(2.0 * (z.as_f64() - t.as_f64()) * scale);
                }
            }
            Loss::BinaryCrossEntropy => {
                for ((d, z), t) in dz.iter_mut().zip(z).zip(t) {
                    *d = T::of((sigmoid(z.as_f64()) - t.as_f64()) * scale);
                }
            }
        }
        self.value_of_part(z, t, batch, mean_over)
    }

    /// Writes `H_L v` into `out`, where `H_L = ∂²L/∂z²` at `z`. `H_L` is positive semidefinite
    /// for all three losses.
    pub fn hessian_product<T: Scalar>(
        self,
        z: &[T],
        t: &[T],
        batch: usize,
        v: &[T],
        out: &mut [T],
    ) {
        self.hessian_product_of_part(z, t, batch, batch, v, out);
    }

    /// Writes the product of [`Loss::value_of_part`]'s Hessian with respect to `z` with `v`
    /// into `out`.
    pub fn hessian_product_of_part<T: Scalar>(
        self,
        z: &[T],
        t: &[T],
        batch: usize,
        mean_over: usize,
        v: &[T],
        out: &mut [T],
    ) {
        if batch == 0 {
            return;
        }
        let width = z.len() / batch;
        let scale = 1.0 / self.divisor(mean_over, width);
        match self {
            Loss::SoftmaxCrossEntropy => {
                // Per sample H = s (diag(p) − p pᵀ), so H v = s p ⊙ (v − pᵀv).
                let rows = z.chunks(width).zip(t.chunks(width)).zip(v.chunks(width));
                for (((z, t), v), out) in rows.zip(out.chunks_mut(width)) {
                    let s: f64 = t.iter().map(|t| t.as_f64()).sum();
                    softmax(z, out);
                    let pv: f64 = out
                        .iter()
                        .zip(v)
                        .map(|(p, v)| p.as_f64() * v.as_f64())
                        .sum();
                    for (o, v) in out.iter_mut().zip(v) {
                        *o = T::of(s * o.as_f64() * (v.as_f64() - pv) * scale);
                    }
                }
            }
            Loss::MeanSquaredError => {
                for (o, v) in out.iter_mut().zip(v) {
                    *o = T::of(2.0 * v.as_f64() * scale);
                }
            }
            Loss::BinaryCrossEntropy => {
                for ((o, v), z) in out.iter_mut().zip(v).zip(z) {
                    let s = sigmoid(z.as_f64());
                    *o = T::of(s * (1.0 - s) * v.as_f64() * scale);
                }
            }
        }
    }
}

/// `Σ_j t_j (lse(z) − z_j)`, computed as `Σ_j t_j (max − z_j) + s ln Σ exp(z − max)` so that
/// large equal logits do not cancel to zero.
fn cross_entropy_row<T: Scalar>(z: &[T], t: &[T]) -> f64 {
    let max = z.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.as_f64()));
    let log_sum: f64 = z.iter().map(|z| (z.as_f64() - max).exp()).sum::<f64>().ln();
    z.iter()
        .zip(t)
        .map(|(z, t)| t.as_f64() * (max - z.as_f64() + log_sum))
        .sum()
}
