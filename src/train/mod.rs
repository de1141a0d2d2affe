//! The training loop, run folders, checkpoints and saved models.

pub mod checkpoint;
pub mod config;
#[cfg(test)]
mod distributed_tests;
pub mod evaluate;
pub mod files;
pub mod model;
pub mod prepare;
mod ranks;
mod trainer;

pub use config::{DataConfig, ModelConfig, RunConfig, TrainingConfig, MAX_THREADS};
pub use evaluate::Metrics;
pub use trainer::{train, train_distributed, EpochRecord, Observer, RunOptions, Silent, Summary};
