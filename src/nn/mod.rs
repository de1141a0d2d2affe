//! Layers, losses, initialisation and the network.

mod activation;
mod batch_norm;
mod conv;
mod dense;
mod dropout;
mod flatten;
mod init;
mod layer;
mod loss;
mod network;
mod parse;
mod pool;
mod window;

#[cfg(test)]
mod image_tests;
#[cfg(test)]
mod tests;

pub use activation::{Activation, ActivationLayer, LEAKY_RELU_SLOPE};
pub use batch_norm::{BatchNorm, BATCH_NORM_EPSILON, BATCH_NORM_MOMENTUM};
pub use conv::Conv2d;
pub use dense::Dense;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use init::{fill as fill_weights, Init};
pub use layer::{Activations, Layer, Mode, ParamTensor, Pass};
pub use loss::Loss;
pub use network::{Network, Workspace};
pub use parse::parse_model;
pub use pool::{AvgPool2d, MaxPool2d};

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
    /// A 2-d convolution over `[channels, height, width]` inputs.
    Conv2d {
        /// Output channels.
        filters: usize,
        /// Kernel height and width.
        kernel: [usize; 2],
        /// Step between windows, in both directions.
        #[serde(default = "one")]
        stride: usize,
        /// Zeros added on every side of the input.
        #[serde(default)]
        padding: usize,
    },
    /// Max pooling over square windows of `[channels, height, width]` inputs.
    MaxPool2d {
        /// Window height and width.
        size: usize,
        /// Step between windows; the window size when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<usize>,
    },
    /// Average pooling over square windows of `[channels, height, width]` inputs.
    AvgPool2d {
        /// Window height and width.
        size: usize,
        /// Step between windows; the window size when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<usize>,
    },
    /// Reshapes each sample to one dimension.
    Flatten,
    /// Batch normalisation over the features of flat inputs, or over the channels (dimension
    /// 0) of image inputs, with ε = 1e-5 and momentum 0.1.
    BatchNorm,
}

fn one() -> usize {
    1
}

/// Builds the layer for `spec` on inputs of `shape`. Errors name the layer by its index.
fn build_layer<T: Scalar>(
    spec: &LayerSpec,
    shape: &[usize],
    index: usize,
) -> Result<Box<dyn Layer<T>>> {
    let size: usize = shape.iter().product();
    let at_layer = |error: Error| match error {
        Error::Shape(message) => Error::Shape(format!("layer {index} {message}")),
        Error::InvalidSetting {
            name,
            value,
            expected,
        } => Error::InvalidSetting {
            name: format!("layer {index} {name}"),
            value,
            expected,
        },
        other => other,
    };
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
        LayerSpec::Dropout { rate } => {
            Box::new(Dropout::new(rate, shape, index as u64 + 1).map_err(at_layer)?)
        }
        LayerSpec::Conv2d {
            filters,
            kernel,
            stride,
            padding,
        } => Box::new(Conv2d::new(shape, filters, kernel, stride, padding).map_err(at_layer)?),
        LayerSpec::MaxPool2d { size, stride } => {
            Box::new(MaxPool2d::new(shape, size, stride).map_err(at_layer)?)
        }
        LayerSpec::AvgPool2d { size, stride } => {
            Box::new(AvgPool2d::new(shape, size, stride).map_err(at_layer)?)
        }
        LayerSpec::Flatten => Box::new(Flatten::new(shape)),
        LayerSpec::BatchNorm => Box::new(BatchNorm::new(shape)),
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
