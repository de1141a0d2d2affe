//! TEMPORARY shim.
use crate::methods::Method;
use crate::tensor::Scalar;
use crate::Result;
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum SecondOrderSpec {
    Lbfgs {},
}
impl SecondOrderSpec {
    pub fn names() -> &'static [&'static str] {
        &["lbfgs"]
    }
    pub fn default_for(_: &str) -> Result<Self> {
        Ok(SecondOrderSpec::Lbfgs {})
    }
    pub fn build<T: Scalar>(&self) -> Result<Box<dyn Method<T>>> {
        Err(crate::Error::Data("shim".into()))
    }
}
