//! Gradient descent with momentum in PyTorch's form (`torch.optim.SGD` with `momentum > 0`),
//! which accumulates the gradient rather than the step:
//!
//! - heavy ball ([`Momentum`], Polyak 1964): `v ← μ v + g`, `w ← w − lr · v`;
//! - [`Nesterov`] (Sutskever et al. 2013, as PyTorch writes it): `v ← μ v + g`,
//!   `w ← w − lr · (g + μ v)`.

use super::shared_step::{SharedStep, Update};
use super::state::zero_if_subnormal;
use super::validate::{check_common, check_rate};
use crate::methods::{Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::Result;
use serde::{Deserialize, Serialize};

/// Settings of [`Momentum`] and [`Nesterov`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MomentumSettings {
    /// Learning rate, >= 0. Default 0.01, as `tf.keras.optimizers.SGD` in TensorFlow 2.
    pub lr: f64,
    /// Momentum coefficient μ in `[0, 1)`. Default 0.9, the usual choice in examples
    /// (`torch.optim.SGD` itself defaults to 0, which turns momentum off).
    pub momentum: f64,
    /// Coupled L2 coefficient added to the gradient as `weight_decay · w`, >= 0. Default 0.
    pub weight_decay: f64,
    /// Maximum global L2 norm of the gradient, or unset for no norm clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_norm: Option<f64>,
    /// Maximum absolute value of each gradient component, or unset for no value clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
}

impl Default for MomentumSettings {
    fn default() -> Self {
        MomentumSettings {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
            clip_norm: None,
            clip_value: None,
        }
    }
}

/// Settings of [`Nesterov`], the same as those of [`Momentum`].
pub type NesterovSettings = MomentumSettings;

/// Checks `settings` and builds the shared step with one state vector, the velocity.
fn build_shared_step<T: Scalar>(
    name: &'static str,
    settings: &MomentumSettings,
) -> Result<SharedStep<T, 1>> {
    let clip = check_common(
        settings.lr,
        settings.weight_decay,
        settings.clip_norm,
        settings.clip_value,
    )?;
    check_rate("momentum", settings.momentum)?;
    // PyTorch's state key for the velocity.
    Ok(SharedStep::new(
        name,
        ["momentum_buffer"],
        clip,
        settings.weight_decay,
    ))
}

/// Applies `v ← μ v + g`, then `w ← w − lr · (g + μ v)` when `nesterov` is set and
/// `w ← w − lr · v` otherwise.
fn update_with_momentum<T: Scalar>(update: Update<'_, T, 1>, momentum: f64, nesterov: bool) {
    let lr = T::of(update.lr);
    let mu = T::of(momentum);
    let [velocity] = update.state;
    let params = update.params.iter_mut();
    for ((w, &g), v) in params.zip(update.grad).zip(velocity.iter_mut()) {
        *v = zero_if_subnormal(mu * *v + g);
        let direction = if nesterov { g + mu * *v } else { *v };
        *w -= lr * direction;
    }
}

/// Heavy-ball momentum: `v ← μ v + g`, `w ← w − lr · v`.
pub struct Momentum<T: Scalar> {
    settings: MomentumSettings,
    shared: SharedStep<T, 1>,
}

impl<T: Scalar> Momentum<T> {
    /// Creates the method after checking `settings`.
    pub fn new(settings: MomentumSettings) -> Result<Self> {
        let shared = build_shared_step("momentum", &settings)?;
        Ok(Momentum { settings, shared })
    }

    /// The settings the method was built with.
    pub fn settings(&self) -> &MomentumSettings {
        &self.settings
    }
}

impl<T: Scalar> Method<T> for Momentum<T> {
    fn name(&self) -> &'static str {
        "momentum"
    }

    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        context: &StepContext,
    ) -> Result<StepReport> {
        let momentum = self.settings.momentum;
        self.shared
            .step(params, objective, context, self.settings.lr, |update| {
                update_with_momentum(update, momentum, false)
            })
    }

    fn save_state(&self) -> MethodState {
        self.shared.save_state()
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.shared.load_state(state)
    }
}

/// Nesterov momentum in PyTorch's form: `v ← μ v + g`, `w ← w − lr · (g + μ v)`.
pub struct Nesterov<T: Scalar> {
    settings: NesterovSettings,
    shared: SharedStep<T, 1>,
}

impl<T: Scalar> Nesterov<T> {
    /// Creates the method after checking `settings`.
    pub fn new(settings: NesterovSettings) -> Result<Self> {
        let shared = build_shared_step("nesterov", &settings)?;
        Ok(Nesterov { settings, shared })
    }

    /// The settings the method was built with.
    pub fn settings(&self) -> &NesterovSettings {
        &self.settings
    }
}

impl<T: Scalar> Method<T> for Nesterov<T> {
    fn name(&self) -> &'static str {
        "nesterov"
    }

    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        context: &StepContext,
    ) -> Result<StepReport> {
        let momentum = self.settings.momentum;
        self.shared
            .step(params, objective, context, self.settings.lr, |update| {
                update_with_momentum(update, momentum, true)
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

    fn settings() -> MomentumSettings {
        MomentumSettings {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            ..MomentumSettings::default()
        }
    }

    #[test]
    fn momentum_two_steps_on_quadratic() {
        // f(w) = ½ · 2 (w − 1)², g = 2 (w − 1).
        let mut objective = Quadratic::new(vec![2.0], vec![1.0]);
        let mut method = Momentum::<f64>::new(settings()).unwrap();
        let mut w = vec![3.0];
        let context = StepContext::default();

        // Step 1: g = 4, v = 4, w = 3 − 0.4 = 2.6.
        method.step(&mut w, &mut objective, &context).unwrap();
        assert!((w[0] - 2.6).abs() < 1e-12);
        // Step 2: g = 3.2, v = 0.9·4 + 3.2 = 6.8, w = 2.6 − 0.68 = 1.92.
        method.step(&mut w, &mut objective, &context).unwrap();
        assert!((w[0] - 1.92).abs() < 1e-12);
        let state = Method::<f64>::save_state(&method);
        assert!((state.vectors[0].1[0] - 6.8).abs() < 1e-12);
    }

    #[test]
    fn nesterov_two_steps_on_quadratic() {
        let mut objective = Quadratic::new(vec![2.0], vec![1.0]);
        let mut method = Nesterov::<f64>::new(settings()).unwrap();
        let mut w = vec![3.0];
        let context = StepContext::default();

        // Step 1: g = 4, v = 4, w = 3 − 0.1·(4 + 3.6) = 2.24.
        method.step(&mut w, &mut objective, &context).unwrap();
        assert!((w[0] - 2.24).abs() < 1e-12);
        // Step 2: g = 2.48, v = 3.6 + 2.48 = 6.08, w = 2.24 − 0.1·(2.48 + 5.472) = 1.4448.
        method.step(&mut w, &mut objective, &context).unwrap();
        assert!((w[0] - 1.4448).abs() < 1e-12);
    }

    #[test]
    fn coupled_decay_enters_velocity() {
        // Zero loss gradient, so g = wd · w = 0.5 at w = 1.
        let mut objective = Quadratic::new(vec![0.0], vec![0.0]);
        let mut method = Momentum::<f64>::new(MomentumSettings {
            weight_decay: 0.5,
            ..settings()
        })
        .unwrap();
        let mut w = vec![1.0];
        method
            .step(&mut w, &mut objective, &StepContext::default())
            .unwrap();
        assert!((w[0] - 0.95).abs() < 1e-12);
    }

    #[test]
    fn invalid_momentum_names_the_value() {
        for momentum in [1.0, -0.1, f64::NAN] {
            let error = Momentum::<f64>::new(MomentumSettings {
                momentum,
                ..MomentumSettings::default()
            })
            .err()
            .unwrap();
            let message = error.to_string();
            assert!(
                message.contains(&format!("invalid momentum {momentum}")),
                "{message}"
            );
            assert!(message.contains("[0, 1)"), "{message}");
        }
        assert!(Nesterov::<f64>::new(MomentumSettings {
            lr: -1.0,
            ..MomentumSettings::default()
        })
        .is_err());
    }
}
