//! `gradus tune`: grid or random search over hyperparameters, one full training run per trial.

use super::train::RunArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use gradus::methods::MethodSpec;
use gradus::train::{self, RunConfig, RunOptions, Silent, Summary};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Options of `gradus tune`. The run options are the base config of every trial.
///
/// Keys of `--grid` and `--random`: lr, batch-size, layers, epochs, method, activation,
/// dropout, `method.KEY` for a method setting, or any config key by its dotted TOML path, such
/// as training.patience or data.scale. A `layers` value is one trial's hidden layer sizes:
/// `64` is one layer of 64 units and `64x32` two layers, so `layers=32,64` means two trials.
#[derive(Args)]
pub struct TuneArgs {
    #[command(flatten)]
    run: RunArgs,
    /// A key and its values, as KEY=V1,V2,...; repeatable. Trials run every combination,
    /// the first key varying slowest.
    #[arg(long = "grid", value_name = "KEY=V1,V2,...")]
    grid: Vec<String>,
    /// A key sampled uniformly from [LOW, HIGH], or log-uniformly with `:log`; repeatable.
    /// Integer bounds give integer values. Needs --trials.
    #[arg(long = "random", value_name = "KEY=LOW:HIGH[:log]")]
    random: Vec<String>,
    /// Number of trials: the random trials to draw, and a cap on the grid's combinations.
    #[arg(long, visible_alias = "budget")]
    trials: Option<usize>,
    /// Trials run at the same time. With more than one, each trial gets cores / jobs threads.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Output folder for trial-NNN run folders, results.csv and best.toml
    /// (default: runs/tune-<timestamp>). It must not exist or must be empty.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One hyperparameter and the values a search takes from it.
#[derive(Clone, Debug, PartialEq)]
enum Space {
    /// Every listed value, as text.
    Grid(Vec<String>),
    /// A uniform or log-uniform range; integers when both bounds are integers.
    Range {
        low: f64,
        high: f64,
        log: bool,
        integer: bool,
    },
}

/// A trial: the values of the varied keys, in the order of [`Search::keys`].
type Assignment = Vec<String>;

/// The keys to vary and their spaces.
struct Search {
    keys: Vec<String>,
    spaces: Vec<Space>,
}

/// The outcome of one finished trial.
struct TrialResult {
    summary: Option<Summary>,
    error: Option<String>,
    seconds: f64,
}

pub fn run(args: TuneArgs) -> Result<()> {
    if args.jobs == 0 {
        bail!("invalid --jobs 0: expected at least 1 trial at a time");
    }
    let base = args.run.into_config()?;
    base.validate()?;
    if base.data.validation_fraction <= 0.0 {
        bail!("tune scores trials on the validation split; set --validation-fraction above 0");
    }
    let search = Search::parse(&args.grid, &args.random)?;
    let assignments = search.assignments(args.trials, base.training.seed)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (args.jobs > 1).then(|| (cores / args.jobs).max(1));
    let mut configs = Vec::with_capacity(assignments.len());
    for (i, assignment) in assignments.iter().enumerate() {
        let mut config = base.clone();
        for (key, value) in search.keys.iter().zip(assignment) {
            apply(&mut config, key, value)
                .with_context(|| format!("in trial {} ({key}={value})", i + 1))?;
        }
        if let Some(t) = threads {
            config.training.threads = t;
        }
        config
            .validate()
            .with_context(|| format!("in trial {}", i + 1))?;
        configs.push(config);
    }
    let out = args.out.unwrap_or_else(default_tune_dir);
    prepare_out(&out)?;
    if threads.is_none() && base.training.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(base.training.threads)
            .build_global()
            .context("failed to start the worker threads")?;
    }

    eprintln!(
        "running {} trials, {} at a time, in {}",
        configs.len(),
        args.jobs,
        out.display()
    );
    let results = run_trials(&configs, &out, args.jobs);
    let table = results_table(&search, &assignments, &results);
    print!("{}", table.text);
    let csv_path = out.join("results.csv");
    std::fs::write(&csv_path, &table.csv)
        .map_err(|e| gradus::Error::io("failed to write", &csv_path, e))?;

    let best = best_trial(&results).context("every trial failed; see the errors above")?;
    let best_path = out.join("best.toml");
    std::fs::write(&best_path, configs[best].to_toml()?)
        .map_err(|e| gradus::Error::io("failed to write", &best_path, e))?;
    let loss = results[best]
        .summary
        .as_ref()
        .map_or(f64::NAN, |s| s.validation_loss);
    println!(
        "best: trial {} (validation loss {loss:.6}), config {}",
        best + 1,
        best_path.display()
    );
    Ok(())
}

/// Runs every trial, `jobs` at a time, each in its own run folder `out/trial-NNN`.
fn run_trials(configs: &[RunConfig], out: &Path, jobs: usize) -> Vec<TrialResult> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<TrialResult>>> =
        Mutex::new((0..configs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(configs.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(config) = configs.get(i) else { break };
                let options = RunOptions {
                    out: out.join(trial_name(i)),
                    resume: false,
                    stop: None,
                };
                let started = Instant::now();
                let result = train::train(config, &options, &mut Silent);
                let seconds = started.elapsed().as_secs_f64();
                let trial = match result {
                    Ok(summary) => {
                        eprintln!(
                            "trial {}/{}: validation loss {:.6} ({seconds:.1} s)",
                            i + 1,
                            configs.len(),
                            summary.validation_loss
                        );
                        TrialResult {
                            summary: Some(summary),
                            error: None,
                            seconds,
                        }
                    }
                    Err(e) => {
                        eprintln!("trial {}/{} failed: {e}", i + 1, configs.len());
                        TrialResult {
                            summary: None,
                            error: Some(e.to_string()),
                            seconds,
                        }
                    }
                };
                slots.lock().expect("no trial thread panicked")[i] = Some(trial);
            });
        }
    });
    slots
        .into_inner()
        .expect("no trial thread panicked")
        .into_iter()
        .map(|slot| slot.expect("every trial ran"))
        .collect()
}

fn trial_name(i: usize) -> String {
    format!("trial-{:03}", i + 1)
}

fn default_tune_dir() -> PathBuf {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    PathBuf::from("runs").join(format!("tune-{stamp}"))
}

/// Creates `out`, which must not exist or must be empty, so trials never mix with old runs.
fn prepare_out(out: &Path) -> Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(out) {
        if entries.next().is_some() {
            bail!(
                "output folder {} is not empty; choose a new --out",
                out.display()
            );
        }
    }
    std::fs::create_dir_all(out).map_err(|e| gradus::Error::io("failed to create", out, e))?;
    Ok(())
}

/// Returns the index of the finished trial with the lowest validation loss; the first wins a
/// tie, and trials with a non-finite loss never win.
fn best_trial(results: &[TrialResult]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, result) in results.iter().enumerate() {
        let Some(loss) = result.summary.as_ref().map(|s| s.validation_loss) else {
            continue;
        };
        if loss.is_finite() && best.is_none_or(|(_, b)| loss < b) {
            best = Some((i, loss));
        }
    }
    best.map(|(i, _)| i)
}

impl Search {
    fn parse(grid: &[String], random: &[String]) -> Result<Self> {
        let mut keys = Vec::new();
        let mut spaces = Vec::new();
        for (text, is_grid) in grid
            .iter()
            .map(|t| (t, true))
            .chain(random.iter().map(|t| (t, false)))
        {
            let (key, values) = text.split_once('=').with_context(|| {
                let example = if is_grid {
                    "lr=0.001,0.01"
                } else {
                    "lr=0.0001:0.1:log"
                };
                format!("invalid {text:?}: expected KEY=VALUES, for example {example}")
            })?;
            let key = key.trim().to_string();
            if keys.contains(&key) {
                bail!("key {key:?} is given twice; give each key once");
            }
            let space = if is_grid {
                parse_grid(values).with_context(|| format!("in --grid {text}"))?
            } else {
                parse_range(values).with_context(|| format!("in --random {text}"))?
            };
            keys.push(key);
            spaces.push(space);
        }
        if keys.is_empty() {
            bail!("nothing to tune: give at least one --grid KEY=V1,V2 or --random KEY=LOW:HIGH");
        }
        Ok(Search { keys, spaces })
    }

    /// Lists the trials: the whole grid (cut to `trials` when that is smaller) without random
    /// keys, or `trials` random draws with them, where grid keys take a uniform random value.
    fn assignments(&self, trials: Option<usize>, seed: u64) -> Result<Vec<Assignment>> {
        if trials == Some(0) {
            bail!("invalid --trials 0: expected at least 1");
        }
        let has_random = self.spaces.iter().any(|s| matches!(s, Space::Range { .. }));
        if has_random {
            let Some(count) = trials else {
                bail!("--random needs --trials N, the number of random trials");
            };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            return Ok((0..count).map(|_| self.sample(&mut rng)).collect());
        }
        let mut grid: Vec<Assignment> = vec![Vec::new()];
        for space in &self.spaces {
            let Space::Grid(values) = space else {
                unreachable!("no random keys here")
            };
            grid = grid
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |v| {
                        let mut next = prefix.clone();
                        next.push(v.clone());
                        next
                    })
                })
                .collect();
        }
        if let Some(cap) = trials.filter(|&cap| cap < grid.len()) {
            eprintln!(
                "the grid has {} combinations; running the first {cap} (--trials {cap})",
                grid.len()
            );
            grid.truncate(cap);
        }
        Ok(grid)
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> Assignment {
        self.spaces
            .iter()
            .map(|space| match space {
                Space::Grid(values) => values[rng.random_range(0..values.len())].clone(),
                Space::Range {
                    low,
                    high,
                    log,
                    integer,
                } => {
                    let u: f64 = rng.random();
                    let value = if *log {
                        (low.ln() + u * (high.ln() - low.ln())).exp()
                    } else {
                        low + u * (high - low)
                    };
                    if *integer {
                        format!("{}", value.round().clamp(*low, *high) as i64)
                    } else {
                        // Four significant digits keep the table short, and the trial uses
                        // exactly the value shown.
                        format!("{value:.3e}")
                    }
                }
            })
            .collect()
    }
}

fn parse_grid(values: &str) -> Result<Space> {
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(String::is_empty) {
        bail!("expected comma-separated values without empty ones");
    }
    Ok(Space::Grid(values))
}

fn parse_range(text: &str) -> Result<Space> {
    let parts: Vec<&str> = text.split(':').map(str::trim).collect();
    let log = match parts.as_slice() {
        [_, _] => false,
        [_, _, "log"] => true,
        _ => bail!("expected LOW:HIGH or LOW:HIGH:log"),
    };
    let integer = parts[..2].iter().all(|p| p.parse::<i64>().is_ok());
    let parse = |p: &str| -> Result<f64> {
        p.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .with_context(|| format!("invalid bound {p:?}: expected a finite number"))
    };
    let (low, high) = (parse(parts[0])?, parse(parts[1])?);
    if low > high {
        bail!("invalid range: LOW {low} is above HIGH {high}");
    }
    if log && low <= 0.0 {
        bail!("invalid log range: LOW must be above 0, got {low}");
    }
    Ok(Space::Range {
        low,
        high,
        log,
        integer,
    })
}

/// Sets one key of `config` to `value`, by a short name or a dotted TOML path.
fn apply(config: &mut RunConfig, key: &str, value: &str) -> Result<()> {
    match key {
        "lr" => {
            let lr: f64 = value
                .parse()
                .with_context(|| format!("invalid lr {value:?}: expected a number"))?;
            config.method.set_learning_rate(lr)?;
        }
        // A new method starts from its default settings.
        "method" => config.method = MethodSpec::default_for(value)?,
        "layers" => {
            let layers = parse_layers(value)?;
            set_path(config, "model.layers", toml::Value::Array(layers))?;
            config.model.description = None;
            config.model.stack = None;
        }
        "batch-size" | "batch_size" => set_path(config, "training.batch_size", parse_value(value))?,
        "epochs" => set_path(config, "training.epochs", parse_value(value))?,
        "activation" => set_path(config, "model.activation", parse_value(value))?,
        "dropout" => set_path(config, "model.dropout", parse_value(value))?,
        _ => match key.strip_prefix("method.") {
            Some(setting) => config.method.set(setting, value)?,
            None if key.contains('.') => set_path(config, key, parse_value(value))?,
            None => bail!(
                "unknown key {key:?}: expected lr, batch-size, layers, epochs, method, activation, \
                 dropout, method.SETTING or a dotted config path such as training.patience"
            ),
        },
    }
    Ok(())
}

/// Parses `64` or `64x32` into hidden layer sizes.
fn parse_layers(value: &str) -> Result<Vec<toml::Value>> {
    value
        .split('x')
        .map(|size| {
            size.trim()
                .parse::<i64>()
                .ok()
                .filter(|&n| n > 0)
                .map(toml::Value::Integer)
                .with_context(|| {
                    format!("invalid layers {value:?}: expected sizes such as 64 or 64x32")
                })
        })
        .collect()
}

/// Parses `value` as a TOML value (a number, a boolean, an array), or else as a string.
fn parse_value(value: &str) -> toml::Value {
    format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()))
}

/// Sets the config key at the dotted TOML `path`, checking the result like a config file.
fn set_path(config: &mut RunConfig, path: &str, value: toml::Value) -> Result<()> {
    let mut root = toml::Table::try_from(&*config).context("failed to encode the config")?;
    let mut table = &mut root;
    let parts: Vec<&str> = path.split('.').collect();
    let (last, sections) = parts.split_last().expect("split returns at least one part");
    for section in sections {
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .with_context(|| format!("invalid key {path:?}: {section} is not a table"))?;
    }
    table.insert(last.to_string(), value);
    *config = toml::Value::Table(root)
        .try_into()
        .map_err(|e| anyhow::anyhow!("invalid value for {path}: {e}"))?;
    Ok(())
}

/// The results as an aligned text table and as CSV.
struct Table {
    text: String,
    csv: String,
}

fn results_table(search: &Search, assignments: &[Assignment], results: &[TrialResult]) -> Table {
    let mut header = vec!["trial".to_string()];
    header.extend(search.keys.iter().cloned());
    header.extend(
        [
            "validation_loss",
            "validation_accuracy",
            "test_accuracy",
            "seconds",
            "error",
        ]
        .map(String::from),
    );
    let format_option = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    let rows: Vec<Vec<String>> = assignments
        .iter()
        .zip(results)
        .enumerate()
        .map(|(i, (assignment, result))| {
            let mut row = vec![format!("{}", i + 1)];
            row.extend(assignment.iter().cloned());
            let summary = result.summary.as_ref();
            row.push(format_option(summary.map(|s| s.validation_loss)));
            row.push(format_option(summary.and_then(|s| s.validation_accuracy)));
            row.push(format_option(summary.and_then(|s| s.test_accuracy)));
            row.push(format!("{:.1}", result.seconds));
            row.push(result.error.clone().unwrap_or_default());
            row
        })
        .collect();

    let mut csv = csv::Writer::from_writer(Vec::new());
    for row in std::iter::once(&header).chain(&rows) {
        csv.write_record(row)
            .expect("writing to memory cannot fail");
    }
    let csv = String::from_utf8(csv.into_inner().expect("writing to memory cannot fail"))
        .expect("the fields are UTF-8");

    // The text table leaves out the error column unless a trial failed.
    let columns = if results.iter().any(|r| r.error.is_some()) {
        header.len()
    } else {
        header.len() - 1
    };
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = (0..columns)
            .map(|c| format!("{:>width$}", row[c], width = widths[c]))
            .collect();
        let _ = writeln!(text, "{}", cells.join("  ").trim_end());
    }
    Table { text, csv }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_lists_every_combination() {
        let grid = ["lr=0.001,0.01,0.1".to_string(), "layers=32,64".to_string()];
        let search = Search::parse(&grid, &[]).expect("valid grid");
        let trials = search.assignments(None, 0).expect("grid only");
        assert_eq!(trials.len(), 6);
        assert_eq!(trials[0], ["0.001", "32"]);
        assert_eq!(trials[1], ["0.001", "64"]);
        assert_eq!(trials[5], ["0.1", "64"]);
    }

    #[test]
    fn trials_cap_the_grid() {
        let grid = ["lr=0.001,0.01,0.1".to_string()];
        let search = Search::parse(&grid, &[]).expect("valid grid");
        assert_eq!(search.assignments(Some(2), 0).expect("capped").len(), 2);
    }

    #[test]
    fn random_needs_trials() {
        let random = ["lr=0.0001:0.1:log".to_string()];
        let search = Search::parse(&[], &random).expect("valid range");
        assert!(search.assignments(None, 0).is_err());
        let trials = search.assignments(Some(20), 3).expect("random trials");
        assert_eq!(trials.len(), 20);
        for trial in &trials {
            let lr: f64 = trial[0].parse().expect("a number");
            assert!((0.0001..=0.1).contains(&lr), "lr {lr} out of range");
        }
    }

    #[test]
    fn integer_ranges_give_integers() {
        let random = ["epochs=2:9".to_string()];
        let search = Search::parse(&[], &random).expect("valid range");
        for trial in search.assignments(Some(20), 1).expect("random trials") {
            let epochs: i64 = trial[0].parse().expect("an integer");
            assert!((2..=9).contains(&epochs), "epochs {epochs} out of range");
        }
    }

    #[test]
    fn apply_sets_short_and_dotted_keys() {
        let mut config = RunConfig::default();
        apply(&mut config, "layers", "64x32").expect("layers");
        assert_eq!(config.model.layers, [64, 32]);
        apply(&mut config, "layers", "16").expect("one layer");
        assert_eq!(config.model.layers, [16]);
        apply(&mut config, "batch-size", "8").expect("batch size");
        assert_eq!(config.training.batch_size, 8);
        apply(&mut config, "training.patience", "5").expect("dotted path");
        assert_eq!(config.training.patience, Some(5));
        apply(&mut config, "dropout", "0.25").expect("dropout");
        assert_eq!(config.model.dropout, 0.25);
        apply(&mut config, "method", "sgd").expect("method");
        assert_eq!(config.method.name(), "sgd");
        apply(&mut config, "lr", "0.5").expect("lr");
    }

    #[test]
    fn apply_rejects_unknown_keys() {
        let mut config = RunConfig::default();
        assert!(apply(&mut config, "speed", "1").is_err());
        assert!(apply(&mut config, "training.speed", "1").is_err());
        assert!(apply(&mut config, "layers", "64xa").is_err());
    }
}
