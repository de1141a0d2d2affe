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
    ///
    /// 2 × 2 windows at stride 2 over f32 run on AVX-512 where the CPU has it, because the
    /// compiler does not vectorise the general loops (strided loads, a runtime stride).
    fn max_sample<T: Scalar>(&self, x: &[T], y: &mut [T], offsets: &mut [T]) {
        let w = &self.window;
        let (stride, width) = (w.stride, w.width);
        #[cfg(target_arch = "x86_64")]
        let fast = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
            && (w.kernel_h, w.kernel_w, stride) == (2, 2, 2)
            && is_x86_feature_detected!("avx512f");
        let rows = y.chunks_mut(w.out_w).zip(offsets.chunks_mut(w.out_w));
        for (r, (y, offsets)) in rows.enumerate() {
            let (c, oh) = (r / w.out_h, r % w.out_h);
            let window_rows = &x[(c * w.height + oh * stride) * width..][..w.kernel_h * width];
            #[cfg(target_arch = "x86_64")]
            if fast {
                let f32s = |v: &[T]| {
                    // SAFETY: T is f32 (checked in `fast`), so the slice is an f32 slice.
                    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<f32>(), v.len()) }
                };
                let f32s_mut = |v: &mut [T]| {
                    // SAFETY: as in `f32s`.
                    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), v.len()) }
                };
                let (top, bottom) = window_rows.split_at(width);
                // SAFETY: the CPU has AVX-512F (checked in `fast`); each input row has at
                // least 2 · out_w elements, because out_w = (width − 2) / 2 + 1.
                unsafe {
                    max_2x2_row(
                        f32s(top),
                        f32s(bottom),
                        width,
                        f32s_mut(y),
                        f32s_mut(offsets),
                    );
                }
                continue;
            }
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

/// Writes the maxima of the 2 × 2 windows at stride 2 over the input rows `top` and `bottom`
/// into `y`, and each maximum's offset (0, 1, `width` or `width + 1`) into `offsets`. The
/// rules are those of [`MaxPool2d::max_sample`]: the first of equal maxima in row-major order
/// wins, and a NaN beats any number.
///
/// # Safety
///
/// The CPU must support AVX-512F, and `top` and `bottom` must have at least `2 · y.len()`
/// elements; `offsets` is as long as `y`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_2x2_row(
    top: &[f32],
    bottom: &[f32],
    width: usize,
    y: &mut [f32],
    offsets: &mut [f32],
) {
    use std::arch::x86_64::*;
    debug_assert!(top.len() >= 2 * y.len() && bottom.len() >= 2 * y.len());
    debug_assert_eq!(offsets.len(), y.len());
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let lanes = |n: usize| -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    };
    let codes = [1.0, width as f32, (width + 1) as f32].map(|code| _mm512_set1_ps(code));
    let n = y.len();
    let mut o = 0;
    while o < n {
        let count = (n - o).min(16);
        // Inputs 2o .. 2o + 2 count of each row, in two vectors of 16.
        let (low, high) = (lanes(2 * count), lanes((2 * count).saturating_sub(16)));
        let load = |row: &[f32]| {
            let p = row.as_ptr().add(2 * o);
            let a = _mm512_maskz_loadu_ps(low, p);
            let b = _mm512_maskz_loadu_ps(high, p.add(16));
            (
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
            )
        };
        let (top_left, top_right) = load(top);
        let (bottom_left, bottom_right) = load(bottom);
        let (mut max, mut at) = (top_left, _mm512_setzero_ps());
        for (v, code) in [top_right, bottom_left, bottom_right]
            .into_iter()
            .zip(codes)
        {
            let greater = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, max);
            let v_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            let max_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(max, max);
            let better = greater | (v_nan & !max_nan);
            max = _mm512_mask_mov_ps(max, better, v);
            at = _mm512_mask_mov_ps(at, better, code);
        }
        let out = lanes(count);
        _mm512_mask_storeu_ps(y.as_mut_ptr().add(o), out, max);
        _mm512_mask_storeu_ps(offsets.as_mut_ptr().add(o), out, at);
        o += count;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs with many ties (few distinct values), zeros as after a ReLU, and some NaNs.
    fn sample(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| match (i * 7919 + 13) % 23 {
                0 => f32::NAN,
                k if k < 9 => 0.0,
                k => (k % 5) as f32 - 1.5,
            })
            .collect()
    }

    #[test]
    fn max_2x2_f32_matches_f64_path() {
        // Widths with an odd column, a partial vector of outputs and more than 16 outputs.
        for [channels, height, width] in [[3, 7, 7], [2, 28, 28], [1, 6, 35], [2, 4, 2]] {
            let pool = MaxPool2d::new(&[channels, height, width], 2, None).unwrap();
            let x32 = sample(channels * height * width);
            let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
            let out = pool.out_size();
            let (mut y32, mut at32) = (vec![0.0f32; out], vec![0.0f32; out]);
            let (mut y64, mut at64) = (vec![0.0f64; out], vec![0.0f64; out]);
            pool.max_sample(&x32, &mut y32, &mut at32);
            pool.max_sample(&x64, &mut y64, &mut at64);
            for o in 0..out {
                let shape = [channels, height, width];
                let (a, b) = (y32[o] as f64, y64[o]);
                assert!(
                    a == b || (a.is_nan() && b.is_nan()),
                    "{shape:?} y[{o}]: {a} != {b}"
                );
                assert_eq!(at32[o] as f64, at64[o], "{shape:?} offset[{o}]");
            }
        }
    }
}
