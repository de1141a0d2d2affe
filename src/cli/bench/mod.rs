//! `gradus bench`: training throughput of the step path, measured against PyTorch on the same
//! data, batches and thread count.
//!
//! `gradus bench mlp` and `gradus bench cnn` write the data once into a temporary folder,
//! then run every configuration in a fresh child process (this binary's hidden `worker`
//! command, and `scripts/bench_torch.sh` for PyTorch), so that each peak RSS figure belongs
//! to one configuration alone. The two frameworks alternate, configuration by configuration.

mod data;
mod model;
mod worker;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use data::{bench_data, write_data, TempDir};
use gradus::tensor::{Cpu, Kernels, Precision, Transpose};
use model::BenchModel;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use worker::WorkerArgs;

/// Output classes of the benchmark models.
const CLASSES: usize = 10;
/// Features per sample (28 × 28 images).
const FEATURES: usize = 784;
/// Learning rates of the benchmark, the same in both frameworks.
const SGD_LR: f64 = 0.01;
const ADAM_LR: f64 = 0.001;
/// Seed for the synthetic data, the sample order and the initial weights.
const SEED: u64 = 1;
/// OpenMP wait policy for PyTorch unless the caller sets `OMP_WAIT_POLICY`. With the
/// default (spinning) policy, two PyTorch threads on a machine busy with other work ran
/// about 9 times slower than with this one (PyTorch 2.15, 2-core EPYC, load average 8).
const TORCH_WAIT_POLICY: &str = "PASSIVE";
/// Side of the square matrix product that measures the peak GEMM rate.
const PEAK_SIZE: usize = 2048;
/// Products timed for the peak GEMM rate; the fastest counts, because other work on the
/// machine only ever slows a run down.
const PEAK_REPEATS: usize = 5;

/// Options of `gradus bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Train a 784-256-128-10 ReLU MLP with cross-entropy for one epoch per batch size and
    /// method, here and in PyTorch, and print samples per second, their ratio, the share of
    /// the peak GEMM rate and the peak RSS of each.
    Mlp(ModelArgs),
    /// Train a small CNN (conv 16 and 32 3×3 with max pooling, dense 128, ReLU) with
    /// cross-entropy for one epoch per batch size (default 64) and method, here and in
    /// PyTorch, and print the same columns as `mlp`.
    Cnn(ModelArgs),
    /// Run one configuration on prepared data and print its result as one JSON line.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// Training methods the benchmark compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum BenchMethod {
    Sgd,
    Adam,
}

impl BenchMethod {
    fn name(self) -> &'static str {
        match self {
            BenchMethod::Sgd => "sgd",
            BenchMethod::Adam => "adam",
        }
    }

    fn learning_rate(self) -> f64 {
        match self {
            BenchMethod::Sgd => SGD_LR,
            BenchMethod::Adam => ADAM_LR,
        }
    }
}

/// Options of `gradus bench mlp` and `gradus bench cnn`.
#[derive(Args)]
struct ModelArgs {
    /// IDX folder with the Fashion-MNIST (or MNIST) training set. When it does not exist the
    /// benchmark uses synthetic data of the same shape.
    #[arg(long, default_value = "../shared/data/fashion-mnist")]
    data: PathBuf,
    /// Samples per epoch (at most the data set's size unless the data are synthetic).
    #[arg(long, default_value_t = 60_000)]
    samples: usize,
    /// Batch sizes, comma-separated (default: 32,128,512 for mlp, 64 for cnn).
    #[arg(long, value_delimiter = ',')]
    batches: Vec<usize>,
    /// Methods, comma-separated: sgd, adam.
    #[arg(long, value_delimiter = ',', default_value = "sgd,adam")]
    methods: Vec<BenchMethod>,
    /// Operand precisions of this framework's products, comma-separated: f32, bf16. PyTorch
    /// always runs in f32.
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    precisions: Vec<Precision>,
    /// Worker threads for both frameworks.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Groups that each batch of this framework splits into, as `gradus train
    /// --batch-groups`.
    #[arg(long, default_value_t = gradus::objective::DEFAULT_BATCH_GROUPS)]
    batch_groups: usize,
    /// Untimed steps before the timed epoch.
    #[arg(long, default_value_t = 20)]
    warmup_steps: usize,
    /// Runs of each configuration per framework; the table shows the fastest run of each.
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    /// Peak f32 GEMM rate in GFLOP/s for the roofline column (default: measured with a
    /// 2048 × 2048 × 2048 product on the same threads).
    #[arg(long)]
    peak_gflops: Option<f64>,
    /// Skip PyTorch and print this framework's columns only.
    #[arg(long)]
    no_torch: bool,
    /// Script that runs the PyTorch side; it receives bench_torch.py's arguments.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_torch.sh"))]
    torch_script: PathBuf,
}

/// The result of one run of one configuration, in either framework.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunResult {
    samples_per_second: f64,
    seconds: f64,
    peak_rss_bytes: Option<u64>,
    final_loss: f64,
    #[serde(default)]
    torch_version: Option<String>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        BenchCommand::Mlp(args) => run_model(BenchModel::Mlp, args),
        BenchCommand::Cnn(args) => run_model(BenchModel::Cnn, args),
        BenchCommand::Worker(args) => worker::run_worker(args),
    }
}

fn run_model(model: BenchModel, mut args: ModelArgs) -> Result<()> {
    if args.batches.is_empty() {
        args.batches = model.default_batches();
    }
    if args.threads == 0 || args.batches.contains(&0) || args.repeats == 0 {
        bail!("--threads, --batches and --repeats must be at least 1");
    }
    if args.precisions.is_empty() {
        bail!("--precisions is empty; give f32, bf16 or both");
    }
    let (x, labels, origin) = bench_data(&args.data, args.samples)?;
    let dir = TempDir::create()?;
    write_data(dir.path(), &x, &labels)?;
    drop(x);

    let peak = match args.peak_gflops {
        Some(p) => PeakRate {
            gflops: p,
            measured: false,
        },
        None => PeakRate {
            gflops: measure_peak_gflops(args.threads)?,
            measured: true,
        },
    };
    let flops = model.flops_per_sample();
    print_header(model, &args, labels.len(), &origin, &peak, flops);
    let mut torch_version = None;
    for &batch in &args.batches {
        for (method, ours, theirs) in measure(model, dir.path(), batch, &args)? {
            if let Some(t) = &theirs {
                torch_version = t.torch_version.clone();
            }
            for (precision, result) in args.precisions.iter().zip(&ours) {
                let row = Row {
                    method,
                    precision: *precision,
                    batch,
                };
                print_row(&row, result, theirs.as_ref(), flops, peak.gflops);
            }
        }
    }
    if let Some(v) = torch_version {
        let policy = std::env::var("OMP_WAIT_POLICY").unwrap_or(TORCH_WAIT_POLICY.to_string());
        println!("PyTorch {v}, OMP_WAIT_POLICY={policy}");
    }
    Ok(())
}

/// The fastest runs of one method at one batch size: ours in the order of `--precisions`,
/// and PyTorch's unless `--no-torch`.
type Measured = (BenchMethod, Vec<RunResult>, Option<RunResult>);

/// Runs every method at one batch size `repeats` times in each precision and in PyTorch,
/// and returns the fastest run of each. Each repeat runs every configuration once, so that
/// a change in the machine's load affects all methods alike.
fn measure(model: BenchModel, dir: &Path, batch: usize, args: &ModelArgs) -> Result<Vec<Measured>> {
    let mut best: Vec<Measured> = args
        .methods
        .iter()
        .map(|&method| (method, Vec::new(), None))
        .collect();
    for _ in 0..args.repeats {
        for (method, ours, theirs) in &mut best {
            let config = Config {
                model,
                batch,
                method: *method,
            };
            for (i, &precision) in args.precisions.iter().enumerate() {
                let run = run_ours(dir, &config, precision, args)?;
                match ours.get_mut(i) {
                    Some(slot) => *slot = faster(Some(slot.clone()), run),
                    None => ours.push(run),
                }
            }
            if !args.no_torch {
                let run = run_torch(dir, &config, args)?;
                *theirs = Some(faster(theirs.take(), run));
            }
        }
    }
    Ok(best)
}

fn print_header(
    model: BenchModel,
    args: &ModelArgs,
    samples: usize,
    origin: &str,
    peak: &PeakRate,
    flops: f64,
) {
    println!(
        "{}, cross-entropy; {samples} samples of {origin}; threads: {}; fastest of {} run(s) \
         each",
        model.describe(),
        args.threads,
        args.repeats
    );
    let source = if peak.measured {
        "measured, 2048³ product"
    } else {
        "stated"
    };
    println!(
        "{:.3} MFLOP per sample; peak f32 GEMM {:.0} GFLOP/s ({source})",
        flops / 1e6,
        peak.gflops
    );
    if args.precisions.contains(&Precision::Bf16) && !Precision::Bf16.is_supported() {
        println!("this CPU lacks AVX-512 BF16, so the bf16 rows run f32 products");
    }
    if args.precisions.contains(&Precision::Bf16) {
        let core_peak = |p| gradus::tensor::core_peak_gflops(p);
        if let (Some(f32_peak), Some(bf16_peak)) =
            (core_peak(Precision::F32), core_peak(Precision::Bf16))
        {
            println!(
                "one core's multiply-add peak: f32 {f32_peak:.0} GFLOP/s, bf16 {bf16_peak:.0} \
                 GFLOP/s, {:.2}x (the most a bf16 product can gain)",
                bf16_peak / f32_peak
            );
        }
    }
    println!(
        "{:<6} {:<4} {:>5} {:>12} {:>12} {:>6} {:>8} {:>8} {:>10} {:>10}",
        "method",
        "prec",
        "batch",
        "gradus/s",
        "torch/s",
        "ratio",
        "GFLOP/s",
        "of peak",
        "RSS MiB",
        "torch MiB"
    );
}

struct PeakRate {
    gflops: f64,
    measured: bool,
}

fn faster(best: Option<RunResult>, run: RunResult) -> RunResult {
    match best {
        Some(b) if b.samples_per_second >= run.samples_per_second => b,
        _ => run,
    }
}

/// The configuration of one table row.
struct Row {
    method: BenchMethod,
    precision: Precision,
    batch: usize,
}

fn print_row(row: &Row, ours: &RunResult, theirs: Option<&RunResult>, flops: f64, peak: f64) {
    let mib = |r: Option<&RunResult>| match r.and_then(|r| r.peak_rss_bytes) {
        Some(b) => format!("{:.0}", b as f64 / (1 << 20) as f64),
        None => "n/a".to_string(),
    };
    let gflops = ours.samples_per_second * flops / 1e9;
    let (torch_rate, ratio) = match theirs {
        Some(t) => (
            format!("{:.0}", t.samples_per_second),
            format!("{:.2}", ours.samples_per_second / t.samples_per_second),
        ),
        None => ("n/a".to_string(), "n/a".to_string()),
    };
    println!(
        "{:<6} {:<4} {:>5} {:>12.0} {:>12} {:>6} {:>8.1} {:>7.1}% {:>10} {:>10}",
        row.method.name(),
        row.precision.to_string(),
        row.batch,
        ours.samples_per_second,
        torch_rate,
        ratio,
        gflops,
        100.0 * gflops / peak,
        mib(Some(ours)),
        mib(theirs)
    );
    let _ = std::io::stdout().flush();
}

/// Measures the best f32 GEMM rate of [`PEAK_REPEATS`] square products on `threads` threads, in
/// GFLOP/s.
fn measure_peak_gflops(threads: usize) -> Result<f64> {
    let pool = super::worker_pool(threads)?;
    let n = PEAK_SIZE;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; n * n];
    let cpu = Cpu::new(threads);
    let best = pool.install(|| {
        let mut best = f64::INFINITY;
        for _ in 0..PEAK_REPEATS {
            let started = Instant::now();
            cpu.gemm(
                Transpose::No,
                Transpose::No,
                n,
                n,
                n,
                1.0,
                &a,
                &a,
                0.0,
                &mut c,
            );
            best = best.min(started.elapsed().as_secs_f64());
        }
        best
    });
    Ok(2.0 * (n * n * n) as f64 / best / 1e9)
}

/// One configuration of the benchmark, apart from gradus's precision.
struct Config {
    model: BenchModel,
    batch: usize,
    method: BenchMethod,
}

fn run_ours(
    dir: &Path,
    config: &Config,
    precision: Precision,
    args: &ModelArgs,
) -> Result<RunResult> {
    let exe = std::env::current_exe().context("failed to find this program's path")?;
    let mut command = Command::new(exe);
    command
        .arg("bench")
        .arg("worker")
        .arg("--data-dir")
        .arg(dir);
    command.args(["--model", config.model.name()]);
    command.args(["--batch", &config.batch.to_string()]);
    command.args(["--method", config.method.name()]);
    command.args(["--threads", &args.threads.to_string()]);
    command.args(["--warmup-steps", &args.warmup_steps.to_string()]);
    command.args(["--precision", &precision.to_string()]);
    command.args(["--batch-groups", &args.batch_groups.to_string()]);
    run_child(command, "gradus worker")
}

fn run_torch(dir: &Path, config: &Config, args: &ModelArgs) -> Result<RunResult> {
    let mut command = Command::new("bash");
    command.arg(&args.torch_script).arg("--data-dir").arg(dir);
    command.args(["--model", config.model.name()]);
    command.args(["--features", &FEATURES.to_string()]);
    let hidden = model::MLP_HIDDEN.map(|units| units.to_string()).join(",");
    command.args(["--hidden", &hidden]);
    command.args(["--classes", &CLASSES.to_string()]);
    command.args(["--batch", &config.batch.to_string()]);
    command.args(["--method", config.method.name()]);
    command.args(["--lr", &config.method.learning_rate().to_string()]);
    command.args(["--threads", &args.threads.to_string()]);
    command.args(["--warmup-steps", &args.warmup_steps.to_string()]);
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        command.env("OMP_WAIT_POLICY", TORCH_WAIT_POLICY);
    }
    run_child(command, "PyTorch benchmark")
}

/// Runs a child that prints a [`RunResult`] as its last stdout line.
fn run_child(mut command: Command, program: &str) -> Result<RunResult> {
    let output = command
        .output()
        .with_context(|| format!("failed to start the {program}: {command:?}"))?;
    if !output.status.success() {
        bail!(
            "the {program} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .with_context(|| format!("the {program} printed {line:?}, expected one JSON result line"))
}
