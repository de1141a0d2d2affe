//! Export of trained models to formats that other inference runtimes load.
//!
//! [`export_onnx`] writes an ONNX graph with the model's feature scaling and output transform
//! built in, encoded with hand-written prost messages ([`proto`]), so that building gradus
//! needs no protobuf compiler.

mod graph;
pub mod onnx;
pub mod proto;
#[cfg(test)]
mod tests;

pub use graph::BATCH_DIM;
pub use onnx::{build_model, export_onnx, ExportOptions};

use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A file format that trained models can be exported to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// ONNX, for onnxruntime and other ONNX runtimes.
    Onnx,
}

impl FromStr for ExportFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "onnx" => Ok(ExportFormat::Onnx),
            _ => Err(Error::setting("format", format!("{s:?}"), "expected onnx")),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Onnx => "onnx",
        })
    }
}
