//! Data sets: the in-memory [`Dataset`], feature scaling and batching.
//!
//! [`Scaler`] fits feature scaling on the training set, and [`Batches`] walks a set in
//! mini-batches.

mod batch;
mod dataset;
mod scale;

pub use batch::Batches;
pub use dataset::{Dataset, Targets};
pub use scale::{ScaleKind, Scaler};
