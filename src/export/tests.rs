//! Tests of the ONNX export: the wire format, the graph for each layer type and task, and
//! the parameter values. `scripts/onnx_roundtrip.sh` runs the exported files in onnxruntime.

use super::onnx::{ir_version, MAX_OPSET, MIN_OPSET, OUTPUT_NAME, PROBABILITIES_NAME};
use super::proto::{
    tensor_shape_proto::dimension, type_proto, AttributeType, ModelProto, ValueInfoProto,
    DATA_TYPE_FLOAT,
};
use super::*;
use crate::data::{ScaleKind, Scaler, TaskKind};
use crate::nn::{Activation, Init, LayerSpec, Loss, Network};
use crate::tensor::Cpu;
use crate::train::model::{encode_params, ModelInfo, MODEL_FORMAT};
use prost::Message;
use safetensors::SafeTensors;
use std::sync::Arc;

/// Builds a model of 1×2×2 inputs with standardisation and the given layers and task.
fn model_info(task: TaskKind, layers: Vec<LayerSpec>) -> ModelInfo {
    ModelInfo {
        format: MODEL_FORMAT.to_string(),
        version: 1,
        task,
        loss: match task {
            TaskKind::Classify => Loss::SoftmaxCrossEntropy,
            _ => Loss::MeanSquaredError,
        },
        input_shape: vec![1, 2, 2],
        layers,
        scaler: Scaler {
            kind: ScaleKind::Standardize,
            offset: vec![0.5, 1.0, -1.0, 2.0],
            scale: vec![2.0, 1.0, 0.5, 4.0],
        },
        target_mean: vec![10.0, -3.0],
        target_std: vec![2.0, 0.5],
        class_names: vec!["cat".to_string(), "dog".to_string()],
        feature_names: Vec::new(),
        target_names: Vec::new(),
    }
}

fn mlp(activation: Activation) -> Vec<LayerSpec> {
    vec![
        LayerSpec::Dense { units: 3 },
        LayerSpec::Activation {
            function: activation,
        },
        LayerSpec::Dropout { rate: 0.5 },
        LayerSpec::Dense { units: 2 },
    ]
}

fn network(info: &ModelInfo) -> Network<f32> {
    Network::new(&info.input_shape, &info.layers, Arc::new(Cpu::new(1))).expect("valid network")
}

fn params(info: &ModelInfo) -> Vec<f32> {
    network(info).init_params(Init::GlorotUniform, 7)
}

/// Returns the initial buffers: zero running means and unit running variances.
fn buffers(info: &ModelInfo) -> Vec<f32> {
    network(info).buffers()
}

fn build(info: &ModelInfo, options: ExportOptions) -> ModelProto {
    build_model(info, &params(info), &buffers(info), &options).expect("export succeeds")
}

fn op_types(model: &ModelProto) -> Vec<String> {
    let graph = model.graph.as_ref().expect("graph");
    graph
        .node
        .iter()
        .map(|n| n.op_type.clone().unwrap_or_default())
        .collect()
}

/// Returns the dimensions of a graph input or output, `None` for the symbolic batch size.
fn dims(value: &ValueInfoProto) -> Vec<Option<i64>> {
    let Some(type_proto::Value::TensorType(tensor)) =
        value.r#type.as_ref().and_then(|t| t.value.clone())
    else {
        panic!("{:?} is not a tensor", value.name);
    };
    assert_eq!(tensor.elem_type, Some(DATA_TYPE_FLOAT));
    let shape = tensor.shape.expect("shape");
    shape
        .dim
        .iter()
        .map(|d| match d.value.as_ref().expect("dimension value") {
            dimension::Value::DimValue(v) => Some(*v),
            dimension::Value::DimParam(p) => {
                assert_eq!(p, BATCH_DIM);
                None
            }
        })
        .collect()
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A model written by the `onnx` 1.23.2 Python package: `helper.make_model` of one Gemm node
/// `gemm` (attributes transB=1, alpha=0.5) from input `x` [N, 2] and initializer
/// `w` = [[1.5, -2.0]] to output `y` [N, 1], graph `ref`, producer `ref`, IR 8, opset 17,
/// serialised with `SerializeToString()`.
const REFERENCE_MODEL_HEX: &str =
    "080812037265663a7d0a350a01780a01771201791a0467656d6d220447656d6d2a0f\
    0a05616c706861150000003fa001012a0d0a067472616e73421801a0010212037265662a130801080210014201\
    774a080000c03f000000c05a140a0178120f0a0d080112090a0312014e0a02080262140a0179120f0a0d080112\
    090a0312014e0a02080142040a001011";

fn hex_bytes(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks_exact(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn reference_model_decodes() {
    let bytes = hex_bytes(REFERENCE_MODEL_HEX);
    let model = ModelProto::decode(bytes.as_slice()).expect("valid protobuf");
    assert_eq!(model.ir_version, Some(8));
    assert_eq!(model.producer_name.as_deref(), Some("ref"));
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(model.opset_import[0].domain.as_deref(), Some(""));
    assert_eq!(model.opset_import[0].version, Some(17));

    let graph = model.graph.as_ref().expect("graph");
    assert_eq!(graph.name.as_deref(), Some("ref"));
    assert_eq!(graph.node.len(), 1);
    let node = &graph.node[0];
    assert_eq!(node.input, vec!["x", "w"]);
    assert_eq!(node.output, vec!["y"]);
    assert_eq!(node.name.as_deref(), Some("gemm"));
    assert_eq!(node.op_type.as_deref(), Some("Gemm"));
    let alpha = &node.attribute[0];
    assert_eq!(alpha.name.as_deref(), Some("alpha"));
    assert_eq!(alpha.f, Some(0.5));
    assert_eq!(alpha.r#type, Some(AttributeType::Float as i32));
    let trans_b = &node.attribute[1];
    assert_eq!(trans_b.name.as_deref(), Some("transB"));
    assert_eq!(trans_b.i, Some(1));
    assert_eq!(trans_b.r#type, Some(AttributeType::Int as i32));

    let w = &graph.initializer[0];
    assert_eq!(w.name.as_deref(), Some("w"));
    assert_eq!(w.dims, vec![1, 2]);
    assert_eq!(w.data_type, Some(DATA_TYPE_FLOAT));
    assert_eq!(
        floats(w.raw_data.as_deref().expect("raw data")),
        vec![1.5, -2.0]
    );
    assert_eq!(graph.input[0].name.as_deref(), Some("x"));
    assert_eq!(dims(&graph.input[0]), vec![None, Some(2)]);
    assert_eq!(graph.output[0].name.as_deref(), Some("y"));
    assert_eq!(dims(&graph.output[0]), vec![None, Some(1)]);
}

#[test]
fn reference_model_reencodes_byte_for_byte() {
    let bytes = hex_bytes(REFERENCE_MODEL_HEX);
    let model = ModelProto::decode(bytes.as_slice()).expect("valid protobuf");
    assert_eq!(model.encode_to_vec(), bytes);
}

#[test]
fn export_decodes_to_built_model() {
    let info = model_info(TaskKind::Classify, mlp(Activation::Relu));
    let options = ExportOptions::default();
    let params = params(&info);
    let bytes = export_onnx(&info, &params, &buffers(&info), &options).expect("export succeeds");
    let decoded = ModelProto::decode(bytes.as_slice()).expect("valid protobuf");
    assert_eq!(
        decoded,
        build_model(&info, &params, &buffers(&info), &options).expect("build")
    );
    assert_eq!(decoded.ir_version, Some(8));
    assert_eq!(decoded.opset_import[0].version, Some(17));
    assert_eq!(decoded.producer_name.as_deref(), Some("gradus"));
}

#[test]
fn classifier_node_sequence() {
    let info = model_info(TaskKind::Classify, mlp(Activation::Relu));
    let model = build(&info, ExportOptions::default());
    assert_eq!(
        op_types(&model),
        ["Sub", "Div", "Flatten", "Gemm", "Relu", "Gemm"]
    );

    let graph = model.graph.as_ref().expect("graph");
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name.as_deref(), Some("input"));
    assert_eq!(dims(&graph.input[0]), vec![None, Some(1), Some(2), Some(2)]);
    assert_eq!(graph.output.len(), 1);
    assert_eq!(graph.output[0].name.as_deref(), Some(OUTPUT_NAME));
    assert_eq!(dims(&graph.output[0]), vec![None, Some(2)]);

    // Each node consumes the previous node's output.
    let mut previous = "input".to_string();
    for node in &graph.node {
        assert_eq!(node.input[0], previous, "node {:?}", node.name);
        previous = node.output[0].clone();
    }
    assert_eq!(previous, OUTPUT_NAME);
}

#[test]
fn node_attributes() {
    let info = model_info(TaskKind::Classify, mlp(Activation::LeakyRelu));
    let model = build(&info, ExportOptions::default());
    let graph = model.graph.as_ref().expect("graph");
    let node = |op: &str| {
        let found = graph.node.iter().find(|n| n.op_type.as_deref() == Some(op));
        found.unwrap_or_else(|| panic!("no {op} node"))
    };

    let flatten = &node("Flatten").attribute;
    assert_eq!(flatten.len(), 1);
    assert_eq!(flatten[0].name.as_deref(), Some("axis"));
    assert_eq!(flatten[0].i, Some(1));

    let gemm = node("Gemm");
    assert_eq!(
        gemm.input,
        vec![gemm.input[0].as_str(), "layers.0.weight", "layers.0.bias"]
    );
    assert_eq!(gemm.attribute.len(), 1);
    assert_eq!(gemm.attribute[0].name.as_deref(), Some("transB"));
    assert_eq!(gemm.attribute[0].i, Some(1));
    assert_eq!(gemm.attribute[0].r#type, Some(AttributeType::Int as i32));

    let leaky = &node("LeakyRelu").attribute;
    assert_eq!(leaky[0].name.as_deref(), Some("alpha"));
    assert_eq!(leaky[0].f, Some(0.01));
    assert_eq!(leaky[0].r#type, Some(AttributeType::Float as i32));
}

#[test]
fn node_names_are_unique() {
    let info = model_info(TaskKind::Classify, mlp(Activation::Gelu));
    let model = build(&info, ExportOptions::default());
    let graph = model.graph.as_ref().expect("graph");
    let mut names: Vec<&str> = graph
        .node
        .iter()
        .filter_map(|n| n.name.as_deref())
        .collect();
    let mut outputs: Vec<&str> = graph.node.iter().map(|n| n.output[0].as_str()).collect();
    assert_eq!(names.len(), graph.node.len());
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), graph.node.len(), "duplicate node names");
    outputs.sort_unstable();
    outputs.dedup();
    assert_eq!(outputs.len(), graph.node.len(), "duplicate output names");
}

#[test]
fn activation_operators() {
    let cases = [
        (Activation::Relu, vec!["Relu"]),
        (Activation::LeakyRelu, vec!["LeakyRelu"]),
        (Activation::Tanh, vec!["Tanh"]),
        (Activation::Sigmoid, vec!["Sigmoid"]),
        (Activation::Gelu, vec!["Div", "Erf", "Add", "Mul", "Mul"]),
        (Activation::Softplus, vec!["Softplus"]),
        (Activation::Identity, vec![]),
    ];
    for (activation, expected) in cases {
        let info = model_info(TaskKind::Classify, mlp(activation));
        let ops = op_types(&build(&info, ExportOptions::default()));
        let mut want = vec!["Sub", "Div", "Flatten", "Gemm"];
        want.extend(expected);
        want.push("Gemm");
        assert_eq!(ops, want, "{activation}");
    }
}

#[test]
fn gelu_operator_from_opset_20() {
    let info = model_info(TaskKind::Classify, mlp(Activation::Gelu));
    for (opset, has_gelu) in [(13, false), (19, false), (20, true), (MAX_OPSET, true)] {
        let options = ExportOptions {
            softmax: false,
            opset,
        };
        let ops = op_types(&build(&info, options));
        assert_eq!(ops.contains(&"Gelu".to_string()), has_gelu, "opset {opset}");
        assert_eq!(ops.contains(&"Erf".to_string()), !has_gelu, "opset {opset}");
    }
}

#[test]
fn gelu_from_erf_multiplies_input() {
    let info = model_info(TaskKind::Classify, mlp(Activation::Gelu));
    let model = build(&info, ExportOptions::default());
    let graph = model.graph.as_ref().expect("graph");
    let gemm = graph
        .node
        .iter()
        .position(|n| n.op_type.as_deref() == Some("Gemm"))
        .unwrap();
    let x = &graph.node[gemm].output[0];
    let product = &graph.node[gemm + 5];
    assert_eq!(product.op_type.as_deref(), Some("Mul"));
    assert_eq!(&product.input[0], x);
    assert_eq!(product.input[1], graph.node[gemm + 4].output[0]);
    let constants: Vec<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .filter(|n| n.starts_with("constants."))
        .collect();
    assert_eq!(
        constants,
        ["constants.sqrt2", "constants.one", "constants.half"]
    );
}

#[test]
fn softmax_output() {
    let info = model_info(TaskKind::Classify, mlp(Activation::Tanh));
    let options = ExportOptions {
        softmax: true,
        ..Default::default()
    };
    let model = build(&info, options);
    let ops = op_types(&model);
    assert_eq!(ops.last().map(String::as_str), Some("Softmax"));
    let graph = model.graph.as_ref().expect("graph");
    let softmax = graph.node.last().expect("node");
    assert_eq!(softmax.attribute[0].name.as_deref(), Some("axis"));
    assert_eq!(softmax.attribute[0].i, Some(1));
    assert_eq!(softmax.output, vec![PROBABILITIES_NAME]);
    assert_eq!(graph.output[0].name.as_deref(), Some(PROBABILITIES_NAME));
}

#[test]
fn softmax_rejected_for_regression() {
    let info = model_info(TaskKind::Regress, mlp(Activation::Relu));
    let options = ExportOptions {
        softmax: true,
        ..Default::default()
    };
    let err = build_model(&info, &params(&info), &buffers(&info), &options).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("regress"), "{err}");
}

#[test]
fn regression_restores_target_units() {
    let info = model_info(TaskKind::Regress, mlp(Activation::Relu));
    let model = build(&info, ExportOptions::default());
    assert_eq!(
        op_types(&model),
        ["Sub", "Div", "Flatten", "Gemm", "Relu", "Gemm", "Mul", "Add"]
    );
    let graph = model.graph.as_ref().expect("graph");
    let tensor = |name: &str| {
        let found = graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name));
        found.unwrap_or_else(|| panic!("no initializer {name}"))
    };
    let std = tensor("target.std");
    assert_eq!(std.dims, vec![2]);
    assert_eq!(floats(std.raw_data.as_deref().unwrap()), vec![2.0, 0.5]);
    let mean = tensor("target.mean");
    assert_eq!(floats(mean.raw_data.as_deref().unwrap()), vec![10.0, -3.0]);
    let nodes = &graph.node;
    assert_eq!(nodes[6].input[1], "target.std");
    assert_eq!(nodes[7].input[1], "target.mean");
}

#[test]
fn autoencoder_head_follows_loss() {
    let layers = vec![
        LayerSpec::Dense { units: 2 },
        LayerSpec::Activation {
            function: Activation::Relu,
        },
        LayerSpec::Dense { units: 4 },
    ];
    let mut info = model_info(TaskKind::Autoencoder, layers);
    let ops = op_types(&build(&info, ExportOptions::default()));
    assert_eq!(ops.last().map(String::as_str), Some("Gemm"));
    info.loss = Loss::BinaryCrossEntropy;
    let ops = op_types(&build(&info, ExportOptions::default()));
    assert_eq!(ops.last().map(String::as_str), Some("Sigmoid"));
}

#[test]
fn identity_scaling_has_no_nodes() {
    let mut info = model_info(TaskKind::Classify, mlp(Activation::Relu));
    info.scaler.offset = vec![0.0; 4];
    info.scaler.scale = vec![1.0; 4];
    assert_eq!(
        op_types(&build(&info, ExportOptions::default()))[0],
        "Flatten"
    );

    info.scaler = Scaler {
        kind: ScaleKind::None,
        offset: vec![5.0; 4],
        scale: vec![3.0; 4],
    };
    assert_eq!(
        op_types(&build(&info, ExportOptions::default()))[0],
        "Flatten"
    );
}

#[test]
fn scaling_initializers_have_input_shape() {
    let info = model_info(TaskKind::Classify, mlp(Activation::Relu));
    let model = build(&info, ExportOptions::default());
    let graph = model.graph.as_ref().expect("graph");
    for (name, values) in [
        ("scaler.offset", &info.scaler.offset),
        ("scaler.scale", &info.scaler.scale),
    ] {
        let tensor = graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name));
        let tensor = tensor.unwrap_or_else(|| panic!("no initializer {name}"));
        assert_eq!(tensor.dims, vec![1, 2, 2], "{name}");
        assert_eq!(
            &floats(tensor.raw_data.as_deref().unwrap()),
            values,
            "{name}"
        );
    }
}

#[test]
fn model_without_nodes_gets_identity() {
    let mut info = model_info(TaskKind::Classify, Vec::new());
    info.scaler.kind = ScaleKind::None;
    info.input_shape = vec![2];
    let model = build(&info, ExportOptions::default());
    assert_eq!(op_types(&model), ["Identity"]);
    let graph = model.graph.as_ref().expect("graph");
    assert_eq!(graph.node[0].input, vec!["input"]);
    assert_eq!(graph.node[0].output, vec![OUTPUT_NAME]);
}

#[test]
fn initializers_equal_safetensors() {
    let info = model_info(TaskKind::Classify, mlp(Activation::Sigmoid));
    let network = network(&info);
    let params = network.init_params(Init::HeNormal, 3);
    let model =
        build_model(&info, &params, &buffers(&info), &ExportOptions::default()).expect("export");
    let graph = model.graph.as_ref().expect("graph");
    let saved = encode_params(&network, &params).expect("encode");
    let tensors = SafeTensors::deserialize(&saved).expect("valid safetensors");

    let mut names = tensors.names();
    names.sort();
    assert_eq!(
        names,
        [
            "layers.0.bias",
            "layers.0.weight",
            "layers.3.bias",
            "layers.3.weight"
        ]
    );
    for name in names {
        let view = tensors.tensor(name).expect("tensor");
        let found = graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name));
        let initializer = found.unwrap_or_else(|| panic!("no initializer {name}"));
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        assert_eq!(initializer.dims, shape, "{name}");
        assert_eq!(initializer.data_type, Some(DATA_TYPE_FLOAT), "{name}");
        assert_eq!(initializer.raw_data.as_deref(), Some(view.data()), "{name}");
    }
}

#[test]
fn attributes_hold_one_value() {
    let info = model_info(TaskKind::Classify, mlp(Activation::LeakyRelu));
    let options = ExportOptions {
        softmax: true,
        opset: 13,
    };
    let model = build(&info, options);
    for node in &model.graph.as_ref().expect("graph").node {
        for attribute in &node.attribute {
            let set = [
                attribute.f.is_some(),
                attribute.i.is_some(),
                attribute.s.is_some(),
                attribute.t.is_some(),
                !attribute.floats.is_empty(),
                !attribute.ints.is_empty(),
            ];
            let count = set.iter().filter(|&&s| s).count();
            assert_eq!(count, 1, "{:?} of {:?}", attribute.name, node.name);
            assert!(
                attribute.r#type.is_some(),
                "{:?} has no type",
                attribute.name
            );
        }
    }
}

#[test]
fn metadata_names_classes() {
    let info = model_info(TaskKind::Classify, mlp(Activation::Relu));
    let model = build(&info, ExportOptions::default());
    let entry = |key: &str| {
        let found = model
            .metadata_props
            .iter()
            .find(|e| e.key.as_deref() == Some(key));
        found.and_then(|e| e.value.clone())
    };
    assert_eq!(entry("task").as_deref(), Some("classify"));
    assert_eq!(entry("class_names").as_deref(), Some(r#"["cat","dog"]"#));
    assert_eq!(entry("target_names"), None);
}

#[test]
fn ir_version_per_opset() {
    let cases = [
        (13, 7),
        (14, 7),
        (15, 8),
        (17, 8),
        (18, 8),
        (19, 9),
        (20, 9),
        (21, 10),
    ];
    for (opset, ir) in cases {
        assert_eq!(ir_version(opset), ir, "opset {opset}");
    }
    for (opset, ir) in [(22, 10), (23, 11), (24, 12), (25, 13)] {
        assert_eq!(ir_version(opset), ir, "opset {opset}");
    }
}

#[test]
fn opset_outside_range_rejected() {
    let info = model_info(TaskKind::Classify, mlp(Activation::Relu));
    for opset in [MIN_OPSET - 1, MAX_OPSET + 1, 0, -17] {
        let options = ExportOptions {
            softmax: false,
            opset,
        };
        let err = build_model(&info, &params(&info), &buffers(&info), &options).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("opset"), "{message}");
        assert!(message.contains(&opset.to_string()), "{message}");
    }
}

#[test]
fn parameter_count_mismatch_rejected() {
    let info = model_info(TaskKind::Classify, mlp(Activation::Relu));
    let mut params = params(&info);
    params.pop();
    let err = build_model(&info, &params, &buffers(&info), &ExportOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err:?}");
}

#[test]
fn scaler_width_mismatch_rejected() {
    let mut info = model_info(TaskKind::Classify, mlp(Activation::Relu));
    info.scaler.offset.pop();
    let err = build_model(
        &info,
        &params(&info),
        &buffers(&info),
        &ExportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err:?}");
    assert!(err.to_string().contains("scaler"), "{err}");
}

#[test]
fn target_width_mismatch_rejected() {
    let mut info = model_info(TaskKind::Regress, mlp(Activation::Relu));
    info.target_std.push(1.0);
    let err = build_model(
        &info,
        &params(&info),
        &buffers(&info),
        &ExportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err:?}");
}

#[test]
fn format_parsing() {
    assert_eq!("onnx".parse::<ExportFormat>().unwrap(), ExportFormat::Onnx);
    assert_eq!("ONNX".parse::<ExportFormat>().unwrap(), ExportFormat::Onnx);
    for unknown in ["tflite", "", "onnx2", "safetensors"] {
        let err = unknown.parse::<ExportFormat>().unwrap_err();
        assert!(matches!(err, Error::InvalidSetting { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("format"), "{message}");
        assert!(message.contains("expected onnx"), "{message}");
    }
}

/// Builds an unscaled classifier of 1×4×4 images with the given layers.
fn image_model_info(layers: Vec<LayerSpec>) -> ModelInfo {
    let mut info = model_info(TaskKind::Classify, layers);
    info.input_shape = vec![1, 4, 4];
    info.scaler = Scaler {
        kind: ScaleKind::None,
        offset: Vec::new(),
        scale: Vec::new(),
    };
    info
}

/// conv(2, 3×3, padding 1), relu, max-pool 2 with stride 1, batch-norm, avg-pool 3, flatten,
/// dense(3): 1×4×4 → 2×4×4 → 2×3×3 → 2×3×3 → 2×1×1 → 2 → 3.
fn cnn() -> Vec<LayerSpec> {
    vec![
        LayerSpec::Conv2d {
            filters: 2,
            kernel: [3, 3],
            stride: 1,
            padding: 1,
        },
        LayerSpec::Activation {
            function: Activation::Relu,
        },
        LayerSpec::MaxPool2d {
            size: 2,
            stride: Some(1),
        },
        LayerSpec::BatchNorm,
        LayerSpec::AvgPool2d {
            size: 3,
            stride: None,
        },
        LayerSpec::Flatten,
        LayerSpec::Dense { units: 3 },
    ]
}

/// Returns the network's buffers with distinct running statistics: means 0.1, 0.2, ... and
/// variances 1.5, 2.5, ... per batch-norm layer.
fn distinct_buffers(network: &Network<f32>) -> Vec<f32> {
    let mut buffers = network.buffers();
    for range in network.buffer_ranges() {
        let channels = range.len() / 2;
        for c in 0..channels {
            buffers[range.start + c] = 0.1 * (c + 1) as f32;
            buffers[range.start + channels + c] = 1.5 + c as f32;
        }
    }
    buffers
}

fn find_node<'m>(model: &'m ModelProto, op: &str) -> &'m super::proto::NodeProto {
    let graph = model.graph.as_ref().expect("graph");
    let found = graph.node.iter().find(|n| n.op_type.as_deref() == Some(op));
    found.unwrap_or_else(|| panic!("no {op} node"))
}

/// Returns the INTS attribute `name` of `node`.
fn ints(node: &super::proto::NodeProto, name: &str) -> Vec<i64> {
    let found = node
        .attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name));
    let attribute = found.unwrap_or_else(|| panic!("{:?} has no {name}", node.name));
    assert_eq!(attribute.r#type, Some(AttributeType::Ints as i32), "{name}");
    attribute.ints.clone()
}

#[test]
fn cnn_node_sequence() {
    let info = image_model_info(cnn());
    let model = build(&info, ExportOptions::default());
    assert_eq!(
        op_types(&model),
        [
            "Conv",
            "Relu",
            "MaxPool",
            "BatchNormalization",
            "AveragePool",
            "Flatten",
            "Gemm"
        ]
    );

    let graph = model.graph.as_ref().expect("graph");
    assert_eq!(dims(&graph.input[0]), vec![None, Some(1), Some(4), Some(4)]);
    assert_eq!(dims(&graph.output[0]), vec![None, Some(3)]);
    let mut previous = "input".to_string();
    for node in &graph.node {
        assert_eq!(node.input[0], previous, "node {:?}", node.name);
        previous = node.output[0].clone();
    }
    assert_eq!(previous, OUTPUT_NAME);
}

#[test]
fn conv_and_pool_attributes() {
    let info = image_model_info(cnn());
    let model = build(&info, ExportOptions::default());

    let conv = find_node(&model, "Conv");
    assert_eq!(conv.input[1..], ["layers.0.weight", "layers.0.bias"]);
    assert_eq!(conv.attribute.len(), 3);
    assert_eq!(ints(conv, "kernel_shape"), [3, 3]);
    assert_eq!(ints(conv, "strides"), [1, 1]);
    assert_eq!(ints(conv, "pads"), [1, 1, 1, 1]);

    let max_pool = find_node(&model, "MaxPool");
    assert_eq!(max_pool.input.len(), 1);
    assert_eq!(max_pool.attribute.len(), 2);
    assert_eq!(ints(max_pool, "kernel_shape"), [2, 2]);
    assert_eq!(ints(max_pool, "strides"), [1, 1]);

    // Without a stride in the spec the window moves by its size.
    let avg_pool = find_node(&model, "AveragePool");
    assert_eq!(avg_pool.attribute.len(), 2);
    assert_eq!(ints(avg_pool, "kernel_shape"), [3, 3]);
    assert_eq!(ints(avg_pool, "strides"), [3, 3]);

    let flatten = find_node(&model, "Flatten");
    assert_eq!(flatten.attribute[0].name.as_deref(), Some("axis"));
    assert_eq!(flatten.attribute[0].i, Some(1));
}

#[test]
fn conv_stride_and_padding_attributes() {
    let info = image_model_info(vec![
        LayerSpec::Conv2d {
            filters: 1,
            kernel: [3, 2],
            stride: 2,
            padding: 0,
        },
        LayerSpec::Flatten,
    ]);
    let model = build(&info, ExportOptions::default());
    let conv = find_node(&model, "Conv");
    assert_eq!(ints(conv, "kernel_shape"), [3, 2]);
    assert_eq!(ints(conv, "strides"), [2, 2]);
    assert_eq!(ints(conv, "pads"), [0, 0, 0, 0]);
    let graph = model.graph.as_ref().expect("graph");
    // (4 − 3) / 2 + 1 = 1 row and (4 − 2) / 2 + 1 = 2 columns.
    assert_eq!(dims(&graph.output[0]), vec![None, Some(2)]);
}

#[test]
fn batch_norm_uses_running_statistics() {
    let info = image_model_info(cnn());
    let network = network(&info);
    let params = network.init_params(Init::HeNormal, 3);
    let buffers = distinct_buffers(&network);
    let model = build_model(&info, &params, &buffers, &ExportOptions::default()).expect("export");

    let node = find_node(&model, "BatchNormalization");
    assert_eq!(
        node.input[1..],
        [
            "layers.3.weight",
            "layers.3.bias",
            "layers.3.running_mean",
            "layers.3.running_var"
        ]
    );
    assert_eq!(node.attribute.len(), 1);
    assert_eq!(node.attribute[0].name.as_deref(), Some("epsilon"));
    assert_eq!(node.attribute[0].f, Some(1e-5));
    assert_eq!(node.attribute[0].r#type, Some(AttributeType::Float as i32));

    // The initializers equal the tensors of model.safetensors, buffers included.
    network.set_buffers(&buffers).expect("buffer count fits");
    let saved = encode_params(&network, &params).expect("encode");
    let tensors = SafeTensors::deserialize(&saved).expect("valid safetensors");
    let graph = model.graph.as_ref().expect("graph");
    assert_eq!(tensors.names().len(), 8);
    for name in tensors.names() {
        let view = tensors.tensor(name).expect("tensor");
        let found = graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name));
        let initializer = found.unwrap_or_else(|| panic!("no initializer {name}"));
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        assert_eq!(initializer.dims, shape, "{name}");
        assert_eq!(initializer.raw_data.as_deref(), Some(view.data()), "{name}");
    }
    let running_var = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some("layers.3.running_var"))
        .expect("running variance");
    assert_eq!(floats(running_var.raw_data.as_deref().unwrap()), [1.5, 2.5]);
}

#[test]
fn batch_norm_on_flat_features() {
    let info = image_model_info(vec![
        LayerSpec::Dense { units: 3 },
        LayerSpec::BatchNorm,
        LayerSpec::Dense { units: 2 },
    ]);
    let model = build(&info, ExportOptions::default());
    assert_eq!(
        op_types(&model),
        ["Flatten", "Gemm", "BatchNormalization", "Gemm"]
    );
    let graph = model.graph.as_ref().expect("graph");
    let mean = graph
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some("layers.1.running_mean"))
        .expect("running mean");
    assert_eq!(mean.dims, [3]);
}

#[test]
fn buffer_count_mismatch_rejected() {
    let info = image_model_info(cnn());
    let mut buffers = buffers(&info);
    buffers.pop();
    let err = build_model(&info, &params(&info), &buffers, &ExportOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err:?}");
    assert!(err.to_string().contains("buffer"), "{err}");
}
