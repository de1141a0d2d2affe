//! Layers, losses, initialisation and the network.

mod activation;
mod dense;
mod dropout;
mod init;
mod layer;
mod loss;
mod network;
#[cfg(test)]
mod tests;

pub use activation::{Activation, ActivationLayer, LEAKY_RELU_SLOPE};
pub use dense::Dense;
pub use dropout::Dropout;
pub use init::{fill as fill_weights, Init};
pub use layer::{Activations, Layer, Mode, ParamTensor, Pass};
pub use loss::Loss;
pub use network::{Network, Workspace};

use crate::tensor::Scalar;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The random number generator used for initialisation and masks: ChaCha8, whose stream is
/// fixed for a seed across platforms and crate versions.
pub type Rng = rand_chacha::ChaCha8Rng;

/// One layer of a model description, as stored in `model.json` and the TOML config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum LayerSpec {
    /// A dense layer with `units` outputs; any input shape is taken as flat.
    Dense {
        /// Output features.
        units: usize,
    },
    /// An elementwise activation.
    Activation {
        /// The function.
        function: Activation,
    },
    /// Dropout with the given rate.
    Dropout {
        /// Probability of zeroing an element in training, in `[0, 1)`.
        rate: f64,
    },
}

/// Builds the layer for `spec` on inputs of `shape`.
fn build_layer<T: Scalar>(
    spec: &LayerSpec,
    shape: &[usize],
    index: usize,
) -> Result<Box<dyn Layer<T>>> {
    let size: usize = shape.iter().product();
    Ok(match *spec {
        LayerSpec::Dense { units } => {
            if units == 0 {
                return Err(Error::Shape(format!(
                    "layer {index} dense(0) has no outputs"
                )));
            }
            Box::new(Dense::new(size, units))
        }
        LayerSpec::Activation { function } => Box::new(ActivationLayer::new(function, shape)),
        LayerSpec::Dropout { rate } => Box::new(Dropout::new(rate, shape, index as u64 + 1)?),
    })
}

/// Describes a multilayer perceptron: a dense layer and the activation for each hidden size,
/// then a dense output layer with `outputs` units and no activation.
pub fn mlp(
    hidden: &[usize],
    activation: Activation,
    dropout: f64,
    outputs: usize,
) -> Vec<LayerSpec> {
    let mut specs = Vec::new();
    for &units in hidden {
        specs.push(LayerSpec::Dense { units });
        specs.push(LayerSpec::Activation {
            function: activation,
        });
        if dropout > 0.0 {
            specs.push(LayerSpec::Dropout { rate: dropout });
        }
    }
    specs.push(LayerSpec::Dense { units: outputs });
    specs
}
