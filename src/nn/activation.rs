//! Elementwise activation layers `y = f(x)`.

use super::layer::{Activations, Layer, Pass};
use crate::tensor::Scalar;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Slope of LeakyReLU for negative inputs, as PyTorch's default.
pub const LEAKY_RELU_SLOPE: f64 = 0.01;

/// Elements per parallel work item; smaller arrays run on the calling thread.
const CHUNK: usize = 1 << 14;

/// An elementwise activation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `x` for `x > 0`, else `0.01 x`.
    LeakyRelu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^(−x))`.
    Sigmoid,
    /// `x Φ(x)` with the exact normal CDF, as PyTorch's default GELU.
    Gelu,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x`.
    Identity,
}

impl std::str::FromStr for Activation {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        Ok(match s {
            "relu" => Activation::Relu,
            "leaky-relu" | "leakyrelu" => Activation::LeakyRelu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "gelu" => Activation::Gelu,
            "softplus" => Activation::Softplus,
            "identity" | "linear" => Activation::Identity,
            _ => {
                return Err(crate::Error::setting(
                    "activation",
                    s,
                    "expected relu, leaky-relu, tanh, sigmoid, gelu, softplus or identity",
                ))
            }
        })
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky-relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Gelu => "gelu",
            Activation::Softplus => "softplus",
            Activation::Identity => "identity",
        };
        f.write_str(name)
    }
}

fn sigmoid<T: Scalar>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// The standard normal density φ(x).
fn normal_pdf<T: Scalar>(x: T) -> T {
    T::of(1.0 / (2.0 * std::f64::consts::PI).sqrt()) * (-(x * x) / T::of(2.0)).exp()
}

/// The standard normal CDF Φ(x).
fn normal_cdf<T: Scalar>(x: T) -> T {
    T::of(0.5 * (1.0 + libm::erf(x.as_f64() / std::f64::consts::SQRT_2)))
}

impl Activation {
    /// Returns `f(x)`.
    pub fn value<T: Scalar>(self, x: T) -> T {
        match self {
            Activation::Relu => x.max(T::zero()),
            Activation::LeakyRelu => {
                if x > T::zero() {
                    x
                } else {
                    T::of(LEAKY_RELU_SLOPE) * x
                }
            }
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => sigmoid(x),
            Activation::Gelu => x * normal_cdf(x),
            // ln(1 + e^x) = max(x, 0) + ln(1 + e^(−|x|)), which neither overflows nor loses
            // the small values for very negative x.
            Activation::Softplus => x.max(T::zero()) + (-x.abs()).exp().ln_1p(),
            Activation::Identity => x,
        }
    }

    /// Returns `f'(x)`, given `x` and `y = f(x)`.
    pub fn derivative<T: Scalar>(self, x: T, y: T) -> T {
        match self {
            Activation::Relu => {
                if x > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
            Activation::LeakyRelu => {
                if x > T::zero() {
                    T::one()
                } else {
                    T::of(LEAKY_RELU_SLOPE)
                }
            }
            Activation::Tanh => T::one() - y * y,
            Activation::Sigmoid => y * (T::one() - y),
            Activation::Gelu => normal_cdf(x) + x * normal_pdf(x),
            Activation::Softplus => sigmoid(x),
            Activation::Identity => T::one(),
        }
    }

    /// Returns `f''(x)`, given `x` and `y = f(x)`. ReLU's kink counts as zero curvature.
    pub fn second_derivative<T: Scalar>(self, x: T, y: T) -> T {
        let two = T::of(2.0);
        match self {
            Activation::Relu | Activation::LeakyRelu | Activation::Identity => T::zero(),
            Activation::Tanh => -two * y * (T::one() - y * y),
            Activation::Sigmoid => y * (T::one() - y) * (T::one() - two * y),
            Activation::Gelu => normal_pdf(x) * (two - x * x),
            Activation::Softplus => {
                let s = sigmoid(x);
                s * (T::one() - s)
            }
        }
    }
}

/// An activation layer; it has no parameters.
pub struct ActivationLayer {
    function: Activation,
    shape: Vec<usize>,
}

impl ActivationLayer {
    /// Creates an activation layer over samples of the given shape.
    pub fn new(function: Activation, shape: &[usize]) -> Self {
        ActivationLayer {
            function,
            shape: shape.to_vec(),
        }
    }
}

/// Computes `dx = dy` where `x > 0` and `dx = 0` elsewhere, the ReLU backward pass, in a loop
/// that vectorises.
pub(super) fn relu_backward<T: Scalar>(x: &[T], dy: &[T], dx: &mut [T]) {
    let zero = T::zero();
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        *dx = if x > zero { dy } else { zero };
    }
}

/// Runs `op(i)` over chunks of `out`, in parallel when the array is large.
fn for_chunks<T: Scalar>(out: &mut [T], op: impl Fn(usize, &mut [T]) + Sync) {
    if out.len() > CHUNK {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, o)| op(c * CHUNK, o));
    } else {
        op(0, out);
    }
}

impl<T: Scalar> Layer<T> for ActivationLayer {
    fn describe(&self) -> String {
        self.function.to_string()
    }

    fn input_shape(&self) -> &[usize] {
        &self.shape
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn forward(&self, _: &Pass<T>, _: &[T], x: &[T], y: &mut [T], _: &mut [T]) {
        let f = self.function;
        for_chunks(y, |start, y| {
            let x = &x[start..start + y.len()];
            // A loop without the match on the function vectorises.
            if f == Activation::Relu {
                y.iter_mut()
                    .zip(x)
                    .for_each(|(y, &x)| *y = x.max(T::zero()));
            } else {
                y.iter_mut().zip(x).for_each(|(y, &x)| *y = f.value(x));
            }
        });
    }

    fn backward(
        &self,
        _: &Pass<T>,
        _: &[T],
        act: Activations<T>,
        dy: &[T],
        dx: Option<&mut [T]>,
        _: &mut [T],
        _: &mut [T],
    ) {
        let Some(dx) = dx else { return };
        let f = self.function;
        // dx = f'(x) ⊙ dy.
        for_chunks(dx, |s, dx| {
            let e = s + dx.len();
            let (x, y, dy) = (&act.x[s..e], &act.y[s..e], &dy[s..e]);
            if f == Activation::Relu {
                relu_backward(x, dy, dx);
                return;
            }
            for i in 0..dx.len() {
                dx[i] = f.derivative(x[i], y[i]) * dy[i];
            }
        });
    }

    fn tangent(
        &self,
        _: &Pass<T>,
        _: &[T],
        _: &[T],
        act: Activations<T>,
        rx: Option<&[T]>,
        ry: &mut [T],
        _: &mut [T],
    ) {
        let Some(rx) = rx else {
            ry.fill(T::zero());
            return;
        };
        let f = self.function;
        // R{y} = f'(x) ⊙ R{x}.
        for_chunks(ry, |s, ry| {
            let e = s + ry.len();
            let (x, y, rx) = (&act.x[s..e], &act.y[s..e], &rx[s..e]);
            for i in 0..ry.len() {
                ry[i] = f.derivative(x[i], y[i]) * rx[i];
            }
        });
    }

    fn backward_tangent(
        &self,
        _: &Pass<T>,
        _: &[T],
        _: &[T],
        act: Activations<T>,
        rx: Option<&[T]>,
        dy: &[T],
        rdy: &[T],
        rdx: Option<&mut [T]>,
        _: &mut [T],
        _: &mut [T],
    ) {
        let Some(rdx) = rdx else { return };
        let f = self.function;
        // R{dx} = f'(x) ⊙ R{dy} + f''(x) ⊙ R{x} ⊙ dy.
        for_chunks(rdx, |s, rdx| {
            let e = s + rdx.len();
            let (x, y, dy, rdy) = (&act.x[s..e], &act.y[s..e], &dy[s..e], &rdy[s..e]);
            for i in 0..rdx.len() {
                let mut v = f.derivative(x[i], y[i]) * rdy[i];
                if let Some(rx) = rx {
                    v += f.second_derivative(x[i], y[i]) * rx[s + i] * dy[i];
                }
                rdx[i] = v;
            }
        });
    }
}
