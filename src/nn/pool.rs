//! Max and average pooling over square windows of `[channels, height, width]` samples, each
//! channel on its own, without padding. Output sizes follow PyTorch:
//! `(in − size) / stride + 1`, rounded down.

use super::layer::{Activations, Layer, Pass};
use super::window::Window;
use crate::tensor::Scalar;
use crate::Result;
use rayon::prelude::*;

/// Below this many elements a loop runs on the calling thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

fn describe(kind: &str, size: usize, stride: usize) -> String {
    if stride == size {
        format!("{kind}({size})")
    } else {
        format!("{kind}({size}, stride {stride})")
    }
}

/// Runs `op(n, out, input)` for every sample `n`, with `out` and `input` the sample's slices
/// of two batch buffers, in parallel when the batch is large.
fn per_sample<T: Scalar>(
    out: &mut [T],
    out_size: usize,
    input: &[T],
    in_size: usize,
    op: impl Fn(usize, &mut [T], &[T]) + Sync,
) {
    if out.len() + input.len() >= PARALLEL_ELEMENTS {
        out.par_chunks_mut(out_size)
            .zip(input.par_chunks(in_size))
            .enumerate()
            .for_each(|(n, (o, i))| op(n, o, i));
    } else {
        out.chunks_mut(out_size)
            .zip(input.chunks(in_size))
            .enumerate()
            .for_each(|(n, (o, i))| op(n, o, i));
    }
}

/// Calls `visit(o, first)` for every output element `o` of one sample in order, with `first`
/// the input index of the top-left element of its window.
fn for_each_window(w: &Window, mut visit: impl FnMut(usize, usize)) {
    let mut o = 0;
    for c in 0..w.channels {
        for oh in 0..w.out_h {
            let row_start = (c * w.height + oh * w.stride) * w.width;
            for ow in 0..w.out_w {
                visit(o, row_start + ow * w.stride);
                o += 1;
            }
        }
    }
}

/// Largest offset of a maximum from its window's first element that the scratch can store:
/// `f32` represents every integer up to 2²⁴ exactly.
const MAX_OFFSET: usize = 1 << 24;

/// Maximum over each window. Its scratch contains, for every output element, the offset of
/// the maximum from the window's first element (`i · width + j` as a scalar), so that the other
/// passes route derivatives through the element the forward pass picked. Of equal values the
/// first in row-major order is the maximum. A NaN in a window is its maximum, so that it
/// reaches the loss.
pub struct MaxPool2d {
    window: Window,
    input: [usize; 3],
    output: [usize; 3],
}

impl MaxPool2d {
    /// Creates max pooling over `size × size` windows moved by `stride` (the window size
    /// when `None`), for inputs of `shape` `[channels, height, width]`.
    pub fn new(shape: &[usize], size: usize, stride: Option<usize>) -> Result<Self> {
        let stride = stride.unwrap_or(size);
        let name = describe("max-pool2d", size, stride);
        let window = Window::new(&name, shape, [size, size], stride, 0)?;
        if size * window.width > MAX_OFFSET {
            return Err(crate::Error::setting(
                &format!("{name} window"),
                size,
                &format!("expected size · input width up to {MAX_OFFSET}"),
            ));
        }
        Ok(MaxPool2d {
            window,
            input: [window.channels, window.height, window.width],
            output: [window.channels, window.out_h, window.out_w],
        })
    }

    fn out_size(&self) -> usize {
        self.output.iter().product()
    }

    /// Writes the maximum of each window of one sample `x` into `y` and its offset from the
    /// window's first element into `offsets`.
    // NOTE: the compiler does not vectorise these loops (strided loads, a runtime stride),
    // and this function took about a quarter of `gradus bench cnn`'s time in a perf profile.
    fn max_sample<T: Scalar>(&self, x: &[T], y: &mut [T], offsets: &mut [T]) {
        let w = &self.window;
        let (stride, width) = (w.stride, w.width);
        let rows = y.chunks_mut(w.out_w).zip(offsets.chunks_mut(w.out_w));
        for (r, (y, offsets)) in rows.enumerate() {
            let (c, oh) = (r / w.out_h, r % w.out_h);
            let window_rows = &x[(c * w.height + oh * stride) * width..][..w.kernel_h * width];
            // The loops visit the window elements in row-major order, each across the whole
            // output row, so that the windows of a row are independent and the compiler can
            // vectorise them.
            for (ow, (y, offset)) in y.iter_mut().zip(offsets.iter_mut()).enumerate() {
                (*y, *offset) = (window_rows[ow * stride], T::zero());
            }
            for i in 0..w.kernel_h {
                for j in 0..w.kernel_w {
                    let at = i * width + j;
                    let code = T::of_usize(at);
                    let values = window_rows[at..].iter().step_by(stride);
                    for ((y, offset), &v) in y.iter_mut().zip(offsets.iter_mut()).zip(values) {
                        // Strictly greater keeps the first of equal maxima; a NaN replaces
                        // any number.
                        let better = v > *y || (v.is_nan() && !y.is_nan());
                        *y = if better { v } else { *y };
                        *offset = if better { code } else { *offset };
                    }
                }
            }
        }
    }

    /// Writes `out[o] = x[argmax of o]` for every output element.
    fn pick<T: Scalar>(&self, x: &[T], offsets: &[T], out: &mut [T]) {
        let out_size = self.out_size();
        per_sample(out, out_size, x, self.window.input_size(), |n, out, x| {
            let offsets = &offsets[n * out_size..(n + 1) * out_size];
            for_each_window(&self.window, |o, first| {
                out[o] = x[first + offset_of(offsets[o])];
            });
        });
    }

    /// Overwrites `target` with the adjoint of [`MaxPool2d::pick`] applied to `source`: each
    /// value is added to the input element its output picked.
    fn route_back<T: Scalar>(&self, source: &[T], offsets: &[T], target: &mut [T]) {
        let (in_size, out_size) = (self.window.input_size(), self.out_size());
        per_sample(target, in_size, source, out_size, |n, target, source| {
            let offsets = &offsets[n * out_size..(n + 1) * out_size];
            target.fill(T::zero());
            for_each_window(&self.window, |o, first| {
                target[first + offset_of(offsets[o])] += source[o];
            });
        });
    }
}

/// Converts an offset stored as a scalar back to an index.
fn offset_of<T: Scalar>(offset: T) -> usize {
    offset.as_f64() as usize
}

impl<T: Scalar> Layer<T> for MaxPool2d {
    fn describe(&self) -> String {
        describe("max-pool2d", self.window.kernel_h, self.window.stride)
    }

    fn input_shape(&self) -> &[usize] {
        &self.input
    }

    fn output_shape(&self) -> &[usize] {
        &self.output
    }

    fn scratch_size(&self, batch: usize) -> usize {
        batch * self.out_size()
    }

    fn forward(&self, pass: &Pass<T>, _: &[T], x: &[T], y: &mut [T], scratch: &mut [T]) {
        let (in_size, out_size) = (self.window.input_size(), self.out_size());
        let offsets = &mut scratch[..pass.batch * out_size];
        if y.len() >= PARALLEL_ELEMENTS {
            y.par_chunks_mut(out_size)
                .zip(offsets.par_chunks_mut(out_size))
                .zip(x.par_chunks(in_size))
                .for_each(|((y, offsets), x)| self.max_sample(x, y, offsets));
        } else {
            y.chunks_mut(out_size)
                .zip(offsets.chunks_mut(out_size))
                .zip(x.chunks(in_size))
                .for_each(|((y, offsets), x)| self.max_sample(x, y, offsets));
        }
    }

    fn backward(
        &self,
        _: &Pass<T>,
        _: &[T],
        _: Activations<T>,
        dy: &[T],
        dx: Option<&mut [T]>,
        _: &mut [T],
        scratch: &mut [T],
    ) {
        if let Some(dx) = dx {
            self.route_back(dy, &scratch[..dy.len()], dx);
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
        scratch: &mut [T],
    ) {
        // Near x the maximum stays at the chosen element, so R{y} = R{x}[argmax].
        match rx {
            Some(rx) => self.pick(rx, &scratch[..ry.len()], ry),
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
        scratch: &mut [T],
    ) {
        // The routing is locally constant, so R{dx} routes R{dy} as dx routes dy.
        if let Some(rdx) = rdx {
            self.route_back(rdy, &scratch[..rdy.len()], rdx);
        }
    }
}

/// Mean over each window; the divisor is always the window area, as PyTorch's default.
pub struct AvgPool2d {
    window: Window,
    input: [usize; 3],
    output: [usize; 3],
}

impl AvgPool2d {
    /// Creates average pooling over `size × size` windows moved by `stride` (the window size
    /// when `None`), for inputs of `shape` `[channels, height, width]`.
    pub fn new(shape: &[usize], size: usize, stride: Option<usize>) -> Result<Self> {
        let stride = stride.unwrap_or(size);
        let name = describe("avg-pool2d", size, stride);
        let window = Window::new(&name, shape, [size, size], stride, 0)?;
        Ok(AvgPool2d {
            window,
            input: [window.channels, window.height, window.width],
            output: [window.channels, window.out_h, window.out_w],
        })
    }

    fn out_size(&self) -> usize {
        self.output.iter().product()
    }

    /// Writes the window means of `x` into `y`, both whole batches.
    fn average<T: Scalar>(&self, x: &[T], y: &mut [T]) {
        let w = &self.window;
        let scale = T::one() / T::of_usize(w.kernel_h * w.kernel_w);
        per_sample(y, self.out_size(), x, w.input_size(), |_, y, x| {
            for_each_window(w, |o, first| {
                let mut sum = T::zero();
                for i in 0..w.kernel_h {
                    let row = &x[first + i * w.width..][..w.kernel_w];
                    sum += row.iter().copied().sum::<T>();
                }
                y[o] = sum * scale;
            });
        });
    }

    /// Overwrites `dx` with the adjoint of [`AvgPool2d::average`] applied to `dy`.
    fn spread<T: Scalar>(&self, dy: &[T], dx: &mut [T]) {
        let w = &self.window;
        let scale = T::one() / T::of_usize(w.kernel_h * w.kernel_w);
        per_sample(dx, w.input_size(), dy, self.out_size(), |_, dx, dy| {
            dx.fill(T::zero());
            for_each_window(w, |o, first| {
                let share = dy[o] * scale;
                for i in 0..w.kernel_h {
                    let row = &mut dx[first + i * w.width..][..w.kernel_w];
                    row.iter_mut().for_each(|d| *d += share);
                }
            });
        });
    }
}

impl<T: Scalar> Layer<T> for AvgPool2d {
    fn describe(&self) -> String {
        describe("avg-pool2d", self.window.kernel_h, self.window.stride)
    }

    fn input_shape(&self) -> &[usize] {
        &self.input
    }

    fn output_shape(&self) -> &[usize] {
        &self.output
    }

    fn forward(&self, _: &Pass<T>, _: &[T], x: &[T], y: &mut [T], _: &mut [T]) {
        self.average(x, y);
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
            self.spread(dy, dx);
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
            Some(rx) => self.average(rx, ry),
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
            self.spread(rdy, rdx);
        }
    }
}
