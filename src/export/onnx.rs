//! Translation of a trained model into an ONNX graph.
//!
//! The graph takes raw features and returns what `gradus predict --raw` prints:
//!
//! ```text
//! input [N, ...input_shape]
//!   -> Sub(offset) -> Div(scale)          the model's feature scaling, when not the identity
//!   -> one or more nodes per layer        Flatten + Gemm for dense, Conv, MaxPool,
//!                                         AveragePool, Flatten, BatchNormalization with the
//!                                         running statistics, one node per activation
//!   -> output [N, outputs]                logits; Softmax as `probabilities` on request;
//!                                         Mul(std) + Add(mean) for regression;
//!                                         Sigmoid for an autoencoder trained with BCE
//! ```

use super::graph::{float_attribute, int_attribute, ints_attribute, GraphBuilder};
use super::proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::data::{ScaleKind, TaskKind};
use crate::nn::{
    Activation, Layer, LayerSpec, Loss, Network, BATCH_NORM_EPSILON, LEAKY_RELU_SLOPE,
};
use crate::tensor::Cpu;
use crate::train::model::ModelInfo;
use crate::{Error, Result};
use prost::Message;
use std::sync::Arc;

/// The lowest supported ONNX operator set version.
pub const MIN_OPSET: i64 = 13;
/// The highest supported ONNX operator set version. `scripts/onnx_roundtrip.sh` runs a model
/// exported with it in onnxruntime 1.32.
pub const MAX_OPSET: i64 = 25;
/// The default operator set version, introduced with the `onnx` 1.12 package.
pub const DEFAULT_OPSET: i64 = 17;
/// The first operator set with a `Gelu` operator; older ones get GELU built from `Erf`.
pub const GELU_OPSET: i64 = 20;

/// Name of the graph input: raw, unscaled features.
pub const INPUT_NAME: &str = "input";
/// Name of the graph output without a softmax.
pub const OUTPUT_NAME: &str = "output";
/// Name of the graph output with a softmax.
pub const PROBABILITIES_NAME: &str = "probabilities";

/// Settings of an ONNX export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// End a classifier with `Softmax` and name the output `probabilities`.
    pub softmax: bool,
    /// The ONNX operator set version, from [`MIN_OPSET`] to [`MAX_OPSET`].
    pub opset: i64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            softmax: false,
            opset: DEFAULT_OPSET,
        }
    }
}

impl ExportOptions {
    /// Checks the operator set version.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_OPSET..=MAX_OPSET).contains(&self.opset) {
            return Err(Error::setting(
                "opset",
                self.opset,
                &format!("expected an ONNX operator set version from {MIN_OPSET} to {MAX_OPSET}"),
            ));
        }
        Ok(())
    }
}

/// Encodes a trained model as the bytes of an ONNX file.
///
/// `params` is the flat parameter vector in the layout of the network that `info` describes,
/// as [`crate::train::model::decode_params`] returns it. `buffers` contains the network's
/// non-trainable buffers, such as batch normalisation's running statistics, as
/// [`Network::buffers`] returns them after the model is loaded.
///
/// # Errors
///
/// An invalid option, parameters, buffers or scaling statistics that do not fit the network,
/// or a softmax requested for a model that is not a classifier.
pub fn export_onnx(
    info: &ModelInfo,
    params: &[f32],
    buffers: &[f32],
    options: &ExportOptions,
) -> Result<Vec<u8>> {
    Ok(build_model(info, params, buffers, options)?.encode_to_vec())
}

/// Builds the ONNX model message that [`export_onnx`] encodes.
pub fn build_model(
    info: &ModelInfo,
    params: &[f32],
    buffers: &[f32],
    options: &ExportOptions,
) -> Result<ModelProto> {
    options.validate()?;
    let network = Network::<f32>::new(&info.input_shape, &info.layers, Arc::new(Cpu::new(1)))?;
    check_model(info, &network, params, buffers)?;
    if options.softmax && info.task != TaskKind::Classify {
        return Err(Error::Unsupported(format!(
            "a softmax output needs a classification model, but this model's task is {}; \
             export it without the softmax",
            info.task
        )));
    }

    let mut graph = GraphBuilder::new(INPUT_NAME, &info.input_shape);
    add_scaling(&mut graph, info);
    let layers = info.layers.iter().zip(network.layers());
    let ranges = network.param_ranges().iter().zip(network.buffer_ranges());
    for (index, ((spec, layer), (range, buffer_range))) in layers.zip(ranges).enumerate() {
        let translation = LayerTranslation {
            index,
            spec,
            layer: layer.as_ref(),
            params: &params[range.clone()],
            buffers: &buffers[buffer_range.clone()],
            opset: options.opset,
        };
        translation.add_to(&mut graph)?;
    }
    let output = add_head(&mut graph, info, options);

    Ok(ModelProto {
        ir_version: Some(ir_version(options.opset)),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(options.opset),
        }],
        producer_name: Some("gradus".to_string()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        doc_string: Some(format!(
            "gradus {} model: {}",
            info.task,
            describe_layers(&network)
        )),
        graph: Some(graph.finish("gradus", output)),
        metadata_props: metadata(info),
    })
}

/// Returns the lowest IR version that can carry operator set `opset`, from the table
/// `onnx.helper.VERSION_TABLE` of the `onnx` 1.23.2 Python package.
pub fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        21..=22 => 10,
        23 => 11,
        24 => 12,
        _ => 13,
    }
}

/// Checks that the parameters and the saved statistics fit the network, because a mismatch
/// would otherwise surface as an invalid ONNX graph.
fn check_model(
    info: &ModelInfo,
    network: &Network<f32>,
    params: &[f32],
    buffers: &[f32],
) -> Result<()> {
    if params.len() != network.param_count() {
        return Err(Error::Shape(format!(
            "the network has {} parameters but {} values were given",
            network.param_count(),
            params.len()
        )));
    }
    if buffers.len() != network.buffer_count() {
        return Err(Error::Shape(format!(
            "the network has {} buffer elements but {} values were given",
            network.buffer_count(),
            buffers.len()
        )));
    }
    let inputs = network.input_size();
    if info.scaler.kind != ScaleKind::None
        && (info.scaler.offset.len() != inputs || info.scaler.scale.len() != inputs)
    {
        return Err(Error::Shape(format!(
            "the scaler has {} offsets and {} scales but the network takes {inputs} features",
            info.scaler.offset.len(),
            info.scaler.scale.len()
        )));
    }
    let outputs = network.output_size();
    if info.task == TaskKind::Regress
        && (info.target_mean.len() != outputs || info.target_std.len() != outputs)
    {
        return Err(Error::Shape(format!(
            "the target standardisation has {} means and {} deviations but the network has \
             {outputs} outputs",
            info.target_mean.len(),
            info.target_std.len()
        )));
    }
    Ok(())
}

/// Adds `(x - offset) / scale` as `Sub` and `Div`, leaving out an identity step.
fn add_scaling(graph: &mut GraphBuilder, info: &ModelInfo) {
    let scaler = &info.scaler;
    if scaler.kind == ScaleKind::None {
        return;
    }
    let shape = info.input_shape.clone();
    if scaler.offset.iter().any(|&v| v != 0.0) {
        let offset = graph.add_initializer("scaler.offset", &shape, &scaler.offset);
        graph.apply_elementwise("scaler", "Sub", &[&offset]);
    }
    if scaler.scale.iter().any(|&v| v != 1.0) {
        let scale = graph.add_initializer("scaler.scale", &shape, &scaler.scale);
        graph.apply_elementwise("scaler", "Div", &[&scale]);
    }
}

/// One layer and what its translation needs.
struct LayerTranslation<'a> {
    index: usize,
    spec: &'a LayerSpec,
    layer: &'a dyn Layer<f32>,
    /// The layer's slice of the flat parameter vector.
    params: &'a [f32],
    /// The layer's slice of the network's buffers.
    buffers: &'a [f32],
    opset: i64,
}

impl LayerTranslation<'_> {
    /// Appends the layer's nodes and initializers.
    fn add_to(&self, graph: &mut GraphBuilder) -> Result<()> {
        let scope = format!("layers.{}", self.index);
        match *self.spec {
            LayerSpec::Dense { .. } => {
                graph.flatten(&scope);
                let tensors = self.add_param_tensors(graph);
                let (weight, bias) = (tensors[0].as_str(), tensors[1].as_str());
                let attributes = vec![int_attribute("transB", 1)];
                graph.apply(
                    &scope,
                    "Gemm",
                    &[weight, bias],
                    attributes,
                    self.layer.output_shape(),
                );
            }
            LayerSpec::Activation { function } => {
                add_activation(graph, &scope, function, self.opset)
            }
            // Dropout is the identity at inference, so it needs no node.
            LayerSpec::Dropout { .. } => {}
            LayerSpec::Conv2d {
                kernel,
                stride,
                padding,
                ..
            } => {
                let tensors = self.add_param_tensors(graph);
                let (weight, bias) = (tensors[0].as_str(), tensors[1].as_str());
                let (stride, padding) = (stride as i64, padding as i64);
                let attributes = vec![
                    ints_attribute("kernel_shape", &[kernel[0] as i64, kernel[1] as i64]),
                    ints_attribute("strides", &[stride, stride]),
                    // Begin and end padding of the height, then of the width.
                    ints_attribute("pads", &[padding; 4]),
                ];
                let shape = self.layer.output_shape();
                graph.apply(&scope, "Conv", &[weight, bias], attributes, shape);
            }
            // gradus pools without padding and rounds output sizes down, as ONNX does with its
            // default `ceil_mode=0`. Without padding every window lies inside the input, so
            // AveragePool divides by the window area, as gradus does, whatever its
            // `count_include_pad`.
            LayerSpec::MaxPool2d { size, stride } => self.add_pool(graph, "MaxPool", size, stride),
            LayerSpec::AvgPool2d { size, stride } => {
                self.add_pool(graph, "AveragePool", size, stride)
            }
            LayerSpec::Flatten => graph.flatten(&scope),
            LayerSpec::BatchNorm => self.add_batch_norm(graph),
        }
        Ok(())
    }

    /// Appends a pooling node over `size × size` windows moved by `stride`, the window size
    /// when absent.
    fn add_pool(&self, graph: &mut GraphBuilder, op: &str, size: usize, stride: Option<usize>) {
        let size = size as i64;
        let stride = stride.map_or(size, |s| s as i64);
        let attributes = vec![
            ints_attribute("kernel_shape", &[size, size]),
            ints_attribute("strides", &[stride, stride]),
        ];
        let scope = format!("layers.{}", self.index);
        graph.apply(&scope, op, &[], attributes, self.layer.output_shape());
    }

    /// Appends `BatchNormalization` in inference mode with the running statistics. ONNX
    /// normalises over dimension 1 of `[N, C, ...]`, which is the feature dimension of flat
    /// `[N, D]` inputs and the channel dimension of images, as in gradus.
    fn add_batch_norm(&self, graph: &mut GraphBuilder) {
        let scope = format!("layers.{}", self.index);
        let mut inputs = self.add_param_tensors(graph);
        for tensor in self.layer.buffer_tensors() {
            let name = format!("{scope}.{}", tensor.name);
            let values = &self.buffers[tensor.range];
            inputs.push(graph.add_initializer(&name, &tensor.shape, values));
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let epsilon = vec![float_attribute("epsilon", BATCH_NORM_EPSILON as f32)];
        let shape = graph.shape().to_vec();
        graph.apply(&scope, "BatchNormalization", &inputs, epsilon, &shape);
    }

    /// Adds the layer's parameter tensors as initializers named like the tensors in
    /// `model.safetensors` (`layers.{i}.weight`), and returns their names in layer order.
    fn add_param_tensors(&self, graph: &mut GraphBuilder) -> Vec<String> {
        self.layer
            .param_tensors()
            .into_iter()
            .map(|tensor| {
                let name = format!("layers.{}.{}", self.index, tensor.name);
                graph.add_initializer(&name, &tensor.shape, &self.params[tensor.range])
            })
            .collect()
    }
}

/// Adds the nodes of an elementwise activation.
fn add_activation(graph: &mut GraphBuilder, scope: &str, function: Activation, opset: i64) {
    match function {
        Activation::Relu => graph.apply_elementwise(scope, "Relu", &[]),
        Activation::LeakyRelu => {
            let shape = graph.shape().to_vec();
            let alpha = vec![float_attribute("alpha", LEAKY_RELU_SLOPE as f32)];
            graph.apply(scope, "LeakyRelu", &[], alpha, &shape);
        }
        Activation::Tanh => graph.apply_elementwise(scope, "Tanh", &[]),
        Activation::Sigmoid => graph.apply_elementwise(scope, "Sigmoid", &[]),
        // `Gelu` defaults to the exact form, approximate="none", as gradus computes it.
        Activation::Gelu if opset >= GELU_OPSET => graph.apply_elementwise(scope, "Gelu", &[]),
        Activation::Gelu => add_gelu_from_erf(graph, scope),
        Activation::Softplus => graph.apply_elementwise(scope, "Softplus", &[]),
        Activation::Identity => {}
    }
}

/// Adds GELU as `x Φ(x)` with `Φ(x) = 0.5 (1 + erf(x / √2))`, for operator sets without `Gelu`.
fn add_gelu_from_erf(graph: &mut GraphBuilder, scope: &str) {
    let x = graph.value().to_string();
    let sqrt2 = graph.add_scalar("constants.sqrt2", std::f32::consts::SQRT_2);
    let one = graph.add_scalar("constants.one", 1.0);
    let half = graph.add_scalar("constants.half", 0.5);
    graph.apply_elementwise(scope, "Div", &[&sqrt2]);
    graph.apply_elementwise(scope, "Erf", &[]);
    graph.apply_elementwise(scope, "Add", &[&one]);
    graph.apply_elementwise(scope, "Mul", &[&half]);
    let cdf = graph.value().to_string();
    let y = graph.add_node(scope, "Mul", &[&x, &cdf], Vec::new());
    graph.set_value(y);
}

/// Adds the task's output transform and returns the output name.
fn add_head(graph: &mut GraphBuilder, info: &ModelInfo, options: &ExportOptions) -> &'static str {
    match info.task {
        TaskKind::Classify if options.softmax => {
            graph.flatten("softmax");
            let size = graph.shape().to_vec();
            graph.apply(
                "softmax",
                "Softmax",
                &[],
                vec![int_attribute("axis", 1)],
                &size,
            );
            return PROBABILITIES_NAME;
        }
        TaskKind::Classify => {}
        TaskKind::Regress => {
            // The network predicts standardised targets `(y - mean) / std`.
            let shape = graph.shape().to_vec();
            if info.target_std.iter().any(|&v| v != 1.0) {
                let std = graph.add_initializer("target.std", &shape, &info.target_std);
                graph.apply_elementwise("target", "Mul", &[&std]);
            }
            if info.target_mean.iter().any(|&v| v != 0.0) {
                let mean = graph.add_initializer("target.mean", &shape, &info.target_mean);
                graph.apply_elementwise("target", "Add", &[&mean]);
            }
        }
        // Binary cross-entropy trains logits of pixel intensities.
        TaskKind::Autoencoder if info.loss == Loss::BinaryCrossEntropy => {
            graph.apply_elementwise("reconstruction", "Sigmoid", &[]);
        }
        TaskKind::Autoencoder => {}
    }
    OUTPUT_NAME
}

fn describe_layers(network: &Network<f32>) -> String {
    let names: Vec<String> = network.layers().iter().map(|l| l.describe()).collect();
    names.join(", ")
}

/// Model metadata for consumers of the file: the task and the names of classes and targets,
/// as JSON arrays.
fn metadata(info: &ModelInfo) -> Vec<StringStringEntryProto> {
    let entry = |key: &str, value: String| StringStringEntryProto {
        key: Some(key.to_string()),
        value: Some(value),
    };
    let json = |names: &[String]| serde_json::Value::from(names.to_vec()).to_string();
    let mut entries = vec![entry("task", info.task.to_string())];
    if !info.class_names.is_empty() {
        entries.push(entry("class_names", json(&info.class_names)));
    }
    if !info.target_names.is_empty() {
        entries.push(entry("target_names", json(&info.target_names)));
    }
    entries
}
