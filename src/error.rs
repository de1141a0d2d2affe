//! The library's error type.

use std::path::PathBuf;

/// Errors returned by the library. Each message names the offending value and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is outside its valid range.
    #[error("invalid {name} {value}: {expected}")]
    InvalidSetting {
        /// Setting name as the user writes it (`lr`, `batch-size`, ...).
        name: String,
        /// The rejected value, formatted.
        value: String,
        /// The valid range or a hint on how to fix it.
        expected: String,
    },

    /// Input data could not be read or does not fit the task.
    #[error("{0}")]
    Data(String),

    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted, for example "failed to read".
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Shapes of a model, its data or a vector do not agree.
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// A loss or gradient became NaN or infinite.
    #[error("{0}")]
    NonFinite(String),

    /// The request is valid but not supported for this model, such as exporting a layer type
    /// that has no translation to the target format.
    #[error("{0}")]
    Unsupported(String),

    /// A stop request (SIGTERM or SIGINT on the command line) ended training after a
    /// checkpoint was written.
    #[error(
        "stopped by signal {signal} in epoch {epoch} after {batch} batches; the checkpoint is \
         current, continue with `gradus train --resume {}`",
        dir.display()
    )]
    Interrupted {
        /// The signal number that requested the stop.
        signal: i32,
        /// Epoch in progress, from 1.
        epoch: usize,
        /// Batches of that epoch done.
        batch: usize,
        /// The run folder.
        dir: PathBuf,
    },

    /// A saved model or checkpoint is malformed.
    #[error("invalid model file {path}: {reason}")]
    Model {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// Builds an [`Error::InvalidSetting`].
    pub fn setting(name: &str, value: impl std::fmt::Display, expected: &str) -> Self {
        Error::InvalidSetting {
            name: name.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
