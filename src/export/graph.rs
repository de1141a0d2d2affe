//! A builder for an ONNX graph that applies one operator after another to a running value.

use super::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, AttributeProto, AttributeType, GraphProto, NodeProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, DATA_TYPE_FLOAT,
};
use std::collections::HashSet;

/// The symbolic name of the batch dimension in the graph's input and output shapes.
pub const BATCH_DIM: &str = "N";

/// Nodes and initializers in the making, and the value that the next operator consumes.
pub(super) struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    node_names: HashSet<String>,
    input: String,
    input_shape: Vec<usize>,
    /// Name of the running value.
    value: String,
    /// Per-sample shape of the running value; the batch dimension comes first in the graph.
    shape: Vec<usize>,
}

impl GraphBuilder {
    /// Starts a graph whose float input `input` has shape `[N, ...shape]`.
    pub fn new(input: &str, shape: &[usize]) -> Self {
        GraphBuilder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            node_names: HashSet::new(),
            input: input.to_string(),
            input_shape: shape.to_vec(),
            value: input.to_string(),
            shape: shape.to_vec(),
        }
    }

    /// Returns the per-sample shape of the running value.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Adds a float initializer of `dims` and returns its name.
    pub fn add_initializer(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        self.initializers.push(float_tensor(name, dims, values));
        name.to_string()
    }

    /// Adds a scalar float initializer the first time `name` is requested and returns its name,
    /// so that layers share constants such as `1/√2`.
    pub fn add_scalar(&mut self, name: &str, value: f32) -> String {
        let exists = self
            .initializers
            .iter()
            .any(|t| t.name.as_deref() == Some(name));
        if !exists {
            self.initializers.push(float_tensor(name, &[], &[value]));
        }
        name.to_string()
    }

    /// Appends node `op` in `scope` with `inputs` and returns the name of its single output.
    /// The running value is left unchanged.
    pub fn add_node(
        &mut self,
        scope: &str,
        op: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        // Nodes are named `/scope/Op` and their outputs `/scope/Op_output_0`, with a numeric
        // suffix when one scope uses an operator twice.
        let mut name = format!("/{scope}/{op}");
        let mut count = 1;
        while self.node_names.contains(&name) {
            name = format!("/{scope}/{op}_{count}");
            count += 1;
        }
        let output = format!("{name}_output_0");
        self.node_names.insert(name.clone());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: Some(name),
            op_type: Some(op.to_string()),
            attribute: attributes,
            domain: None,
        });
        output
    }

    /// Applies `op` to the running value, followed by the `constants` as further inputs, and
    /// makes its output, of per-sample shape `shape`, the running value.
    pub fn apply(
        &mut self,
        scope: &str,
        op: &str,
        constants: &[&str],
        attributes: Vec<AttributeProto>,
        shape: &[usize],
    ) {
        let value = self.value.clone();
        let inputs: Vec<&str> = std::iter::once(value.as_str())
            .chain(constants.iter().copied())
            .collect();
        self.value = self.add_node(scope, op, &inputs, attributes);
        self.shape = shape.to_vec();
    }

    /// Applies an elementwise operator that keeps the shape.
    pub fn apply_elementwise(&mut self, scope: &str, op: &str, constants: &[&str]) {
        let shape = self.shape.clone();
        self.apply(scope, op, constants, Vec::new(), &shape);
    }

    /// Makes `value`, of the running value's shape, the running value.
    pub fn set_value(&mut self, value: String) {
        self.value = value;
    }

    /// Returns the name of the running value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Flattens the running value to `[N, size]` unless it already has that shape.
    pub fn flatten(&mut self, scope: &str) {
        if self.shape.len() != 1 {
            let size = self.shape.iter().product();
            self.apply(
                scope,
                "Flatten",
                &[],
                vec![int_attribute("axis", 1)],
                &[size],
            );
        }
    }

    /// Finishes the graph, naming the running value `output`. A graph whose output would be
    /// its input gets an `Identity` node, because ONNX names every value once.
    pub fn finish(mut self, name: &str, output: &str) -> GraphProto {
        if self.value == self.input {
            self.apply_elementwise("output", "Identity", &[]);
        }
        let last = self.nodes.last_mut().expect("the graph has a node");
        last.output[0] = output.to_string();
        GraphProto {
            node: self.nodes,
            name: Some(name.to_string()),
            initializer: self.initializers,
            doc_string: None,
            input: vec![value_info(&self.input, &self.input_shape)],
            output: vec![value_info(output, &self.shape)],
        }
    }
}

/// Builds a float tensor named `name` with `values` stored as little-endian `raw_data`.
pub fn float_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DATA_TYPE_FLOAT),
        float_data: Vec::new(),
        name: Some(name.to_string()),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
    }
}

/// Builds the description of a float tensor `name` of shape `[N, ...shape]`.
fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let batch = Dimension {
        value: Some(dimension::Value::DimParam(BATCH_DIM.to_string())),
    };
    let sizes = shape.iter().map(|&d| Dimension {
        value: Some(dimension::Value::DimValue(d as i64)),
    });
    let tensor = type_proto::Tensor {
        elem_type: Some(DATA_TYPE_FLOAT),
        shape: Some(TensorShapeProto {
            dim: std::iter::once(batch).chain(sizes).collect(),
        }),
    };
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
        }),
    }
}

/// Builds an INT attribute.
pub fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        i: Some(value),
        r#type: Some(AttributeType::Int as i32),
        ..Default::default()
    }
}

/// Builds an INTS attribute.
pub fn ints_attribute(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        ints: values.to_vec(),
        r#type: Some(AttributeType::Ints as i32),
        ..Default::default()
    }
}

/// Builds a FLOAT attribute.
pub fn float_attribute(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        f: Some(value),
        r#type: Some(AttributeType::Float as i32),
        ..Default::default()
    }
}
