//! Adam (Kingma and Ba 2015, "Adam: A Method for Stochastic Optimization") and AdamW
//! (Loshchilov and Hutter 2019, "Decoupled Weight Decay Regularization"), in the form of
//! `torch.optim.Adam` and `torch.optim.AdamW`:
//!
//! ```text
//! m ← β₁ m + (1 − β₁) g
//! v ← β₂ v + (1 − β₂) g²
//! w ← w − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + eps)
//! ```
//!
//! Adam adds weight decay to the gradient (`g ← g + wd · w`), so the adaptive scaling also
//! divides the decay. AdamW shrinks the weights directly before the update
//! (`w ← w (1 − lr · wd)`), with the scheduled learning rate.

use super::adam_update::{adam_update, AdamFactors};
use super::shared_step::{SharedStep, Update};
use super::validate::{check_common, check_eps, check_rate};
use crate::methods::{Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::Result;
use serde::{Deserialize, Serialize};

/// PyTorch's state keys for the first and second moments.
const MOMENT_NAMES: [&str; 2] = ["exp_avg", "exp_avg_sq"];

/// Settings of [`Adam`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamSettings {
    /// Learning rate, >= 0. Default 1e-3, from Kingma and Ba.
    pub lr: f64,
    /// Decay β₁ of the first moment, in `[0, 1)`. Default 0.9.
    pub beta1: f64,
    /// Decay β₂ of the second moment, in `[0, 1)`. Default 0.999.
    pub beta2: f64,
    /// Offset added to the bias-corrected `√v` in the denominator, > 0. Default 1e-8.
    pub eps: f64,
    /// Coupled L2 coefficient added to the gradient as `weight_decay · w`, >= 0. Default 0,
    /// as `torch.optim.Adam`.
    pub weight_decay: f64,
    /// Maximum global L2 norm of the gradient, or unset for no norm clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    /// Maximum absolute value of each gradient component, or unset for no value clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

impl Default for AdamSettings {
    fn default() -> Self {
        AdamSettings {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            clip_norm: None,
            clip_value: None,
        }
    }
}

/// Settings of [`AdamW`]: those of [`Adam`], with decoupled weight decay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWSettings {
    /// Learning rate, >= 0. Default 1e-3, as `torch.optim.AdamW`.
    pub lr: f64,
    /// Decay β₁ of the first moment, in `[0, 1)`. Default 0.9.
    pub beta1: f64,
    /// Decay β₂ of the second moment, in `[0, 1)`. Default 0.999.
    pub beta2: f64,
    /// Offset added to the bias-corrected `√v` in the denominator, > 0. Default 1e-8.
    pub eps: f64,
    /// Decoupled decay: each step multiplies the weights by `1 − lr · weight_decay`. At
    /// least 0, default 0.01, as `torch.optim.AdamW`.
    pub weight_decay: f64,
    /// Maximum global L2 norm of the gradient, or unset for no norm clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    /// Maximum absolute value of each gradient component, or unset for no value clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        AdamWSettings {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            clip_norm: None,
            clip_value: None,
        }
    }
}

/// Moment decays and epsilon, checked.
#[derive(Clone, Copy)]
struct Moments {
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Moments {
    fn new(beta1: f64, beta2: f64, eps: f64) -> Result<Self> {
        check_rate("beta1", beta1)?;
        check_rate("beta2", beta2)?;
        check_eps(eps)?;
        Ok(Moments { beta1, beta2, eps })
    }

    /// Updates both moments and takes the bias-corrected step, after multiplying the weights
    /// by `shrink` (1 for none).
    fn update<T: Scalar>(self, update: Update<'_, T, 2>, shrink: T) {
        // Bias corrections in f64: β^t for t up to 2⁶⁴ loses nothing there.
        let t = update.step as f64;
        let correction1 = 1.0 - self.beta1.powf(t);
        let correction2 = 1.0 - self.beta2.powf(t);
        let factors = AdamFactors {
            beta1: T::of(self.beta1),
            one_minus_beta1: T::of(1.0 - self.beta1),
            beta2: T::of(self.beta2),
            one_minus_beta2: T::of(1.0 - self.beta2),
            step_size: T::of(update.lr / correction1),
            correction2_sqrt: T::of(correction2.sqrt()),
            eps: T::of(self.eps),
            shrink,
        };
        let [m, v] = update.state;
        adam_update(&factors, update.params, update.grad, m, v);
    }
}

/// Adam with coupled L2 weight decay, as `torch.optim.Adam`.
///
/// The AMSGrad variant (`amsgrad=True` in PyTorch) is not offered.
pub struct Adam<T: Scalar> {
    settings: AdamSettings,
    moments: Moments,
    shared: SharedStep<T, 2>,
}

impl<T: Scalar> Adam<T> {
    /// Creates the method after checking `settings`.
    pub fn new(settings: AdamSettings) -> Result<Self> {
        let clip = check_common(
            settings.lr,
            settings.weight_decay,
            settings.clip_norm,
            settings.clip_value,
        )?;
        let moments = Moments::new(settings.beta1, settings.beta2, settings.eps)?;
        let shared = SharedStep::new("adam", MOMENT_NAMES, clip, settings.weight_decay);
        Ok(Adam {
            settings,
            moments,
            shared,
        })
    }

    /// The settings the method was built with.
    pub fn settings(&self) -> &AdamSettings {
        &self.settings
    }
}

impl<T: Scalar> Method<T> for Adam<T> {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        context: &StepContext,
    ) -> Result<StepReport> {
        let moments = self.moments;
        self.shared
            .step(params, objective, context, self.settings.lr, |update| {
                moments.update(update, T::one())
            })
    }

    fn save_state(&self) -> MethodState {
        self.shared.save_state()
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.shared.load_state(state)
    }
}

/// Adam with decoupled weight decay, as `torch.optim.AdamW`.
pub struct AdamW<T: Scalar> {
    settings: AdamWSettings,
    moments: Moments,
    shared: SharedStep<T, 2>,
}

impl<T: Scalar> AdamW<T> {
    /// Creates the method after checking `settings`.
    pub fn new(settings: AdamWSettings) -> Result<Self> {
        let clip = check_common(
            settings.lr,
            settings.weight_decay,
            settings.clip_norm,
            settings.clip_value,
        )?;
        let moments = Moments::new(settings.beta1, settings.beta2, settings.eps)?;
        // Decay is applied to the weights in `step`, not added to the gradient.
        let shared = SharedStep::new("adamw", MOMENT_NAMES, clip, 0.0);
        Ok(AdamW {
            settings,
            moments,
            shared,
        })
    }

    /// The settings the method was built with.
    pub fn settings(&self) -> &AdamWSettings {
        &self.settings
    }
}

impl<T: Scalar> Method<T> for AdamW<T> {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        context: &StepContext,
    ) -> Result<StepReport> {
        let moments = self.moments;
        let weight_decay = self.settings.weight_decay;
        self.shared
            .step(params, objective, context, self.settings.lr, |update| {
                let shrink = T::of(1.0 - update.lr * weight_decay);
                moments.update(update, shrink)
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
    use crate::methods::first_order::state::zero_if_subnormal;
    use crate::methods::first_order::testing::{Impulse, Quadratic};

    /// Runs `steps` steps from w = 1 on a loss with zero gradient and returns w.
    fn run_on_zero_loss(method: &mut dyn Method<f64>, steps: usize) -> f64 {
        let mut objective = Quadratic::new(vec![0.0], vec![0.0]);
        let mut w = vec![1.0];
        for _ in 0..steps {
            method
                .step(&mut w, &mut objective, &StepContext::default())
                .unwrap();
        }
        w[0]
    }

    #[test]
    fn adam_decay_is_coupled() {
        // Coupled decay makes g = 0.01 w, and Adam's normalisation turns that small gradient
        // into steps of about lr. The reference value is the torch.optim.Adam update,
        // evaluated in f64 for these 10 steps.
        let mut adam = Adam::new(AdamSettings {
            lr: 0.1,
            weight_decay: 0.01,
            ..AdamSettings::default()
        })
        .unwrap();
        let w = run_on_zero_loss(&mut adam, 10);
        assert!((w - 0.076250).abs() < 1e-3, "w = {w}");
    }

    #[test]
    fn adamw_decay_is_decoupled() {
        // With zero gradient the moments stay 0 and only the shrink acts: w = 0.999¹⁰.
        let mut adamw = AdamW::new(AdamWSettings {
            lr: 0.1,
            weight_decay: 0.01,
            ..AdamWSettings::default()
        })
        .unwrap();
        let w = run_on_zero_loss(&mut adamw, 10);
        assert!((w - 0.990045).abs() < 1e-3, "w = {w}");
        assert!((w - 0.999_f64.powi(10)).abs() < 1e-12, "w = {w}");
    }

    #[test]
    fn adam_two_steps_on_quadratic() {
        // f(w) = ½ · 2 (w − 1)², g = 2 (w − 1).
        let mut objective = Quadratic::new(vec![2.0], vec![1.0]);
        let settings = AdamSettings {
            lr: 0.1,
            ..AdamSettings::default()
        };
        let mut method = Adam::<f64>::new(settings).unwrap();
        let mut w = vec![3.0];
        let context = StepContext::default();

        // Step 1: g = 4, m = 0.4, v = 0.016; the corrected ratio is 4 / (4 + eps).
        method.step(&mut w, &mut objective, &context).unwrap();
        let w1 = 3.0 - 0.1 / 0.1 * 0.4 / ((0.016_f64).sqrt() / 0.001_f64.sqrt() + 1e-8);
        assert!((w[0] - w1).abs() < 1e-12);
        assert!((w[0] - 2.9).abs() < 1e-8);

        // Step 2: g = 2 (w1 − 1); bias corrections 1 − 0.9² and 1 − 0.999².
        method.step(&mut w, &mut objective, &context).unwrap();
        let g2 = 2.0 * (w1 - 1.0);
        let m2 = 0.9 * 0.4 + 0.1 * g2;
        let v2 = 0.999 * 0.016 + 0.001 * g2 * g2;
        let correction2 = 1.0 - 0.999_f64 * 0.999;
        let w2 = w1 - 0.1 / (1.0 - 0.81) * m2 / (v2.sqrt() / correction2.sqrt() + 1e-8);
        assert!((w[0] - w2).abs() < 1e-12);

        let state = Method::<f64>::save_state(&method);
        assert_eq!(state.vectors[0].0, "exp_avg");
        assert!((state.vectors[0].1[0] - m2).abs() < 1e-12);
        assert_eq!(state.vectors[1].0, "exp_avg_sq");
        assert!((state.vectors[1].1[0] - v2).abs() < 1e-12);
        assert_eq!(state.scalars, vec![("step".to_string(), 2.0)]);
    }

    #[test]
    fn adamw_matches_adam_without_decay() {
        let settings = AdamSettings {
            lr: 0.05,
            ..AdamSettings::default()
        };
        let mut adam = Adam::<f64>::new(settings).unwrap();
        let mut adamw = AdamW::<f64>::new(AdamWSettings {
            lr: 0.05,
            weight_decay: 0.0,
            ..AdamWSettings::default()
        })
        .unwrap();
        let mut objective = Quadratic::new(vec![2.0, 0.5], vec![1.0, -1.0]);
        let (mut a, mut b) = (vec![3.0, 2.0], vec![3.0, 2.0]);
        for _ in 0..5 {
            adam.step(&mut a, &mut objective, &StepContext::default())
                .unwrap();
            adamw
                .step(&mut b, &mut objective, &StepContext::default())
                .unwrap();
        }
        assert_eq!(a, b);
    }

    #[test]
    fn state_stays_zero_or_normal() {
        // One unit gradient, then zeros: both moments decay geometrically and would pass
        // through subnormal values (the second moment after about 80 000 steps in f32).
        let mut objective = Impulse::new(3);
        let mut method = Adam::<f32>::new(AdamSettings::default()).unwrap();
        let mut w = vec![0.5_f32; 3];
        for _ in 0..100_000 {
            method
                .step(&mut w, &mut objective, &StepContext::default())
                .unwrap();
        }
        let state = Method::<f32>::save_state(&method);
        for (name, values) in &state.vectors {
            for &value in values {
                let value = value as f32;
                assert!(value == 0.0 || value.is_normal(), "{name} = {value:e}");
            }
        }
        assert!(w.iter().all(|w| w.is_finite()));
    }

    #[test]
    fn subnormal_values_become_zero() {
        let tiny = f64::MIN_POSITIVE / 4.0;
        assert!(tiny > 0.0);
        assert!(!tiny.is_normal());
        assert_eq!(zero_if_subnormal(tiny), 0.0);
        assert_eq!(zero_if_subnormal(-tiny), 0.0);
        assert_eq!(zero_if_subnormal(f64::MIN_POSITIVE), f64::MIN_POSITIVE);
        assert_eq!(zero_if_subnormal(1e-300_f64), 1e-300);
        assert_eq!(zero_if_subnormal(f32::MIN_POSITIVE / 2.0), 0.0_f32);
    }

    #[test]
    fn defaults_match_papers() {
        let adam = AdamSettings::default();
        assert_eq!(
            (adam.lr, adam.beta1, adam.beta2, adam.eps),
            (1e-3, 0.9, 0.999, 1e-8)
        );
        assert_eq!(adam.weight_decay, 0.0);
        let adamw = AdamWSettings::default();
        assert_eq!((adamw.lr, adamw.beta1, adamw.beta2), (1e-3, 0.9, 0.999));
        assert_eq!(adamw.weight_decay, 0.01);
    }

    #[test]
    fn invalid_betas_name_the_value() {
        let cases = [
            (
                AdamSettings {
                    beta1: 1.0,
                    ..AdamSettings::default()
                },
                "invalid beta1 1",
            ),
            (
                AdamSettings {
                    beta2: -0.1,
                    ..AdamSettings::default()
                },
                "invalid beta2 -0.1",
            ),
            (
                AdamSettings {
                    eps: 0.0,
                    ..AdamSettings::default()
                },
                "invalid eps 0",
            ),
            (
                AdamSettings {
                    lr: f64::NAN,
                    ..AdamSettings::default()
                },
                "invalid lr NaN",
            ),
        ];
        for (settings, expected) in cases {
            let message = Adam::<f64>::new(settings).err().unwrap().to_string();
            assert!(message.contains(expected), "{message}");
        }
        let error = AdamW::<f64>::new(AdamWSettings {
            weight_decay: -0.01,
            ..AdamWSettings::default()
        })
        .err()
        .unwrap();
        assert!(
            error.to_string().contains("invalid weight_decay -0.01"),
            "{error}"
        );
    }
}
