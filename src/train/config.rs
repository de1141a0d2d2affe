//! The run configuration: everything needed to repeat a run, as written to `config.toml`.

use crate::data::{ScaleKind, TaskKind};
use crate::methods::schedule::{LrSchedule, Schedule};
use crate::methods::MethodSpec;
use crate::nn::{Activation, Init, LayerSpec, Loss};
use crate::tensor::Precision;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A whole run: data, model, training loop and method.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Data source, splitting and scaling.
    pub data: DataConfig,
    /// The network.
    pub model: ModelConfig,
    /// Epochs, batches, seeds and stopping.
    pub training: TrainingConfig,
    /// The training method and its settings.
    pub method: MethodSpec,
}

/// Data settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// `digits`, `iris`, `csv:PATH` or `idx:DIR`.
    pub source: String,
    /// classify, regress or autoencoder.
    pub task: TaskKind,
    /// Target column of a CSV file: a header name, or a 0-based index. Default: the last.
    pub target: Option<String>,
    /// Whether a CSV file has a header row; detected when unset.
    pub header: Option<bool>,
    /// Fraction of the training data held out for validation.
    pub validation_fraction: f64,
    /// Fraction held out for testing, when the source has no test split of its own.
    pub test_fraction: f64,
    /// Feature scaling; statistics come from the training part only. Unset: global min-max
    /// for images, min-max for other autoencoder data, and standardisation otherwise.
    pub scale: Option<ScaleKind>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: "digits".into(),
            task: TaskKind::Classify,
            target: None,
            header: None,
            validation_fraction: 0.1,
            test_fraction: 0.2,
            scale: None,
        }
    }
}

/// Network settings. Input and output sizes come from the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Hidden layer sizes; for an autoencoder, the encoder's, ending with the code size.
    pub layers: Vec<usize>,
    /// Activation after each hidden layer.
    pub activation: Activation,
    /// Dropout rate after each hidden activation, 0 for none.
    pub dropout: f64,
    /// Autoencoder decoder sizes; unset mirrors the encoder.
    pub decoder: Option<Vec<usize>>,
    /// Weight initialisation.
    pub init: Init,
    /// Loss; unset picks cross-entropy for classification and MSE otherwise.
    pub loss: Option<Loss>,
    /// A compact layer list such as `conv:32x3x3,relu,maxpool:2,flatten,dense:128,relu`,
    /// replacing `layers`, `activation` and `dropout`. The output layer is added from the data.
    pub description: Option<String>,
    /// The same as explicit layer tables (`[[model.stack]]` with `type = "conv2d"` and so on),
    /// replacing `layers`; the output layer is added from the data.
    pub stack: Option<Vec<LayerSpec>>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            layers: vec![256, 128],
            activation: Activation::Relu,
            dropout: 0.0,
            decoder: None,
            init: Init::Auto,
            loss: None,
            description: None,
            stack: None,
        }
    }
}

/// Largest accepted `batch_groups`.
pub const MAX_BATCH_GROUPS: usize = 64;

/// Largest accepted `threads`: far above any core count that the parallel loops scale to,
/// and low enough that a typo does not start a hundred thousand threads.
pub const MAX_THREADS: usize = 1024;

/// Training loop settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Samples per minibatch.
    pub batch_size: usize,
    /// Whether to drop the last incomplete batch of each epoch.
    pub drop_last: bool,
    /// Groups that each batch splits into. The groups run in parallel and their sums are
    /// added in a fixed tree. With a power of two here, a data-parallel run on any rank
    /// count gives the same numbers as one process with the group count the run reports.
    pub batch_groups: usize,
    /// Seed for splitting, shuffling, initialisation and dropout.
    pub seed: u64,
    /// Worker threads; 0 uses all cores.
    pub threads: usize,
    /// Stop after this many epochs without a better validation loss; `None` never stops
    /// early. TOML writes `None` as 0, because a missing key means the default of 10.
    #[serde(with = "zero_is_none")]
    pub patience: Option<usize>,
    /// Stop after this many seconds of training, checked after every step.
    pub time_limit_seconds: Option<f64>,
    /// Stop after this many evaluations (forward-sample units), checked after every step.
    pub max_evaluations: Option<u64>,
    /// Learning-rate schedule. The default is cosine annealing to 0 over the run's epochs.
    pub schedule: LrSchedule,
    /// Operand precision of the matrix products; bf16 falls back to f32 on CPUs without
    /// AVX-512 BF16.
    pub precision: Precision,
    /// Also write a checkpoint every this many steps; one is always written after an epoch.
    pub checkpoint_steps: Option<u64>,
    /// Also write a checkpoint when this many seconds have passed since the last one.
    pub checkpoint_seconds: Option<f64>,
    /// Rejects settings whose results depend on timing, so that a resumed run ends with the
    /// same parameters as an uninterrupted one on the same machine and thread count.
    pub deterministic: bool,
    /// In a data-parallel run, seconds a rank waits in one collective operation before it
    /// aborts the job because another rank has exited or stalled.
    pub rank_timeout_seconds: f64,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: 100,
            batch_size: 32,
            drop_last: false,
            batch_groups: crate::objective::DEFAULT_BATCH_GROUPS,
            seed: 0,
            threads: 0,
            patience: Some(10),
            time_limit_seconds: None,
            max_evaluations: None,
            schedule: LrSchedule {
                schedule: Schedule::Cosine {
                    total_epochs: 0,
                    min_factor: 0.0,
                },
                warmup_steps: 0,
            },
            precision: Precision::F32,
            checkpoint_steps: None,
            checkpoint_seconds: None,
            deterministic: false,
            rank_timeout_seconds: crate::dist::DEFAULT_RANK_TIMEOUT_SECONDS,
        }
    }
}

/// Writes `None` as 0 and reads 0 as `None`, for options whose default is `Some`: TOML has
/// no null, and an omitted key would read back as the default.
mod zero_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<usize>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.unwrap_or(0) as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<usize>, D::Error> {
        let value = usize::deserialize(deserializer)?;
        Ok((value > 0).then_some(value))
    }
}

impl RunConfig {
    /// Parses a TOML config; unknown keys are errors that name the key.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Data(format!("invalid config: {e}")))
    }

    /// Encodes the config as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| Error::Data(format!("failed to encode config: {e}")))
    }

    /// Returns the loss for this task.
    pub fn loss(&self) -> Loss {
        self.model.loss.unwrap_or(match self.data.task {
            TaskKind::Classify => Loss::SoftmaxCrossEntropy,
            TaskKind::Regress | TaskKind::Autoencoder => Loss::MeanSquaredError,
        })
    }

    /// Returns the feature scaling for this task; `image` is true when samples are images.
    pub fn scale(&self, image: bool) -> ScaleKind {
        self.data.scale.unwrap_or(match (image, self.data.task) {
            (true, _) => ScaleKind::GlobalMinMax,
            (false, TaskKind::Autoencoder) => ScaleKind::MinMax,
            (false, _) => ScaleKind::Standardize,
        })
    }

    /// Checks ranges that the types do not.
    pub fn validate(&self) -> Result<()> {
        let t = &self.training;
        if t.batch_size == 0 {
            return Err(Error::setting("batch-size", 0, "must be at least 1"));
        }
        if t.threads > MAX_THREADS {
            return Err(Error::setting(
                "threads",
                t.threads,
                &format!("must be from 0 (all cores) to {MAX_THREADS}"),
            ));
        }
        let groups = t.batch_groups;
        if groups == 0 || groups > MAX_BATCH_GROUPS {
            return Err(Error::setting(
                "batch-groups",
                groups,
                &format!("must be from 1 to {MAX_BATCH_GROUPS}"),
            ));
        }
        if let Some(limit) = t.time_limit_seconds {
            if !(limit.is_finite() && limit > 0.0) {
                return Err(Error::setting(
                    "time-limit",
                    limit,
                    "must be a positive number of seconds",
                ));
            }
        }
        let timeout = t.rank_timeout_seconds;
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(Error::setting(
                "rank-timeout",
                timeout,
                "must be a positive number of seconds",
            ));
        }
        if t.epochs == 0 {
            return Err(Error::setting("epochs", 0, "must be at least 1"));
        }
        self.validate_checkpoints()?;
        if t.max_evaluations == Some(0) {
            return Err(Error::setting(
                "max-evaluations",
                0,
                "must be at least 1; leave it out for no limit",
            ));
        }
        // TOML integers are signed 64-bit, so a larger seed could not be written to
        // config.toml and the run could not be repeated.
        if t.seed > i64::MAX as u64 {
            return Err(Error::setting(
                "seed",
                t.seed,
                "must be at most 9223372036854775807",
            ));
        }
        let (v, f) = (self.data.validation_fraction, self.data.test_fraction);
        if !(0.0..1.0).contains(&v) {
            return Err(Error::setting(
                "validation-fraction",
                v,
                "must be in [0, 1)",
            ));
        }
        if !(0.0..1.0).contains(&f) {
            return Err(Error::setting("test-fraction", f, "must be in [0, 1)"));
        }
        if v + f >= 1.0 {
            return Err(Error::setting(
                "validation-fraction",
                format!("{v} with test-fraction {f}"),
                "the two fractions must sum to less than 1, leaving data to train on",
            ));
        }
        if let Some(text) = &self.model.description {
            crate::nn::parse_model(text)?;
        }
        if !(0.0..1.0).contains(&self.model.dropout) {
            return Err(Error::setting(
                "dropout",
                self.model.dropout,
                "must be in [0, 1)",
            ));
        }
        if let Some(&0) = self.model.layers.iter().find(|&&u| u == 0) {
            return Err(Error::setting(
                "layers",
                0,
                "every layer needs at least 1 unit",
            ));
        }
        if self.loss() == Loss::SoftmaxCrossEntropy && self.data.task != TaskKind::Classify {
            return Err(Error::setting(
                "loss",
                "cross-entropy",
                "cross-entropy needs --task classify; use mse or bce",
            ));
        }
        let bce_autoencoder =
            self.loss() == Loss::BinaryCrossEntropy && self.data.task == TaskKind::Autoencoder;
        if let (true, Some(kind @ (ScaleKind::Standardize | ScaleKind::None))) =
            (bce_autoencoder, self.data.scale)
        {
            return Err(Error::setting(
                "scale",
                kind,
                "bce needs inputs in [0, 1]; use --scale min-max or global-min-max",
            ));
        }
        self.training.schedule.validate()?;
        self.method.validate()
    }

    fn validate_checkpoints(&self) -> Result<()> {
        let t = &self.training;
        if t.checkpoint_steps == Some(0) {
            return Err(Error::setting(
                "checkpoint-every",
                0,
                "must be at least 1 step, or a duration such as 90s or 10m",
            ));
        }
        if let Some(seconds) = t.checkpoint_seconds {
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(Error::setting(
                    "checkpoint-every",
                    format!("{seconds}s"),
                    "must be a positive duration such as 90s or 10m",
                ));
            }
        }
        if let (true, Some(limit)) = (t.deterministic, t.time_limit_seconds) {
            return Err(Error::setting(
                "time-limit",
                limit,
                "a time limit makes the result depend on the machine's speed; drop \
                 --time-limit or --deterministic (--max-evaluations is deterministic)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_toml() {
        let mut config = RunConfig::default();
        config.training.patience = None;
        config.training.checkpoint_steps = Some(25);
        config.training.deterministic = true;
        let text = config.to_toml().expect("encodes");
        let back = RunConfig::from_toml(&text).expect("decodes");
        assert_eq!(
            back.training.patience, None,
            "no early stopping survives TOML"
        );
        assert_eq!(back, config);
    }

    #[test]
    fn missing_patience_means_ten() {
        let config = RunConfig::from_toml("[training]\nepochs = 3\n").expect("decodes");
        assert_eq!(config.training.patience, Some(10));
    }

    #[test]
    fn deterministic_rejects_time_limit() {
        let mut config = RunConfig::default();
        config.training.deterministic = true;
        config.training.time_limit_seconds = Some(5.0);
        let message = config.validate().expect_err("rejected").to_string();
        assert!(message.contains("time-limit"), "{message}");
    }

    #[test]
    fn zero_checkpoint_steps_rejected() {
        let mut config = RunConfig::default();
        config.training.checkpoint_steps = Some(0);
        assert!(config.validate().is_err());
    }
}
