//! `gradus plot`.

use anyhow::Result;
use clap::Args;
use gradus::compare::plot::{draw_panels, seed_curve, Curve, Figure};
use gradus::compare::read_records;
use gradus::train::EpochRecord;
use std::path::PathBuf;

/// Options of `gradus plot`.
#[derive(Args)]
pub struct PlotArgs {
    /// Finished run folders, each with a metrics.jsonl.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Output image: PNG, or SVG when the name ends in .svg.
    #[arg(long, default_value = "loss.png")]
    out: PathBuf,
}

pub fn run(args: PlotArgs) -> Result<()> {
    let mut runs = Vec::new();
    for dir in &args.runs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        runs.push((name, read_records(dir)?));
    }
    let curves = |x: &dyn Fn(&EpochRecord) -> f64| -> Vec<Curve> {
        let mut curves = Vec::new();
        for (name, records) in &runs {
            let train = |e: &EpochRecord| e.train_loss;
            let validation = |e: &EpochRecord| e.validation.loss;
            curves.push(seed_curve(
                &format!("{name} train"),
                &[records.as_slice()],
                x,
                train,
            ));
            curves.push(seed_curve(
                &format!("{name} validation"),
                &[records.as_slice()],
                x,
                validation,
            ));
        }
        curves
    };
    let figures = [
        Figure {
            title: "Loss against epoch".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            curves: curves(&|e| e.epoch as f64),
            log_y: true,
        },
        Figure {
            title: "Loss against wall time".into(),
            x_label: "wall time (s)".into(),
            y_label: "loss".into(),
            curves: curves(&|e| e.elapsed_seconds),
            log_y: true,
        },
    ];
    draw_panels(&args.out, &figures)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
