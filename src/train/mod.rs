//! The training loop, run folders, checkpoints and saved models.

pub mod checkpoint;
pub mod config;
pub mod evaluate;
pub mod files;
pub mod model;
pub mod prepare;
mod trainer;

pub use config::{DataConfig, ModelConfig, RunConfig, TrainingConfig};
pub use evaluate::Metrics;
pub use trainer::{train, EpochRecord, Observer, RunOptions, Silent, Summary};
