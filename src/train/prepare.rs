//! From a config to what the loop needs: split and scaled data, network description and
//! model information.

use super::config::RunConfig;
use super::evaluate::Prepared;
use super::model::{ModelInfo, MODEL_FORMAT};
use crate::data::{self, CsvOptions, Dataset, HeaderMode, Source, TargetColumn, TaskKind};
use crate::nn::{self, LayerSpec};
use crate::{Error, Result};

/// The data of a run, ready for the network, and the model description.
pub struct Setup {
    /// Training part.
    pub train: Prepared,
    /// Validation part (may be empty).
    pub validation: Prepared,
    /// Test part.
    pub test: Prepared,
    /// Architecture, scaling and names, as saved in `model.json`.
    pub info: ModelInfo,
}

/// Reads the CSV options from the config.
pub fn csv_options(config: &RunConfig) -> CsvOptions {
    let target = config
        .data
        .target
        .as_ref()
        .map(|t| match t.parse::<usize>() {
            Ok(i) => TargetColumn::Index(i),
            Err(_) => TargetColumn::Name(t.clone()),
        });
    let header = match config.data.header {
        None => HeaderMode::Auto,
        Some(true) => HeaderMode::Yes,
        Some(false) => HeaderMode::No,
    };
    CsvOptions {
        header,
        target,
        task: config.data.task,
        delimiter: b',',
        feature_columns: Vec::new(),
    }
}

/// Loads, splits and scales the data and describes the network.
pub fn setup(config: &RunConfig) -> Result<Setup> {
    let source: Source = config.data.source.parse()?;
    let loaded = data::load(&source, &csv_options(config))?;
    if loaded.train.is_empty() {
        return Err(Error::Data(format!(
            "data set {} is empty",
            config.data.source
        )));
    }
    let task = config.data.task;
    if task == TaskKind::Classify && loaded.train.class_count().is_none() {
        return Err(Error::Data(format!(
            "data set {} has no class labels; use --task regress or autoencoder",
            config.data.source
        )));
    }
    let (v, t) = (config.data.validation_fraction, config.data.test_fraction);
    let splits = data::split(
        loaded,
        v,
        t,
        config.training.seed,
        task == TaskKind::Classify,
    )?;
    let (mut train, mut validation, mut test) = (splits.train, splits.validation, splits.test);

    let scaler = data::Scaler::fit(config.scale(train.sample_dims.len() == 3), &train);
    for set in [&mut train, &mut validation, &mut test] {
        scaler.apply(set)?;
    }

    let (class_names, output_size) = match task {
        TaskKind::Classify => {
            let names = class_names(&train);
            let count = names.len();
            for set in [&train, &validation, &test] {
                set.check_labels(count)?;
            }
            (names, count)
        }
        TaskKind::Regress => (Vec::new(), target_dim(&train)?),
        TaskKind::Autoencoder => (Vec::new(), train.feature_count()),
    };
    let (target_mean, target_std) = match task {
        TaskKind::Regress => target_statistics(&train),
        _ => (Vec::new(), Vec::new()),
    };
    let layers = describe_network(config, output_size)?;
    let info = ModelInfo {
        format: MODEL_FORMAT.into(),
        version: 1,
        task,
        loss: config.loss(),
        input_shape: train.sample_dims.clone(),
        layers,
        scaler,
        target_mean: target_mean.clone(),
        target_std: target_std.clone(),
        class_names,
        feature_names: train.feature_names.clone(),
        target_names: target_names(&train),
    };
    Ok(Setup {
        train: prepare(&train, task, &target_mean, &target_std),
        validation: prepare(&validation, task, &target_mean, &target_std),
        test: prepare(&test, task, &target_mean, &target_std),
        info,
    })
}

fn class_names(d: &Dataset) -> Vec<String> {
    match &d.targets {
        data::Targets::Classes { names, .. } => names.clone(),
        _ => Vec::new(),
    }
}

fn target_names(d: &Dataset) -> Vec<String> {
    match &d.targets {
        data::Targets::Values { names, .. } => names.clone(),
        _ => Vec::new(),
    }
}

fn target_dim(d: &Dataset) -> Result<usize> {
    match &d.targets {
        data::Targets::Values { dim, .. } => Ok(*dim),
        _ => Err(Error::Data(format!(
            "data set {} has no numeric targets for regression; choose a numeric --target",
            d.name
        ))),
    }
}

/// Per-target mean and standard deviation of the training part; a constant target gets 1.
fn target_statistics(d: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let data::Targets::Values { values, dim, .. } = &d.targets else {
        return (Vec::new(), Vec::new());
    };
    let n = (values.len() / dim.max(&1)).max(1) as f64;
    let mut mean = vec![0.0f64; *dim];
    let mut sq = vec![0.0f64; *dim];
    for row in values.chunks(*dim) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64).powi(2);
        }
    }
    let mean: Vec<f64> = mean.iter().map(|m| m / n).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| {
            let var = (s / n - m * m).max(0.0);
            if var > 0.0 {
                var.sqrt() as f32
            } else {
                1.0
            }
        })
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), std)
}

/// Builds the layer list: hidden layers from the config, then an output layer sized by the
/// data.
pub fn describe_network(config: &RunConfig, outputs: usize) -> Result<Vec<LayerSpec>> {
    let m = &config.model;
    let mut specs = match (&m.description, &m.stack) {
        (Some(text), _) => nn::parse_model(text)?,
        (None, Some(stack)) => stack.clone(),
        (None, None) => {
            let mut hidden = m.layers.clone();
            if config.data.task == TaskKind::Autoencoder {
                let decoder = match &m.decoder {
                    Some(d) => d.clone(),
                    None => m.layers.iter().rev().skip(1).copied().collect(),
                };
                hidden.extend(decoder);
            }
            return Ok(nn::mlp(&hidden, m.activation, m.dropout, outputs));
        }
    };
    specs.push(LayerSpec::Dense { units: outputs });
    Ok(specs)
}

/// Converts a data set to network inputs and targets.
pub fn prepare(d: &Dataset, task: TaskKind, mean: &[f32], std: &[f32]) -> Prepared {
    let n = d.len();
    let all: Vec<usize> = (0..n).collect();
    let mut x = vec![0.0f32; n * d.feature_count()];
    d.gather_features(&all, &mut x);
    let (t, labels) = match task {
        TaskKind::Autoencoder => (x.clone(), None),
        TaskKind::Classify => {
            let width = d.class_count().unwrap_or(0);
            let mut t = vec![0.0f32; n * width];
            d.gather_targets(&all, &mut t);
            (t, d.labels().map(|l| l.to_vec()))
        }
        TaskKind::Regress => {
            let mut t = vec![0.0f32; n * mean.len()];
            d.gather_targets(&all, &mut t);
            for row in t.chunks_mut(mean.len().max(1)) {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (*v - mean[j]) / std[j];
                }
            }
            (t, None)
        }
    };
    Prepared {
        x,
        t,
        labels,
        len: n,
    }
}
