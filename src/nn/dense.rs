//! Fully connected layer `y = x Wᵀ + b`, with `W` of shape `out × in` as in PyTorch.

use super::layer::{Activations, Layer, ParamTensor, Pass};
use super::{init, Init, Rng};
use crate::tensor::{Scalar, Transpose};

/// A dense layer. Its parameter slice holds `W` (row-major, `out × in`) then `b` (`out`).
pub struct Dense {
    input: [usize; 1],
    output: [usize; 1],
}

impl Dense {
    /// Creates a dense layer mapping `inputs` features to `outputs`.
    pub fn new(inputs: usize, outputs: usize) -> Self {
        Dense {
            input: [inputs],
            output: [outputs],
        }
    }

    fn split<'p, T>(&self, params: &'p [T]) -> (&'p [T], &'p [T]) {
        params.split_at(self.input[0] * self.output[0])
    }
}

impl<T: Scalar> Layer<T> for Dense {
    fn describe(&self) -> String {
        format!("dense({})", self.output[0])
    }

    fn input_shape(&self) -> &[usize] {
        &self.input
    }

    fn output_shape(&self) -> &[usize] {
        &self.output
    }

    fn param_count(&self) -> usize {
        self.output[0] * (self.input[0] + 1)
    }

    fn param_tensors(&self) -> Vec<ParamTensor> {
        let (n_in, n_out) = (self.input[0], self.output[0]);
        vec![
            ParamTensor {
                name: "weight",
                shape: vec![n_out, n_in],
                range: 0..n_out * n_in,
            },
            ParamTensor {
                name: "bias",
                shape: vec![n_out],
                range: n_out * n_in..n_out * (n_in + 1),
            },
        ]
    }

    fn init_params(&self, params: &mut [T], scheme: Init, rng: &mut Rng) {
        let (n_in, n_out) = (self.input[0], self.output[0]);
        let (w, b) = params.split_at_mut(n_in * n_out);
        init::fill(w, scheme, n_in, n_out, rng);
        b.fill(T::zero());
    }

    fn forward(&self, pass: &Pass<T>, params: &[T], x: &[T], y: &mut [T], _: &mut [T]) {
        let (n_in, n_out, n) = (self.input[0], self.output[0], pass.batch);
        let (w, b) = self.split(params);
        let k = pass.kernels;
        // y (n × out) = x (n × in) · Wᵀ (in × out), then + b on every row.
        k.gemm(
            Transpose::No,
            Transpose::Yes,
            n,
            n_out,
            n_in,
            T::one(),
            x,
            w,
            T::zero(),
            y,
        );
        k.add_row_vector(y, b);
    }

    fn backward(
        &self,
        pass: &Pass<T>,
        params: &[T],
        act: Activations<T>,
        dy: &[T],
        dx: Option<&mut [T]>,
        dparams: &mut [T],
        _: &mut [T],
    ) {
        let (n_in, n_out, n) = (self.input[0], self.output[0], pass.batch);
        let (w, _) = self.split(params);
        let (dw, db) = dparams.split_at_mut(n_in * n_out);
        let k = pass.kernels;
        // dW (out × in) = dyᵀ (out × n) · x (n × in); db = Σ_rows dy.
        k.gemm(
            Transpose::Yes,
            Transpose::No,
            n_out,
            n_in,
            n,
            T::one(),
            dy,
            act.x,
            T::zero(),
            dw,
        );
        k.column_sums(dy, db, T::zero());
        // dx (n × in) = dy (n × out) · W (out × in).
        if let Some(dx) = dx {
            k.gemm(
                Transpose::No,
                Transpose::No,
                n,
                n_in,
                n_out,
                T::one(),
                dy,
                w,
                T::zero(),
                dx,
            );
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
        _: &mut [T],
    ) {
        let (n_in, n_out, n) = (self.input[0], self.output[0], pass.batch);
        let (w, _) = self.split(params);
        let (vw, vb) = self.split(vparams);
        let k = pass.kernels;
        // R{y} = x · R{W}ᵀ + R{b} + R{x} · Wᵀ.
        k.gemm(
            Transpose::No,
            Transpose::Yes,
            n,
            n_out,
            n_in,
            T::one(),
            act.x,
            vw,
            T::zero(),
            ry,
        );
        k.add_row_vector(ry, vb);
        if let Some(rx) = rx {
            k.gemm(
                Transpose::No,
                Transpose::Yes,
                n,
                n_out,
                n_in,
                T::one(),
                rx,
                w,
                T::one(),
                ry,
            );
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
        _: &mut [T],
    ) {
        let (n_in, n_out, n) = (self.input[0], self.output[0], pass.batch);
        let (w, _) = self.split(params);
        let (vw, _) = self.split(vparams);
        let (rdw, rdb) = rdparams.split_at_mut(n_in * n_out);
        let k = pass.kernels;
        let (one, zero) = (T::one(), T::zero());
        // R{dW} = R{dy}ᵀ x + dyᵀ R{x};  R{db} = Σ_rows R{dy}.
        k.gemm(
            Transpose::Yes,
            Transpose::No,
            n_out,
            n_in,
            n,
            one,
            rdy,
            act.x,
            zero,
            rdw,
        );
        if let Some(rx) = rx {
            k.gemm(
                Transpose::Yes,
                Transpose::No,
                n_out,
                n_in,
                n,
                one,
                dy,
                rx,
                one,
                rdw,
            );
        }
        k.column_sums(rdy, rdb, zero);
        // R{dx} = R{dy} W + dy R{W}.
        if let Some(rdx) = rdx {
            k.gemm(
                Transpose::No,
                Transpose::No,
                n,
                n_in,
                n_out,
                one,
                rdy,
                w,
                zero,
                rdx,
            );
            k.gemm(
                Transpose::No,
                Transpose::No,
                n,
                n_in,
                n_out,
                one,
                dy,
                vw,
                one,
                rdx,
            );
        }
    }
}
