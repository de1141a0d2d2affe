//! `gradus compare`.

use anyhow::{Context, Result};
use clap::Args;
use gradus::compare::{self, Budget, CompareConfig, CompareProgress};
use gradus::methods::MethodSpec;
use gradus::nn::Activation;
use gradus::train::{EpochRecord, RunConfig};
use std::path::PathBuf;
use std::time::Instant;

/// Options of `gradus compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// Data: digits, iris, csv:PATH or idx:DIR.
    #[arg(long)]
    data: String,
    /// Model as a layer list, for example dense:64,relu (the output layer comes from the data).
    #[arg(long, conflicts_with = "layers")]
    model: Option<String>,
    /// Hidden layer sizes, comma-separated, for example 64,32.
    #[arg(long, value_delimiter = ',')]
    layers: Option<Vec<usize>>,
    /// Hidden activation: relu, leaky-relu, tanh, sigmoid, gelu, softplus or identity.
    #[arg(long)]
    activation: Option<Activation>,
    /// Methods to compare, comma-separated, for example sgd,adam,hessian-free.
    #[arg(long, value_delimiter = ',', required = true)]
    methods: Vec<String>,
    /// Budget of each run: seconds of training time (30s), epochs (20e or 20epochs) or
    /// evaluations in forward-sample units (1e6 or 2e6evals).
    #[arg(long)]
    budget: Budget,
    /// Number of seeds per method; seeds 0, 1, ... are used.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Output folder; it must not exist or must be empty.
    #[arg(long)]
    out: PathBuf,
    /// TOML file with per-method settings, for example `[methods.adam]` then `lr = 0.01`.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Training loss for the time-to-target column (default: 1.1 times the largest of the
    /// runs' lowest epoch training losses, which every run reaches).
    #[arg(long)]
    target_loss: Option<f64>,
    /// Samples per minibatch for minibatch methods.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Points per side of the loss grid under the descent paths.
    #[arg(long, default_value_t = 25)]
    grid_size: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: CompareArgs) -> Result<()> {
    let mut base = RunConfig::default();
    base.data.source = args.data.clone();
    if let Some(model) = args.model {
        base.model.description = Some(model);
    }
    if let Some(layers) = args.layers {
        base.model.layers = layers;
    }
    if let Some(activation) = args.activation {
        base.model.activation = activation;
    }
    if let Some(b) = args.batch_size {
        base.training.batch_size = b;
    }
    if let Some(threads) = args.threads {
        super::check_threads(threads)?;
        base.training.threads = threads;
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("failed to start the worker threads")?;
    }
    let mut methods = Vec::new();
    for name in &args.methods {
        if methods
            .iter()
            .any(|(n, _): &(String, MethodSpec)| n == name)
        {
            anyhow::bail!("method {name} is listed twice in --methods");
        }
        methods.push((name.clone(), MethodSpec::default_for(name)?));
    }
    if let Some(path) = &args.settings {
        let text = std::fs::read_to_string(path)
            .map_err(|e| gradus::Error::io("failed to read", path, e))?;
        compare::read_settings(&text, &mut methods)
            .with_context(|| format!("in settings file {}", path.display()))?;
    }
    if args.grid_size < 2 {
        anyhow::bail!("--grid-size must be at least 2, got {}", args.grid_size);
    }
    let config = CompareConfig {
        base,
        methods,
        budget: args.budget,
        seeds: args.seeds,
        out: args.out.clone(),
        target_loss: args.target_loss,
        grid_size: args.grid_size,
    };
    let started = Instant::now();
    let mut progress = StderrProgress::default();
    let (rows, target) = compare::run(&config, &mut progress)?;
    print!("{}", compare::format_table(&rows, target));
    eprintln!(
        "wrote {} in {:.1} s",
        args.out.join("report.html").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Prints one line per run and at most one epoch line every two seconds.
#[derive(Default)]
struct StderrProgress {
    last: Option<Instant>,
}

impl CompareProgress for StderrProgress {
    fn on_run_start(&mut self, index: usize, total: usize, method: &str, seed: u64) {
        eprintln!("[{}/{total}] {method}, seed {seed}", index + 1);
        self.last = Some(Instant::now());
    }

    fn on_epoch(&mut self, record: &EpochRecord) {
        if self.last.is_some_and(|t| t.elapsed().as_secs_f64() < 2.0) {
            return;
        }
        self.last = Some(Instant::now());
        eprintln!(
            "  epoch {} train loss {:.4} validation loss {:.4} {:.1} s",
            record.epoch, record.train_loss, record.validation.loss, record.elapsed_seconds
        );
    }
}
