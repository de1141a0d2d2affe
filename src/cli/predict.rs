//! `gradus predict`.

use anyhow::Result;
use clap::Args;
use gradus::data::{self, CsvOptions, HeaderMode, Source, TaskKind};
use gradus::nn::{Mode, Network};
use gradus::tensor::Cpu;
use gradus::train::evaluate::{argmax, EVAL_BATCH};
use gradus::train::model::{self, ModelInfo};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Options of `gradus predict`.
#[derive(Args)]
pub struct PredictArgs {
    /// Run folder holding model.json and model.safetensors.
    #[arg(long)]
    model: PathBuf,
    /// CSV file of raw (unscaled) features, one sample per row. A header row is detected.
    /// With a header, the model's feature columns are read by name and other columns are
    /// ignored. Without one, the columns are taken in training order and an extra last column
    /// (a target) is ignored.
    #[arg(long)]
    input: PathBuf,
    /// Print the values that the model's ONNX export returns, at full f32 precision: logits
    /// for a classifier (no class column, no softmax), targets in their own units for
    /// regression, and reconstructions for an autoencoder.
    #[arg(long)]
    raw: bool,
}

/// Rebuilds the network of a saved model.
pub fn build_network(info: &ModelInfo) -> gradus::Result<Network<f32>> {
    Network::new(&info.input_shape, &info.layers, Arc::new(Cpu::default()))
}

/// Checks that data has the model's feature count.
pub fn check_features(info: &ModelInfo, count: usize) -> gradus::Result<()> {
    let expected: usize = info.input_shape.iter().product();
    if count != expected {
        return Err(gradus::Error::Data(format!(
            "the data has {count} features but the model takes {expected}; pass data with the \
             training data's columns"
        )));
    }
    Ok(())
}

pub fn run(args: PredictArgs) -> Result<()> {
    let info = model::load_info(&args.model)?;
    let network = build_network(&info)?;
    let params = model::load_params(&args.model, &network)?;
    let options = CsvOptions {
        header: HeaderMode::Auto,
        target: None,
        task: TaskKind::Autoencoder,
        delimiter: b',',
        // With a header, the reader picks the model's features by name, in training order.
        feature_columns: info.feature_names.clone(),
    };
    let mut set = data::load(&Source::Csv(args.input.clone()), &options)?.train;
    let expected: usize = info.input_shape.iter().product();
    let mut x = vec![0.0f32; set.len() * set.feature_count()];
    let all: Vec<usize> = (0..set.len()).collect();
    set.gather_features(&all, &mut x);
    let selected_by_name =
        !info.feature_names.is_empty() && set.feature_names == info.feature_names;
    if !selected_by_name && set.feature_count() == expected + 1 {
        // Drop the last column: a target left in the file.
        x = x
            .chunks(expected + 1)
            .flat_map(|r| r[..expected].to_vec())
            .collect();
    } else {
        check_features(&info, set.feature_count())?;
    }
    for row in x.chunks_mut(expected) {
        info.scaler.transform_row(row)?;
    }
    set.features.clear();
    write_predictions(&info, &network, &params, &x, expected, args.raw)?;
    Ok(())
}

fn write_predictions(
    info: &ModelInfo,
    network: &Network<f32>,
    params: &[f32],
    x: &[f32],
    width: usize,
    raw: bool,
) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let outputs = network.output_size();
    writeln!(out, "{}", header(info, outputs, raw))?;
    let mut ws = network.workspace(EVAL_BATCH);
    for chunk in x.chunks(EVAL_BATCH * width) {
        let n = chunk.len() / width;
        let z = network.forward(&mut ws, params, chunk, n, Mode::Eval, 0);
        for row in z.chunks(outputs) {
            let line = if raw {
                format_raw_row(info, row)
            } else {
                format_row(info, row)
            };
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(())
}

fn header(info: &ModelInfo, outputs: usize, raw: bool) -> String {
    match info.task {
        TaskKind::Classify if raw => info
            .class_names
            .iter()
            .map(|c| format!("logit_{c}"))
            .collect::<Vec<_>>()
            .join(","),
        TaskKind::Classify => {
            let probs = info.class_names.iter().map(|c| format!("p_{c}"));
            std::iter::once("class".to_string())
                .chain(probs)
                .collect::<Vec<_>>()
                .join(",")
        }
        TaskKind::Regress if !info.target_names.is_empty() => info.target_names.join(","),
        TaskKind::Regress => (0..outputs)
            .map(|j| format!("y{j}"))
            .collect::<Vec<_>>()
            .join(","),
        TaskKind::Autoencoder => (0..outputs)
            .map(|j| format!("x{j}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn format_row(info: &ModelInfo, z: &[f32]) -> String {
    match info.task {
        TaskKind::Classify => {
            let max = z.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let exp: Vec<f64> = z.iter().map(|v| ((v - max) as f64).exp()).collect();
            let sum: f64 = exp.iter().sum();
            let label = info.class_names.get(argmax(z)).cloned().unwrap_or_default();
            let probs = exp.iter().map(|e| format!("{:.6}", e / sum));
            std::iter::once(label)
                .chain(probs)
                .collect::<Vec<_>>()
                .join(",")
        }
        TaskKind::Regress => z
            .iter()
            .enumerate()
            .map(|(j, v)| format!("{}", target_value(info, j, *v)))
            .collect::<Vec<_>>()
            .join(","),
        TaskKind::Autoencoder => z
            .iter()
            .map(|v| format!("{:.6}", reconstruction(info, *v)))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Formats one output row for `--raw`. `{:e}` prints the shortest decimal that reads back as
/// the same f32.
fn format_raw_row(info: &ModelInfo, z: &[f32]) -> String {
    let values: Vec<String> = match info.task {
        TaskKind::Classify => z.iter().map(|v| format!("{v:e}")).collect(),
        TaskKind::Regress => z
            .iter()
            .enumerate()
            .map(|(j, v)| format!("{:e}", target_value(info, j, *v)))
            .collect(),
        TaskKind::Autoencoder => z
            .iter()
            .map(|v| format!("{:e}", reconstruction(info, *v)))
            .collect(),
    };
    values.join(",")
}

/// Undoes the target standardisation of regression output `j`.
fn target_value(info: &ModelInfo, j: usize, z: f32) -> f32 {
    z * info.target_std[j] + info.target_mean[j]
}

/// Maps an autoencoder output to a reconstructed feature: a BCE-trained network outputs
/// logits of intensities in `[0, 1]`.
fn reconstruction(info: &ModelInfo, z: f32) -> f32 {
    match info.loss {
        gradus::nn::Loss::BinaryCrossEntropy => 1.0 / (1.0 + (-z).exp()),
        _ => z,
    }
}
