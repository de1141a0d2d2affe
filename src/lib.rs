//! gradus: train neural networks with first-order, second-order and search methods over one
//! flat parameter vector.
//!
//! The modules are layered, and each imports only from those listed below it:
//!
//! - [`export`]: trained models as ONNX files for other inference runtimes;
//! - [`export`]: trained models written as ONNX for inference runtimes;
//! - [`train`]: the training loop, run folders, checkpoints and observers;
//! - [`methods`]: every training method behind one [`methods::Method`] trait;
//! - [`krylov`]: matrix-free Krylov solvers over a linear-operator trait;
//! - [`objective`]: a network, a loss and a batch as a function of the flat parameters;
//! - [`nn`]: layers, losses, initialisation and the [`nn::Network`];
//! - [`data`]: data sets, readers, splitting, scaling and batching;
//! - [`dist`]: collective operations across the ranks of a data-parallel run;
//! - [`tensor`]: scalars and the kernel interface with its CPU backend.

pub mod compare;
pub mod data;
pub mod dist;
pub mod error;
pub mod export;
pub mod krylov;
pub mod methods;
pub mod nn;
pub mod objective;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
