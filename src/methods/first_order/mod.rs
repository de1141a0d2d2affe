//! First-order methods: each step uses one gradient of the current batch.
//!
//! Every method shares one step (see `shared_step.rs`): compute the gradient, skip the step when
//! the loss or the gradient norm is NaN or infinite, clip, add coupled L2 weight decay
//! `g ← g + weight_decay · w`, then apply the method's update rule with the learning rate
//! times [`StepContext::lr_factor`](crate::methods::StepContext::lr_factor). The update
//! rules follow `torch.optim`. Each settings struct's `Default` has the values listed
//! below, and its field docs name the paper or framework each value comes from. Each
//! method's `new` checks every setting and names the invalid value and its valid range.
//!
//! - [`GradientDescent`], [`Sgd`]: `w ← w − lr g`. Default lr 0.01.
//! - [`Momentum`]: `v ← μ v + g`, `w ← w − lr v`. Defaults lr 0.01, μ 0.9.
//! - [`Nesterov`]: `v ← μ v + g`, `w ← w − lr (g + μ v)`. Defaults lr 0.01, μ 0.9.
//! - [`AdaGrad`]: `s ← s + g²`, `w ← w − lr g / (√s + eps)`. Defaults lr 0.01, eps 1e-10.
//! - [`RmsProp`]: `v ← α v + (1 − α) g²`, `w ← w − lr g / (√v + eps)`. Defaults lr 0.01,
//!   α 0.99, eps 1e-8.
//! - [`Adam`], [`AdamW`]: bias-corrected first and second moments (see [`Adam`]). Defaults
//!   lr 1e-3, β₁ 0.9, β₂ 0.999, eps 1e-8.
//!
//! [`AdamW`] decays the weights directly (`w ← w (1 − lr · weight_decay)`, default 0.01)
//! instead of adding decay to the gradient.
//!
//! State vectors and the gradient buffer are allocated at the first step, from
//! [`Objective::dim`](crate::objective::Objective::dim). Later steps allocate nothing.

mod adagrad;
mod adam;
mod adam_update;
mod momentum;
mod rmsprop;
mod sgd;
mod shared_step;
mod spec;
mod state;
mod validate;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use adagrad::{AdaGrad, AdaGradSettings};
pub use adam::{Adam, AdamSettings, AdamW, AdamWSettings};
pub use momentum::{Momentum, MomentumSettings, Nesterov, NesterovSettings};
pub use rmsprop::{RmsProp, RmsPropSettings};
pub use sgd::{GdSettings, GradientDescent, Sgd, SgdSettings};
pub use spec::FirstOrderSpec;
