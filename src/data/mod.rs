//! Data sets: readers for CSV and IDX files, the built-in sets, splitting, scaling and
//! batching.
//!
//! A [`Source`] names where the data come from (`digits`, `iris`, `csv:PATH`, `idx:DIR`) and
//! [`load`] reads it into a [`Loaded`] pair of training and optional test [`Dataset`]s.
//! [`split()`] then carves out validation and test sets, [`Scaler`] fits feature scaling on the
//! training set, and [`Batches`] walks a set in mini-batches.

mod batch;
mod builtin;
mod csv;
mod dataset;
mod idx;
mod scale;
mod split;

pub use batch::Batches;
pub use builtin::builtin_names;
pub use dataset::{Dataset, Targets};
pub use scale::{ScaleKind, Scaler};
pub use split::{split, Splits};

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The valid forms of a data source, for error messages and help text.
const SOURCE_FORMS: &str = "expected a built-in name (digits, iris), csv:PATH (a CSV file, \
    optionally gzip-compressed) or idx:DIR (a folder of IDX files)";

/// A data source, as written on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A data set embedded in the binary, by name (see [`builtin_names`]).
    Builtin(String),
    /// A CSV file, plain or gzip-compressed (`csv:PATH`).
    Csv(PathBuf),
    /// A folder of IDX files (`idx:DIR`).
    Idx(PathBuf),
}

impl FromStr for Source {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let with_path = |path: &str, make: fn(PathBuf) -> Source| {
            if path.is_empty() {
                Err(Error::setting(
                    "data source",
                    format!("{s:?}"),
                    "the path after the colon is missing",
                ))
            } else {
                Ok(make(PathBuf::from(path)))
            }
        };
        if let Some(path) = s.strip_prefix("csv:") {
            return with_path(path, Source::Csv);
        }
        if let Some(path) = s.strip_prefix("idx:") {
            return with_path(path, Source::Idx);
        }
        if builtin_names().iter().any(|(name, _)| *name == s) {
            return Ok(Source::Builtin(s.to_string()));
        }
        Err(Error::setting(
            "data source",
            format!("{s:?}"),
            SOURCE_FORMS,
        ))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin(name) => write!(f, "{name}"),
            Source::Csv(path) => write!(f, "csv:{}", path.display()),
            Source::Idx(path) => write!(f, "idx:{}", path.display()),
        }
    }
}

/// The learning task, which decides how targets are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Predict a class label.
    #[default]
    Classify,
    /// Predict real-valued targets.
    Regress,
    /// Reconstruct the features; the data need no targets.
    Autoencoder,
}

impl FromStr for TaskKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "classify" => Ok(TaskKind::Classify),
            "regress" => Ok(TaskKind::Regress),
            "autoencoder" => Ok(TaskKind::Autoencoder),
            _ => Err(Error::setting(
                "task",
                format!("{s:?}"),
                "expected classify, regress or autoencoder",
            )),
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskKind::Classify => "classify",
            TaskKind::Regress => "regress",
            TaskKind::Autoencoder => "autoencoder",
        })
    }
}

/// Whether the first row of a CSV file is a header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderMode {
    /// A header when the first row has a non-numeric cell in a feature column, or when the
    /// target column is given by name.
    #[default]
    Auto,
    /// The first row is a header.
    Yes,
    /// The first row is data.
    No,
}

impl FromStr for HeaderMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(HeaderMode::Auto),
            "yes" => Ok(HeaderMode::Yes),
            "no" => Ok(HeaderMode::No),
            _ => Err(Error::setting(
                "header",
                format!("{s:?}"),
                "expected auto, yes or no",
            )),
        }
    }
}

/// The CSV column that contains the targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetColumn {
    /// The column with this header name.
    Name(String),
    /// The column at this 0-based index.
    Index(usize),
}

impl FromStr for TargetColumn {
    type Err = Error;

    /// Parses a 0-based column index when `s` is a non-negative integer, else a column name.
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::setting(
                "target",
                "\"\"",
                "expected a column name or a 0-based index",
            ));
        }
        Ok(match s.parse::<usize>() {
            Ok(index) => TargetColumn::Index(index),
            Err(_) => TargetColumn::Name(s.to_string()),
        })
    }
}

/// How to read a data source. Only `task` applies to built-in and IDX sources; the other
/// fields apply to CSV files only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// Whether the first row is a header.
    pub header: HeaderMode,
    /// The target column; `None` means the last column, or no targets for an autoencoder.
    pub target: Option<TargetColumn>,
    /// The learning task.
    pub task: TaskKind,
    /// The field delimiter, `b','` by default.
    pub delimiter: u8,
    /// Feature columns to read by header name, in this order, when the file has a header.
    /// Other columns, the target included, are then ignored. When empty, or when the file has
    /// no header, every column but the target is a feature, in file order.
    pub feature_columns: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: HeaderMode::Auto,
            target: None,
            task: TaskKind::Classify,
            delimiter: b',',
            feature_columns: Vec::new(),
        }
    }
}

/// The data read from a source.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The training data (all of it when the source has no test split).
    pub train: Dataset,
    /// The source's own test split (an IDX folder with `t10k-*` files), if it has one.
    pub test: Option<Dataset>,
}

/// Reads a data source.
///
/// Built-in and IDX sources have class labels, so `options.task` must be
/// [`TaskKind::Classify`] or [`TaskKind::Autoencoder`] (which drops the labels).
pub fn load(source: &Source, options: &CsvOptions) -> Result<Loaded> {
    match source {
        Source::Builtin(name) => {
            let train = builtin::load(name)?;
            let train = labels_for_task(train, options.task, &source.to_string())?;
            Ok(Loaded { train, test: None })
        }
        Source::Csv(path) => Ok(Loaded {
            train: csv::read_file(path, options)?,
            test: None,
        }),
        Source::Idx(dir) => {
            let loaded = idx::read_folder(dir)?;
            let origin = source.to_string();
            Ok(Loaded {
                train: labels_for_task(loaded.train, options.task, &origin)?,
                test: match loaded.test {
                    Some(test) => Some(labels_for_task(test, options.task, &origin)?),
                    None => None,
                },
            })
        }
    }
}

/// Adapts a labelled data set to `task`: keeps the labels to classify, drops them for an
/// autoencoder, and rejects regression because class labels are not real-valued targets.
fn labels_for_task(mut dataset: Dataset, task: TaskKind, origin: &str) -> Result<Dataset> {
    match task {
        TaskKind::Classify => Ok(dataset),
        TaskKind::Autoencoder => {
            dataset.targets = Targets::None;
            Ok(dataset)
        }
        TaskKind::Regress => Err(Error::Data(format!(
            "data source {origin} has class labels, not real-valued targets, so it cannot be \
             used with --task regress; use --task classify or autoencoder, or a CSV file \
             with a numeric target column"
        ))),
    }
}

/// Opens `path` for reading and decompresses it on the fly when it starts with the gzip
/// magic bytes `1f 8b`, whatever its extension.
fn open_decompressed(path: &Path) -> Result<Box<dyn Read>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("failed to open", path, e))?;
    let mut reader = BufReader::new(file);
    let head = reader
        .fill_buf()
        .map_err(|e| Error::io("failed to read", path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_parses_every_form() {
        assert_eq!(
            "digits".parse::<Source>().ok(),
            Some(Source::Builtin("digits".into()))
        );
        assert_eq!(
            "iris".parse::<Source>().ok(),
            Some(Source::Builtin("iris".into()))
        );
        assert_eq!(
            "csv:a/b.csv".parse::<Source>().ok(),
            Some(Source::Csv("a/b.csv".into()))
        );
        assert_eq!(
            "idx:dir".parse::<Source>().ok(),
            Some(Source::Idx("dir".into()))
        );
    }

    #[test]
    fn source_display_round_trips() {
        for text in ["digits", "csv:x/y.csv.gz", "idx:../mnist"] {
            let source: Source = text.parse().expect("valid source");
            assert_eq!(source.to_string(), text);
        }
    }

    #[test]
    fn source_rejects_unknown_forms() {
        let message = "mnist".parse::<Source>().unwrap_err().to_string();
        assert!(message.contains("\"mnist\""), "{message}");
        assert!(message.contains("csv:PATH"), "{message}");
        assert!(message.contains("idx:DIR"), "{message}");
        assert!(message.contains("digits, iris"), "{message}");

        let message = "csv:".parse::<Source>().unwrap_err().to_string();
        assert!(message.contains("\"csv:\""), "{message}");
        assert!(message.contains("path"), "{message}");
    }

    #[test]
    fn task_kind_parses_and_serializes() {
        assert_eq!("regress".parse::<TaskKind>().ok(), Some(TaskKind::Regress));
        assert_eq!(
            "autoencoder".parse::<TaskKind>().ok(),
            Some(TaskKind::Autoencoder)
        );
        let json = serde_json::to_string(&TaskKind::Autoencoder).expect("serializes");
        assert_eq!(json, "\"autoencoder\"");
        let message = "predict".parse::<TaskKind>().unwrap_err().to_string();
        assert!(message.contains("\"predict\""), "{message}");
        assert!(
            message.contains("classify, regress or autoencoder"),
            "{message}"
        );
    }

    #[test]
    fn target_column_parses_index_or_name() {
        assert_eq!(
            "3".parse::<TargetColumn>().ok(),
            Some(TargetColumn::Index(3))
        );
        let name = "species".parse::<TargetColumn>().ok();
        assert_eq!(name, Some(TargetColumn::Name("species".into())));
        assert!("".parse::<TargetColumn>().is_err());
    }

    #[test]
    fn builtin_rejects_regress() {
        let options = CsvOptions {
            task: TaskKind::Regress,
            ..CsvOptions::default()
        };
        let message = load(&Source::Builtin("iris".into()), &options)
            .unwrap_err()
            .to_string();
        assert!(message.contains("iris"), "{message}");
        assert!(message.contains("--task classify"), "{message}");
    }

    #[test]
    fn builtin_autoencoder_drops_labels() {
        let options = CsvOptions {
            task: TaskKind::Autoencoder,
            ..CsvOptions::default()
        };
        let loaded = load(&Source::Builtin("digits".into()), &options).expect("digits loads");
        assert_eq!(loaded.train.targets, Targets::None);
        assert_eq!(loaded.train.len(), 1797);
        assert_eq!(loaded.train.feature_count(), 64);
    }
}
