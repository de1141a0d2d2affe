//! Fully connected layer `y = x Wᵀ + b`, with `W` of shape `out × in` as in PyTorch.

use super::layer::{Activations, Layer, ParamTensor, Pass};
use super::{init, Init, Rng};
use crate::tensor::{Scalar, Transpose};

/// A dense layer. Its parameter slice contains `W` (row-major, `out × in`) then `b` (`out`).
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

    /// Computes `y = x Wᵀ + b`, and with `relu` also `max(y, 0)` into it, in one product
    /// whose epilogue adds the bias and applies the ReLU.
    pub(super) fn forward_relu<T: Scalar>(
        &self,
        pass: &Pass<T>,
        params: &[T],
        x: &[T],
        y: &mut [T],
        relu: Option<&mut [T]>,
    ) {
        let (n_in, n_out, n) = (self.input[0], self.output[0], pass.batch);
        let (w, b) = self.split(params);
        pass.kernels.dense_forward(n, n_out, n_in, x, w, b, y, relu);
    }

    /// Runs the backward pass of this layer followed by a ReLU, from this layer's input `x`,
    /// its output `z` and the gradient `dy` at the ReLU's output. One pass over the rows
    /// writes the gradient at `z` into `dz` and sums it into the bias gradient. The products
    /// then give `dW` and, when requested, `dx`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_relu<T: Scalar>(
        &self,
        pass: &Pass<T>,
        params: &[T],
        x: &[T],
        z: &[T],
        dy: &[T],
        dz: &mut [T],
        dx: Option<&mut [T]>,
        dparams: &mut [T],
    ) {
        let (n_in, n_out) = (self.input[0], self.output[0]);
        let db = &mut dparams[n_in * n_out..];
        let zero = T::zero();
        db.fill(zero);
        let rows = z
            .chunks(n_out)
            .zip(dy.chunks(n_out))
            .zip(dz.chunks_mut(n_out));
        for ((z, dy), dz) in rows {
            for (((dz, &z), &dy), db) in dz.iter_mut().zip(z).zip(dy).zip(db.iter_mut()) {
                *dz = if z > zero { dy } else { zero };
                *db += *dz;
            }
        }
        self.backward_products(pass, params, x, dz, dx, dparams);
    }

    /// Computes the weight gradient `dW` into `dparams` and, when `dx` is given, the input
    /// gradient, from the input `x` and the output gradient `dy`. The bias gradient in
    /// `dparams` is left to the caller.
    pub(super) fn backward_products<T: Scalar>(
        &self,
        pass: &Pass<T>,
        params: &[T],
        x: &[T],
        dy: &[T],
        dx: Option<&mut [T]>,
        dparams: &mut [T],
    ) {
        let (n_in, n_out, n) = (self.input[0], self.output[0], pass.batch);
        let (w, _) = self.split(params);
        let dw = &mut dparams[..n_in * n_out];
        let k = pass.kernels;
        let (one, zero) = (T::one(), T::zero());
        // dW (out × in) = dyᵀ (out × n) · x (n × in).
        k.gemm(
            Transpose::Yes,
            Transpose::No,
            n_out,
            n_in,
            n,
            one,
            dy,
            x,
            zero,
            dw,
        );
        // dx (n × in) = dy (n × out) · W (out × in).
        if let Some(dx) = dx {
            k.gemm(
                Transpose::No,
                Transpose::No,
                n,
                n_in,
                n_out,
                one,
                dy,
                w,
                zero,
                dx,
            );
        }
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
        self.forward_relu(pass, params, x, y, None);
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
        let (_, db) = dparams.split_at_mut(self.input[0] * self.output[0]);
        pass.kernels.column_sums(dy, db, T::zero());
        self.backward_products(pass, params, act.x, dy, dx, dparams);
    }

    fn squared_sample_gradients(
        &self,
        pass: &Pass<T>,
        act: Activations<T>,
        dy: &[T],
        dparams: &mut [T],
    ) -> bool {
        let (n_in, n_out, n) = (self.input[0], self.output[0], pass.batch);
        // Sample i's weight gradient is the outer product dy_iᵀ x_i, so the sum of its
        // squares over the batch is (dy ⊙ dy)ᵀ (x ⊙ x), and the bias's is Σ_rows dy ⊙ dy.
        let square = |v: &[T]| v.iter().map(|&a| a * a).collect::<Vec<T>>();
        let (dy2, x2) = (square(dy), square(act.x));
        let (dw2, db2) = dparams.split_at_mut(n_in * n_out);
        let k = pass.kernels;
        k.gemm(
            Transpose::Yes,
            Transpose::No,
            n_out,
            n_in,
            n,
            T::one(),
            &dy2,
            &x2,
            T::zero(),
            dw2,
        );
        // column_sums scales what `db2` contained by beta, which leaves NaN in place.
        db2.fill(T::zero());
        k.column_sums(&dy2, db2, T::one());
        true
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Activation, ActivationLayer, Mode};
    use crate::tensor::Cpu;

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f32 + seed) * 0.618).sin())
            .collect()
    }

    /// Runs the dense layer and a ReLU as separate layers and as the fused pair, and checks
    /// that both give the same outputs and gradients to the bit.
    fn check_fused_pair(batch: usize, n_in: usize, n_out: usize) {
        let dense = Dense::new(n_in, n_out);
        let relu = ActivationLayer::new(Activation::Relu, &[n_out]);
        let cpu = Cpu::new(2);
        let pass = Pass {
            kernels: &cpu,
            batch,
            mode: Mode::Train,
            seed: 0,
            buffers: &[],
        };
        let params = values(n_out * (n_in + 1), 1.0);
        let x = values(batch * n_in, 2.0);
        let dy = values(batch * n_out, 3.0);
        let label = format!("batch {batch}, {n_in} -> {n_out}");

        let (mut z, mut y) = (vec![0.0; batch * n_out], vec![0.0; batch * n_out]);
        dense.forward(&pass, &params, &x, &mut z, &mut []);
        relu.forward(&pass, &[], &z, &mut y, &mut []);
        let (mut fused_z, mut fused_y) = (vec![0.0; batch * n_out], vec![0.0; batch * n_out]);
        dense.forward_relu(&pass, &params, &x, &mut fused_z, Some(&mut fused_y));
        assert_eq!(fused_z, z, "{label}: dense output");
        assert_eq!(fused_y, y, "{label}: ReLU output");

        let mut dz = vec![0.0; batch * n_out];
        let mut dx = vec![0.0; batch * n_in];
        let mut dparams = vec![0.0; params.len()];
        let relu_act = Activations { x: &z, y: &y };
        relu.backward(&pass, &[], relu_act, &dy, Some(&mut dz), &mut [], &mut []);
        let dense_act = Activations { x: &x, y: &z };
        dense.backward(
            &pass,
            &params,
            dense_act,
            &dz,
            Some(&mut dx),
            &mut dparams,
            &mut [],
        );
        let mut fused_dz = vec![0.0; batch * n_out];
        let mut fused_dx = vec![0.0; batch * n_in];
        let mut fused_dparams = vec![0.0; params.len()];
        dense.backward_relu(
            &pass,
            &params,
            &x,
            &z,
            &dy,
            &mut fused_dz,
            Some(&mut fused_dx),
            &mut fused_dparams,
        );
        assert_eq!(fused_dz, dz, "{label}: gradient at the dense output");
        assert_eq!(fused_dx, dx, "{label}: input gradient");
        assert_eq!(fused_dparams, dparams, "{label}: parameter gradient");
    }

    #[test]
    fn fused_relu_matches_separate_layers() {
        // Shapes with tile remainders, and a batch that packs the forward weights.
        check_fused_pair(37, 50, 70);
        check_fused_pair(300, 33, 20);
    }
}
