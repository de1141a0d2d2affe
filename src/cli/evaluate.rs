//! `gradus evaluate`.

use anyhow::Result;
use clap::Args;
use gradus::data::{self, CsvOptions, HeaderMode, Source, TargetColumn, TaskKind};
use gradus::train::{evaluate as eval, model, prepare};
use std::path::PathBuf;

/// Options of `gradus evaluate`.
#[derive(Args)]
pub struct EvaluateArgs {
    /// Run folder holding model.json and model.safetensors.
    #[arg(long)]
    model: PathBuf,
    /// Data to evaluate on: digits, iris, csv:PATH or idx:DIR. An IDX folder with a test
    /// split is evaluated on that split; any other source on all of its samples.
    #[arg(long)]
    data: String,
    /// CSV target column: a header name or a 0-based index (default: the last column).
    #[arg(long)]
    target: Option<String>,
    /// The CSV file has a header row (detected otherwise).
    #[arg(long)]
    header: bool,
}

pub fn run(args: EvaluateArgs) -> Result<()> {
    let info = model::load_info(&args.model)?;
    let network = super::predict::build_network(&info)?;
    let params = model::load_params(&args.model, &network)?;
    let source: Source = args.data.parse()?;
    let options = CsvOptions {
        header: if args.header {
            HeaderMode::Yes
        } else {
            HeaderMode::Auto
        },
        target: args.target.map(|t| match t.parse::<usize>() {
            Ok(i) => TargetColumn::Index(i),
            Err(_) => TargetColumn::Name(t),
        }),
        task: info.task,
        delimiter: b',',
        feature_columns: Vec::new(),
    };
    let loaded = data::load(&source, &options)?;
    let mut set = loaded.test.unwrap_or(loaded.train);
    super::predict::check_features(&info, set.feature_count())?;
    info.scaler.apply(&mut set)?;
    if info.task == TaskKind::Classify {
        set.align_classes(&info.class_names)?;
    }
    let prepared = prepare::prepare(&set, info.task, &info.target_mean, &info.target_std);
    let spec = eval::EvalSpec {
        task: info.task,
        loss: info.loss,
        target_std: &info.target_std,
    };
    let mut ws = network.workspace(eval::EVAL_BATCH.min(prepared.len.max(1)));
    let m = eval::evaluate(&network, &params, &prepared, &spec, &mut ws);
    println!("samples {}", prepared.len);
    println!("loss {:.6}", m.loss);
    if let Some(a) = m.accuracy {
        println!("accuracy {a:.4}");
    }
    if let Some(r) = m.rmse {
        println!("rmse {r:.6}");
    }
    if let Some(r) = m.r2 {
        println!("r2 {r:.6}");
    }
    if let Some(e) = m.reconstruction_error {
        println!("reconstruction_error {e:.6}");
    }
    Ok(())
}
