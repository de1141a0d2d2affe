//! Gradient clipping by global L2 norm and by value, applied to the gradient before a
//! first-order update.

use crate::tensor::{norm, Scalar};
use crate::{Error, Result};

/// Offset added to the norm before dividing, as `torch.nn.utils.clip_grad_norm_` does, so that a
/// zero gradient never divides by zero.
const NORM_EPS: f64 = 1e-6;

/// Gradient clipping settings. Both limits are optional and both may be set.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Clip {
    /// Maximum global L2 norm. A gradient with a larger norm `n` is scaled by
    /// `max_norm / (n + 1e-6)`, as `torch.nn.utils.clip_grad_norm_` does.
    pub max_norm: Option<f64>,
    /// Maximum absolute value of each component. Larger components are clamped to
    /// `[-max_value, max_value]`, as `torch.nn.utils.clip_grad_value_` does.
    pub max_value: Option<f64>,
}

impl Clip {
    /// Creates clipping settings and checks that each limit is positive and finite.
    pub fn new(max_norm: Option<f64>, max_value: Option<f64>) -> Result<Self> {
        let clip = Clip {
            max_norm,
            max_value,
        };
        clip.validate()?;
        Ok(clip)
    }

    /// Checks that each limit that is set is positive and finite.
    pub fn validate(&self) -> Result<()> {
        check_limit("clip_norm", self.max_norm)?;
        check_limit("clip_value", self.max_value)
    }

    /// Clips `grad` in place and returns its L2 norm before clipping.
    ///
    /// Norm clipping comes first, then clamping by value. Either order leaves the gradient
    /// within both limits. When the norm is NaN or infinite, `grad` is left unchanged so that
    /// the caller can skip the step.
    pub fn apply<T: Scalar>(&self, grad: &mut [T]) -> f64 {
        let norm = norm(grad);
        self.apply_with_norm(grad, norm)
    }

    /// Clips `grad`, a part of a gradient whose whole L2 norm is `norm`, as
    /// [`Clip::apply`] clips a whole gradient, and returns `norm`.
    pub fn apply_with_norm<T: Scalar>(&self, grad: &mut [T], norm: f64) -> f64 {
        if !norm.is_finite() {
            return norm;
        }
        if let Some(max_norm) = self.max_norm {
            if norm > max_norm {
                let scale = T::of(max_norm / (norm + NORM_EPS));
                grad.iter_mut().for_each(|g| *g *= scale);
            }
        }
        if let Some(max_value) = self.max_value {
            let (low, high) = (T::of(-max_value), T::of(max_value));
            grad.iter_mut().for_each(|g| *g = g.max(low).min(high));
        }
        norm
    }
}

fn check_limit(name: &str, limit: Option<f64>) -> Result<()> {
    match limit {
        Some(value) if !(value.is_finite() && value > 0.0) => Err(Error::setting(
            name,
            value,
            "expected a positive finite number, or leave it unset for no clipping",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_clip_scales_to_max_norm() {
        let clip = Clip::new(Some(1.0), None).unwrap();
        let mut grad = vec![3.0_f64, 4.0];
        let before = clip.apply(&mut grad);
        assert_eq!(before, 5.0);
        let scale = 1.0 / (5.0 + 1e-6);
        assert!((grad[0] - 3.0 * scale).abs() < 1e-15);
        assert!((grad[1] - 4.0 * scale).abs() < 1e-15);
        assert!(norm(&grad) <= 1.0);
    }

    #[test]
    fn norm_clip_leaves_small_gradient() {
        let clip = Clip::new(Some(10.0), None).unwrap();
        let mut grad = vec![3.0_f32, 4.0];
        assert_eq!(clip.apply(&mut grad), 5.0);
        assert_eq!(grad, vec![3.0, 4.0]);
    }

    #[test]
    fn value_clip_clamps_each_component() {
        let clip = Clip::new(None, Some(0.5)).unwrap();
        let mut grad = vec![-2.0_f64, 0.25, 0.75];
        let before = clip.apply(&mut grad);
        assert!((before - (4.0_f64 + 0.0625 + 0.5625).sqrt()).abs() < 1e-15);
        assert_eq!(grad, vec![-0.5, 0.25, 0.5]);
    }

    #[test]
    fn both_limits_hold_together() {
        let clip = Clip::new(Some(1.0), Some(0.1)).unwrap();
        let mut grad = vec![30.0_f64, -40.0, 0.01];
        let before = clip.apply(&mut grad);
        assert!(norm(&grad) <= 1.0);
        assert!(grad.iter().all(|g| g.abs() <= 0.1));
        assert_eq!(grad[0], 0.1);
        assert_eq!(grad[1], -0.1);
        assert_eq!(grad[2], 0.01 * (1.0 / (before + 1e-6)));
    }

    #[test]
    fn non_finite_gradient_is_untouched() {
        let clip = Clip::new(Some(1.0), Some(0.5)).unwrap();
        let mut grad = vec![f64::NAN, 4.0];
        assert!(clip.apply(&mut grad).is_nan());
        assert_eq!(grad[1], 4.0);
        let mut grad = vec![f64::INFINITY, 4.0];
        assert_eq!(clip.apply(&mut grad), f64::INFINITY);
        assert_eq!(grad[1], 4.0);
    }

    #[test]
    fn invalid_limits_are_rejected() {
        for (max_norm, max_value, name) in [
            (Some(0.0), None, "clip_norm"),
            (Some(-1.0), None, "clip_norm"),
            (Some(f64::NAN), None, "clip_norm"),
            (None, Some(0.0), "clip_value"),
            (None, Some(f64::INFINITY), "clip_value"),
        ] {
            let message = Clip::new(max_norm, max_value).unwrap_err().to_string();
            assert!(message.contains(name), "{message}");
        }
        assert!(Clip::new(None, None).is_ok());
    }
}
