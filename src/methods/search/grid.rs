//! Uniform grid search over all parameters or a chosen subset, with an optional local polish
//! of the best grid point.
//!
//! Grid point `k` is decoded from its index in base `points`, the first searched parameter
//! varying fastest, straight into each worker's parameter buffer, so the search allocates
//! nothing per point.

use super::common::{
    check_count, check_interval, copy_to, evaluate_candidates, min_index, saved_scalar,
    saved_vector, to_f64,
};
use super::local::{LocalMethod, LocalMinimizer};
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

const NAME: &str = "grid-search";

/// Settings of [`GridSearch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GridSearchSettings {
    /// Grid points per searched parameter, both ends of its range included, >= 2. Default 5.
    pub points: usize,
    /// Lower end of every searched parameter's range. Default -1.
    pub lower: f64,
    /// Upper end of every searched parameter's range. Default 1.
    pub upper: f64,
    /// One `[lower, upper]` range per searched parameter, replacing `lower` and `upper`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<[f64; 2]>>,
    /// Indices of the searched parameters; the others stay at their start values. Unset:
    /// all parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indices: Option<Vec<usize>>,
    /// The largest grid accepted, in points, >= 1. Default 10,000,000.
    pub max_evaluations: u64,
    /// Grid points evaluated per step, >= 1. Default 65,536.
    pub evaluations_per_step: u64,
    /// Local method run from the best grid point after the grid; unset for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polish: Option<LocalMethod>,
}

impl Default for GridSearchSettings {
    fn default() -> Self {
        GridSearchSettings {
            points: 5,
            lower: -1.0,
            upper: 1.0,
            ranges: None,
            indices: None,
            max_evaluations: 10_000_000,
            evaluations_per_step: 65_536,
            polish: None,
        }
    }
}

impl GridSearchSettings {
    /// Checks the settings that do not depend on the parameter count.
    pub fn validate(&self) -> Result<()> {
        check_count("points", self.points, 2)?;
        check_interval("lower/upper", self.lower, self.upper)?;
        if let Some(ranges) = &self.ranges {
            for &[lower, upper] in ranges {
                check_interval("ranges", lower, upper)?;
            }
            if let Some(indices) = &self.indices {
                if ranges.len() != indices.len() {
                    return Err(Error::setting(
                        "ranges",
                        format!("{} ranges", ranges.len()),
                        &format!("expected one range per index ({})", indices.len()),
                    ));
                }
            }
        }
        if self.max_evaluations == 0 {
            return Err(Error::setting("max_evaluations", 0, "expected at least 1"));
        }
        if self.evaluations_per_step == 0 {
            return Err(Error::setting(
                "evaluations_per_step",
                0,
                "expected at least 1",
            ));
        }
        if let Some(indices) = &self.indices {
            check_count("indices", indices.len(), 1)?;
            self.check_size(indices.len())?;
        }
        Ok(())
    }

    /// Returns the number of grid points over `searched` parameters, or an error when it
    /// exceeds `max_evaluations`.
    fn check_size(&self, searched: usize) -> Result<u64> {
        let size = u32::try_from(searched)
            .ok()
            .and_then(|d| (self.points as u64).checked_pow(d));
        match size {
            Some(size) if size <= self.max_evaluations => Ok(size),
            _ => {
                let size = size.map_or("more than 2^64".to_string(), |s| s.to_string());
                Err(Error::setting(
                    "points",
                    self.points,
                    &format!(
                        "the grid has {}^{searched} = {size} points, more than \
                         max_evaluations = {}; use fewer points or indices, or raise \
                         max_evaluations",
                        self.points, self.max_evaluations
                    ),
                ))
            }
        }
    }
}

/// The grid over the searched parameters, fixed at the first step.
struct Grid {
    /// Parameter index of each searched dimension.
    indices: Vec<usize>,
    /// Grid values of each searched dimension, `points` each.
    levels: Vec<Vec<f64>>,
    size: u64,
}

impl Grid {
    /// Writes grid point `index` into the searched coordinates of `point`.
    fn write<T: Scalar>(&self, mut index: u64, point: &mut [T]) {
        for (&i, levels) in self.indices.iter().zip(&self.levels) {
            let count = levels.len() as u64;
            point[i] = T::of(levels[(index % count) as usize]);
            index /= count;
        }
    }
}

/// Uniform grid search. One [`Method::step`] evaluates up to `evaluations_per_step` grid
/// points in parallel; the step after the last point runs the polish, if any, and finishes.
pub struct GridSearch<T: Scalar> {
    settings: GridSearchSettings,
    polish: Option<Box<dyn LocalMinimizer<T>>>,
    grid: Option<Grid>,
    /// The start point, which also fixes the parameters outside the grid.
    start: Vec<f64>,
    best: Vec<f64>,
    best_value: f64,
    /// Index of the next grid point to evaluate.
    next: u64,
    polished: bool,
}

impl<T: Scalar> GridSearch<T> {
    /// Creates the method after checking its settings.
    pub fn new(settings: GridSearchSettings) -> Result<Self> {
        settings.validate()?;
        let polish = match &settings.polish {
            Some(method) => Some(method.build::<T>()?),
            None => None,
        };
        Ok(GridSearch {
            settings,
            polish,
            grid: None,
            start: Vec::new(),
            best: Vec::new(),
            best_value: f64::INFINITY,
            next: 0,
            polished: false,
        })
    }

    /// Points in the grid, known after the first step.
    pub fn size(&self) -> Option<u64> {
        self.grid.as_ref().map(|g| g.size)
    }

    fn build_grid(&self, dim: usize) -> Result<Grid> {
        let s = &self.settings;
        let indices: Vec<usize> = match &s.indices {
            Some(indices) => indices.clone(),
            None => (0..dim).collect(),
        };
        let mut seen = vec![false; dim];
        for &i in &indices {
            if i >= dim {
                let expected = format!("expected indices below the parameter count {dim}");
                return Err(Error::setting("indices", i, &expected));
            }
            if std::mem::replace(&mut seen[i], true) {
                return Err(Error::setting("indices", i, "expected each index once"));
            }
        }
        if let Some(ranges) = &s.ranges {
            if ranges.len() != indices.len() {
                return Err(Error::setting(
                    "ranges",
                    format!("{} ranges", ranges.len()),
                    &format!(
                        "expected one range per searched parameter ({})",
                        indices.len()
                    ),
                ));
            }
        }
        let size = s.check_size(indices.len())?;
        let last = (s.points - 1) as f64;
        let levels = (0..indices.len())
            .map(|d| {
                let [lower, upper] = s.ranges.as_ref().map_or([s.lower, s.upper], |r| r[d]);
                // This form gives exactly `lower` at k = 0 and exactly `upper` at the end.
                (0..s.points)
                    .map(|k| {
                        let t = k as f64 / last;
                        lower * (1.0 - t) + upper * t
                    })
                    .collect()
            })
            .collect();
        Ok(Grid {
            indices,
            levels,
            size,
        })
    }

    fn report(&self, params: &mut [T], finished: bool) -> StepReport {
        copy_to(params, &self.best);
        StepReport {
            loss: self.best_value,
            finished,
            ..StepReport::default()
        }
    }
}

impl<T: Scalar> Method<T> for GridSearch<T> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn batching(&self) -> Batching {
        Batching::FullBatch
    }

    /// Evaluates the next chunk of the grid and writes the best point so far, the start
    /// point included, into `params`. The report's loss is that point's value.
    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        _context: &StepContext,
    ) -> Result<StepReport> {
        if self.grid.is_none() {
            let grid = self.build_grid(params.len())?;
            self.start = to_f64(params);
            self.best = self.start.clone();
            self.best_value = objective.value(params);
            self.grid = Some(grid);
        }
        let grid = self.grid.as_ref().expect("built above");
        if self.next < grid.size {
            let count = self
                .settings
                .evaluations_per_step
                .min(grid.size - self.next);
            let mut values = vec![0.0; count as usize];
            let first = self.next;
            let mut base = vec![T::zero(); params.len()];
            copy_to(&mut base, &self.start);
            let fill = |i: usize, point: &mut [T]| grid.write(first + i as u64, point);
            evaluate_candidates(objective, &base, &mut values, &fill);
            if let Some(i) = min_index(&values) {
                if values[i] < self.best_value {
                    grid.write(first + i as u64, &mut base);
                    self.best = to_f64(&base);
                    self.best_value = values[i];
                }
            }
            self.next += count;
            return Ok(self.report(params, false));
        }
        if !self.polished {
            self.polished = true;
            if let Some(polish) = &mut self.polish {
                let result = polish.minimize(objective, &self.best)?;
                if result.success && result.value < self.best_value {
                    self.best = result.x;
                    self.best_value = result.value;
                }
            }
        }
        Ok(self.report(params, true))
    }

    fn save_state(&self) -> MethodState {
        MethodState {
            vectors: vec![
                ("start".into(), self.start.clone()),
                ("best".into(), self.best.clone()),
            ],
            scalars: vec![
                ("best_value".into(), self.best_value),
                ("next".into(), self.next as f64),
                ("polished".into(), f64::from(u8::from(self.polished))),
            ],
        }
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.start = saved_vector(state, NAME, "start")?.to_vec();
        self.best = saved_vector(state, NAME, "best")?.to_vec();
        self.best_value = saved_scalar(state, NAME, "best_value")?;
        self.next = saved_scalar(state, NAME, "next")? as u64;
        self.polished = saved_scalar(state, NAME, "polished")? != 0.0;
        self.grid = Some(self.build_grid(self.start.len())?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::search::common::FnObjective;
    use crate::methods::search::testing::{run, Xor};

    #[test]
    fn grid_search_finds_exact_best_point() {
        // Levels -1, -0.5, 0, 0.5, 1 on parameters 0 and 2; parameter 1 stays at its start.
        let f = |x: &[f64]| (x[0] - 0.5).powi(2) + (x[1] - 7.0).powi(2) + (x[2] + 1.0).powi(2);
        let mut objective = FnObjective::new(3, &f, None);
        let settings = GridSearchSettings {
            indices: Some(vec![0, 2]),
            evaluations_per_step: 4,
            ..GridSearchSettings::default()
        };
        let mut method = GridSearch::<f64>::new(settings).expect("valid settings");
        let mut params = vec![0.0, 7.0, 0.0];
        let mut steps = 0;
        loop {
            let report = method
                .step(&mut params, &mut objective, &StepContext::default())
                .expect("step succeeds");
            steps += 1;
            if report.finished {
                assert_eq!(report.loss, 0.0);
                break;
            }
        }
        assert_eq!(params, vec![0.5, 7.0, -1.0]);
        assert_eq!(method.size(), Some(25));
        // Seven steps of at most four points, then the step that finishes.
        assert_eq!(steps, 8);
        assert_eq!(objective.evaluations(), 26);
    }

    #[test]
    fn grid_search_includes_both_ends() {
        // The grid over [-0.1, 0.3] with 3 points must hit 0.3 exactly, where f is 0.
        let f = |x: &[f64]| if x[0] == 0.3 { 0.0 } else { 1.0 };
        let mut objective = FnObjective::new(1, &f, None);
        let settings = GridSearchSettings {
            points: 3,
            lower: -0.1,
            upper: 0.3,
            ..GridSearchSettings::default()
        };
        let mut method = GridSearch::<f64>::new(settings).expect("valid settings");
        let mut params = vec![5.0];
        let loss = run(&mut method, &mut params, &mut objective, 10);
        assert_eq!(loss, 0.0);
        assert_eq!(params, vec![0.3]);
    }

    #[test]
    fn grid_search_polish_reaches_minimum() {
        let f = |x: &[f64]| (x[0] - 0.3).powi(2) + (x[1] + 0.7).powi(2);
        let grad = |x: &[f64], g: &mut [f64]| {
            g[0] = 2.0 * (x[0] - 0.3);
            g[1] = 2.0 * (x[1] + 0.7);
        };
        let mut objective = FnObjective::new(2, &f, Some(&grad));
        let settings = GridSearchSettings {
            polish: Some(LocalMethod::default()),
            ..GridSearchSettings::default()
        };
        let mut method = GridSearch::<f64>::new(settings).expect("valid settings");
        let mut params = vec![0.0, 0.0];
        let loss = run(&mut method, &mut params, &mut objective, 10);
        assert!(loss < 1e-20, "loss {loss}");
        assert!((params[0] - 0.3).abs() < 1e-10, "{params:?}");
    }

    #[test]
    fn grid_search_rejects_oversize_grid() {
        let xor = Xor::new();
        let mut objective = xor.objective();
        let settings = GridSearchSettings {
            max_evaluations: 1_000_000,
            ..GridSearchSettings::default()
        };
        let mut method = GridSearch::<f64>::new(settings).expect("valid settings");
        let mut params = xor.start(0);
        let error = method
            .step(&mut params, &mut objective, &StepContext::default())
            .expect_err("the grid is too large")
            .to_string();
        assert!(error.contains("5^9 = 1953125"), "{error}");
        assert!(error.contains("max_evaluations = 1000000"), "{error}");

        let settings = GridSearchSettings {
            points: 10,
            indices: Some((0..30).collect()),
            ..GridSearchSettings::default()
        };
        let error = GridSearch::<f64>::new(settings)
            .err()
            .expect("rejected")
            .to_string();
        assert!(error.contains("10^30 = more than 2^64"), "{error}");
    }

    /// Runs the 5⁹ grid over [-5, 5] for every weight of the XOR network and returns the best loss and evaluations per
    /// second.
    fn xor_grid_search() -> (f64, f64) {
        let xor = Xor::new();
        let mut objective = xor.objective();
        let settings = GridSearchSettings {
            lower: -5.0,
            upper: 5.0,
            ..GridSearchSettings::default()
        };
        let mut method = GridSearch::<f64>::new(settings).expect("valid settings");
        let mut params = xor.start(0);
        let began = std::time::Instant::now();
        let loss = run(&mut method, &mut params, &mut objective, 1000);
        let seconds = began.elapsed().as_secs_f64();
        // Each evaluation is a forward pass of 4 samples, which the objective counts as 4.
        let evaluations = objective.evaluations() / 4;
        assert_eq!(evaluations, 1_953_125 + 1);
        (loss, evaluations as f64 / seconds)
    }

    #[test]
    fn grid_search_covers_xor_weights() {
        // 1,953,125 forward passes of 4 samples: 0.9 s in the test profile on two shared cores.
        let (loss, rate) = xor_grid_search();
        println!("XOR 5^9 grid: best MSE {loss:.6}, {rate:.0} evaluations per second");
        // The best grid point has MSE 0.0168: levels ±5 saturate the units enough for XOR.
        assert!(loss < 0.02, "best MSE {loss}");
    }
}
