//! Learning-rate schedules: the multiplier that the training loop puts in
//! [`StepContext::lr_factor`](super::StepContext::lr_factor) before each step.
//!
//! A schedule is a function of the epoch, with closed forms taken from PyTorch's `StepLR`,
//! `ExponentialLR` and `CosineAnnealingLR`. An optional linear warm-up over the first steps
//! multiplies it.
//!
//! # Command-line form
//!
//! [`Schedule`] parses a compact form:
//!
//! | form | schedule |
//! |---|---|
//! | `constant` | factor 1 |
//! | `step:10:0.5` | multiply by 0.5 every 10 epochs |
//! | `exponential:0.95` | multiply by 0.95 every epoch |
//! | `cosine:50` | cosine from 1 down to 0 over 50 epochs |
//! | `cosine:50:0.01` | cosine from 1 down to 0.01 over 50 epochs |

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A learning-rate multiplier as a function of the epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Schedule {
    /// Factor 1 at every epoch.
    #[default]
    Constant,
    /// `gamma^floor(epoch / step_size)`, as PyTorch's `StepLR`.
    Step {
        /// Epochs between two decays, at least 1.
        step_size: usize,
        /// Decay per `step_size` epochs, in `(0, 1]`.
        gamma: f64,
    },
    /// `gamma^epoch`, as PyTorch's `ExponentialLR`.
    Exponential {
        /// Decay per epoch, in `(0, 1]`.
        gamma: f64,
    },
    /// `min_factor + (1 - min_factor) (1 + cos(π epoch / total_epochs)) / 2`, as PyTorch's
    /// `CosineAnnealingLR` with `eta_min = min_factor · lr`. From `total_epochs` on, the
    /// factor stays at `min_factor`. PyTorch's closed form instead rises again after
    /// `T_max`.
    Cosine {
        /// Epochs over which the factor falls from 1 to `min_factor`; 0 means the run's own
        /// epoch count, filled in by [`Schedule::resolve`].
        total_epochs: usize,
        /// Final factor, in `[0, 1]`. Defaults to 0.
        #[serde(default)]
        min_factor: f64,
    },
}

impl Schedule {
    /// Checks every parameter against its valid range.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step { step_size, gamma } => {
                if step_size == 0 {
                    return Err(Error::setting(
                        "step_size",
                        step_size,
                        "expected at least 1 epoch between decays",
                    ));
                }
                check_gamma(gamma)
            }
            Schedule::Exponential { gamma } => check_gamma(gamma),
            Schedule::Cosine {
                total_epochs: _,
                min_factor,
            } => {
                if !(0.0..=1.0).contains(&min_factor) {
                    return Err(Error::setting(
                        "min_factor",
                        min_factor,
                        "expected a number in [0, 1]",
                    ));
                }
                Ok(())
            }
        }
    }

    /// Returns the schedule with a cosine length of 0 replaced by `epochs`, the run's length.
    pub fn resolve(&self, epochs: usize) -> Schedule {
        match *self {
            Schedule::Cosine {
                total_epochs: 0,
                min_factor,
            } => Schedule::Cosine {
                total_epochs: epochs.max(1),
                min_factor,
            },
            ref other => other.clone(),
        }
    }

    /// Returns the learning-rate multiplier at `epoch`, counted from 0. An unresolved cosine
    /// schedule (length 0) gives 1.
    pub fn factor(&self, epoch: usize) -> f64 {
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Step { step_size, gamma } => gamma.powf((epoch / step_size.max(1)) as f64),
            Schedule::Exponential { gamma } => gamma.powf(epoch as f64),
            Schedule::Cosine {
                total_epochs,
                min_factor,
            } => {
                if total_epochs == 0 {
                    return 1.0;
                }
                if epoch >= total_epochs {
                    return min_factor;
                }
                let progress = epoch as f64 / total_epochs as f64;
                min_factor
                    + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

fn check_gamma(gamma: f64) -> Result<()> {
    if gamma > 0.0 && gamma <= 1.0 {
        Ok(())
    } else {
        Err(Error::setting(
            "gamma",
            gamma,
            "expected a number in (0, 1]",
        ))
    }
}

const SCHEDULE_FORMS: &str =
    "expected constant, step:EPOCHS:GAMMA, exponential:GAMMA or cosine[:EPOCHS[:MIN_FACTOR]]";

impl FromStr for Schedule {
    type Err = Error;

    /// Parses the compact form described in the module documentation and validates it.
    fn from_str(s: &str) -> Result<Self> {
        let invalid = || Error::setting("schedule", s, SCHEDULE_FORMS);
        let parts: Vec<&str> = s.trim().split(':').collect();
        let schedule = match parts.as_slice() {
            ["constant"] => Schedule::Constant,
            ["cosine"] => Schedule::Cosine {
                total_epochs: 0,
                min_factor: 0.0,
            },
            ["step", step_size, gamma] => Schedule::Step {
                step_size: step_size.parse().map_err(|_| invalid())?,
                gamma: gamma.parse().map_err(|_| invalid())?,
            },
            ["exponential", gamma] => Schedule::Exponential {
                gamma: gamma.parse().map_err(|_| invalid())?,
            },
            ["cosine", total_epochs] => Schedule::Cosine {
                total_epochs: total_epochs.parse().map_err(|_| invalid())?,
                min_factor: 0.0,
            },
            ["cosine", total_epochs, min_factor] => Schedule::Cosine {
                total_epochs: total_epochs.parse().map_err(|_| invalid())?,
                min_factor: min_factor.parse().map_err(|_| invalid())?,
            },
            _ => return Err(invalid()),
        };
        schedule.validate()?;
        Ok(schedule)
    }
}

impl fmt::Display for Schedule {
    /// Writes the compact form that [`Schedule::from_str`] parses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Schedule::Constant => write!(f, "constant"),
            Schedule::Step { step_size, gamma } => write!(f, "step:{step_size}:{gamma}"),
            Schedule::Exponential { gamma } => write!(f, "exponential:{gamma}"),
            Schedule::Cosine {
                total_epochs,
                min_factor,
            } => {
                if min_factor == 0.0 {
                    write!(f, "cosine:{total_epochs}")
                } else {
                    write!(f, "cosine:{total_epochs}:{min_factor}")
                }
            }
        }
    }
}

/// A schedule over epochs with an optional linear warm-up over the first steps.
///
/// In TOML the schedule's fields sit beside `warmup_steps`:
///
/// ```toml
/// [schedule]
/// kind = "cosine"
/// total_epochs = 50
/// warmup_steps = 500
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The schedule over epochs.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// Steps of linear warm-up. The factor at step `s < warmup_steps` is multiplied by
    /// `(s + 1) / warmup_steps`, so the first step uses a small rate and step
    /// `warmup_steps - 1` the full one. 0 turns warm-up off.
    #[serde(default)]
    pub warmup_steps: usize,
}

impl LrSchedule {
    /// Creates a schedule and validates it.
    pub fn new(schedule: Schedule, warmup_steps: usize) -> Result<Self> {
        let lr_schedule = LrSchedule {
            schedule,
            warmup_steps,
        };
        lr_schedule.validate()?;
        Ok(lr_schedule)
    }

    /// Checks the schedule's parameters against their valid ranges.
    pub fn validate(&self) -> Result<()> {
        self.schedule.validate()
    }

    /// Returns the learning-rate multiplier for the step that has `step` steps before it, in
    /// epoch `epoch`.
    pub fn factor(&self, step: u64, epoch: usize) -> f64 {
        self.warmup_factor(step) * self.schedule.factor(epoch)
    }

    fn warmup_factor(&self, step: u64) -> f64 {
        let warmup = self.warmup_steps as u64;
        if step >= warmup {
            1.0
        } else {
            (step + 1) as f64 / warmup as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12
    }

    #[test]
    fn constant_is_one() {
        for epoch in [0, 1, 100] {
            assert_eq!(Schedule::Constant.factor(epoch), 1.0);
        }
    }

    #[test]
    fn step_matches_step_lr() {
        let schedule = Schedule::Step {
            step_size: 3,
            gamma: 0.5,
        };
        let expected = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25];
        for (epoch, &value) in expected.iter().enumerate() {
            assert_eq!(schedule.factor(epoch), value, "epoch {epoch}");
        }
    }

    #[test]
    fn exponential_matches_exponential_lr() {
        let schedule = Schedule::Exponential { gamma: 0.9 };
        assert_eq!(schedule.factor(0), 1.0);
        assert!(close(schedule.factor(1), 0.9));
        assert!(close(schedule.factor(5), 0.59049));
    }

    #[test]
    fn cosine_matches_cosine_annealing_lr() {
        let schedule = Schedule::Cosine {
            total_epochs: 10,
            min_factor: 0.1,
        };
        for epoch in 0..10 {
            let expected = 0.1 + 0.9 * (1.0 + (PI * epoch as f64 / 10.0).cos()) / 2.0;
            assert!(close(schedule.factor(epoch), expected), "epoch {epoch}");
        }
        assert_eq!(schedule.factor(0), 1.0);
        assert!(close(schedule.factor(5), 0.55));
    }

    #[test]
    fn cosine_holds_minimum_after_end() {
        let schedule = Schedule::Cosine {
            total_epochs: 4,
            min_factor: 0.0,
        };
        assert_eq!(schedule.factor(4), 0.0);
        assert_eq!(schedule.factor(9), 0.0);
    }

    #[test]
    fn warmup_rises_linearly_to_one() {
        let lr_schedule = LrSchedule::new(Schedule::Exponential { gamma: 0.5 }, 4).unwrap();
        assert_eq!(lr_schedule.factor(0, 0), 0.25);
        assert_eq!(lr_schedule.factor(1, 0), 0.5);
        assert_eq!(lr_schedule.factor(3, 0), 1.0);
        assert_eq!(lr_schedule.factor(4, 0), 1.0);
        assert_eq!(lr_schedule.factor(1, 1), 0.25);
        assert_eq!(lr_schedule.factor(100, 2), 0.25);
    }

    #[test]
    fn no_warmup_is_schedule_alone() {
        let lr_schedule = LrSchedule::default();
        assert_eq!(lr_schedule.factor(0, 0), 1.0);
        assert_eq!(lr_schedule.warmup_steps, 0);
    }

    #[test]
    fn compact_form_parses() {
        let cases = [
            ("constant", Schedule::Constant),
            (
                "step:10:0.5",
                Schedule::Step {
                    step_size: 10,
                    gamma: 0.5,
                },
            ),
            ("exponential:0.95", Schedule::Exponential { gamma: 0.95 }),
            (
                "cosine:50",
                Schedule::Cosine {
                    total_epochs: 50,
                    min_factor: 0.0,
                },
            ),
            (
                "cosine:50:0.01",
                Schedule::Cosine {
                    total_epochs: 50,
                    min_factor: 0.01,
                },
            ),
        ];
        for (text, expected) in cases {
            let parsed: Schedule = text.parse().unwrap();
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn bare_cosine_spans_the_run() {
        let schedule: Schedule = "cosine".parse().expect("valid");
        assert_eq!(schedule.factor(5), 1.0);
        let resolved = schedule.resolve(10);
        assert!(close(resolved.factor(5), 0.5));
        assert!(close(resolved.factor(10), 0.0));
    }

    #[test]
    fn malformed_compact_form_is_rejected() {
        for text in [
            "",
            "linear",
            "step:10",
            "step:x:0.5",
            "cosine:x",
            "exponential:a",
        ] {
            let message = text.parse::<Schedule>().unwrap_err().to_string();
            assert!(message.contains("invalid schedule"), "{message}");
            assert!(message.contains("step:EPOCHS:GAMMA"), "{message}");
        }
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        let cases = [
            ("step:0:0.5", "invalid step_size 0"),
            ("step:10:0", "invalid gamma 0"),
            ("step:10:1.5", "invalid gamma 1.5"),
            ("exponential:-0.5", "invalid gamma -0.5"),
            ("exponential:NaN", "invalid gamma NaN"),
            ("cosine:10:2", "invalid min_factor 2"),
        ];
        for (text, expected) in cases {
            let message = text.parse::<Schedule>().unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn toml_round_trip_keeps_warmup() {
        let text = "kind = \"cosine\"\ntotal_epochs = 50\nwarmup_steps = 500\n";
        let parsed: LrSchedule = toml::from_str(text).unwrap();
        let expected = LrSchedule {
            schedule: Schedule::Cosine {
                total_epochs: 50,
                min_factor: 0.0,
            },
            warmup_steps: 500,
        };
        assert_eq!(parsed, expected);
        let written = toml::to_string(&parsed).unwrap();
        assert_eq!(toml::from_str::<LrSchedule>(&written).unwrap(), expected);
    }

    #[test]
    fn toml_step_schedule_without_warmup() {
        let parsed: LrSchedule =
            toml::from_str("kind = \"step\"\nstep_size = 10\ngamma = 0.5\n").unwrap();
        assert_eq!(parsed.warmup_steps, 0);
        assert_eq!(parsed.schedule.factor(10), 0.5);
    }

    #[test]
    fn toml_unknown_field_is_rejected() {
        let result =
            toml::from_str::<LrSchedule>("kind = \"exponential\"\ngamma = 0.9\ngama = 1\n");
        let message = result.unwrap_err().to_string();
        assert!(message.contains("unknown field `gama`"), "{message}");
    }
}
