//! TEMPORARY shim.
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct LrSchedule {
    pub schedule: Schedule,
    pub warmup_steps: usize,
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub enum Schedule {
    #[default]
    Constant,
}
impl std::str::FromStr for Schedule {
    type Err = crate::Error;
    fn from_str(_: &str) -> crate::Result<Self> {
        Ok(Schedule::Constant)
    }
}
impl LrSchedule {
    pub fn factor(&self, _: u64, _: usize) -> f64 {
        1.0
    }
}
