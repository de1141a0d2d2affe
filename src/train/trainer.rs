//! The training loop: epochs of method steps, validation, early stopping, checkpoints and
//! the run folder's files.

use super::checkpoint::{self, Checkpoint, Progress};
use super::config::{RunConfig, MAX_BATCH_GROUPS};
use super::evaluate::{evaluate, mean_image_error, EvalSpec, Metrics, Prepared};
use super::files::{append_line_atomic, create_run_dir, write_atomic, write_json};
use super::model;
use super::prepare::{setup, Setup};
use super::ranks::{broadcast_epoch_scores, gather_method_state, sum_count};
use crate::data::{Batches, TaskKind};
use crate::dist::{Collective, Single};
use crate::methods::{Batching, LrSchedule, Method, MethodState, StepContext};
use crate::nn::{Mode, Network, Workspace};
use crate::objective::{BatchGroups, Counter, GroupScratch, GroupedObjective};
use crate::tensor::{flush_denormals, Cpu};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean of the step losses of this epoch.
    pub train_loss: f64,
    /// Validation metrics; the loss is NaN when there is no validation part.
    pub validation: Metrics,
    /// Learning-rate multiplier at the end of the epoch.
    pub lr_factor: f64,
    /// Seconds since the run started, steps and evaluation included.
    pub elapsed_seconds: f64,
    /// Evaluations so far, in forward-sample units.
    pub evaluations: u64,
    /// Gradient evaluations so far.
    pub gradient_evaluations: u64,
    /// Steps skipped so far because of a non-finite gradient.
    pub skipped_steps: u64,
}

/// The final record of a run, written as `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Method name.
    pub method: String,
    /// Task.
    pub task: TaskKind,
    /// Data source.
    pub data: String,
    /// Epochs run.
    pub epochs: usize,
    /// Epoch whose parameters were kept.
    pub best_epoch: usize,
    /// Wall time of the whole run, data loading included.
    pub wall_seconds: f64,
    /// Loss on the whole training part with the kept parameters.
    pub train_loss: f64,
    /// Validation loss with the kept parameters.
    pub validation_loss: f64,
    /// Validation accuracy with the kept parameters (classification).
    #[serde(default)]
    pub validation_accuracy: Option<f64>,
    /// Test loss.
    pub test_loss: f64,
    /// Test accuracy (classification).
    pub test_accuracy: Option<f64>,
    /// Test RMSE in target units (regression).
    pub test_rmse: Option<f64>,
    /// Test R² (regression).
    pub test_r2: Option<f64>,
    /// Reconstruction error on the whole training part with the final parameters, not the
    /// kept ones (autoencoder): the mean squared error per element, whatever the loss.
    #[serde(default)]
    pub final_train_reconstruction_error: Option<f64>,
    /// Test reconstruction error (autoencoder).
    pub test_reconstruction_error: Option<f64>,
    /// Reconstruction error of predicting the training mean (autoencoder).
    pub baseline_reconstruction_error: Option<f64>,
    /// Training samples processed per second of step time.
    pub samples_per_second: f64,
    /// Gradient evaluations.
    pub gradient_evaluations: u64,
    /// Evaluations in forward-sample units.
    pub evaluations: u64,
    /// Steps skipped because of a non-finite gradient.
    pub skipped_steps: u64,
    /// Trainable parameters.
    pub parameters: usize,
    /// Samples in the training, validation and test parts.
    pub samples: [usize; 3],
    /// The seed.
    pub seed: u64,
    /// Groups that each batch was split into over all ranks.
    #[serde(default = "one_group")]
    pub batch_groups: usize,
    /// The `--batch-groups` value with which one process computes the same sums as this
    /// run. `None` when no value does: with a group count that is no power of two on some
    /// rank counts, with batch normalisation on several ranks, or with more groups than one
    /// process accepts.
    #[serde(default)]
    pub matching_batch_groups: Option<usize>,
}

fn one_group() -> usize {
    1
}

/// Receives progress from the loop; the binary draws bars and logs through it.
pub trait Observer {
    /// Called once before the first epoch with the epoch count and steps per epoch.
    fn on_start(&mut self, _epochs: usize, _steps_per_epoch: usize, _setup: &Setup) {}
    /// Called after every step with its loss.
    fn on_step(&mut self, _epoch: usize, _loss: f64) {}
    /// Called after every epoch.
    fn on_epoch(&mut self, _record: &EpochRecord) {}
    /// Called with the current parameters once before the first epoch (`epoch` 0) and after
    /// every epoch (`epoch` = epochs done), for observers that record the descent path.
    fn on_params(&mut self, _epoch: usize, _params: &[f32]) {}
}

/// An observer that does nothing.
pub struct Silent;

impl Observer for Silent {}

/// Where a run writes and whether it continues an earlier one.
pub struct RunOptions {
    /// The run folder.
    pub out: PathBuf,
    /// Continue the run in `out` from its checkpoint.
    pub resume: bool,
    /// A stop request: when the value becomes nonzero, the loop writes a checkpoint after the
    /// current step and returns [`Error::Interrupted`] carrying the value as the signal
    /// number. The command line stores SIGTERM's or SIGINT's number here.
    pub stop: Option<Arc<AtomicUsize>>,
}

/// Runs training as configured and writes the run folder.
pub fn train(
    config: &RunConfig,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<Summary> {
    let started = Instant::now();
    let run = run_epochs(config, options, observer, &Single, started)?;
    run.finish(&options.out, started)
}

/// Runs training data-parallel on the ranks of `group`, each on its shard of every batch.
///
/// Every rank must call this with the same config and options. Rank 0 writes the run folder
/// and returns the summary; the other ranks write nothing and return `None`. With the same
/// seed and batch size the losses equal those of [`train`] up to the order of floating-point
/// sums, except with dropout (masks follow a sample's place in its rank's shard) and batch
/// normalisation (statistics of each rank's shard).
pub fn train_distributed(
    config: &RunConfig,
    options: &RunOptions,
    observer: &mut dyn Observer,
    group: &dyn Collective,
) -> Result<Option<Summary>> {
    let started = Instant::now();
    let run = run_epochs(config, options, observer, group, started)?;
    if group.is_root() {
        run.finish(&options.out, started).map(Some)
    } else {
        Ok(None)
    }
}

/// Prepares the run and trains it for its epochs.
fn run_epochs<'c>(
    config: &'c RunConfig,
    options: &RunOptions,
    observer: &mut dyn Observer,
    group: &'c dyn Collective,
    started: Instant,
) -> Result<Run<'c>> {
    config.validate()?;
    let setup = setup(config)?;
    check_batches(config, setup.train.len)?;
    let dir = options.out.as_path();
    let restored = if options.resume {
        // NOTE: every rank reads the checkpoint, so a resumed multi-host run needs the run
        // folder on a shared file system.
        let mut restored = checkpoint::load(dir)?;
        continue_finished_run(dir, config, &mut restored.progress);
        Some(restored)
    } else {
        let created = if group.is_root() {
            create_run_dir(dir)
                .and_then(|()| write_atomic(&dir.join("config.toml"), config.to_toml()?.as_bytes()))
        } else {
            Ok(())
        };
        // The ranks agree here, so that no rank trains on while rank 0 has stopped.
        if group.any(created.is_err()) {
            created?;
            return Err(Error::Data(format!(
                "rank 0 failed to create the run folder {}; see its error",
                dir.display()
            )));
        }
        None
    };
    let mut run = Run::new(config, setup, restored, group)?;
    run.stop = options.stop.clone();
    if options.resume && group.is_root() {
        // The folder's config records the settings that the run continues with, once
        // `Run::new` has accepted them.
        write_atomic(&dir.join("config.toml"), config.to_toml()?.as_bytes())?;
        drop_unsaved_records(dir, run.progress.epochs_done)?;
    }
    observer.on_start(config.training.epochs, run.steps_per_epoch(), &run.setup);
    observer.on_params(run.progress.epochs_done, &run.params);
    run.train_epochs(dir, observer, started)?;
    Ok(run)
}

/// State of a run in progress.
struct Run<'c> {
    config: &'c RunConfig,
    setup: Setup,
    network: Network<f32>,
    method: Box<dyn Method<f32>>,
    params: Vec<f32>,
    best_params: Vec<f32>,
    best_buffers: Vec<f32>,
    progress: Progress,
    counter: Arc<Counter>,
    eval_ws: Workspace<f32>,
    schedule: LrSchedule,
    /// The ranks of a data-parallel run; [`Single`] otherwise.
    group: &'c dyn Collective,
    stop: Option<Arc<AtomicUsize>>,
}

impl<'c> Run<'c> {
    fn new(
        config: &'c RunConfig,
        setup: Setup,
        restored: Option<Checkpoint>,
        group: &'c dyn Collective,
    ) -> Result<Self> {
        let threads = match config.training.threads {
            0 => rayon::current_num_threads(),
            n => n,
        };
        let precision = config.training.precision;
        if !precision.is_supported() {
            tracing::warn!(%precision, "this CPU lacks AVX-512 BF16, so products run in f32");
        }
        let kernels = Arc::new(Cpu::new(threads).with_precision(precision));
        let network = Network::new(&setup.info.input_shape, &setup.info.layers, kernels)?;
        let mut method = config.method.build::<f32>()?;
        let (params, best_params, best_buffers, progress) = match restored {
            Some(c) => {
                if c.params.len() != network.param_count() {
                    return Err(Error::Data(format!(
                        "checkpoint has {} parameters but the config builds {}; resume with the \
                         run's own config.toml",
                        c.params.len(),
                        network.param_count()
                    )));
                }
                method.load_state(&c.method)?;
                let [buffers, best_buffers] = c.buffers;
                network.set_buffers(&buffers)?;
                (c.params, c.best_params, best_buffers, c.progress)
            }
            None => {
                let p = network.init_params(config.model.init, config.training.seed);
                let progress = Progress {
                    best_loss: f64::INFINITY,
                    ..Progress::default()
                };
                (p.clone(), p, network.buffers(), progress)
            }
        };
        let counter = Arc::new(Counter::default());
        counter.add(progress.evaluations);
        let eval_ws = network.workspace(super::evaluate::EVAL_BATCH.min(setup.train.len.max(1)));
        let t = &config.training;
        let schedule = LrSchedule {
            schedule: t.schedule.schedule.resolve(t.epochs),
            warmup_steps: t.schedule.warmup_steps,
        };
        let mut run = Run {
            schedule,
            config,
            setup,
            network,
            method,
            params,
            best_params,
            best_buffers,
            progress,
            counter,
            eval_ws,
            group,
            stop: None,
        };
        run.check_resumed_groups()?;
        run.progress.batch_groups = Some(run.effective_groups());
        run.synchronize()?;
        Ok(run)
    }

    /// Rejects, under `deterministic`, a resume that would split batches into other groups
    /// than the checkpoint's run did (another rank count or `--batch-groups`). The resumed
    /// run would then differ from an uninterrupted one. Without `deterministic` it warns.
    fn check_resumed_groups(&self) -> Result<()> {
        let (Some(before), now) = (self.progress.batch_groups, self.effective_groups()) else {
            return Ok(());
        };
        if before == now {
            return Ok(());
        }
        let ranks = self.group.size();
        if self.config.training.deterministic {
            return Err(Error::setting(
                "batch-groups",
                now,
                &format!(
                    "must equal the checkpoint's {before} groups per batch under \
                     --deterministic; resume with the interrupted run's rank count and \
                     --batch-groups (this resume has {ranks} rank(s))"
                ),
            ));
        }
        tracing::warn!(
            before,
            now,
            ranks,
            "the resumed run splits batches into other groups than the interrupted one, so \
             its results will differ from an uninterrupted run's"
        );
        Ok(())
    }

    /// Copies rank 0's parameters and network buffers to the other ranks.
    ///
    /// Ranks apply the same updates from the same sums, but the MPI standard does not
    /// require an allreduce to give every rank bitwise the same result, and batch
    /// normalisation's running statistics come from each rank's shard. Called before the
    /// first step and at the end of every epoch.
    fn synchronize(&mut self) -> Result<()> {
        if self.group.size() == 1 {
            return Ok(());
        }
        let before = self.params.clone();
        self.group.broadcast_f32(&mut self.params);
        if before != self.params {
            tracing::debug!(
                rank = self.group.rank(),
                "parameters differed from rank 0's"
            );
        }
        let mut buffers = self.network.buffers();
        if !buffers.is_empty() {
            self.group.broadcast_f32(&mut buffers);
            self.network.set_buffers(&buffers)?;
        }
        Ok(())
    }

    fn steps_per_epoch(&self) -> usize {
        match self.method.batching() {
            Batching::FullBatch => 1,
            Batching::MiniBatch => {
                let (n, b) = (self.setup.train.len, self.config.training.batch_size);
                if self.config.training.drop_last {
                    n / b
                } else {
                    n.div_ceil(b)
                }
            }
        }
    }

    fn evaluate(&mut self, params: &[f32], part: Part) -> Metrics {
        let spec = EvalSpec {
            task: self.setup.info.task,
            loss: self.setup.info.loss,
            target_std: &self.setup.info.target_std,
        };
        let data = match part {
            Part::Train => &self.setup.train,
            Part::Validation => &self.setup.validation,
            Part::Test => &self.setup.test,
        };
        evaluate(&self.network, params, data, &spec, &mut self.eval_ws)
    }

    fn train_epochs(
        &mut self,
        dir: &Path,
        observer: &mut dyn Observer,
        started: Instant,
    ) -> Result<()> {
        // The training data moves out for the loop, because steps borrow the run mutably.
        let train = std::mem::take(&mut self.setup.train);
        let result = self.train_epochs_on(&train, dir, observer, started);
        self.setup.train = train;
        result
    }

    fn train_epochs_on(
        &mut self,
        train: &Prepared,
        dir: &Path,
        observer: &mut dyn Observer,
        started: Instant,
    ) -> Result<()> {
        flush_denormals();
        let t = &self.config.training;
        let (batch_size, epochs, seed) = (t.batch_size, t.epochs, t.seed);
        let (din, dout) = (self.network.input_size(), self.network.output_size());
        let full = self.method.batching() == Batching::FullBatch;
        let (rank, ranks) = (self.group.rank(), self.group.size());
        let groups = self.requested_groups();
        let capacity = if full {
            train.len.div_ceil(ranks)
        } else {
            batch_size
        };
        let mut xb = vec![0.0f32; capacity * din];
        let mut tb = vec![0.0f32; capacity * dout];
        let mut scratch = Some(GroupScratch::default());
        let mut batches = Batches::new(train.len, batch_size, t.drop_last, None)?;
        let mut last_checkpoint = Instant::now();

        while self.progress.epochs_done < epochs && !self.progress.finished {
            let epoch = self.progress.epochs_done;
            batches.reshuffle(epoch_seed(seed, epoch));
            let mut lr_factor = self.context(epoch).lr_factor;
            let epoch_batches = if full { 1 } else { batches.len() };
            // A resumed run skips the batches that its checkpoint had already stepped on.
            for b in self.progress.batches_done..epoch_batches {
                let step_started = Instant::now();
                let ctx = self.context(epoch);
                lr_factor = ctx.lr_factor;
                let (n, loss) = if full {
                    let layout = BatchGroups::new(train.len, groups, ranks);
                    let part = layout.rank_samples(rank);
                    let x = &train.x[part.start * din..part.end * din];
                    let t = &train.t[part.start * dout..part.end * dout];
                    let whole = Some((&train.x[..], &train.t[..]));
                    (
                        train.len,
                        self.step(x, t, whole, layout, &ctx, &mut scratch)?,
                    )
                } else {
                    let indices = batches.iter().nth(b).unwrap_or_default();
                    let n = indices.len();
                    // Every rank shuffles alike, so each takes its part of the same batch.
                    let layout = BatchGroups::new(n, groups, ranks);
                    let part = layout.rank_samples(rank);
                    let m = part.len();
                    gather(train, &indices[part.clone()], din, dout, &mut xb, &mut tb);
                    let (x, t) = (&xb[..m * din], &tb[..m * dout]);
                    (n, self.step(x, t, None, layout, &ctx, &mut scratch)?)
                };
                observer.on_step(epoch, loss);
                let p = &mut self.progress;
                p.epoch_loss_sum += loss;
                p.batches_done += 1;
                p.samples += n as u64;
                p.train_seconds += step_started.elapsed().as_secs_f64();
                if self.budget_spent() {
                    break;
                }
                self.checkpoint_between_steps(dir, &mut last_checkpoint)?;
            }
            let steps = self.progress.batches_done.max(1);
            let train_loss = self.progress.epoch_loss_sum / steps as f64;
            self.progress.epoch_loss_sum = 0.0;
            self.progress.batches_done = 0;
            let budget_spent = self.budget_spent();
            self.end_epoch(dir, observer, started, train_loss, lr_factor)?;
            last_checkpoint = Instant::now();
            if budget_spent {
                tracing::info!(epoch = self.progress.epochs_done, "stopping at the budget");
                self.progress.finished = true;
            }
        }
        Ok(())
    }

    /// Writes a checkpoint after a step when the step or time interval has come, and when a
    /// stop was requested, in which case it then returns [`Error::Interrupted`].
    ///
    /// In a data-parallel run the ranks decide together, because counting evaluations for
    /// the checkpoint is a collective operation and every rank must stop at the same step.
    fn checkpoint_between_steps(&mut self, dir: &Path, last: &mut Instant) -> Result<()> {
        let t = &self.config.training;
        let signal = self.stop_signal();
        let by_steps = t
            .checkpoint_steps
            .is_some_and(|n| self.progress.steps.is_multiple_of(n));
        let by_time = t
            .checkpoint_seconds
            .is_some_and(|s| last.elapsed().as_secs_f64() >= s);
        let mut stop = signal.is_some();
        let mut wanted = stop || by_steps || by_time;

        if self.group.size() > 1 {
            let mut votes = [f64::from(u8::from(wanted)), f64::from(u8::from(stop))];
            self.group.all_reduce_sum_f64(&mut votes);
            (wanted, stop) = (votes[0] > 0.0, votes[1] > 0.0);
        }
        if !wanted {
            return Ok(());
        }

        self.fold_counters();
        let state = self.method_state();
        if self.group.is_root() {
            self.save_checkpoint(dir, state)?;
        }
        *last = Instant::now();
        if !stop {
            return Ok(());
        }

        // A rank that did not receive the signal itself reports SIGTERM, the signal that
        // launchers forward to every rank.
        Err(Error::Interrupted {
            signal: signal.unwrap_or(SIGTERM),
            epoch: self.progress.epochs_done + 1,
            batch: self.progress.batches_done,
            dir: dir.to_path_buf(),
        })
    }

    /// Returns the signal number stored in the stop flag, if a stop was requested.
    fn stop_signal(&self) -> Option<i32> {
        let stop = self.stop.as_ref()?;
        match stop.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n as i32),
        }
    }

    /// Moves the evaluation counts of the objective counter into the progress record, which
    /// checkpoints store. Evaluations count over all ranks; gradient evaluations count once
    /// per distributed gradient, which every rank counts alike.
    fn fold_counters(&mut self) {
        // The counter restarts at `progress.evaluations` after every fold.
        let units = self.counter.units() - self.progress.evaluations;
        self.progress.evaluations += sum_count(self.group, units);
        self.progress.gradient_evaluations += self.counter.gradients();
        self.counter = Arc::new(Counter::default());
        self.counter.add(self.progress.evaluations);
    }

    /// Returns whether the time or evaluation budget is used up. Time counts training steps only, not
    /// data loading or evaluation, so that methods compare on equal training time.
    ///
    /// In a data-parallel run the ranks decide together: evaluations count over all ranks,
    /// and the time is up when it is up on any rank.
    fn budget_spent(&self) -> bool {
        let t = &self.config.training;
        if t.time_limit_seconds.is_none() && t.max_evaluations.is_none() {
            return false;
        }
        let spent = self.progress.train_seconds;
        let time = t.time_limit_seconds.is_some_and(|l| spent >= l);
        // The counter restarts at `progress.evaluations` after every fold.
        let epoch_units = self.counter.units() - self.progress.evaluations;
        let mut totals = [f64::from(u8::from(time)), epoch_units as f64];
        self.group.all_reduce_sum_f64(&mut totals);
        let units = self.progress.evaluations + totals[1] as u64;
        let evaluations = t.max_evaluations.is_some_and(|m| units >= m);
        totals[0] > 0.0 || evaluations
    }

    fn context(&self, epoch: usize) -> StepContext {
        let step = self.progress.steps;
        StepContext {
            lr_factor: self.schedule.factor(step, epoch),
            step,
            epoch,
        }
    }

    /// Groups per batch before the rank count is taken into account. Batch normalisation
    /// updates the network's running statistics in every forward pass, so its batches stay
    /// whole in one process.
    fn requested_groups(&self) -> usize {
        if self.network.buffer_count() > 0 {
            1
        } else {
            self.config.training.batch_groups
        }
    }

    /// Groups per batch over all ranks.
    fn effective_groups(&self) -> usize {
        BatchGroups::effective(self.requested_groups(), self.group.size())
    }

    /// Returns the group count with which one process computes the same sums as this run.
    /// None when the ranks' sums follow the MPI library's order, when batch normalisation
    /// normalises each rank's part on its own while one process keeps batches whole, or when
    /// one process would need more than [`MAX_BATCH_GROUPS`] groups.
    fn matching_groups(&self) -> Option<usize> {
        let ranks = self.group.size();
        let groups = self.effective_groups();
        let normalises = self.network.buffer_count() > 0 && ranks > 1;
        let fixed_order = BatchGroups::new(0, self.requested_groups(), ranks).fixed_order();
        (fixed_order && !normalises && groups <= MAX_BATCH_GROUPS).then_some(groups)
    }

    /// Takes one method step on a batch and returns its loss; a non-finite loss stops the run.
    /// `x` and `t` hold this rank's part of the batch, `whole` the whole batch when at hand,
    /// and `layout` splits the whole batch.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        x: &[f32],
        t: &[f32],
        whole: Option<(&[f32], &[f32])>,
        layout: BatchGroups,
        ctx: &StepContext,
        scratch: &mut Option<GroupScratch<f32>>,
    ) -> Result<f64> {
        let seed = epoch_seed(self.config.training.seed, ctx.step as usize) ^ 0xD1B5;
        let mut objective = GroupedObjective::new(
            &self.network,
            self.setup.info.loss,
            x,
            t,
            layout,
            Mode::Train,
            seed,
            Arc::clone(&self.counter),
            self.group,
            scratch.take(),
        );
        if let Some((x, t)) = whole {
            objective = objective.with_whole_batch(x, t);
        }
        let report = self.method.step(&mut self.params, &mut objective, ctx);
        *scratch = Some(objective.into_scratch());
        let report = report?;
        self.progress.steps += 1;
        if report.skipped {
            self.progress.skipped_steps += 1;
            tracing::warn!(step = ctx.step, "skipped a step with a non-finite gradient");
        }
        if !report.loss.is_finite() {
            return Err(Error::NonFinite(format!(
                "the training loss became {} at epoch {}, step {}; the last checkpoint, if one \
                 was written, is intact. Lower the learning rate (--lr) or clip the gradient \
                 (--set clip_norm=1)",
                report.loss,
                ctx.epoch + 1,
                ctx.step + 1
            )));
        }
        self.progress.finished |= report.finished;
        Ok(report.loss)
    }

    fn end_epoch(
        &mut self,
        dir: &Path,
        observer: &mut dyn Observer,
        started: Instant,
        train_loss: f64,
        lr_factor: f64,
    ) -> Result<()> {
        self.synchronize()?;
        self.progress.epochs_done += 1;
        let epoch = self.progress.epochs_done;
        let params = std::mem::take(&mut self.params);
        let has_validation = self.setup.validation.len > 0;
        // Rank 0 evaluates, and every rank decides on its scores.
        let validation = if has_validation && self.group.is_root() {
            self.evaluate(&params, Part::Validation)
        } else {
            Metrics {
                loss: f64::NAN,
                ..Metrics::default()
            }
        };
        let (train_loss, validation) = broadcast_epoch_scores(self.group, train_loss, validation);
        // Without a validation part the training loss decides which epoch is best.
        let score = if has_validation {
            validation.loss
        } else {
            train_loss
        };
        if score < self.progress.best_loss {
            self.progress.best_loss = score;
            self.progress.best_epoch = epoch;
            self.progress.epochs_without_improvement = 0;
            self.best_params.copy_from_slice(&params);
            self.best_buffers = self.network.buffers();
        } else {
            self.progress.epochs_without_improvement += 1;
        }
        self.params = params;
        if let Some(patience) = self.config.training.patience {
            if self.progress.epochs_without_improvement >= patience {
                tracing::info!(epoch, patience, "stopping early");
                self.progress.finished = true;
            }
        }
        self.progress.finished = self.group.any(self.progress.finished);
        self.fold_counters();
        let record = EpochRecord {
            epoch,
            train_loss,
            validation,
            lr_factor,
            elapsed_seconds: started.elapsed().as_secs_f64(),
            evaluations: self.progress.evaluations,
            gradient_evaluations: self.progress.gradient_evaluations,
            skipped_steps: self.progress.skipped_steps,
        };
        let state = self.method_state();
        if self.group.is_root() {
            let line = serde_json::to_string(&record).unwrap_or_default();
            append_line_atomic(&dir.join("metrics.jsonl"), &line)?;
            self.save_checkpoint(dir, state)?;
        }
        observer.on_epoch(&record);
        observer.on_params(epoch, &self.params);
        Ok(())
    }

    /// Returns the method's state as a checkpoint stores it. Every rank must call it, because
    /// ranks that split their updates gather the state vectors that each keeps only in its
    /// part.
    fn method_state(&self) -> MethodState {
        gather_method_state(self.group, self.method.save_state(), self.params.len())
    }

    fn save_checkpoint(&mut self, dir: &Path, state: MethodState) -> Result<()> {
        self.progress.method_scalars = state.scalars.clone();
        checkpoint::save(
            dir,
            &Checkpoint {
                params: self.params.clone(),
                best_params: self.best_params.clone(),
                buffers: [self.network.buffers(), self.best_buffers.clone()],
                method: state,
                progress: self.progress.clone(),
            },
        )
    }

    fn finish(mut self, dir: &Path, started: Instant) -> Result<Summary> {
        // The final parameters go with the network's current buffers, so they come first.
        let final_train = if self.setup.info.task == TaskKind::Autoencoder {
            let params = std::mem::take(&mut self.params);
            let metrics = self.evaluate(&params, Part::Train);
            self.params = params;
            metrics.reconstruction_error
        } else {
            None
        };
        let best = std::mem::take(&mut self.best_params);
        self.network.set_buffers(&self.best_buffers)?;
        let train = self.evaluate(&best, Part::Train);
        let validation = self.evaluate(&best, Part::Validation);
        let test = self.evaluate(&best, Part::Test);
        model::save(dir, &self.setup.info, &self.network, &best)?;
        let baseline = (self.setup.info.task == TaskKind::Autoencoder)
            .then(|| mean_image_error(&self.setup.train, &self.setup.test));
        let p = &self.progress;
        let summary = Summary {
            method: self.method.name().to_string(),
            task: self.setup.info.task,
            data: self.config.data.source.clone(),
            epochs: p.epochs_done,
            best_epoch: p.best_epoch,
            wall_seconds: started.elapsed().as_secs_f64(),
            train_loss: train.loss,
            validation_loss: validation.loss,
            validation_accuracy: validation.accuracy,
            test_loss: test.loss,
            test_accuracy: test.accuracy,
            test_rmse: test.rmse,
            test_r2: test.r2,
            final_train_reconstruction_error: final_train,
            test_reconstruction_error: test.reconstruction_error,
            baseline_reconstruction_error: baseline,
            samples_per_second: p.samples as f64 / p.train_seconds.max(1e-9),
            gradient_evaluations: p.gradient_evaluations,
            evaluations: p.evaluations,
            skipped_steps: p.skipped_steps,
            parameters: self.network.param_count(),
            samples: [
                self.setup.train.len,
                self.setup.validation.len,
                self.setup.test.len,
            ],
            seed: self.config.training.seed,
            batch_groups: self.effective_groups(),
            matching_batch_groups: self.matching_groups(),
        };
        write_json(&dir.join("summary.json"), &summary)?;
        Ok(summary)
    }
}

#[derive(Clone, Copy)]
enum Part {
    Train,
    Validation,
    Test,
}

/// Lets a resumed run that had stopped early go on when the resume raises `epochs` or changes
/// `patience`, compared with the folder's `config.toml`. Otherwise it warns that there is
/// nothing left to train, so a run killed after it stopped early ends as it would have.
fn continue_finished_run(dir: &Path, config: &RunConfig, progress: &mut Progress) {
    if !progress.finished {
        return;
    }
    let saved = std::fs::read_to_string(dir.join("config.toml"))
        .ok()
        .and_then(|text| RunConfig::from_toml(&text).ok());
    let (new, epochs_done) = (&config.training, progress.epochs_done);
    let extended = saved.is_some_and(|old| {
        new.epochs > old.training.epochs || new.patience != old.training.patience
    });
    if extended && epochs_done < new.epochs {
        tracing::info!(epochs_done, "continuing a run that had stopped early");
        progress.finished = false;
        progress.epochs_without_improvement = 0;
    } else {
        tracing::warn!(
            epochs_done,
            "the run had already stopped (early stopping, its budget, or the method \
             converged); raise --epochs or change --patience to train it further"
        );
    }
}

/// Rejects a minibatch run in which `--drop-last` leaves no batch, before the run folder is
/// made, because such a run would train nothing.
fn check_batches(config: &RunConfig, samples: usize) -> Result<()> {
    let t = &config.training;
    if !t.drop_last || t.batch_size <= samples {
        return Ok(());
    }
    if config.method.build::<f32>()?.batching() == Batching::FullBatch {
        return Ok(());
    }
    Err(Error::setting(
        "batch-size",
        t.batch_size,
        &format!(
            "with --drop-last no batch fits the {samples} training samples; use a smaller \
             --batch-size or drop --drop-last"
        ),
    ))
}

/// SIGTERM's number on Linux and the BSDs.
const SIGTERM: i32 = 15;

/// Removes the lines of `metrics.jsonl` for epochs after `epochs_done`: a run killed between
/// appending an epoch's line and writing its checkpoint repeats that epoch when resumed.
fn drop_unsaved_records(dir: &Path, epochs_done: usize) -> Result<()> {
    let path = dir.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let mut kept = String::with_capacity(text.len());
    let mut dropped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // Only the epoch field is read, because serde_json writes a NaN loss as null.
        let epoch = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|record| record.get("epoch")?.as_u64());
        match epoch {
            Some(e) if e as usize <= epochs_done => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => dropped += 1,
        }
    }
    if dropped > 0 {
        tracing::info!(
            dropped,
            "removed metrics lines written after the last checkpoint"
        );
        write_atomic(&path, kept.as_bytes())?;
    }
    Ok(())
}

/// Mixes the run seed with an epoch or step number (SplitMix64 finaliser).
fn epoch_seed(seed: u64, n: usize) -> u64 {
    let mut z = seed.wrapping_add((n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Copies the rows `indices` of a prepared set into the batch buffers.
fn gather(
    data: &Prepared,
    indices: &[usize],
    din: usize,
    dout: usize,
    x: &mut [f32],
    t: &mut [f32],
) {
    for (k, &i) in indices.iter().enumerate() {
        x[k * din..(k + 1) * din].copy_from_slice(&data.x[i * din..(i + 1) * din]);
        t[k * dout..(k + 1) * dout].copy_from_slice(&data.t[i * dout..(i + 1) * dout]);
    }
}
