//! Two-dimensional convolution over `[channels, height, width]` samples. Like PyTorch's
//! `Conv2d` it computes a cross-correlation (the kernel is not flipped).
//!
//! Every pass unfolds the input patches into a column matrix (im2col) and does one matrix
//! product per chunk of samples, with the batch's positions side by side:
//!
//! ```text
//! U  [K, M] = im2col(x)      K = in_channels · kernel_h · kernel_w, M = samples · out_h · out_w
//! Y' [F, M] = W [F, K] · U   F = filters
//! y  [N, F, out_h, out_w]    = Y' permuted per sample, plus the bias
//! ```

use super::layer::{Activations, Layer, ParamTensor, Pass};
use super::window::Window;
use super::{init, Init, Rng};
use crate::tensor::{Scalar, Transpose};
use crate::Result;
use rayon::prelude::*;

/// Upper bound on the scratch elements of one chunk (the column matrix and the product).
/// Passes over larger batches run chunk by chunk, so a full-batch pass over tens of thousands
/// of images needs no more memory than a minibatch.
const CHUNK_ELEMENTS: usize = 1 << 23;

/// Below this many elements a loop runs on the calling thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// A 2-d convolution layer. Its parameter slice contains the weight `[filters, in_channels,
/// kernel_h, kernel_w]` then the bias `[filters]`, row-major as in PyTorch.
pub struct Conv2d {
    window: Window,
    filters: usize,
    input: [usize; 3],
    output: [usize; 3],
    /// Samples per chunk.
    chunk: usize,
}

/// Scratch of one chunk: the column matrix `[K, M]` and a `[F, M]` product matrix.
struct ChunkBuffers<'s, T> {
    col: &'s mut [T],
    work: &'s mut [T],
}

impl Conv2d {
    /// Creates a convolution with `filters` output channels over inputs of `shape`
    /// `[channels, height, width]`.
    pub fn new(
        shape: &[usize],
        filters: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let name = describe(filters, kernel, stride, padding);
        let window = Window::new(&name, shape, kernel, stride, padding)?;
        if filters == 0 {
            return Err(crate::Error::setting(
                &format!("{name} filters"),
                0,
                "expected at least 1",
            ));
        }
        let mut conv = Conv2d {
            window,
            filters,
            input: [window.channels, window.height, window.width],
            output: [filters, window.out_h, window.out_w],
            chunk: 1,
        };
        conv.chunk = (CHUNK_ELEMENTS / conv.chunk_elements_per_sample()).max(1);
        Ok(conv)
    }

    /// Sets the samples per chunk, to exercise chunking on small inputs.
    #[cfg(test)]
    pub(super) fn with_chunk(mut self, samples: usize) -> Self {
        self.chunk = samples.max(1);
        self
    }

    /// Rows of the column matrix: `in_channels · kernel_h · kernel_w`.
    fn patch_size(&self) -> usize {
        self.window.channels * self.window.kernel_h * self.window.kernel_w
    }

    fn chunk_elements_per_sample(&self) -> usize {
        (self.patch_size() + self.filters) * self.window.out_positions()
    }

    fn split<'p, T>(&self, params: &'p [T]) -> (&'p [T], &'p [T]) {
        params.split_at(self.filters * self.patch_size())
    }

    /// Returns the chunks of a batch as `(first sample, samples)`.
    fn chunks(&self, batch: usize) -> impl Iterator<Item = (usize, usize)> {
        let chunk = self.chunk;
        (0..batch)
            .step_by(chunk)
            .map(move |start| (start, chunk.min(batch - start)))
    }

    /// Splits the scratch into the buffers of a chunk of `samples`, out of a batch of `batch`.
    fn buffers<'s, T>(
        &self,
        scratch: &'s mut [T],
        batch: usize,
        samples: usize,
    ) -> ChunkBuffers<'s, T> {
        let positions = self.window.out_positions();
        let capacity = self.chunk.min(batch) * positions;
        let (col, rest) = scratch.split_at_mut(self.patch_size() * capacity);
        let m = samples * positions;
        ChunkBuffers {
            col: &mut col[..self.patch_size() * m],
            work: &mut rest[..self.filters * m],
        }
    }
}

fn describe(filters: usize, kernel: [usize; 2], stride: usize, padding: usize) -> String {
    let mut name = format!("conv2d({filters}, {}x{}", kernel[0], kernel[1]);
    if stride != 1 {
        name += &format!(", stride {stride}");
    }
    if padding != 0 {
        name += &format!(", padding {padding}");
    }
    name + ")"
}

/// Writes the column matrix `col [K, samples · out_h · out_w]` of the samples `x`: row
/// `k = (c · kernel_h + i) · kernel_w + j` contains input channel `c` at kernel offset `(i, j)`
/// for every output position, and zero where the window covers padding.
fn im2col<T: Scalar>(w: &Window, x: &[T], samples: usize, col: &mut [T]) {
    let positions = w.out_positions();
    let m = samples * positions;
    let plane = w.height * w.width;
    let fill_row = |k: usize, row: &mut [T]| {
        let c = k / (w.kernel_h * w.kernel_w);
        let (i, j) = ((k / w.kernel_w) % w.kernel_h, k % w.kernel_w);
        let (rows, cols) = (w.valid_rows(i), w.valid_cols(j));
        for n in 0..samples {
            let input = &x[(n * w.channels + c) * plane..][..plane];
            let out = &mut row[n * positions..(n + 1) * positions];
            for (oh, line) in out.chunks_mut(w.out_w).enumerate() {
                if !rows.contains(&oh) {
                    line.fill(T::zero());
                    continue;
                }
                // In range by `valid_rows`, so the subtraction cannot underflow.
                let ih = oh * w.stride + i - w.padding;
                let source = &input[ih * w.width..(ih + 1) * w.width];
                line[..cols.start].fill(T::zero());
                line[cols.end..].fill(T::zero());
                if w.stride == 1 {
                    let first = cols.start + j - w.padding;
                    line[cols.clone()].copy_from_slice(&source[first..first + cols.len()]);
                } else {
                    for ow in cols.clone() {
                        line[ow] = source[ow * w.stride + j - w.padding];
                    }
                }
            }
        }
    };
    if col.len() >= PARALLEL_ELEMENTS {
        col.par_chunks_mut(m)
            .enumerate()
            .for_each(|(k, row)| fill_row(k, row));
    } else {
        col.chunks_mut(m)
            .enumerate()
            .for_each(|(k, row)| fill_row(k, row));
    }
}

/// Overwrites `dx` (samples × input size) with the adjoint of [`im2col`]: every column
/// entry is added back to the input element it was copied from.
fn col2im<T: Scalar>(w: &Window, col: &[T], samples: usize, dx: &mut [T]) {
    let positions = w.out_positions();
    let m = samples * positions;
    let plane = w.height * w.width;
    let fill_sample = |n: usize, dx: &mut [T]| {
        dx.fill(T::zero());
        for k in 0..w.channels * w.kernel_h * w.kernel_w {
            let c = k / (w.kernel_h * w.kernel_w);
            let (i, j) = ((k / w.kernel_w) % w.kernel_h, k % w.kernel_w);
            let (rows, cols) = (w.valid_rows(i), w.valid_cols(j));
            let source = &col[k * m + n * positions..][..positions];
            let target = &mut dx[c * plane..(c + 1) * plane];
            for oh in rows {
                let ih = oh * w.stride + i - w.padding;
                let line = &source[oh * w.out_w..(oh + 1) * w.out_w];
                let row = &mut target[ih * w.width..(ih + 1) * w.width];
                if w.stride == 1 {
                    let first = cols.start + j - w.padding;
                    let row = &mut row[first..first + cols.len()];
                    row.iter_mut()
                        .zip(&line[cols.clone()])
                        .for_each(|(r, &v)| *r += v);
                } else {
                    for ow in cols.clone() {
                        row[ow * w.stride + j - w.padding] += line[ow];
                    }
                }
            }
        }
    };
    let size = w.input_size();
    if dx.len() >= PARALLEL_ELEMENTS {
        dx.par_chunks_mut(size)
            .enumerate()
            .for_each(|(n, d)| fill_sample(n, d));
    } else {
        dx.chunks_mut(size)
            .enumerate()
            .for_each(|(n, d)| fill_sample(n, d));
    }
}

/// Writes `y [samples, F, P] = work [F, samples · P]` permuted, plus `bias[f]` on channel `f`.
fn scatter_output<T: Scalar>(work: &[T], bias: &[T], positions: usize, y: &mut [T]) {
    let filters = bias.len();
    let m = work.len() / filters;
    let fill_sample = |n: usize, y: &mut [T]| {
        for ((f, out), &b) in y.chunks_mut(positions).enumerate().zip(bias) {
            let source = &work[f * m + n * positions..][..positions];
            out.iter_mut().zip(source).for_each(|(o, &v)| *o = v + b);
        }
    };
    if y.len() >= PARALLEL_ELEMENTS {
        y.par_chunks_mut(filters * positions)
            .enumerate()
            .for_each(|(n, y)| fill_sample(n, y));
    } else {
        y.chunks_mut(filters * positions)
            .enumerate()
            .for_each(|(n, y)| fill_sample(n, y));
    }
}

/// Writes `work [F, samples · P]` from `dy [samples, F, P]`, the inverse of
/// [`scatter_output`] without the bias.
fn gather_output<T: Scalar>(dy: &[T], filters: usize, positions: usize, work: &mut [T]) {
    let m = work.len() / filters;
    let fill_filter = |f: usize, row: &mut [T]| {
        for (n, out) in row.chunks_mut(positions).enumerate() {
            out.copy_from_slice(&dy[(n * filters + f) * positions..][..positions]);
        }
    };
    if work.len() >= PARALLEL_ELEMENTS {
        work.par_chunks_mut(m)
            .enumerate()
            .for_each(|(f, row)| fill_filter(f, row));
    } else {
        work.chunks_mut(m)
            .enumerate()
            .for_each(|(f, row)| fill_filter(f, row));
    }
}

/// Adds the row sums of the `[bias.len(), m]` matrix `work` to `bias`.
fn add_row_sums<T: Scalar>(work: &[T], bias: &mut [T]) {
    let m = work.len() / bias.len();
    for (b, row) in bias.iter_mut().zip(work.chunks(m)) {
        *b += row.iter().copied().sum::<T>();
    }
}

impl<T: Scalar> Layer<T> for Conv2d {
    fn describe(&self) -> String {
        let w = &self.window;
        describe(self.filters, [w.kernel_h, w.kernel_w], w.stride, w.padding)
    }

    fn input_shape(&self) -> &[usize] {
        &self.input
    }

    fn output_shape(&self) -> &[usize] {
        &self.output
    }

    fn param_count(&self) -> usize {
        self.filters * (self.patch_size() + 1)
    }

    fn param_tensors(&self) -> Vec<ParamTensor> {
        let w = &self.window;
        let weights = self.filters * self.patch_size();
        vec![
            ParamTensor {
                name: "weight",
                shape: vec![self.filters, w.channels, w.kernel_h, w.kernel_w],
                range: 0..weights,
            },
            ParamTensor {
                name: "bias",
                shape: vec![self.filters],
                range: weights..weights + self.filters,
            },
        ]
    }

    fn scratch_size(&self, batch: usize) -> usize {
        self.chunk.min(batch) * self.chunk_elements_per_sample()
    }

    fn init_params(&self, params: &mut [T], scheme: Init, rng: &mut Rng) {
        // Fans as PyTorch counts them: each output depends on a patch of all input channels, and
        // each input element feeds `filters` kernels of `kernel_h · kernel_w` taps.
        let taps = self.window.kernel_h * self.window.kernel_w;
        let (fan_in, fan_out) = (self.patch_size(), self.filters * taps);
        let (w, b) = params.split_at_mut(self.filters * self.patch_size());
        init::fill(w, scheme, fan_in, fan_out, rng);
        b.fill(T::zero());
    }

    fn forward(&self, pass: &Pass<T>, params: &[T], x: &[T], y: &mut [T], scratch: &mut [T]) {
        let (weight, bias) = self.split(params);
        let (k, f) = (self.patch_size(), self.filters);
        let (n_in, n_out) = (self.window.input_size(), f * self.window.out_positions());
        for (start, samples) in self.chunks(pass.batch) {
            let b = self.buffers(scratch, pass.batch, samples);
            let m = samples * self.window.out_positions();
            let x = &x[start * n_in..(start + samples) * n_in];
            im2col(&self.window, x, samples, b.col);
            let no = Transpose::No;
            let (one, zero) = (T::one(), T::zero());
            pass.kernels
                .gemm(no, no, f, m, k, one, weight, b.col, zero, b.work);
            let y = &mut y[start * n_out..(start + samples) * n_out];
            scatter_output(b.work, bias, self.window.out_positions(), y);
        }
    }

    fn backward(
        &self,
        pass: &Pass<T>,
        params: &[T],
        act: Activations<T>,
        dy: &[T],
        mut dx: Option<&mut [T]>,
        dparams: &mut [T],
        scratch: &mut [T],
    ) {
        let (weight, _) = self.split(params);
        let (k, f) = (self.patch_size(), self.filters);
        let (n_in, n_out) = (self.window.input_size(), f * self.window.out_positions());
        let (dw, db) = dparams.split_at_mut(f * k);
        dw.fill(T::zero());
        db.fill(T::zero());
        let (no, yes, one, zero) = (Transpose::No, Transpose::Yes, T::one(), T::zero());
        for (start, samples) in self.chunks(pass.batch) {
            let b = self.buffers(scratch, pass.batch, samples);
            let m = samples * self.window.out_positions();
            let rows = start..start + samples;
            im2col(
                &self.window,
                &act.x[rows.start * n_in..rows.end * n_in],
                samples,
                b.col,
            );
            gather_output(
                &dy[rows.start * n_out..rows.end * n_out],
                f,
                self.window.out_positions(),
                b.work,
            );
            // dW += G Uᵀ and db += row sums of G, with G = dY' [F, M].
            pass.kernels
                .gemm(no, yes, f, k, m, one, b.work, b.col, one, dw);
            add_row_sums(b.work, db);
            // dU = Wᵀ G, then dx = col2im(dU).
            if let Some(dx) = dx.as_deref_mut() {
                pass.kernels
                    .gemm(yes, no, k, m, f, one, weight, b.work, zero, b.col);
                col2im(
                    &self.window,
                    b.col,
                    samples,
                    &mut dx[rows.start * n_in..rows.end * n_in],
                );
            }
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
        let (weight, _) = self.split(params);
        let (vweight, vbias) = self.split(vparams);
        let (k, f) = (self.patch_size(), self.filters);
        let (n_in, n_out) = (self.window.input_size(), f * self.window.out_positions());
        let (no, one, zero) = (Transpose::No, T::one(), T::zero());
        for (start, samples) in self.chunks(pass.batch) {
            let b = self.buffers(scratch, pass.batch, samples);
            let m = samples * self.window.out_positions();
            let rows = start * n_in..(start + samples) * n_in;
            // R{Y'} = R{W} U + W R{U} with R{U} = im2col(R{x}); R{b} is added below.
            im2col(&self.window, &act.x[rows.clone()], samples, b.col);
            pass.kernels
                .gemm(no, no, f, m, k, one, vweight, b.col, zero, b.work);
            if let Some(rx) = rx {
                im2col(&self.window, &rx[rows], samples, b.col);
                pass.kernels
                    .gemm(no, no, f, m, k, one, weight, b.col, one, b.work);
            }
            let ry = &mut ry[start * n_out..(start + samples) * n_out];
            scatter_output(b.work, vbias, self.window.out_positions(), ry);
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
        mut rdx: Option<&mut [T]>,
        rdparams: &mut [T],
        scratch: &mut [T],
    ) {
        let (weight, _) = self.split(params);
        let (vweight, _) = self.split(vparams);
        let (k, f) = (self.patch_size(), self.filters);
        let positions = self.window.out_positions();
        let (n_in, n_out) = (self.window.input_size(), f * positions);
        let (rdw, rdb) = rdparams.split_at_mut(f * k);
        rdw.fill(T::zero());
        rdb.fill(T::zero());
        let (no, yes, one, zero) = (Transpose::No, Transpose::Yes, T::one(), T::zero());
        for (start, samples) in self.chunks(pass.batch) {
            let b = self.buffers(scratch, pass.batch, samples);
            let m = samples * positions;
            let inputs = start * n_in..(start + samples) * n_in;
            let outputs = start * n_out..(start + samples) * n_out;
            // With G = dY', the backward pass is dW = G Uᵀ, db = G 1, dU = Wᵀ G. Along the
            // tangent: R{dW} = R{G} Uᵀ + G R{U}ᵀ, R{db} = R{G} 1, R{dU} = Wᵀ R{G} + R{W}ᵀ G.
            gather_output(&rdy[outputs.clone()], f, positions, b.work);
            im2col(&self.window, &act.x[inputs.clone()], samples, b.col);
            pass.kernels
                .gemm(no, yes, f, k, m, one, b.work, b.col, one, rdw);
            add_row_sums(b.work, rdb);
            if rdx.is_some() {
                pass.kernels
                    .gemm(yes, no, k, m, f, one, weight, b.work, zero, b.col);
            }
            gather_output(&dy[outputs], f, positions, b.work);
            if let Some(rdx) = rdx.as_deref_mut() {
                pass.kernels
                    .gemm(yes, no, k, m, f, one, vweight, b.work, one, b.col);
                col2im(&self.window, b.col, samples, &mut rdx[inputs.clone()]);
            }
            if let Some(rx) = rx {
                im2col(&self.window, &rx[inputs], samples, b.col);
                pass.kernels
                    .gemm(no, yes, f, k, m, one, b.work, b.col, one, rdw);
            }
        }
    }
}
