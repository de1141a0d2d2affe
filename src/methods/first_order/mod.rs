//! TEMPORARY shim for integration compile checks; replaced by the real module.
use crate::methods::{Method, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::Result;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum FirstOrderSpec {
    Sgd(SgdSettings),
    Adam(SgdSettings),
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdSettings {
    pub lr: f64,
}
impl Default for SgdSettings {
    fn default() -> Self {
        SgdSettings { lr: 0.01 }
    }
}
impl FirstOrderSpec {
    pub fn names() -> &'static [&'static str] {
        &["sgd", "adam"]
    }
    pub fn default_for(name: &str) -> Result<Self> {
        match name {
            "sgd" => Ok(FirstOrderSpec::Sgd(SgdSettings::default())),
            _ => Ok(FirstOrderSpec::Adam(SgdSettings::default())),
        }
    }
    pub fn set_learning_rate(&mut self, lr: f64) {
        match self {
            FirstOrderSpec::Sgd(s) | FirstOrderSpec::Adam(s) => s.lr = lr,
        }
    }
    pub fn build<T: Scalar>(&self) -> Result<Box<dyn Method<T>>> {
        let (FirstOrderSpec::Sgd(s) | FirstOrderSpec::Adam(s)) = self;
        Ok(Box::new(Sgd {
            lr: s.lr,
            g: Vec::new(),
        }))
    }
}
struct Sgd<T> {
    lr: f64,
    g: Vec<T>,
}
impl<T: Scalar> Method<T> for Sgd<T> {
    fn name(&self) -> &'static str {
        "sgd"
    }
    fn step(
        &mut self,
        p: &mut [T],
        o: &mut dyn Objective<T>,
        c: &StepContext,
    ) -> Result<StepReport> {
        self.g.resize(p.len(), T::zero());
        let loss = o.gradient(p, &mut self.g);
        let lr = T::of(self.lr * c.lr_factor);
        p.iter_mut().zip(&self.g).for_each(|(p, g)| *p -= lr * *g);
        Ok(StepReport {
            loss,
            ..Default::default()
        })
    }
}
