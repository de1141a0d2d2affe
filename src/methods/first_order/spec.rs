//! The registry of first-order methods for the command line and the TOML config.

use super::{
    AdaGrad, AdaGradSettings, Adam, AdamSettings, AdamW, AdamWSettings, GdSettings,
    GradientDescent, Momentum, MomentumSettings, Nesterov, NesterovSettings, RmsProp,
    RmsPropSettings, Sgd, SgdSettings,
};
use crate::methods::Method;
use crate::tensor::Scalar;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A first-order method and its settings, as a config file or the command line names it.
///
/// In TOML the method's name sits beside its settings, and omitted settings take their
/// defaults:
///
/// ```toml
/// [method]
/// name = "adam"
/// lr = 0.001
/// beta1 = 0.9
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum FirstOrderSpec {
    /// Full-batch gradient descent.
    GradientDescent(GdSettings),
    /// Stochastic gradient descent.
    Sgd(SgdSettings),
    /// Heavy-ball momentum.
    Momentum(MomentumSettings),
    /// Nesterov momentum.
    Nesterov(NesterovSettings),
    /// AdaGrad.
    Adagrad(AdaGradSettings),
    /// RMSprop.
    Rmsprop(RmsPropSettings),
    /// Adam with coupled L2 weight decay.
    Adam(AdamSettings),
    /// Adam with decoupled weight decay.
    Adamw(AdamWSettings),
}

/// Method names in the order of [`FirstOrderSpec`]'s variants.
const NAMES: [&str; 8] = [
    "gradient-descent",
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
];

impl Default for FirstOrderSpec {
    fn default() -> Self {
        FirstOrderSpec::Adam(AdamSettings::default())
    }
}

impl FirstOrderSpec {
    /// Names of every first-order method, as `name` in a config and on the command line.
    pub fn names() -> &'static [&'static str] {
        &NAMES
    }

    /// Returns the method `name` with default settings. Fails on an unknown name and lists
    /// the valid ones.
    pub fn default_for(name: &str) -> Result<Self> {
        Ok(match name {
            "gradient-descent" => FirstOrderSpec::GradientDescent(GdSettings::default()),
            "sgd" => FirstOrderSpec::Sgd(SgdSettings::default()),
            "momentum" => FirstOrderSpec::Momentum(MomentumSettings::default()),
            "nesterov" => FirstOrderSpec::Nesterov(NesterovSettings::default()),
            "adagrad" => FirstOrderSpec::Adagrad(AdaGradSettings::default()),
            "rmsprop" => FirstOrderSpec::Rmsprop(RmsPropSettings::default()),
            "adam" => FirstOrderSpec::Adam(AdamSettings::default()),
            "adamw" => FirstOrderSpec::Adamw(AdamWSettings::default()),
            _ => {
                let expected = format!("expected one of {}", NAMES.join(", "));
                return Err(Error::setting("method", name, &expected));
            }
        })
    }

    /// Returns the method's name, one of [`FirstOrderSpec::names`].
    pub fn name(&self) -> &'static str {
        match self {
            FirstOrderSpec::GradientDescent(_) => NAMES[0],
            FirstOrderSpec::Sgd(_) => NAMES[1],
            FirstOrderSpec::Momentum(_) => NAMES[2],
            FirstOrderSpec::Nesterov(_) => NAMES[3],
            FirstOrderSpec::Adagrad(_) => NAMES[4],
            FirstOrderSpec::Rmsprop(_) => NAMES[5],
            FirstOrderSpec::Adam(_) => NAMES[6],
            FirstOrderSpec::Adamw(_) => NAMES[7],
        }
    }

    /// Builds the method after checking its settings. The error names the first invalid
    /// setting and its valid range.
    pub fn build<T: Scalar>(&self) -> Result<Box<dyn Method<T>>> {
        Ok(match self {
            FirstOrderSpec::GradientDescent(s) => Box::new(GradientDescent::new(s.clone())?),
            FirstOrderSpec::Sgd(s) => Box::new(Sgd::new(s.clone())?),
            FirstOrderSpec::Momentum(s) => Box::new(Momentum::new(s.clone())?),
            FirstOrderSpec::Nesterov(s) => Box::new(Nesterov::new(s.clone())?),
            FirstOrderSpec::Adagrad(s) => Box::new(AdaGrad::new(s.clone())?),
            FirstOrderSpec::Rmsprop(s) => Box::new(RmsProp::new(s.clone())?),
            FirstOrderSpec::Adam(s) => Box::new(Adam::new(s.clone())?),
            FirstOrderSpec::Adamw(s) => Box::new(AdamW::new(s.clone())?),
        })
    }

    /// Checks the settings without building the method.
    pub fn validate(&self) -> Result<()> {
        self.build::<f64>().map(|_| ())
    }

    /// Returns the base learning rate.
    pub fn learning_rate(&self) -> f64 {
        match self {
            FirstOrderSpec::GradientDescent(s) | FirstOrderSpec::Sgd(s) => s.lr,
            FirstOrderSpec::Momentum(s) | FirstOrderSpec::Nesterov(s) => s.lr,
            FirstOrderSpec::Adagrad(s) => s.lr,
            FirstOrderSpec::Rmsprop(s) => s.lr,
            FirstOrderSpec::Adam(s) => s.lr,
            FirstOrderSpec::Adamw(s) => s.lr,
        }
    }

    /// Sets the base learning rate. [`FirstOrderSpec::build`] checks it.
    pub fn set_learning_rate(&mut self, lr: f64) {
        match self {
            FirstOrderSpec::GradientDescent(s) | FirstOrderSpec::Sgd(s) => s.lr = lr,
            FirstOrderSpec::Momentum(s) | FirstOrderSpec::Nesterov(s) => s.lr = lr,
            FirstOrderSpec::Adagrad(s) => s.lr = lr,
            FirstOrderSpec::Rmsprop(s) => s.lr = lr,
            FirstOrderSpec::Adam(s) => s.lr = lr,
            FirstOrderSpec::Adamw(s) => s.lr = lr,
        }
    }
}
