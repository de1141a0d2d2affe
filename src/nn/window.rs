//! Geometry of a two-dimensional sliding window over `[channels, height, width]` samples,
//! shared by convolution and pooling.

use crate::{Error, Result};
use std::ops::Range;

/// A window of `kernel_h × kernel_w` moved by `stride` over an input padded with `padding`
/// zeros on every side. Output sizes follow PyTorch: `(in + 2 padding − kernel) / stride + 1`,
/// rounded down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Window {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: usize,
    pub padding: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Window {
    /// Checks a window against the per-sample input `shape` of the layer `layer`, which
    /// names the layer in errors.
    pub fn new(
        layer: &str,
        shape: &[usize],
        kernel: [usize; 2],
        stride: usize,
        padding: usize,
    ) -> Result<Window> {
        let &[channels, height, width] = shape else {
            return Err(Error::Shape(format!(
                "{layer} expects inputs of shape [channels, height, width] but got {shape:?}; \
                 give image data or reshape the input"
            )));
        };
        let [kernel_h, kernel_w] = kernel;
        if kernel_h == 0 || kernel_w == 0 {
            return Err(Error::setting(
                &format!("{layer} kernel"),
                format!("{kernel_h}x{kernel_w}"),
                "expected both sizes to be at least 1",
            ));
        }
        if stride == 0 {
            return Err(Error::setting(
                &format!("{layer} stride"),
                0,
                "expected at least 1",
            ));
        }
        let (padded_h, padded_w) = (height + 2 * padding, width + 2 * padding);
        if kernel_h > padded_h || kernel_w > padded_w {
            return Err(Error::Shape(format!(
                "{layer} has a {kernel_h}x{kernel_w} window, larger than its input {shape:?} \
                 with padding {padding} ({padded_h}x{padded_w}), so it has no output; use a \
                 smaller window or more padding"
            )));
        }
        Ok(Window {
            channels,
            height,
            width,
            kernel_h,
            kernel_w,
            stride,
            padding,
            out_h: (padded_h - kernel_h) / stride + 1,
            out_w: (padded_w - kernel_w) / stride + 1,
        })
    }

    /// Elements of one input sample.
    pub fn input_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Output positions per channel.
    pub fn out_positions(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Output rows `oh` whose input row `oh·stride + i − padding` lies inside the input, for
    /// the kernel row `i`.
    pub fn valid_rows(&self, i: usize) -> Range<usize> {
        valid_outputs(self.out_h, self.height, self.stride, i, self.padding)
    }

    /// Output columns `ow` whose input column `ow·stride + j − padding` lies inside the
    /// input, for the kernel column `j`.
    pub fn valid_cols(&self, j: usize) -> Range<usize> {
        valid_outputs(self.out_w, self.width, self.stride, j, self.padding)
    }
}

/// Returns the outputs `o < out_len` with `0 <= o·stride + offset − padding < in_len`.
fn valid_outputs(
    out_len: usize,
    in_len: usize,
    stride: usize,
    offset: usize,
    padding: usize,
) -> Range<usize> {
    // The input index grows with o, so the valid outputs form one range.
    let end = match (in_len + padding).checked_sub(offset + 1) {
        Some(last) => (last / stride + 1).min(out_len),
        None => 0,
    };
    let start = padding.saturating_sub(offset).div_ceil(stride).min(end);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_outputs_match_brute_force() {
        for in_len in 1..7 {
            for padding in 0..3 {
                for stride in 1..4 {
                    for offset in 0..(in_len + 2 * padding) {
                        let out_len = in_len + 2 * padding;
                        let expected: Vec<usize> = (0..out_len)
                            .filter(|&o| {
                                let i = (o * stride + offset) as isize - padding as isize;
                                (0..in_len as isize).contains(&i)
                            })
                            .collect();
                        let got: Vec<usize> =
                            valid_outputs(out_len, in_len, stride, offset, padding).collect();
                        assert_eq!(
                            got, expected,
                            "in {in_len} padding {padding} stride {stride} offset {offset}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn output_size_rounds_down() {
        let w = Window::new("pool", &[2, 7, 5], [2, 2], 2, 0).expect("valid window");
        assert_eq!((w.out_h, w.out_w), (3, 2));
        let w = Window::new("conv", &[1, 5, 5], [3, 3], 2, 1).expect("valid window");
        assert_eq!((w.out_h, w.out_w), (3, 3));
    }
}
