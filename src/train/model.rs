//! Trained models on disk: `model.safetensors` (parameters as f32, one tensor per layer
//! parameter, named like PyTorch's `layers.{i}.weight`) and `model.json` (architecture,
//! task and data scaling).

use super::files::{read_to_string, write_atomic, write_json};
use crate::data::{Scaler, TaskKind};
use crate::nn::{LayerSpec, Loss, Network, ParamTensor};
use crate::tensor::Scalar;
use crate::{Error, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The format tag in `model.json`.
pub const MODEL_FORMAT: &str = "gradus-model";

/// Everything but the parameters: enough to rebuild the network and prepare its inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Task the model was trained for.
    pub task: TaskKind,
    /// Loss it was trained with.
    pub loss: Loss,
    /// Per-sample input shape.
    pub input_shape: Vec<usize>,
    /// Layers, in order.
    pub layers: Vec<LayerSpec>,
    /// Feature scaling fitted on the training data, applied before the network.
    pub scaler: Scaler,
    /// Regression target standardisation: the network predicts `(y − mean) / std`.
    pub target_mean: Vec<f32>,
    /// See `target_mean`.
    pub target_std: Vec<f32>,
    /// Class names for classification, in output order.
    pub class_names: Vec<String>,
    /// Input feature names, when the data had them.
    pub feature_names: Vec<String>,
    /// Target names for regression.
    pub target_names: Vec<String>,
}

/// Encodes the named tensors of `params`, and the network's buffers (such as batch-norm
/// running statistics), as safetensors bytes, converting to f32.
pub fn encode_params<T: Scalar>(network: &Network<T>, params: &[T]) -> Result<Vec<u8>> {
    let mut blobs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let buffers = network.buffers();
    for (i, layer) in network.layers().iter().enumerate() {
        let sources = [
            (
                layer.param_tensors(),
                params,
                network.param_ranges()[i].start,
            ),
            (
                layer.buffer_tensors(),
                &buffers[..],
                network.buffer_ranges()[i].start,
            ),
        ];
        for (tensors, values, offset) in sources {
            for tensor in tensors {
                let values = &values[offset + tensor.range.start..offset + tensor.range.end];
                let bytes = values
                    .iter()
                    .flat_map(|v| (v.as_f64() as f32).to_le_bytes());
                blobs.push((
                    format!("layers.{i}.{}", tensor.name),
                    tensor.shape,
                    bytes.collect(),
                ));
            }
        }
    }
    let views: Vec<(String, TensorView)> = blobs
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map_err(|e| Error::Data(format!("failed to encode tensor {name}: {e}")))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let metadata = HashMap::from([("format".to_string(), MODEL_FORMAT.to_string())]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Data(format!("failed to encode parameters: {e}")))
}

/// Decodes parameters saved by [`encode_params`] into the flat layout of `network`, and sets
/// the network's buffers from the file.
pub fn decode_params<T: Scalar>(network: &Network<T>, bytes: &[u8], path: &Path) -> Result<Vec<T>> {
    let invalid = |reason: String| Error::Model {
        path: path.to_path_buf(),
        reason,
    };
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| invalid(e.to_string()))?;
    let mut params = vec![T::zero(); network.param_count()];
    let mut buffers = vec![T::zero(); network.buffer_count()];
    for (i, layer) in network.layers().iter().enumerate() {
        let targets = [
            (
                layer.param_tensors(),
                &mut params[network.param_ranges()[i].clone()],
            ),
            (
                layer.buffer_tensors(),
                &mut buffers[network.buffer_ranges()[i].clone()],
            ),
        ];
        for (list, slice) in targets {
            read_tensors(&tensors, i, &list, slice).map_err(invalid)?;
        }
    }
    network.set_buffers(&buffers)?;
    Ok(params)
}

/// Copies the tensors `list` of layer `i` into `slice`, checking names, types and shapes.
fn read_tensors<T: Scalar>(
    tensors: &SafeTensors,
    i: usize,
    list: &[ParamTensor],
    slice: &mut [T],
) -> std::result::Result<(), String> {
    for tensor in list {
        let name = format!("layers.{i}.{}", tensor.name);
        let view = tensors
            .tensor(&name)
            .map_err(|_| format!("tensor {name} is missing"))?;
        if view.dtype() != Dtype::F32 || view.shape() != tensor.shape.as_slice() {
            return Err(format!(
                "tensor {name} is {:?} {:?}, expected F32 {:?}",
                view.dtype(),
                view.shape(),
                tensor.shape
            ));
        }
        let out = &mut slice[tensor.range.clone()];
        for (o, chunk) in out.iter_mut().zip(view.data().chunks_exact(4)) {
            let bytes = [chunk[0], chunk[1], chunk[2], chunk[3]];
            *o = T::of(f32::from_le_bytes(bytes) as f64);
        }
    }
    Ok(())
}

/// Writes `model.json` and `model.safetensors` into `dir`.
pub fn save<T: Scalar>(
    dir: &Path,
    info: &ModelInfo,
    network: &Network<T>,
    params: &[T],
) -> Result<()> {
    write_atomic(
        &dir.join("model.safetensors"),
        &encode_params(network, params)?,
    )?;
    write_json(&dir.join("model.json"), info)
}

/// Reads `model.json` from a run folder.
pub fn load_info(dir: &Path) -> Result<ModelInfo> {
    let path = dir.join("model.json");
    if !path.exists() {
        return Err(Error::Data(format!(
            "no model in {}: expected model.json from `gradus train --out {}`",
            dir.display(),
            dir.display()
        )));
    }
    let info: ModelInfo =
        serde_json::from_str(&read_to_string(&path)?).map_err(|e| Error::Model {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if info.format != MODEL_FORMAT {
        return Err(Error::Model {
            path,
            reason: format!("format is {:?}, expected {MODEL_FORMAT:?}", info.format),
        });
    }
    Ok(info)
}

/// Reads the parameters from `model.safetensors` in `dir` for `network`.
pub fn load_params<T: Scalar>(dir: &Path, network: &Network<T>) -> Result<Vec<T>> {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).map_err(|e| Error::io("failed to read", &path, e))?;
    decode_params(network, &bytes, &path)
}
