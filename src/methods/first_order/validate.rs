//! Range checks shared by the settings of every first-order method.

use crate::methods::clip::Clip;
use crate::{Error, Result};

/// Checks the settings that every first-order method has and returns the clipping they set.
pub(super) fn check_common(
    lr: f64,
    weight_decay: f64,
    clip_norm: Option<f64>,
    clip_value: Option<f64>,
) -> Result<Clip> {
    check_non_negative("lr", lr)?;
    check_non_negative("weight_decay", weight_decay)?;
    Clip::new(clip_norm, clip_value)
}

/// Checks that `value` is finite and at least 0.
pub(super) fn check_non_negative(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::setting(name, value, "expected a finite number >= 0"))
    }
}

/// Checks that a decay rate such as a momentum or a beta is in `[0, 1)`.
pub(super) fn check_rate(name: &str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::setting(name, value, "expected a number in [0, 1)"))
    }
}

/// Checks that a denominator offset such as Adam's epsilon is positive and finite.
pub(super) fn check_eps(value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::setting("eps", value, "expected a finite number > 0"))
    }
}
