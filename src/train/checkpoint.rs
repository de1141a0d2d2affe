//! Checkpoints: the state needed to continue a run after it stops, written atomically after
//! every epoch (and every few steps or seconds when configured) as `checkpoint.safetensors`
//! (vectors) and `checkpoint.json` (counters).

use super::files::{read_to_string, write_atomic, write_json};
use crate::methods::MethodState;
use crate::{Error, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Metadata key of the CRC-32 of each tensor's bytes, by tensor name.
const CHECKSUMS: &str = "crc32";

/// Counters and scalars of a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Method steps taken.
    pub steps: u64,
    /// Epoch (from 1) with the best validation loss so far.
    pub best_epoch: usize,
    /// Best validation loss so far; infinite before the first epoch ends.
    #[serde(with = "unbounded_f64")]
    pub best_loss: f64,
    /// Epochs since the best one, for early stopping.
    pub epochs_without_improvement: usize,
    /// Steps skipped because of a non-finite gradient.
    pub skipped_steps: u64,
    /// Evaluations in forward-sample units.
    pub evaluations: u64,
    /// Gradient evaluations.
    pub gradient_evaluations: u64,
    /// Training samples processed by steps.
    pub samples: u64,
    /// Seconds spent in steps.
    pub train_seconds: f64,
    /// Whether the method reported that it had finished.
    pub finished: bool,
    /// Scalars of the method state.
    pub method_scalars: Vec<(String, f64)>,
    /// Batches of the current epoch already stepped on; 0 at an epoch boundary.
    #[serde(default)]
    pub batches_done: usize,
    /// Sum of the step losses of those batches, for the epoch's mean training loss.
    #[serde(default)]
    pub epoch_loss_sum: f64,
    /// Groups per batch over all ranks of the run that wrote the checkpoint; absent in
    /// checkpoints from before batch groups.
    #[serde(default)]
    pub batch_groups: Option<usize>,
}

/// Writes infinities and NaN as the strings `inf`, `-inf` and `NaN`, which JSON numbers cannot
/// hold (serde_json would write null and then fail to read it back), and reads null as `inf`.
mod unbounded_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_str(&value.to_string())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Number(f64),
            Text(String),
            Null(()),
        }
        match Stored::deserialize(deserializer)? {
            Stored::Number(value) => Ok(value),
            Stored::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Stored::Null(()) => Ok(f64::INFINITY),
        }
    }
}

/// A checkpoint in memory.
pub struct Checkpoint {
    /// Current parameters.
    pub params: Vec<f32>,
    /// Parameters of the best epoch.
    pub best_params: Vec<f32>,
    /// Layer buffers (batch-norm running statistics) now and at the best epoch.
    pub buffers: [Vec<f32>; 2],
    /// Method state.
    pub method: MethodState,
    /// Counters.
    pub progress: Progress,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes the checkpoint into `dir`. The vectors go first, then the counters, each
/// atomically, and the counters name the vector file's length, so a crash between the two
/// writes is detected on load instead of mixing two epochs.
pub fn save(dir: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let mut blobs: Vec<(String, Dtype, Vec<u8>, usize)> = vec![
        (
            "params".into(),
            Dtype::F32,
            f32_bytes(&checkpoint.params),
            checkpoint.params.len(),
        ),
        (
            "best_params".into(),
            Dtype::F32,
            f32_bytes(&checkpoint.best_params),
            checkpoint.best_params.len(),
        ),
    ];
    for (name, v) in ["buffers", "best_buffers"].iter().zip(&checkpoint.buffers) {
        blobs.push((name.to_string(), Dtype::F32, f32_bytes(v), v.len()));
    }
    for (name, v) in &checkpoint.method.vectors {
        blobs.push((format!("method.{name}"), Dtype::F64, f64_bytes(v), v.len()));
    }
    let views = blobs
        .iter()
        .map(|(name, dtype, bytes, len)| {
            let view = TensorView::new(*dtype, vec![*len], bytes)
                .map_err(|e| Error::Data(format!("failed to encode checkpoint {name}: {e}")))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let progress = serde_json::to_string(&checkpoint.progress).unwrap_or_default();
    let sums: BTreeMap<&str, u32> = blobs
        .iter()
        .map(|(name, _, bytes, _)| (name.as_str(), crc32fast::hash(bytes)))
        .collect();
    let sums = serde_json::to_string(&sums).unwrap_or_default();
    let metadata = std::collections::HashMap::from([
        ("progress".to_string(), progress),
        (CHECKSUMS.to_string(), sums),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Data(format!("failed to encode checkpoint: {e}")))?;
    write_atomic(&dir.join("checkpoint.safetensors"), &bytes)?;
    write_json(&dir.join("checkpoint.json"), &checkpoint.progress)
}

/// Reads a checkpoint from `dir`. The counters are taken from the vector file's own metadata,
/// so both always belong to the same epoch.
pub fn load(dir: &Path) -> Result<Checkpoint> {
    let path = dir.join("checkpoint.safetensors");
    let bytes = std::fs::read(&path).map_err(|e| Error::io("failed to read", &path, e))?;
    let invalid = |reason: String| Error::Model {
        path: path.clone(),
        reason,
    };
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| invalid(e.to_string()))?;
    let progress_text = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("progress").cloned())
        .ok_or_else(|| invalid("progress metadata is missing".into()))?;
    let progress: Progress =
        serde_json::from_str(&progress_text).map_err(|e| invalid(e.to_string()))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
    // Checkpoints written before checksums existed have none and load unchecked.
    if let Some(text) = metadata.metadata().as_ref().and_then(|m| m.get(CHECKSUMS)) {
        let sums: BTreeMap<String, u32> =
            serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for (name, expected) in sums {
            let view = tensors
                .tensor(&name)
                .map_err(|_| invalid(format!("{name} is missing")))?;
            if crc32fast::hash(view.data()) != expected {
                return Err(invalid(format!(
                    "the bytes of {name} do not match their CRC-32, so the file is corrupted; \
                     restore the run folder from a backup or start a new run"
                )));
            }
        }
    }
    let read_f32 = |name: &str| -> Result<Vec<f32>> {
        let view = tensors
            .tensor(name)
            .map_err(|_| invalid(format!("{name} is missing")))?;
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let params = read_f32("params")?;
    let best_params = read_f32("best_params")?;
    let buffers = [read_f32("buffers")?, read_f32("best_buffers")?];
    let mut method = MethodState {
        vectors: Vec::new(),
        scalars: progress.method_scalars.clone(),
    };
    for (name, view) in tensors.tensors() {
        if let Some(short) = name.strip_prefix("method.") {
            let v = view
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect();
            method.vectors.push((short.to_string(), v));
        }
    }
    method.vectors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Checkpoint {
        params,
        best_params,
        buffers,
        method,
        progress,
    })
}

/// Reads `checkpoint.json`, for tools that only need the counters.
pub fn load_progress(dir: &Path) -> Result<Progress> {
    let path = dir.join("checkpoint.json");
    serde_json::from_str(&read_to_string(&path)?).map_err(|e| Error::Model {
        path,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infinite_best_loss_round_trips() {
        let progress = Progress {
            best_loss: f64::INFINITY,
            ..Progress::default()
        };
        let text = serde_json::to_string(&progress).expect("encodes");
        let back: Progress = serde_json::from_str(&text).expect("decodes");
        assert_eq!(back.best_loss, f64::INFINITY);
    }

    #[test]
    fn null_best_loss_reads_as_infinite() {
        let mut value = serde_json::to_value(Progress::default()).expect("encodes");
        value["best_loss"] = serde_json::Value::Null;
        let back: Progress = serde_json::from_value(value).expect("decodes");
        assert_eq!(back.best_loss, f64::INFINITY);
    }

    #[test]
    fn checkpoint_saved_before_first_epoch_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let checkpoint = Checkpoint {
            params: vec![1.0, 2.0],
            best_params: vec![1.0, 2.0],
            buffers: [Vec::new(), Vec::new()],
            method: MethodState::default(),
            progress: Progress {
                best_loss: f64::INFINITY,
                batches_done: 3,
                ..Progress::default()
            },
        };
        save(dir.path(), &checkpoint).expect("saves");
        let loaded = load(dir.path()).expect("loads");
        assert_eq!(loaded.progress, checkpoint.progress);
        assert_eq!(loaded.params, checkpoint.params);
    }

    #[test]
    fn corrupted_checkpoint_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let checkpoint = Checkpoint {
            params: vec![1.0; 64],
            best_params: vec![1.0; 64],
            buffers: [Vec::new(), Vec::new()],
            method: MethodState::default(),
            progress: Progress::default(),
        };
        save(dir.path(), &checkpoint).expect("saves");
        let path = dir.path().join("checkpoint.safetensors");
        let mut bytes = std::fs::read(&path).expect("read");
        // The tensor data sits at the end of the file, after the JSON header.
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        std::fs::write(&path, bytes).expect("write");
        let err = load(dir.path()).err().expect("must reject");
        assert!(err.to_string().contains("CRC-32"), "{err}");
    }
}
