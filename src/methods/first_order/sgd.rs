//! Plain gradient descent: `w ← w − lr · g`, on minibatches ([`Sgd`]) or on the full batch
//! ([`GradientDescent`]).

use super::shared_step::SharedStep;
use super::validate::check_common;
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::Result;
use serde::{Deserialize, Serialize};

/// Settings of [`Sgd`] and [`GradientDescent`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdSettings {
    /// Learning rate, >= 0. Default 0.01, as `tf.keras.optimizers.SGD` in TensorFlow 2.
    pub lr: f64,
    /// Coupled L2 coefficient added to the gradient as `weight_decay · w`, >= 0. Default 0.
    pub weight_decay: f64,
    /// Maximum global L2 norm of the gradient, or unset for no norm clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    /// Maximum absolute value of each gradient component, or unset for no value clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

impl Default for SgdSettings {
    fn default() -> Self {
        SgdSettings {
            lr: 0.01,
            weight_decay: 0.0,
            clip_norm: None,
            clip_value: None,
        }
    }
}

/// Settings of [`GradientDescent`], the same as those of [`Sgd`].
pub type GdSettings = SgdSettings;

/// Stochastic gradient descent on minibatches: `w ← w − lr · g`.
pub struct Sgd<T: Scalar> {
    settings: SgdSettings,
    shared: SharedStep<T, 0>,
}

impl<T: Scalar> Sgd<T> {
    /// Creates the method after checking `settings`.
    pub fn new(settings: SgdSettings) -> Result<Self> {
        Self::named("sgd", settings)
    }

    fn named(name: &'static str, settings: SgdSettings) -> Result<Self> {
        let clip = check_common(
            settings.lr,
            settings.weight_decay,
            settings.clip_norm,
            settings.clip_value,
        )?;
        let shared = SharedStep::new(name, [], clip, settings.weight_decay);
        Ok(Sgd { settings, shared })
    }

    /// The settings the method was built with.
    pub fn settings(&self) -> &SgdSettings {
        &self.settings
    }
}

impl<T: Scalar> Method<T> for Sgd<T> {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        context: &StepContext,
    ) -> Result<StepReport> {
        self.shared
            .step(params, objective, context, self.settings.lr, |update| {
                let lr = T::of(update.lr);
                for (w, &g) in update.params.iter_mut().zip(update.grad) {
                    *w -= lr * g;
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

/// Full-batch gradient descent: the update of [`Sgd`] with one step per epoch over the whole
/// training set.
pub struct GradientDescent<T: Scalar> {
    inner: Sgd<T>,
}

impl<T: Scalar> GradientDescent<T> {
    /// Creates the method after checking `settings`.
    pub fn new(settings: GdSettings) -> Result<Self> {
        let inner = Sgd::named("gradient-descent", settings)?;
        Ok(GradientDescent { inner })
    }

    /// The settings the method was built with.
    pub fn settings(&self) -> &GdSettings {
        self.inner.settings()
    }
}

impl<T: Scalar> Method<T> for GradientDescent<T> {
    fn name(&self) -> &'static str {
        "gradient-descent"
    }

    fn batching(&self) -> Batching {
        Batching::FullBatch
    }

    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        context: &StepContext,
    ) -> Result<StepReport> {
        self.inner.step(params, objective, context)
    }

    fn save_state(&self) -> MethodState {
        self.inner.save_state()
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.inner.load_state(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::first_order::testing::Quadratic;

    #[test]
    fn sgd_two_steps_on_quadratic() {
        // f(w) = ½ Σ a_i (w_i − c_i)², so g_i = a_i (w_i − c_i).
        let mut objective = Quadratic::new(vec![2.0, 0.5], vec![1.0, -1.0]);
        let settings = SgdSettings {
            lr: 0.1,
            weight_decay: 0.1,
            ..SgdSettings::default()
        };
        let mut method = Sgd::<f64>::new(settings).unwrap();
        let mut w = vec![3.0, 2.0];
        let context = StepContext::default();

        // Step 1: g = (2·2, 0.5·3) + 0.1·(3, 2) = (4.3, 1.7).
        let report = method.step(&mut w, &mut objective, &context).unwrap();
        assert!((w[0] - (3.0 - 0.43)).abs() < 1e-12);
        assert!((w[1] - (2.0 - 0.17)).abs() < 1e-12);
        assert!((report.loss - (0.5 * 2.0 * 4.0 + 0.5 * 0.5 * 9.0)).abs() < 1e-12);
        assert!(!report.skipped);

        // Step 2 from (2.57, 1.83): g = (2·1.57 + 0.257, 0.5·2.83 + 0.183).
        method.step(&mut w, &mut objective, &context).unwrap();
        assert!((w[0] - (2.57 - 0.1 * (2.0 * 1.57 + 0.257))).abs() < 1e-12);
        assert!((w[1] - (1.83 - 0.1 * (1.415 + 0.183))).abs() < 1e-12);
    }

    #[test]
    fn gradient_descent_is_full_batch() {
        let method = GradientDescent::<f64>::new(GdSettings::default()).unwrap();
        assert_eq!(method.batching(), Batching::FullBatch);
        assert_eq!(Method::<f64>::name(&method), "gradient-descent");
        let sgd = Sgd::<f64>::new(SgdSettings::default()).unwrap();
        assert_eq!(sgd.batching(), Batching::MiniBatch);
    }

    #[test]
    fn lr_factor_scales_step() {
        let mut objective = Quadratic::new(vec![1.0], vec![0.0]);
        let mut method = Sgd::<f64>::new(SgdSettings {
            lr: 0.5,
            ..SgdSettings::default()
        })
        .unwrap();
        let mut w = vec![1.0];
        let context = StepContext {
            lr_factor: 0.5,
            ..StepContext::default()
        };
        method.step(&mut w, &mut objective, &context).unwrap();
        assert_eq!(w[0], 0.75);
    }

    #[test]
    fn invalid_lr_factor_is_rejected() {
        let mut objective = Quadratic::new(vec![1.0], vec![0.0]);
        let mut method = Sgd::<f64>::new(SgdSettings::default()).unwrap();
        let mut w = vec![1.0];
        let context = StepContext {
            lr_factor: f64::NAN,
            ..StepContext::default()
        };
        let message = method
            .step(&mut w, &mut objective, &context)
            .unwrap_err()
            .to_string();
        assert!(message.contains("invalid lr_factor NaN"), "{message}");
        assert_eq!(w[0], 1.0);
    }

    #[test]
    fn clip_norm_limits_step() {
        let mut objective = Quadratic::new(vec![1.0, 1.0], vec![0.0, 0.0]);
        let settings = SgdSettings {
            lr: 1.0,
            clip_norm: Some(1.0),
            ..SgdSettings::default()
        };
        let mut method = Sgd::<f64>::new(settings).unwrap();
        let mut w = vec![30.0, 40.0];
        let report = method
            .step(&mut w, &mut objective, &StepContext::default())
            .unwrap();
        assert_eq!(report.gradient_norm, Some(50.0));
        let scale = 1.0 / (50.0 + 1e-6);
        assert!((w[0] - (30.0 - 30.0 * scale)).abs() < 1e-12);
        assert!((w[1] - (40.0 - 40.0 * scale)).abs() < 1e-12);
    }

    #[test]
    fn clip_value_limits_step() {
        let mut objective = Quadratic::new(vec![1.0, 1.0], vec![0.0, 0.0]);
        let settings = SgdSettings {
            lr: 1.0,
            clip_value: Some(0.5),
            ..SgdSettings::default()
        };
        let mut method = Sgd::<f64>::new(settings).unwrap();
        let mut w = vec![3.0, -0.25];
        method
            .step(&mut w, &mut objective, &StepContext::default())
            .unwrap();
        assert_eq!(w, vec![2.5, 0.0]);
    }

    #[test]
    fn wrong_parameter_count_is_rejected() {
        let mut objective = Quadratic::new(vec![1.0, 1.0], vec![0.0, 0.0]);
        let mut method = Sgd::<f64>::new(SgdSettings::default()).unwrap();
        let mut w = vec![1.0];
        let error = method
            .step(&mut w, &mut objective, &StepContext::default())
            .unwrap_err();
        assert!(error.to_string().contains("1 parameters"), "{error}");
    }

    #[test]
    fn invalid_settings_name_the_value() {
        let cases = [
            (
                SgdSettings {
                    lr: -0.1,
                    ..SgdSettings::default()
                },
                "invalid lr -0.1",
            ),
            (
                SgdSettings {
                    lr: f64::INFINITY,
                    ..SgdSettings::default()
                },
                "invalid lr inf",
            ),
            (
                SgdSettings {
                    weight_decay: -1.0,
                    ..SgdSettings::default()
                },
                "invalid weight_decay -1",
            ),
            (
                SgdSettings {
                    clip_norm: Some(0.0),
                    ..SgdSettings::default()
                },
                "invalid clip_norm 0",
            ),
            (
                SgdSettings {
                    clip_value: Some(-2.0),
                    ..SgdSettings::default()
                },
                "invalid clip_value -2",
            ),
        ];
        for (settings, expected) in cases {
            let message = Sgd::<f64>::new(settings).err().unwrap().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }
}
