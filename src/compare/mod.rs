//! Side-by-side comparison of training methods: every (method, seed) pair is a full training
//! run, followed by a table, curve plots, a descent-path picture and an HTML report.

pub mod landscape;
pub mod plot;
pub mod report;

use crate::methods::MethodSpec;
use crate::train::files::write_atomic;
use crate::train::{self, EpochRecord, Observer, RunConfig, RunOptions, Summary};
use crate::{Error, Result};
use landscape::PathRecorder;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Epoch limit of time and evaluation budgets, which end runs by their own limit first.
const UNBOUNDED_EPOCHS: usize = 1_000_000;

/// How much each run may spend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Training wall time in seconds (`30s`) for each method, shared equally by its seeds;
    /// data loading and validation are not counted.
    Seconds(f64),
    /// Epochs (`20e` or `20epochs`).
    Epochs(usize),
    /// Evaluations in forward-sample units (`1e6` or `2e6evals`): a forward pass of one
    /// sample costs 1, a backward pass 2, a tangent pass 2 and a differentiated backward 4.
    Evaluations(u64),
}

impl FromStr for Budget {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let invalid = || {
            Error::setting(
                "budget",
                text,
                "expected seconds (30s), epochs (20e, 20epochs) or evaluations (1e6, 2e6evals)",
            )
        };
        let (number, unit) = split_unit(text);
        let value: f64 = number.parse().map_err(|_| invalid())?;
        if !(value.is_finite() && value > 0.0) {
            return Err(invalid());
        }
        match unit {
            "s" | "sec" | "seconds" => Ok(Budget::Seconds(value)),
            "e" | "epoch" | "epochs" if value.fract() == 0.0 => Ok(Budget::Epochs(value as usize)),
            "" | "evals" | "evaluations" => Ok(Budget::Evaluations(value.round() as u64)),
            _ => Err(invalid()),
        }
    }
}

/// Splits `20epochs` into `20` and `epochs`, keeping exponents such as `1e6` in the number.
fn split_unit(text: &str) -> (&str, &str) {
    let bytes = text.as_bytes();
    let mut end = 0;
    while end < bytes.len() {
        let c = bytes[end];
        let exponent = (c == b'e' || c == b'E')
            && bytes
                .get(end + 1)
                .is_some_and(|n| n.is_ascii_digit() || *n == b'-' || *n == b'+');
        if c.is_ascii_digit() || c == b'.' || exponent {
            end += if exponent { 2 } else { 1 };
        } else {
            break;
        }
    }
    (&text[..end], &text[end..])
}

impl Budget {
    /// Sets the training limits of one of `seeds` runs of a method. Early stopping is turned
    /// off so that every method spends the whole budget.
    pub fn apply(&self, config: &mut RunConfig, seeds: usize) {
        let t = &mut config.training;
        t.patience = None;
        match *self {
            Budget::Seconds(s) => {
                t.time_limit_seconds = Some(s / seeds.max(1) as f64);
                t.epochs = UNBOUNDED_EPOCHS;
            }
            Budget::Epochs(n) => t.epochs = n,
            Budget::Evaluations(n) => {
                t.max_evaluations = Some(n);
                t.epochs = UNBOUNDED_EPOCHS;
            }
        }
    }

    /// Describes the budget in words, for tables and reports.
    pub fn describe(&self) -> String {
        match self {
            Budget::Seconds(s) => format!("{s} s of training time per method, split over seeds"),
            Budget::Epochs(n) => format!("{n} epochs"),
            Budget::Evaluations(n) => format!("{n} evaluations (forward-sample units)"),
        }
    }
}

/// Reads per-method settings from a TOML file with tables such as `[methods.adam]`.
pub fn read_settings(text: &str, methods: &mut [(String, MethodSpec)]) -> Result<()> {
    let table: toml::Table = text
        .parse()
        .map_err(|e| Error::Data(format!("invalid settings file: {e}")))?;
    for (key, value) in &table {
        if key != "methods" {
            return Err(Error::setting(
                "settings",
                key,
                "only [methods.NAME] tables are allowed",
            ));
        }
        let Some(per_method) = value.as_table() else {
            return Err(Error::setting(
                "settings",
                key,
                "must be a table of method tables",
            ));
        };
        for (name, settings) in per_method {
            let Some((_, spec)) = methods.iter_mut().find(|(n, _)| n == name) else {
                return Err(Error::setting(
                    "settings",
                    name,
                    "is not one of the methods given with --methods",
                ));
            };
            let Some(settings) = settings.as_table() else {
                return Err(Error::setting(
                    "settings",
                    name,
                    "must be a table of KEY = VALUE",
                ));
            };
            for (k, v) in settings {
                let text = match v {
                    toml::Value::String(s) => format!("{s:?}"),
                    other => other.to_string(),
                };
                if k == "lr" {
                    let lr = v.as_float().or(v.as_integer().map(|i| i as f64));
                    let lr = lr.ok_or_else(|| Error::setting("lr", &text, "must be a number"))?;
                    spec.set_learning_rate(lr)?;
                } else {
                    spec.set(k, &text)?;
                }
            }
        }
    }
    Ok(())
}

/// Everything a comparison needs.
pub struct CompareConfig {
    /// Data, model and training settings shared by every run; the method, seed and limits are
    /// replaced per run.
    pub base: RunConfig,
    /// The methods in table order, each with its settings.
    pub methods: Vec<(String, MethodSpec)>,
    /// The budget of each run.
    pub budget: Budget,
    /// Seeds 0..seeds run for every method.
    pub seeds: u64,
    /// Output folder.
    pub out: PathBuf,
    /// Loss for the time-to-target column; unset uses [`default_target`].
    pub target_loss: Option<f64>,
    /// Points per side of the loss grid under the descent paths.
    pub grid_size: usize,
}

/// One finished run.
pub struct RunResult {
    /// Method name as given.
    pub method: String,
    /// Seed.
    pub seed: u64,
    /// Run folder.
    pub dir: PathBuf,
    /// The run's summary.json.
    pub summary: Summary,
    /// The run's metrics.jsonl.
    pub records: Vec<EpochRecord>,
}

/// One row of the comparison table.
#[derive(Clone, Debug)]
pub struct Row {
    /// Method name.
    pub method: String,
    /// Number of seeds.
    pub seeds: usize,
    /// Mean and sample standard deviation of the final training loss (summary.json).
    pub train_loss: (f64, f64),
    /// Name of the test metric: accuracy, rmse or loss.
    pub test_metric: &'static str,
    /// Mean and sample standard deviation of the test metric.
    pub test: (f64, f64),
    /// Mean wall time of a run in seconds.
    pub wall_seconds: f64,
    /// Mean evaluations of a run.
    pub evaluations: f64,
    /// Seeds whose training loss reached the target.
    pub reached: usize,
    /// Mean elapsed seconds and evaluations to the target over the seeds that reached it.
    pub to_target: Option<(f64, f64)>,
}

/// Progress messages from [`run`].
pub trait CompareProgress {
    /// Called before each run.
    fn on_run_start(&mut self, index: usize, total: usize, method: &str, seed: u64);
    /// Called after each epoch of the current run.
    fn on_epoch(&mut self, record: &EpochRecord);
}

/// Runs every (method, seed) pair sequentially, then writes the table, plots and report.
/// Returns the table rows and the target loss they use.
pub fn run(config: &CompareConfig, progress: &mut dyn CompareProgress) -> Result<(Vec<Row>, f64)> {
    if config.seeds == 0 {
        return Err(Error::setting("seeds", 0, "must be at least 1"));
    }
    if config.methods.is_empty() {
        return Err(Error::setting("methods", "", "name at least one method"));
    }
    crate::train::files::create_empty_dir(&config.out)?;
    let total = config.methods.len() * config.seeds as usize;
    let mut results = Vec::new();
    let mut paths = Vec::new();
    let mut setup = None;
    for (m, (name, spec)) in config.methods.iter().enumerate() {
        for seed in 0..config.seeds {
            let index = m * config.seeds as usize + seed as usize;
            progress.on_run_start(index, total, name, seed);
            let mut run_config = config.base.clone();
            run_config.method = spec.clone();
            run_config.training.seed = seed;
            config.budget.apply(&mut run_config, config.seeds as usize);
            let dir = config.out.join("runs").join(format!("{name}-seed{seed}"));
            let options = RunOptions {
                out: dir.clone(),
                resume: false,
                stop: None,
            };
            // Seed 0 starts every method from the same initial parameters, so its paths are
            // the ones drawn together.
            let mut observer = RunObserver {
                progress: &mut *progress,
                recorder: (seed == 0).then(PathRecorder::new),
            };
            let summary = train::train(&run_config, &options, &mut observer)?;
            if let Some(recorder) = observer.recorder {
                if setup.is_none() {
                    setup = recorder.setup;
                }
                paths.push((name.clone(), recorder.snapshots));
            }
            let records = read_records(&dir)?;
            results.push(RunResult {
                method: name.clone(),
                seed,
                dir,
                summary,
                records,
            });
        }
    }
    let target = config
        .target_loss
        .unwrap_or_else(|| default_target(&results));
    let rows = table_rows(&config.methods, &results, target);
    write_atomic(
        &config.out.join("summary.csv"),
        summary_csv(&rows, target).as_bytes(),
    )?;
    let mut images = plot::draw_comparison(&config.out, &results, &config.methods)?;
    if let Some(setup) = setup {
        let landscape = landscape::Landscape::compute(
            &setup,
            &paths,
            config.grid_size,
            config.base.training.threads,
        )?;
        images.push(plot::draw_landscape(&config.out, &landscape)?);
    }
    let html = report::render(config, &rows, target, &images)?;
    write_atomic(&config.out.join("report.html"), html.as_bytes())?;
    Ok((rows, target))
}

struct RunObserver<'p> {
    progress: &'p mut dyn CompareProgress,
    recorder: Option<PathRecorder>,
}

impl Observer for RunObserver<'_> {
    fn on_start(&mut self, _epochs: usize, _steps: usize, setup: &crate::train::prepare::Setup) {
        if let Some(r) = &mut self.recorder {
            r.on_start(setup);
        }
    }

    fn on_epoch(&mut self, record: &EpochRecord) {
        self.progress.on_epoch(record);
    }

    fn on_params(&mut self, epoch: usize, params: &[f32]) {
        if let Some(r) = &mut self.recorder {
            r.record(epoch, params);
        }
    }
}

/// Reads a run folder's metrics.jsonl.
pub fn read_records(dir: &Path) -> Result<Vec<EpochRecord>> {
    let path = dir.join("metrics.jsonl");
    let text = crate::train::files::read_to_string(&path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| Error::Data(format!("invalid line in {}: {e}", path.display())))
        })
        .collect()
}

/// Returns the default target loss: 1.1 times the largest of the runs' lowest epoch training losses,
/// so that every run reaches it and the column ranks methods by speed.
pub fn default_target(results: &[RunResult]) -> f64 {
    let lowest = results.iter().map(|r| {
        r.records
            .iter()
            .map(|e| e.train_loss)
            .fold(f64::INFINITY, f64::min)
    });
    lowest
        .filter(|l| l.is_finite())
        .fold(f64::NEG_INFINITY, f64::max)
        * 1.1
}

/// Returns the first epoch record whose training loss is at or below `target`.
pub fn first_at_target(records: &[EpochRecord], target: f64) -> Option<&EpochRecord> {
    records.iter().find(|r| r.train_loss <= target)
}

/// Returns the test metric of a summary: accuracy to classify, RMSE to regress, and the loss otherwise.
fn test_metric(s: &Summary) -> (&'static str, f64) {
    if let Some(a) = s.test_accuracy {
        ("accuracy", a)
    } else if let Some(r) = s.test_rmse {
        ("rmse", r)
    } else {
        ("loss", s.test_loss)
    }
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn table_rows(methods: &[(String, MethodSpec)], results: &[RunResult], target: f64) -> Vec<Row> {
    methods
        .iter()
        .map(|(name, _)| {
            let runs: Vec<&RunResult> = results.iter().filter(|r| &r.method == name).collect();
            let losses: Vec<f64> = runs.iter().map(|r| r.summary.train_loss).collect();
            let metric = test_metric(&runs[0].summary).0;
            let tests: Vec<f64> = runs.iter().map(|r| test_metric(&r.summary).1).collect();
            let walls: Vec<f64> = runs.iter().map(|r| r.summary.wall_seconds).collect();
            let evals: Vec<f64> = runs.iter().map(|r| r.summary.evaluations as f64).collect();
            let hits: Vec<&EpochRecord> = runs
                .iter()
                .filter_map(|r| first_at_target(&r.records, target))
                .collect();
            let to_target = (!hits.is_empty()).then(|| {
                let secs: Vec<f64> = hits.iter().map(|h| h.elapsed_seconds).collect();
                let evals: Vec<f64> = hits.iter().map(|h| h.evaluations as f64).collect();
                (mean_std(&secs).0, mean_std(&evals).0)
            });
            Row {
                method: name.clone(),
                seeds: runs.len(),
                train_loss: mean_std(&losses),
                test_metric: metric,
                test: mean_std(&tests),
                wall_seconds: mean_std(&walls).0,
                evaluations: mean_std(&evals).0,
                reached: hits.len(),
                to_target,
            }
        })
        .collect()
}

/// Writes the rows as CSV; time and evaluations to target are empty when no seed reached it.
pub fn summary_csv(rows: &[Row], target: f64) -> String {
    let mut out = String::from(
        "method,seeds,train_loss_mean,train_loss_std,test_metric,test_mean,test_std,\
         wall_seconds_mean,evaluations_mean,target_loss,seeds_reaching_target,\
         seconds_to_target_mean,evaluations_to_target_mean\n",
    );
    for r in rows {
        let (secs, evals) = match r.to_target {
            Some((s, e)) => (format!("{s}"), format!("{e}")),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.method,
            r.seeds,
            r.train_loss.0,
            r.train_loss.1,
            r.test_metric,
            r.test.0,
            r.test.1,
            r.wall_seconds,
            r.evaluations,
            target,
            r.reached,
            secs,
            evals
        );
    }
    out
}

/// Formats the rows as a fixed-width text table.
pub fn format_table(rows: &[Row], target: f64) -> String {
    let mut out = format!(
        "{:<16} {:>22} {:>22} {:>9} {:>12} {:>18}\n",
        "method",
        "train loss",
        "test metric",
        "wall s",
        "evaluations",
        format!("s to loss {target:.4}")
    );
    for r in rows {
        let to_target = match r.to_target {
            Some((s, _)) if r.reached == r.seeds => format!("{s:.2}"),
            Some((s, _)) => format!("{s:.2} ({}/{})", r.reached, r.seeds),
            None => "—".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:>22} {:>22} {:>9.2} {:>12.3e} {:>18}",
            r.method,
            format!("{:.4} ± {:.4}", r.train_loss.0, r.train_loss.1),
            format!("{} {:.4} ± {:.4}", r.test_metric, r.test.0, r.test.1),
            r.wall_seconds,
            r.evaluations,
            to_target
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_parses_each_unit() {
        assert_eq!("30s".parse::<Budget>().unwrap(), Budget::Seconds(30.0));
        assert_eq!("20e".parse::<Budget>().unwrap(), Budget::Epochs(20));
        assert_eq!("20epochs".parse::<Budget>().unwrap(), Budget::Epochs(20));
        assert_eq!(
            "1e6".parse::<Budget>().unwrap(),
            Budget::Evaluations(1_000_000)
        );
        assert_eq!(
            "2e6evals".parse::<Budget>().unwrap(),
            Budget::Evaluations(2_000_000)
        );
        assert!("abc".parse::<Budget>().is_err());
        assert!("-3s".parse::<Budget>().is_err());
        assert!("2.5e".parse::<Budget>().is_err());
    }

    #[test]
    fn mean_std_of_two_values() {
        let (m, s) = mean_std(&[1.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((s - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
    }
}
