//! AdaGrad (Duchi, Hazan and Singer 2011, "Adaptive Subgradient Methods for Online Learning
//! and Stochastic Optimization"), in the diagonal form of `torch.optim.Adagrad`:
//! `s ← s + g²`, `w ← w − lr · g / (√s + eps)`.

use super::shared_step::SharedStep;
use super::validate::{check_common, check_eps};
use crate::methods::{Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::Result;
use serde::{Deserialize, Serialize};

/// Settings of [`AdaGrad`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaGradSettings {
    /// Learning rate, >= 0. Default 0.01, as `torch.optim.Adagrad`.
    pub lr: f64,
    /// Offset added to `√s` in the denominator, > 0. Default 1e-10, as `torch.optim.Adagrad`.
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

impl Default for AdaGradSettings {
    fn default() -> Self {
        AdaGradSettings {
            lr: 0.01,
            eps: 1e-10,
            weight_decay: 0.0,
            clip_norm: None,
            clip_value: None,
        }
    }
}

/// AdaGrad: per-parameter steps scaled by the root of the summed squared gradients.
///
/// `torch.optim.Adagrad`'s `lr_decay` and `initial_accumulator_value` are not offered; both
/// are fixed at their PyTorch default of 0.
pub struct AdaGrad<T: Scalar> {
    settings: AdaGradSettings,
    shared: SharedStep<T, 1>,
}

impl<T: Scalar> AdaGrad<T> {
    /// Creates the method after checking `settings`.
    pub fn new(settings: AdaGradSettings) -> Result<Self> {
        let clip = check_common(
            settings.lr,
            settings.weight_decay,
            settings.clip_norm,
            settings.clip_value,
        )?;
        check_eps(settings.eps)?;
        // PyTorch's state key for the sum of squared gradients.
        let shared = SharedStep::new("adagrad", ["sum"], clip, settings.weight_decay);
        Ok(AdaGrad { settings, shared })
    }

    /// The settings the method was built with.
    pub fn settings(&self) -> &AdaGradSettings {
        &self.settings
    }
}

impl<T: Scalar> Method<T> for AdaGrad<T> {
    fn name(&self) -> &'static str {
        "adagrad"
    }

    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        context: &StepContext,
    ) -> Result<StepReport> {
        let eps = T::of(self.settings.eps);
        self.shared
            .step(params, objective, context, self.settings.lr, |update| {
                let lr = T::of(update.lr);
                let [sum] = update.state;
                let params = update.params.iter_mut();
                for ((w, &g), s) in params.zip(update.grad).zip(sum.iter_mut()) {
                    *s += g * g;
                    *w -= lr * g / (s.sqrt() + eps);
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
    fn adagrad_two_steps_on_quadratic() {
        // f(w) = ½ · 2 (w − 1)², g = 2 (w − 1).
        let mut objective = Quadratic::new(vec![2.0], vec![1.0]);
        let settings = AdaGradSettings {
            lr: 0.1,
            ..AdaGradSettings::default()
        };
        let mut method = AdaGrad::<f64>::new(settings).unwrap();
        let mut w = vec![3.0];
        let context = StepContext::default();

        // Step 1: g = 4, s = 16, w = 3 − 0.1 · 4 / (4 + 1e-10).
        method.step(&mut w, &mut objective, &context).unwrap();
        let w1 = 3.0 - 0.1 * 4.0 / (4.0 + 1e-10);
        assert!((w[0] - w1).abs() < 1e-12);
        // Step 2: g = 2 (w1 − 1), s = 16 + g².
        method.step(&mut w, &mut objective, &context).unwrap();
        let g2 = 2.0 * (w1 - 1.0);
        let w2 = w1 - 0.1 * g2 / ((16.0 + g2 * g2).sqrt() + 1e-10);
        assert!((w[0] - w2).abs() < 1e-12);
        assert!((w[0] - 2.8311).abs() < 1e-4);
    }

    #[test]
    fn defaults_match_pytorch() {
        let settings = AdaGradSettings::default();
        assert_eq!(settings.lr, 0.01);
        assert_eq!(settings.eps, 1e-10);
        assert_eq!(settings.weight_decay, 0.0);
    }

    #[test]
    fn invalid_eps_names_the_value() {
        for eps in [0.0, -1e-8, f64::INFINITY] {
            let error = AdaGrad::<f64>::new(AdaGradSettings {
                eps,
                ..AdaGradSettings::default()
            })
            .err()
            .unwrap();
            let message = error.to_string();
            assert!(message.contains(&format!("invalid eps {eps}")), "{message}");
        }
    }
}
