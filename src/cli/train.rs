//! `gradus train`.

use super::progress::Progress;
use anyhow::{Context, Result};
use clap::Args;
use gradus::data::{ScaleKind, TaskKind};
use gradus::nn::{Activation, Init, Loss};
use gradus::tensor::Precision;
use gradus::train::{self, RunConfig, RunOptions, Summary};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

/// Options of `gradus train`.
#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Run folder (default: runs/<timestamp>). It must not hold a run already.
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
}

/// The run options that `gradus train` and `gradus tune` share. Each one overrides the same
/// key of `--config`.
#[derive(Args)]
pub struct RunArgs {
    /// Data: digits, iris, csv:PATH or idx:DIR.
    #[arg(long)]
    data: Option<String>,
    /// CSV target column: a header name or a 0-based index (default: the last column).
    #[arg(long)]
    target: Option<String>,
    /// The CSV file has a header row (detected when neither --header nor --no-header is given).
    #[arg(long, conflicts_with = "no_header")]
    header: bool,
    /// The CSV file has no header row.
    #[arg(long)]
    no_header: bool,
    /// Task: classify, regress or autoencoder.
    #[arg(long)]
    task: Option<TaskKind>,
    /// Hidden layer sizes, comma-separated, for example 64,32 (input and output sizes come
    /// from the data). For an autoencoder: the encoder, ending with the code size.
    #[arg(long, value_delimiter = ',')]
    layers: Option<Vec<usize>>,
    /// Model as a layer list, for example
    /// conv:32x3x3,relu,maxpool:2,conv:64x3x3,relu,maxpool:2,flatten,dense:128,relu
    /// (replaces --layers; the output layer comes from the data).
    #[arg(long)]
    model: Option<String>,
    /// Autoencoder decoder sizes, comma-separated (default: the encoder mirrored).
    #[arg(long, value_delimiter = ',')]
    decoder: Option<Vec<usize>>,
    /// Hidden activation: relu, leaky-relu, tanh, sigmoid, gelu, softplus or identity.
    #[arg(long)]
    activation: Option<Activation>,
    /// Dropout rate after each hidden activation, in [0, 1).
    #[arg(long)]
    dropout: Option<f64>,
    /// Weight initialisation: auto, glorot-uniform, glorot-normal, he-uniform, he-normal or
    /// sparse (15 nonzero incoming weights per unit).
    #[arg(long)]
    init: Option<Init>,
    /// Loss: cross-entropy, mse or bce (default: cross-entropy to classify, mse otherwise).
    #[arg(long)]
    loss: Option<Loss>,
    /// Feature scaling: standardize, min-max or none.
    #[arg(long)]
    scale: Option<ScaleKind>,
    /// Fraction of the training data held out for validation.
    #[arg(long)]
    validation_fraction: Option<f64>,
    /// Fraction held out for testing when the data has no test split.
    #[arg(long)]
    test_fraction: Option<f64>,
    /// Training method (see the README for the list).
    #[arg(long)]
    method: Option<String>,
    /// Learning rate.
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Hessian-free's inner solver: cg, minres, gmres, bicg or bicgstab.
    #[arg(long)]
    krylov: Option<String>,
    /// Hessian-free's curvature matrix: gauss-newton or hessian.
    #[arg(long)]
    curvature: Option<String>,
    /// A method setting as KEY=VALUE, for example beta1=0.95; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Samples per minibatch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Maximum number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Stop after this many epochs without a better validation loss (0: never).
    #[arg(long)]
    patience: Option<usize>,
    /// Stop training after this many seconds (checked after every step).
    #[arg(long)]
    time_limit: Option<f64>,
    /// Stop after this many evaluations, in forward passes of one sample.
    #[arg(long)]
    max_evaluations: Option<u64>,
    /// Drop the last incomplete batch of each epoch.
    #[arg(long)]
    drop_last: bool,
    /// Split each batch into this many groups (default 2) that run in parallel and are added
    /// in a fixed order. With a power of two, an mpirun job gives the same numbers as one
    /// process with the group count the job reports.
    #[arg(long)]
    batch_groups: Option<usize>,
    /// Learning-rate schedule: cosine (over the run, the default), cosine:EPOCHS, constant,
    /// step:EPOCHS:GAMMA or exponential:GAMMA.
    #[arg(long)]
    schedule: Option<String>,
    /// Linear learning-rate warm-up over this many steps.
    #[arg(long)]
    warmup_steps: Option<usize>,
    /// Seed for splitting, shuffling, initialisation and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Under mpirun or srun: seconds a rank waits for the others in one collective operation
    /// before it aborts the job (default 300).
    #[arg(long, value_name = "SECONDS")]
    rank_timeout: Option<f64>,
    /// Operand precision of the matrix products: f32, or bf16 with f32 sums and f32 weights
    /// (needs AVX-512 BF16; f32 elsewhere).
    #[arg(long)]
    precision: Option<Precision>,
    /// Also write a checkpoint every N steps (for example 500) or every duration (90s, 10m,
    /// 1h); one is always written after each epoch.
    #[arg(long, value_name = "STEPS|DURATION")]
    checkpoint_every: Option<String>,
    /// Reject settings whose results depend on timing (--time-limit), so that a resumed run
    /// ends with the same parameters as an uninterrupted one with the same thread count.
    #[arg(long)]
    deterministic: bool,
    /// TOML config file; the options above override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl RunArgs {
    /// Reads `--config` (or the default config without one) and applies the other options.
    pub fn into_config(self) -> Result<RunConfig> {
        let mut config = match &self.config {
            Some(path) => {
                read_config(path).with_context(|| format!("in config file {}", path.display()))?
            }
            None => RunConfig::default(),
        };
        apply_overrides(&mut config, self)?;
        Ok(config)
    }
}

fn read_config(path: &Path) -> Result<RunConfig> {
    let text =
        std::fs::read_to_string(path).map_err(|e| gradus::Error::io("failed to read", path, e))?;
    Ok(RunConfig::from_toml(&text)?)
}

pub fn run(args: TrainArgs) -> Result<()> {
    let (config, mut options) = build_config(args)?;
    options.stop = Some(stop_on_signals()?);
    let launch = gradus::dist::detect_launch();
    if super::distributed::is_launched(&launch)? {
        return super::distributed::train(&config, &options, &launch);
    }
    // The loop runs on a worker of the pool, so that its products split across the pool's
    // threads without a hand-over to another thread at every call.
    let pool = super::worker_pool(config.training.threads)?;
    let mut progress = Progress::new();
    let result = pool.install(|| train::train(&config, &options, &mut progress));
    progress.finish();
    let summary = result?;
    print_summary(&summary, &options.out);
    Ok(())
}

/// Makes SIGTERM and SIGINT store their number in the returned flag, which the training
/// loop checks after every step to write a checkpoint and stop. A second signal of the same
/// kind ends the process at once with status 128 + the signal number.
fn stop_on_signals() -> Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let signal = Arc::new(AtomicUsize::new(0));
    for number in [SIGTERM, SIGINT] {
        let requested = Arc::new(AtomicBool::new(false));
        let context = || format!("failed to install the handler for signal {number}");
        // The shutdown check runs before the flag is set, so only a repeat signal exits.
        flag::register_conditional_shutdown(number, 128 + number, Arc::clone(&requested))
            .with_context(context)?;
        flag::register(number, requested).with_context(context)?;
        flag::register_usize(number, Arc::clone(&signal), number as usize).with_context(context)?;
    }
    Ok(signal)
}

/// Rejects resume options that change the data, its split and order, or the model, when
/// the run is deterministic, because the resumed run would then differ from an
/// uninterrupted one. Other runs get a warning.
fn check_resume_changes(before: &RunConfig, after: &RunConfig) -> Result<()> {
    let (b, a) = (&before.training, &after.training);
    let changes = [
        ("the data or its split", before.data != after.data),
        ("the model", before.model != after.model),
        ("--seed", b.seed != a.seed),
        ("--batch-size", b.batch_size != a.batch_size),
        ("--drop-last", b.drop_last != a.drop_last),
    ];
    let changed: Vec<&str> = changes
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| *name)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let list = changed.join(", ");
    if a.deterministic {
        anyhow::bail!(
            "invalid resume of a deterministic run: it changes {list}, so it would not end as \
             the uninterrupted run; resume without those options"
        );
    }
    tracing::warn!(
        "this resume changes {list}, so the run will not end as an uninterrupted one would"
    );
    Ok(())
}

fn build_config(args: TrainArgs) -> Result<(RunConfig, RunOptions)> {
    match args.resume {
        Some(dir) => {
            // A resumed run starts from its own config.toml, so `--config` is ignored.
            let mut config = read_config(&dir.join("config.toml"))?;
            let before = config.clone();
            apply_overrides(&mut config, args.run)?;
            // The folder's config stores the absolute path, so a relative `--data` naming
            // the same files must compare equal to it.
            absolute_data_path(&mut config);
            check_resume_changes(&before, &config)?;
            let options = RunOptions {
                out: dir,
                resume: true,
                stop: None,
            };
            Ok((config, options))
        }
        None => {
            let mut config = args.run.into_config()?;
            absolute_data_path(&mut config);
            let out = args.out.unwrap_or_else(train::files::default_run_dir);
            let options = RunOptions {
                out,
                resume: false,
                stop: None,
            };
            Ok((config, options))
        }
    }
}

fn apply_overrides(config: &mut RunConfig, args: RunArgs) -> Result<()> {
    let d = &mut config.data;
    set(&mut d.source, args.data);
    if args.target.is_some() {
        d.target = args.target;
    }
    if args.header {
        d.header = Some(true);
    }
    if args.no_header {
        d.header = Some(false);
    }
    set(&mut d.task, args.task);
    set(&mut d.validation_fraction, args.validation_fraction);
    set(&mut d.test_fraction, args.test_fraction);
    if args.scale.is_some() {
        d.scale = args.scale;
    }
    let m = &mut config.model;
    if args.layers.is_some() {
        m.description = None;
        m.stack = None;
    }
    set(&mut m.layers, args.layers);
    if args.model.is_some() {
        m.description = args.model;
    }
    if args.decoder.is_some() {
        m.decoder = args.decoder;
    }
    set(&mut m.activation, args.activation);
    set(&mut m.dropout, args.dropout);
    set(&mut m.init, args.init);
    if args.loss.is_some() {
        m.loss = args.loss;
    }
    let t = &mut config.training;
    set(&mut t.batch_size, args.batch_size);
    set(&mut t.batch_groups, args.batch_groups);
    set(&mut t.epochs, args.epochs);
    set(&mut t.seed, args.seed);
    set(&mut t.threads, args.threads);
    set(&mut t.precision, args.precision);
    set(&mut t.rank_timeout_seconds, args.rank_timeout);
    if let Some(p) = args.patience {
        t.patience = (p > 0).then_some(p);
    }
    t.drop_last |= args.drop_last;
    if args.time_limit.is_some() {
        t.time_limit_seconds = args.time_limit;
    }
    if args.max_evaluations.is_some() {
        t.max_evaluations = args.max_evaluations;
    }
    if let Some(s) = args.schedule {
        t.schedule.schedule = s.parse()?;
    }
    set(&mut t.schedule.warmup_steps, args.warmup_steps);
    if let Some(text) = &args.checkpoint_every {
        match parse_checkpoint_interval(text)? {
            CheckpointInterval::Steps(n) => t.checkpoint_steps = Some(n),
            CheckpointInterval::Seconds(s) => t.checkpoint_seconds = Some(s),
        }
    }
    t.deterministic |= args.deterministic;
    if let Some(name) = args.method {
        config.method = gradus::methods::MethodSpec::default_for(&name)?;
    }
    if let Some(lr) = args.lr {
        config.method.set_learning_rate(lr)?;
    }
    if let Some(k) = &args.krylov {
        config.method.set("krylov", &format!("{k:?}"))?;
    }
    if let Some(c) = &args.curvature {
        config.method.set("curvature", &format!("{c:?}"))?;
    }
    for setting in &args.settings {
        let (key, value) = setting.split_once('=').ok_or_else(|| {
            gradus::Error::setting("set", setting, "expected KEY=VALUE, for example beta1=0.95")
        })?;
        config.method.set(key.trim(), value.trim())?;
    }
    Ok(())
}

/// Stores a CSV or IDX path as an absolute path, so that `--resume` and
/// `--config DIR/config.toml` find the data from any working folder. A path that does not
/// exist stays as typed, and loading the data reports it.
fn absolute_data_path(config: &mut RunConfig) {
    let source = &mut config.data.source;
    for prefix in ["csv:", "idx:"] {
        if let Some(path) = source.strip_prefix(prefix) {
            if let Ok(absolute) = std::fs::canonicalize(path) {
                *source = format!("{prefix}{}", absolute.display());
            }
            return;
        }
    }
}

enum CheckpointInterval {
    Steps(u64),
    Seconds(f64),
}

/// Parses `500` as steps and `90s`, `10m` or `1h` as a duration.
fn parse_checkpoint_interval(text: &str) -> Result<CheckpointInterval> {
    let invalid = || {
        gradus::Error::setting(
            "checkpoint-every",
            text,
            "expected a step count such as 500 or a duration such as 90s, 10m or 1h",
        )
    };
    let text = text.trim();
    let unit = match text.chars().last() {
        Some('s') => 1.0,
        Some('m') => 60.0,
        Some('h') => 3600.0,
        _ => {
            let steps = text.parse::<u64>().map_err(|_| invalid())?;
            return Ok(CheckpointInterval::Steps(steps));
        }
    };
    let number: f64 = text[..text.len() - 1].parse().map_err(|_| invalid())?;
    Ok(CheckpointInterval::Seconds(number * unit))
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *target = v;
    }
}

pub(super) fn print_summary(s: &Summary, out: &std::path::Path) {
    println!(
        "{} on {}: {} epochs (best {}), {:.1} s, {:.0} samples/s",
        s.method, s.data, s.epochs, s.best_epoch, s.wall_seconds, s.samples_per_second
    );
    println!(
        "train loss {:.4}, validation loss {:.4}, test loss {:.4}",
        s.train_loss, s.validation_loss, s.test_loss
    );
    if let Some(a) = s.validation_accuracy {
        println!("validation accuracy {a:.4}");
    }
    if let Some(a) = s.test_accuracy {
        println!("test accuracy {a:.4}");
    }
    if let (Some(rmse), Some(r2)) = (s.test_rmse, s.test_r2) {
        println!("test RMSE {rmse:.4}, test R² {r2:.4}");
    }
    if let Some(e) = s.test_reconstruction_error {
        let baseline = s.baseline_reconstruction_error.unwrap_or(f64::NAN);
        println!("test reconstruction error {e:.5} (mean image: {baseline:.5})");
    }
    println!("run folder: {}", out.display());
}
