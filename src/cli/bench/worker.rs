//! One configuration of `gradus bench mlp` or `gradus bench cnn`, run in its own process so
//! that its peak RSS is its own.

use super::data::BenchData;
use super::model::BenchModel;
use super::{BenchMethod, RunResult, CLASSES, FEATURES, SEED};
use anyhow::Result;
use clap::Args;
use gradus::methods::{MethodSpec, StepContext};
use gradus::nn::{Init, Loss, Mode, Network};
use gradus::objective::{Counter, GroupedObjective, DEFAULT_BATCH_GROUPS};
use gradus::tensor::{flush_denormals, Cpu, Precision};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Options of the hidden `gradus bench worker` command, which `gradus bench mlp` and
/// `gradus bench cnn` run.
#[derive(Args)]
pub(super) struct WorkerArgs {
    /// Folder with x.f32, y.u8 and order.u32.
    #[arg(long)]
    pub(super) data_dir: PathBuf,
    #[arg(long)]
    pub(super) model: BenchModel,
    #[arg(long)]
    pub(super) batch: usize,
    #[arg(long)]
    pub(super) method: BenchMethod,
    #[arg(long)]
    pub(super) threads: usize,
    #[arg(long)]
    pub(super) warmup_steps: usize,
    #[arg(long, default_value = "f32")]
    pub(super) precision: Precision,
    #[arg(long, default_value_t = DEFAULT_BATCH_GROUPS)]
    pub(super) batch_groups: usize,
}

pub(super) fn run_worker(args: WorkerArgs) -> Result<()> {
    let data = BenchData::read(&args.data_dir, FEATURES)?;
    let pool = super::super::worker_pool(args.threads)?;
    let mut result = pool.install(|| train_epoch(&data, &args))?;
    result.peak_rss_bytes = peak_rss_bytes();
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Trains the benchmark model for the warm-up steps and then one timed epoch, in the same
/// steps as `gradus train`: copy the batch, build the objective, take a method step.
fn train_epoch(data: &BenchData, args: &WorkerArgs) -> Result<RunResult> {
    flush_denormals();
    let specs = args.model.layers();
    let kernels = Arc::new(Cpu::new(args.threads).with_precision(args.precision));
    let network = Network::<f32>::new(&args.model.input_shape(), &specs, kernels)?;
    let mut params = network.init_params(Init::Auto, SEED);
    let mut spec = MethodSpec::default_for(args.method.name())?;
    spec.set_learning_rate(args.method.learning_rate())?;
    let mut method = spec.build::<f32>()?;
    let counter = Arc::new(Counter::default());

    let batch = args.batch;
    let mut scratch = None;
    let mut xb = vec![0.0f32; batch * FEATURES];
    let mut tb = vec![0.0f32; batch * CLASSES];
    let batches: Vec<&[usize]> = data.order.chunks(batch).collect();
    let mut step = |indices: &[usize], index: usize| -> Result<f64> {
        let n = indices.len();
        tb.fill(0.0);
        for (k, &i) in indices.iter().enumerate() {
            xb[k * FEATURES..(k + 1) * FEATURES]
                .copy_from_slice(&data.x[i * FEATURES..(i + 1) * FEATURES]);
            tb[k * CLASSES + data.labels[i] as usize] = 1.0;
        }
        let mut objective = GroupedObjective::single(
            &network,
            Loss::SoftmaxCrossEntropy,
            &xb[..n * FEATURES],
            &tb[..n * CLASSES],
            args.batch_groups,
            Mode::Train,
            index as u64,
            Arc::clone(&counter),
            scratch.take(),
        );
        let context = StepContext {
            step: index as u64,
            ..StepContext::default()
        };
        let report = method.step(&mut params, &mut objective, &context);
        scratch = Some(objective.into_scratch());
        Ok(report?.loss)
    };

    for i in 0..args.warmup_steps {
        step(batches[i % batches.len()], i)?;
    }
    let started = Instant::now();
    let mut loss = f64::NAN;
    for (i, indices) in batches.iter().enumerate() {
        loss = step(indices, args.warmup_steps + i)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(RunResult {
        samples_per_second: data.order.len() as f64 / seconds,
        seconds,
        peak_rss_bytes: None,
        final_loss: loss,
        torch_version: None,
    })
}

/// Returns the peak resident set size of this process from `/proc/self/status` (`VmHWM`),
/// or `None` where that file does not exist.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
