//! `gradus export`.

use anyhow::Result;
use clap::Args;
use gradus::export::onnx::{DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, PROBABILITIES_NAME};
use gradus::export::{export_onnx, ExportFormat, ExportOptions};
use gradus::train::files::write_atomic;
use gradus::train::model;
use std::path::PathBuf;

/// Options of `gradus export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Run folder holding model.json and model.safetensors.
    #[arg(long)]
    model: PathBuf,
    /// Output format; onnx is the only one.
    #[arg(long, default_value = "onnx")]
    format: String,
    /// File to write.
    #[arg(long)]
    out: PathBuf,
    /// End a classifier with a softmax, so that the output, named `probabilities`,
    /// contains class probabilities instead of logits.
    #[arg(long)]
    softmax: bool,
    /// ONNX operator set version, from 13 to 25.
    #[arg(long, default_value_t = DEFAULT_OPSET)]
    opset: i64,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let format: ExportFormat = args.format.parse()?;
    if args.out.exists() && !args.force {
        return Err(gradus::Error::setting(
            "out",
            args.out.display(),
            "the file exists; choose another --out, or pass --force to replace it",
        )
        .into());
    }
    let options = ExportOptions {
        softmax: args.softmax,
        opset: args.opset,
    };
    options.validate()?;
    let info = model::load_info(&args.model)?;
    let network = super::predict::build_network(&info)?;
    let params = model::load_params(&args.model, &network)?;
    let bytes = match format {
        ExportFormat::Onnx => export_onnx(&info, &params, &network.buffers(), &options)?,
    };
    write_atomic(&args.out, &bytes)?;

    let output_name = if args.softmax {
        PROBABILITIES_NAME
    } else {
        OUTPUT_NAME
    };
    let output_shape = match network.layers().last() {
        Some(layer) => layer.output_shape().to_vec(),
        None => info.input_shape.clone(),
    };
    println!(
        "wrote {}: {format} opset {}, input {INPUT_NAME:?} {}, output {output_name:?} {}, \
         {} bytes",
        args.out.display(),
        args.opset,
        describe_shape(&info.input_shape),
        describe_shape(&output_shape),
        bytes.len()
    );
    Ok(())
}

/// Formats a per-sample shape with the batch dimension first, as `[N, 1, 8, 8]`.
fn describe_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = std::iter::once(gradus::export::BATCH_DIM.to_string())
        .chain(shape.iter().map(|d| d.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}
