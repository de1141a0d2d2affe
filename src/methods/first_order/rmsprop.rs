//! RMSprop (Tieleman and Hinton 2012, Coursera "Neural Networks for Machine Learning",
//! lecture 6.5), in the form of `torch.optim.RMSprop`:
//! `v ← α v + (1 − α) g²`, `w ← w − lr · g / (√v + eps)`.

use super::shared_step::SharedStep;
use super::state::zero_if_subnormal;
use super::validate::{check_common, check_eps, check_rate};
use crate::methods::{Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::Result;
use serde::{Deserialize, Serialize};

/// Settings of [`RmsProp`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmsPropSettings {
    /// Learning rate, >= 0. Default 0.01, as `torch.optim.RMSprop`.
    pub lr: f64,
    /// Decay α of the average of squared gradients, in `[0, 1)`. Default 0.99, as
    /// `torch.optim.RMSprop`.
    pub alpha: f64,
    /// Offset added to `√v` in the denominator, > 0. Default 1e-8, as `torch.optim.RMSprop`.
    pub eps: f64,
    /// Coupled L2 coefficient added to the gradient as `weight_decay · w`, >= 0. Default 0.
    pub weight_decay: f64,
    /// Maximum global L2 norm of the gradient, or unset for no norm clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    /// Maximum absolute value of each gradient component, or unset for no value clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

impl Default for RmsPropSettings {
    fn default() -> Self {
        RmsPropSettings {
            lr: 0.01,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            clip_norm: None,
            clip_value: None,
        }
    }
}

/// RMSprop: per-parameter steps scaled by a running root mean square of the gradient.
///
/// `torch.optim.RMSprop`'s `momentum` and `centered` options are not offered; both are fixed
/// at their PyTorch defaults (0 and false).
pub struct RmsProp<T: Scalar> {
    settings: RmsPropSettings,
    shared: SharedStep<T, 1>,
}

impl<T: Scalar> RmsProp<T> {
    /// Creates the method after checking `settings`.
    pub fn new(settings: RmsPropSettings) -> Result<Self> {
        let clip = check_common(
            settings.lr,
            settings.weight_decay,
            settings.clip_norm,
            settings.clip_value,
        )?;
        check_rate("alpha", settings.alpha)?;
        check_eps(settings.eps)?;
        // PyTorch's state key for the average of squared gradients.
        let shared = SharedStep::new("rmsprop", ["square_avg"], clip, settings.weight_decay);
        Ok(RmsProp { settings, shared })
    }

    /// The settings the method was built with.
    pub fn settings(&self) -> &RmsPropSettings {
        &self.settings
    }
}

impl<T: Scalar> Method<T> for RmsProp<T> {
    fn name(&self) -> &'static str {
        "rmsprop"
    }

    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        context: &StepContext,
    ) -> Result<StepReport> {
        let alpha = T::of(self.settings.alpha);
        let one_minus_alpha = T::of(1.0 - self.settings.alpha);
        let eps = T::of(self.settings.eps);
        self.shared
            .step(params, objective, context, self.settings.lr, |update| {
                let lr = T::of(update.lr);
                let [square_avg] = update.state;
                let params = update.params.iter_mut();
                for ((w, &g), v) in params.zip(update.grad).zip(square_avg.iter_mut()) {
                    *v = zero_if_subnormal(alpha * *v + one_minus_alpha * g * g);
                    *w -= lr * g / (v.sqrt() + eps);
                }
            })
    }

    fn save_state(&self) -> MethodState {
        self.shared.save_state()
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.shared.load_state(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::first_order::testing::Quadratic;

    #[test]
    fn rmsprop_two_steps_on_quadratic() {
        // f(w) = ½ · 2 (w − 1)², g = 2 (w − 1).
        let mut objective = Quadratic::new(vec![2.0], vec![1.0]);
        let settings = RmsPropSettings {
            lr: 0.1,
            ..RmsPropSettings::default()
        };
        let mut method = RmsProp::<f64>::new(settings).unwrap();
        let mut w = vec![3.0];
        let context = StepContext::default();

        // Step 1: g = 4, v = 0.01 · 16 = 0.16, w = 3 − 0.1 · 4 / (0.4 + 1e-8).
        method.step(&mut w, &mut objective, &context).unwrap();
        let w1 = 3.0 - 0.1 * 4.0 / (0.4 + 1e-8);
        assert!((w[0] - w1).abs() < 1e-12);
        // Step 2: g = 2 (w1 − 1), v = 0.99 · 0.16 + 0.01 g².
        method.step(&mut w, &mut objective, &context).unwrap();
        let g2 = 2.0 * (w1 - 1.0);
        let v2 = 0.99 * 0.16 + 0.01 * g2 * g2;
        let w2 = w1 - 0.1 * g2 / (v2.sqrt() + 1e-8);
        assert!((w[0] - w2).abs() < 1e-12);
        assert!((w[0] - 1.5510).abs() < 1e-4);
    }

    #[test]
    fn defaults_match_pytorch() {
        let settings = RmsPropSettings::default();
        assert_eq!(settings.lr, 0.01);
        assert_eq!(settings.alpha, 0.99);
        assert_eq!(settings.eps, 1e-8);
    }

    #[test]
    fn invalid_alpha_names_the_value() {
        for alpha in [1.0, -0.5] {
            let error = RmsProp::<f64>::new(RmsPropSettings {
                alpha,
                ..RmsPropSettings::default()
            })
            .err()
            .unwrap();
            let message = error.to_string();
            assert!(
                message.contains(&format!("invalid alpha {alpha}")),
                "{message}"
            );
        }
        let error = RmsProp::<f64>::new(RmsPropSettings {
            eps: 0.0,
            ..RmsPropSettings::default()
        })
        .err()
        .unwrap();
        assert!(error.to_string().contains("invalid eps 0"), "{error}");
    }
}
