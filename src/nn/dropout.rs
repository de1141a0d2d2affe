//! Inverted dropout (Srivastava et al. 2014): in training each element is zeroed with
//! probability `rate` and the survivors are scaled by `1 / (1 − rate)`; evaluation is the
//! identity.

use super::layer::{Activations, Layer, Mode, Pass};
use crate::tensor::Scalar;
use rand::{Rng as _, SeedableRng};

/// A dropout layer. Its scratch contains the mask of the current batch, so that the backward and
/// tangent passes see the mask that the forward pass drew.
pub struct Dropout {
    rate: f64,
    shape: Vec<usize>,
    salt: u64,
}

impl Dropout {
    /// Creates a dropout layer; `salt` separates the masks of layers that share a seed.
    pub fn new(rate: f64, shape: &[usize], salt: u64) -> crate::Result<Self> {
        if !(0.0..1.0).contains(&rate) {
            return Err(crate::Error::setting(
                "dropout rate",
                rate,
                "expected 0 <= rate < 1",
            ));
        }
        Ok(Dropout {
            rate,
            shape: shape.to_vec(),
            salt,
        })
    }

    fn active<T: Scalar>(&self, pass: &Pass<T>) -> bool {
        pass.mode == Mode::Train && self.rate > 0.0
    }

    /// Multiplies `x` by the stored mask into `out`, or copies it when dropout is inactive.
    fn apply_mask<T: Scalar>(&self, pass: &Pass<T>, x: &[T], out: &mut [T], mask: &[T]) {
        if self.active(pass) {
            out.iter_mut()
                .zip(x)
                .zip(mask)
                .for_each(|((o, &x), &m)| *o = x * m);
        } else {
            out.copy_from_slice(x);
        }
    }
}

impl<T: Scalar> Layer<T> for Dropout {
    fn describe(&self) -> String {
        format!("dropout({})", self.rate)
    }

    fn input_shape(&self) -> &[usize] {
        &self.shape
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn scratch_size(&self, batch: usize) -> usize {
        batch * self.shape.iter().product::<usize>()
    }

    fn forward(&self, pass: &Pass<T>, _: &[T], x: &[T], y: &mut [T], scratch: &mut [T]) {
        let mask = &mut scratch[..x.len()];
        if self.active(pass) {
            let mut rng = super::Rng::seed_from_u64(pass.seed ^ self.salt.wrapping_mul(0x9E37));
            let keep = T::of(1.0 / (1.0 - self.rate));
            for m in mask.iter_mut() {
                *m = if rng.random::<f64>() < self.rate {
                    T::zero()
                } else {
                    keep
                };
            }
        }
        self.apply_mask(pass, x, y, mask);
    }

    fn backward(
        &self,
        pass: &Pass<T>,
        _: &[T],
        _: Activations<T>,
        dy: &[T],
        dx: Option<&mut [T]>,
        _: &mut [T],
        scratch: &mut [T],
    ) {
        if let Some(dx) = dx {
            self.apply_mask(pass, dy, dx, &scratch[..dy.len()]);
        }
    }

    fn tangent(
        &self,
        pass: &Pass<T>,
        _: &[T],
        _: &[T],
        _: Activations<T>,
        rx: Option<&[T]>,
        ry: &mut [T],
        scratch: &mut [T],
    ) {
        match rx {
            Some(rx) => self.apply_mask(pass, rx, ry, &scratch[..rx.len()]),
            None => ry.fill(T::zero()),
        }
    }

    fn backward_tangent(
        &self,
        pass: &Pass<T>,
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
        if let Some(rdx) = rdx {
            self.apply_mask(pass, rdy, rdx, &scratch[..rdy.len()]);
        }
    }
}
