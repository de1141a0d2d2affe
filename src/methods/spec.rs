//! The method registry: one serialisable description for every method, as the TOML config's
//! `[method]` table and the command line's `--method NAME --set KEY=VALUE` write it.

use super::first_order::FirstOrderSpec;
use super::search::SearchSpec;
use super::second_order::SecondOrderSpec;
use super::Method;
use crate::tensor::Scalar;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Any training method with its settings. In TOML, `name` picks the method and the other
/// keys of the table are its settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MethodSpec {
    /// Gradient methods on minibatches or the full batch.
    FirstOrder(FirstOrderSpec),
    /// Curvature and line-search methods on the full batch.
    SecondOrder(SecondOrderSpec),
    /// Methods that only evaluate the loss: random, grid and evolutionary searches.
    Search(SearchSpec),
}

impl<'de> Deserialize<'de> for MethodSpec {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        Self::from_table(table).map_err(serde::de::Error::custom)
    }
}

impl Default for MethodSpec {
    fn default() -> Self {
        MethodSpec::FirstOrder(FirstOrderSpec::default_for("adam").expect("adam is registered"))
    }
}

impl MethodSpec {
    /// Every method name.
    pub fn names() -> Vec<&'static str> {
        let mut names = FirstOrderSpec::names().to_vec();
        names.extend_from_slice(SecondOrderSpec::names());
        names.extend_from_slice(SearchSpec::names());
        names
    }

    /// The method `name` with its default settings.
    pub fn default_for(name: &str) -> Result<Self> {
        if FirstOrderSpec::names().contains(&name) {
            return FirstOrderSpec::default_for(name).map(MethodSpec::FirstOrder);
        }
        if SecondOrderSpec::names().contains(&name) {
            return SecondOrderSpec::default_for(name).map(MethodSpec::SecondOrder);
        }
        if SearchSpec::names().contains(&name) {
            return SearchSpec::default_for(name).map(MethodSpec::Search);
        }
        Err(Error::setting(
            "method",
            name,
            &format!("expected one of {}", Self::names().join(", ")),
        ))
    }

    /// The method's name.
    pub fn name(&self) -> String {
        self.to_table()
            .ok()
            .and_then(|t| t.get("name").and_then(|n| n.as_str().map(str::to_string)))
            .unwrap_or_default()
    }

    /// Sets the learning rate; an error for methods that have none.
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        match self {
            MethodSpec::FirstOrder(spec) => {
                if !(lr.is_finite() && lr > 0.0) {
                    return Err(Error::setting("lr", lr, "must be a positive finite number"));
                }
                spec.set_learning_rate(lr);
                Ok(())
            }
            MethodSpec::SecondOrder(_) | MethodSpec::Search(_) => Err(Error::setting(
                "lr",
                lr,
                &format!(
                    "method {} chooses its own step lengths; drop --lr",
                    self.name()
                ),
            )),
        }
    }

    /// Sets one setting by its TOML key, parsing `value` as TOML (a number, a boolean or a
    /// word). An unknown key is an error that names it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if key == "name" {
            return Err(Error::setting(
                "set",
                key,
                "choose the method with --method",
            ));
        }
        let mut table = self.to_table()?;
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        table.insert(key.to_string(), parsed);
        *self = Self::from_table(table).map_err(|e| {
            Error::setting(
                key,
                value,
                &format!("not a valid setting of {}: {e}", self.name()),
            )
        })?;
        Ok(())
    }

    fn to_table(&self) -> Result<toml::Table> {
        toml::Table::try_from(self)
            .map_err(|e| Error::Data(format!("failed to encode method: {e}")))
    }

    fn from_table(table: toml::Table) -> std::result::Result<Self, String> {
        // The untagged enum hides which variant failed, so the specific one is tried first
        // for a better message.
        let name = table
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string();
        if FirstOrderSpec::names().contains(&name.as_str()) {
            return toml::Value::Table(table)
                .try_into::<FirstOrderSpec>()
                .map(MethodSpec::FirstOrder)
                .map_err(|e| e.to_string());
        }
        if SecondOrderSpec::names().contains(&name.as_str()) {
            return toml::Value::Table(table)
                .try_into::<SecondOrderSpec>()
                .map(MethodSpec::SecondOrder)
                .map_err(|e| e.to_string());
        }
        if SearchSpec::names().contains(&name.as_str()) {
            return toml::Value::Table(table)
                .try_into::<SearchSpec>()
                .map(MethodSpec::Search)
                .map_err(|e| e.to_string());
        }
        Err(format!(
            "unknown method {name:?}; expected one of {}",
            Self::names().join(", ")
        ))
    }

    /// Checks the settings without building the method.
    pub fn validate(&self) -> Result<()> {
        self.build::<f64>().map(|_| ())
    }

    /// Builds the method.
    pub fn build<T: Scalar>(&self) -> Result<Box<dyn Method<T>>> {
        match self {
            MethodSpec::FirstOrder(spec) => spec.build(),
            MethodSpec::SecondOrder(spec) => spec.build(),
            MethodSpec::Search(spec) => spec.build(),
        }
    }
}
