//! Command-line parsing, dispatch and exit codes.
//!
//! Exit codes: 0 on success, 2 for invalid input (arguments, files, settings, data), 1 when
//! training itself fails (a non-finite loss) or a file cannot be written.

mod bench;
mod compare;
mod distributed;
mod evaluate;
mod export;
mod plot;
mod predict;
mod progress;
mod train;
mod tune;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Train neural networks with first-order, second-order and search methods.
#[derive(Parser)]
#[command(name = "gradus", version, about)]
struct Cli {
    /// Log more: -v for info, -vv for debug.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a network and write a run folder.
    Train(Box<train::TrainArgs>),
    /// Search hyperparameters: one training run per trial, scored on the validation split.
    Tune(Box<tune::TuneArgs>),
    /// Evaluate a trained model on a data set.
    Evaluate(evaluate::EvaluateArgs),
    /// Print a trained model's predictions for a CSV file as CSV.
    Predict(predict::PredictArgs),
    /// Write a trained model as an ONNX file for other inference runtimes.
    Export(export::ExportArgs),
    /// Compare training methods over seeds and write a table, plots and an HTML report.
    Compare(Box<compare::CompareArgs>),
    /// Draw the loss curves of finished runs.
    Plot(plot::PlotArgs),
    /// List the built-in data sets.
    Datasets,
    /// Measure training throughput against PyTorch (see docs/benchmarks.md).
    Bench(bench::BenchArgs),
}

/// Runs the command line and returns the exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Train(_) => Ok(()),
        Command::Datasets => distributed::reject_multi_rank("datasets"),
        Command::Tune(_) => distributed::reject_multi_rank("tune"),
        Command::Evaluate(_) => distributed::reject_multi_rank("evaluate"),
        Command::Predict(_) => distributed::reject_multi_rank("predict"),
        Command::Export(_) => distributed::reject_multi_rank("export"),
        Command::Compare(_) => distributed::reject_multi_rank("compare"),
        Command::Plot(_) => distributed::reject_multi_rank("plot"),
        Command::Bench(_) => distributed::reject_multi_rank("bench"),
    };
    let result = result.and_then(|()| match cli.command {
        Command::Train(args) => train::run(*args),
        Command::Tune(args) => tune::run(*args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Export(args) => export::run(args),
        Command::Compare(args) => compare::run(*args),
        Command::Plot(args) => plot::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Datasets => {
            for (name, about) in gradus::data::builtin_names() {
                println!("{name:<8} {about}");
            }
            Ok(())
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Joins an error and its causes into one line.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

fn exit_code(e: &anyhow::Error) -> u8 {
    use gradus::Error;
    match e.downcast_ref::<Error>() {
        Some(Error::NonFinite(_)) => 1,
        // The shell's convention for a process ended by a signal.
        Some(Error::Interrupted { signal, .. }) => (128 + signal).clamp(0, 255) as u8,
        Some(Error::Io { action, .. }) if action.contains("write") || action.contains("create") => {
            1
        }
        _ => 2,
    }
}

/// Builds the thread pool that training and benchmarks run in, with `threads` threads (0:
/// one per core). Each thread flushes denormals to zero, because the flag lives in a
/// per-thread register.
fn worker_pool(threads: usize) -> anyhow::Result<rayon::ThreadPool> {
    use anyhow::Context;
    check_threads(threads)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| {
            gradus::tensor::flush_denormals();
        })
        .build()
        .context("failed to start the worker threads")
}

/// Rejects a thread count above [`gradus::train::MAX_THREADS`].
fn check_threads(threads: usize) -> anyhow::Result<()> {
    let max = gradus::train::MAX_THREADS;
    if threads > max {
        anyhow::bail!("invalid --threads {threads}: must be from 0 (all cores) to {max}");
    }
    Ok(())
}

fn init_logging(verbose: u8) {
    // Ranks other than 0 of an MPI job log errors only, so that the job's output reads like
    // one process's.
    let default = match verbose {
        _ if distributed::is_secondary_rank() => "error",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRADUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
