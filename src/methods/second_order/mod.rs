//! Second-order and quasi-Newton methods: L-BFGS, nonlinear conjugate gradients,
//! Levenberg-Marquardt and Hessian-free optimisation. All of them take full-batch steps,
//! except Hessian-free with its `minibatch` setting on.
//!
//! [`SecondOrderSpec`] names a method with its settings for the command line and the TOML
//! config, and builds it for any scalar type.

pub mod hessian_free;
pub mod lbfgs;
pub mod levenberg_marquardt;
pub mod line_search;
pub mod nonlinear_cg;
pub mod weight_decay;

pub use hessian_free::{Curvature, CurvatureOperator, HessianFree, HfSettings};
pub use lbfgs::{Lbfgs, LbfgsSettings};
pub use levenberg_marquardt::{LevenbergMarquardt, LmSettings};
pub use line_search::{LineSearch, LineSearchError, LineSearchFailure, StrongWolfe, Trial};
pub use nonlinear_cg::{NcgSettings, NcgVariant, NonlinearCg};
pub use weight_decay::WeightDecay;

use crate::methods::{Method, MethodState};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod test_functions;

/// A second-order method and its settings, as the command line and the TOML config name
/// them. The `name` key selects the method, and the other keys are its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum SecondOrderSpec {
    /// [`HessianFree`].
    HessianFree(HfSettings),
    /// [`Lbfgs`].
    Lbfgs(LbfgsSettings),
    /// [`NonlinearCg`].
    NonlinearCg(NcgSettings),
    /// [`LevenbergMarquardt`].
    LevenbergMarquardt(LmSettings),
}

impl SecondOrderSpec {
    /// Returns the method names, as `name` and [`SecondOrderSpec::default_for`] accept them.
    pub fn names() -> &'static [&'static str] {
        &[
            "hessian-free",
            "lbfgs",
            "nonlinear-cg",
            "levenberg-marquardt",
        ]
    }

    /// Returns the method name.
    pub fn name(&self) -> &'static str {
        match self {
            SecondOrderSpec::HessianFree(_) => "hessian-free",
            SecondOrderSpec::Lbfgs(_) => "lbfgs",
            SecondOrderSpec::NonlinearCg(_) => "nonlinear-cg",
            SecondOrderSpec::LevenbergMarquardt(_) => "levenberg-marquardt",
        }
    }

    /// Returns the method named `name` with its default settings.
    pub fn default_for(name: &str) -> Result<Self> {
        match name {
            "hessian-free" => Ok(SecondOrderSpec::HessianFree(HfSettings::default())),
            "lbfgs" => Ok(SecondOrderSpec::Lbfgs(LbfgsSettings::default())),
            "nonlinear-cg" => Ok(SecondOrderSpec::NonlinearCg(NcgSettings::default())),
            "levenberg-marquardt" => Ok(SecondOrderSpec::LevenbergMarquardt(LmSettings::default())),
            _ => Err(Error::setting(
                "method",
                name,
                &format!("expected one of {}", Self::names().join(", ")),
            )),
        }
    }

    /// Checks the settings against their valid ranges.
    pub fn validate(&self) -> Result<()> {
        match self {
            SecondOrderSpec::HessianFree(settings) => settings.validate(),
            SecondOrderSpec::Lbfgs(settings) => settings.validate(),
            SecondOrderSpec::NonlinearCg(settings) => settings.validate(),
            SecondOrderSpec::LevenbergMarquardt(settings) => settings.validate(),
        }
    }

    /// Builds the method for scalars `T` after validating its settings.
    pub fn build<T: Scalar>(&self) -> Result<Box<dyn Method<T>>> {
        Ok(match self {
            SecondOrderSpec::HessianFree(settings) => Box::new(HessianFree::new(settings.clone())?),
            SecondOrderSpec::Lbfgs(settings) => Box::new(Lbfgs::new(settings.clone())?),
            SecondOrderSpec::NonlinearCg(settings) => Box::new(NonlinearCg::new(settings.clone())?),
            SecondOrderSpec::LevenbergMarquardt(settings) => {
                Box::new(LevenbergMarquardt::new(settings.clone())?)
            }
        })
    }
}

/// The value and gradient at the parameters a step starts from, kept from the last step.
#[derive(Debug, Default)]
struct StartPoint<T> {
    params: Vec<T>,
    value: f64,
    gradient: Vec<T>,
    valid: bool,
}

impl<T: Scalar> StartPoint<T> {
    /// Writes `∇f(params)` into `self.gradient` and returns `f(params)`.
    ///
    /// When `params` are those the last step ended at and the objective returns bitwise the
    /// same value there, the stored gradient is reused at the cost of one value evaluation.
    /// That happens when the training loop passes the same full batch again. A new batch or
    /// new dropout masks change the value, so the gradient is then recomputed.
    fn evaluate(&mut self, objective: &mut dyn Objective<T>, params: &[T]) -> f64 {
        if self.valid && self.params == params {
            let value = objective.value(params);
            if value.to_bits() == self.value.to_bits() {
                return value;
            }
        }
        self.gradient.resize(params.len(), T::zero());
        self.value = objective.gradient(params, &mut self.gradient);
        self.params.clear();
        self.params.extend_from_slice(params);
        self.valid = true;
        self.value
    }

    /// Records that `self.gradient` is the gradient at `params`, where the value is `value`.
    fn remember(&mut self, params: &[T], value: f64) {
        self.params.clear();
        self.params.extend_from_slice(params);
        self.value = value;
        self.valid = self.gradient.len() == params.len();
    }

    fn forget(&mut self) {
        self.valid = false;
    }
}

/// Returns the vectors named `{prefix}0`, `{prefix}1`, ... from `state`, up to the first
/// missing index.
fn restore_vectors<T: Scalar>(state: &MethodState, prefix: &str) -> Vec<Vec<T>> {
    let mut vectors = Vec::new();
    loop {
        let name = format!("{prefix}{}", vectors.len());
        match state.vectors.iter().find(|(n, _)| *n == name) {
            Some((_, v)) => vectors.push(v.iter().map(|&x| T::of(x)).collect()),
            None => return vectors,
        }
    }
}

/// Returns the vector named `name` from `state`.
fn restore_vector<T: Scalar>(state: &MethodState, name: &str) -> Option<Vec<T>> {
    state
        .vectors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.iter().map(|&x| T::of(x)).collect())
}

/// Returns the scalar named `name` from `state`.
fn restore_scalar(state: &MethodState, name: &str) -> Option<f64> {
    state
        .scalars
        .iter()
        .find(|(n, _)| n == name)
        .map(|&(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krylov::KrylovMethod;
    use crate::methods::Batching;

    /// A config file section containing the method.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Config {
        method: SecondOrderSpec,
    }

    fn examples() -> Vec<SecondOrderSpec> {
        let mut specs: Vec<SecondOrderSpec> = SecondOrderSpec::names()
            .iter()
            .map(|name| SecondOrderSpec::default_for(name).expect("known name"))
            .collect();
        specs.push(SecondOrderSpec::HessianFree(HfSettings {
            krylov: KrylovMethod::Minres,
            curvature: Curvature::Hessian,
            curvature_fraction: 0.25,
            damping: 2.0 / 3.0,
            ..HfSettings::default()
        }));
        specs.push(SecondOrderSpec::NonlinearCg(NcgSettings {
            variant: NcgVariant::FletcherReeves,
            restart_interval: 7,
            ..NcgSettings::default()
        }));
        specs.push(SecondOrderSpec::Lbfgs(LbfgsSettings {
            history: 4,
            max_iterations_per_step: 20,
            ..LbfgsSettings::default()
        }));
        specs.push(SecondOrderSpec::LevenbergMarquardt(LmSettings {
            max_parameters: 100,
            ..LmSettings::default()
        }));
        specs
    }

    #[test]
    fn spec_round_trips_through_toml() {
        for method in examples() {
            let config = Config { method };
            let text = toml::to_string(&config).expect("serializes");
            let back: Config = toml::from_str(&text).expect("deserializes");
            assert_eq!(back, config, "round trip through:\n{text}");
        }
    }

    #[test]
    fn spec_reads_partial_toml() {
        let text =
            "[method]\nname = \"hessian-free\"\nkrylov = \"gmres\"\nmax_krylov_iterations = 40\n";
        let config: Config = toml::from_str(text).expect("valid config");
        let expected = SecondOrderSpec::HessianFree(HfSettings {
            krylov: KrylovMethod::Gmres,
            max_krylov_iterations: 40,
            ..HfSettings::default()
        });
        assert_eq!(config.method, expected);
    }

    #[test]
    fn spec_rejects_unknown_keys_and_names() {
        let unknown_key = "[method]\nname = \"lbfgs\"\nmemory = 5\n";
        assert!(toml::from_str::<Config>(unknown_key).is_err());
        let unknown_name = "[method]\nname = \"newton\"\n";
        assert!(toml::from_str::<Config>(unknown_name).is_err());
        let error = SecondOrderSpec::default_for("newton").expect_err("unknown name");
        assert!(error.to_string().contains("levenberg-marquardt"), "{error}");
    }

    #[test]
    fn spec_builds_named_full_batch_methods() {
        for name in SecondOrderSpec::names() {
            let spec = SecondOrderSpec::default_for(name).expect("known name");
            assert_eq!(spec.name(), *name);
            let method = spec.build::<f32>().expect("valid defaults");
            assert_eq!(method.name(), *name);
            assert_eq!(method.batching(), Batching::FullBatch);
            let method = spec.build::<f64>().expect("valid defaults");
            assert_eq!(method.name(), *name);
        }
    }

    #[test]
    fn spec_build_validates_settings() {
        let spec = SecondOrderSpec::Lbfgs(LbfgsSettings {
            history: 0,
            ..LbfgsSettings::default()
        });
        assert!(spec.validate().is_err());
        assert!(spec.build::<f64>().is_err());
    }
}
