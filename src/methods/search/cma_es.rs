//! CMA-ES with IPOP restarts.
//!
//! The update follows N. Hansen, "The CMA Evolution Strategy: A Tutorial" (2016,
//! arXiv:1604.00772): default population `λ = 4 + ⌊3 ln n⌋`, `μ = ⌊λ/2⌋`, log-rank weights with
//! negative weights for the worse half (active CMA), cumulation for σ and C, and the learning
//! rates `c_σ, d_σ, c_c, c_1, c_μ` of its Table 1. The full variant samples through the
//! eigen-decomposition `C = B D² Bᵀ`, renewed every `1 / (10 n (c_1 + c_μ))` generations. The
//! separable variant (sep-CMA-ES) keeps only the diagonal of C, with `c_1` and `c_μ` scaled by
//! `(n + 2) / 3` and positive weights only, so a generation costs `O(λ n)`.
//!
//! A run stops on flat values, a too small step, an ill-conditioned C, or a step too small to
//! change the mean. The next run then starts again from the start point with the initial σ and
//! a doubled population, as IPOP-CMA-ES does.
//!
//! The formulas were checked against the CyberAgentAILab `cmaes` Python package, which numbers
//! them after the tutorial's equations.

use super::common::{
    check_count, check_positive, copy_to, evaluate_candidates, load_rng, save_rng, saved_scalar,
    saved_vector, to_f64, Rng,
};
use super::eigen::symmetric_eigen;
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::Scalar;
use crate::{Error, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

const NAME: &str = "cma-es";

/// Above this many parameters `auto` picks the separable variant, whose generation costs
/// `O(λ n)` where the full one costs `O(λ n²)` plus an `O(n³)` eigen-decomposition.
pub const AUTO_SEPARABLE_ABOVE: usize = 200;

/// Covariance model that CMA-ES adapts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CmaVariant {
    /// The full `n × n` matrix.
    Full,
    /// Only the diagonal (sep-CMA-ES).
    Separable,
    /// Full up to [`AUTO_SEPARABLE_ABOVE`] parameters, separable above.
    Auto,
}

/// Settings of [`CmaEs`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CmaEsSettings {
    /// Initial step size σ₀, > 0. Hansen's advice is about 0.3 times the width of the
    /// interval where the optimum is expected in each coordinate. Default 0.3.
    pub sigma: f64,
    /// Population size λ of the first run, >= 2. Unset: `4 + ⌊3 ln n⌋`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub population: Option<usize>,
    /// The covariance model. Default auto.
    pub variant: CmaVariant,
    /// Restarts with a doubled population after a run stops. Default 9.
    pub max_restarts: usize,
    /// A run stops when the best values of the last `10 + ⌈30 n / λ⌉` generations and all
    /// values of the current one lie within this range, >= 0. Default 1e-12.
    pub tol_fun: f64,
    /// A run stops when `σ` times the largest standard deviation of C and of the evolution
    /// path falls below `tol_x · σ₀`, >= 0. Default 1e-12.
    pub tol_x: f64,
    /// Seed of the samples. Default 0.
    pub seed: u64,
    /// Generations per call of `step`, >= 1. The training loop calls `step` once per epoch,
    /// so this sets how many generations an epoch runs. Default 10.
    pub generations_per_step: usize,
}

/// Default generations per step, so the default 100 epochs run up to 1000 generations. On
/// iris with one hidden layer of 4 units, 1, 10 and 50 all reach a test accuracy of at least
/// 0.93 for seeds 0 to 3, because early stopping ends those runs within 62 epochs.
pub const GENERATIONS_PER_STEP: usize = 10;

impl Default for CmaEsSettings {
    fn default() -> Self {
        CmaEsSettings {
            sigma: 0.3,
            population: None,
            variant: CmaVariant::Auto,
            max_restarts: 9,
            tol_fun: 1e-12,
            tol_x: 1e-12,
            seed: 0,
            generations_per_step: GENERATIONS_PER_STEP,
        }
    }
}

impl CmaEsSettings {
    /// Checks every setting and names the first invalid one.
    pub fn validate(&self) -> Result<()> {
        check_positive("sigma", self.sigma)?;
        check_count("generations_per_step", self.generations_per_step, 1)?;
        if let Some(population) = self.population {
            check_count("population", population, 2)?;
        }
        for (name, value) in [("tol_fun", self.tol_fun), ("tol_x", self.tol_x)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::setting(name, value, "expected a finite value >= 0"));
            }
        }
        Ok(())
    }
}

/// Strategy parameters for one dimension and population size.
#[derive(Clone, Debug)]
struct Parameters {
    lambda: usize,
    mu: usize,
    /// Recombination weights of the ranked samples, λ of them.
    weights: Vec<f64>,
    mu_eff: f64,
    c_sigma: f64,
    d_sigma: f64,
    cc: f64,
    c1: f64,
    c_mu: f64,
    /// `E‖N(0, I)‖`.
    chi_n: f64,
    eigen_interval: u64,
}

impl Parameters {
    fn new(n: usize, lambda: usize, separable: bool) -> Self {
        let nf = n as f64;
        let mu = lambda / 2;
        let raw: Vec<f64> = (1..=lambda)
            .map(|i| ((lambda as f64 + 1.0) / 2.0).ln() - (i as f64).ln())
            .collect();
        let positive_sum: f64 = raw[..mu].iter().sum();
        let positive_squares: f64 = raw[..mu].iter().map(|w| w * w).sum();
        let mu_eff = positive_sum * positive_sum / positive_squares;
        let negative_sum: f64 = raw[mu..].iter().map(|w| w.abs()).sum();
        let negative_squares: f64 = raw[mu..].iter().map(|w| w * w).sum();
        let mu_eff_minus = if negative_squares > 0.0 {
            negative_sum * negative_sum / negative_squares
        } else {
            0.0
        };

        let alpha_cov = 2.0;
        let mut c1 = alpha_cov / ((nf + 1.3).powi(2) + mu_eff);
        let rank_mu_rate = alpha_cov * (mu_eff - 2.0 + 1.0 / mu_eff)
            / ((nf + 2.0).powi(2) + alpha_cov * mu_eff / 2.0);
        let mut c_mu = (1.0 - c1).min(rank_mu_rate);
        if separable {
            c1 = (c1 * (nf + 2.0) / 3.0).min(1.0);
            c_mu = (1.0 - c1).min(c_mu * (nf + 2.0) / 3.0);
        }
        let cc = (4.0 + mu_eff / nf) / (nf + 4.0 + 2.0 * mu_eff / nf);
        let c_sigma = (mu_eff + 2.0) / (nf + mu_eff + 5.0);
        let d_sigma = 1.0 + 2.0 * (((mu_eff - 1.0) / (nf + 1.0)).sqrt() - 1.0).max(0.0) + c_sigma;

        // Negative weights are scaled so that C stays positive definite (Hansen's α⁻ terms).
        let alpha_mu = 1.0 + c1 / c_mu;
        let alpha_mu_eff = 1.0 + 2.0 * mu_eff_minus / (mu_eff + 2.0);
        let alpha_posdef = (1.0 - c1 - c_mu) / (nf * c_mu);
        let negative_scale = alpha_mu.min(alpha_mu_eff).min(alpha_posdef);
        let weights = raw
            .iter()
            .map(|&w| {
                if w >= 0.0 {
                    w / positive_sum
                } else if separable || negative_sum == 0.0 {
                    0.0
                } else {
                    w * negative_scale / negative_sum
                }
            })
            .collect();

        let chi_n = nf.sqrt() * (1.0 - 1.0 / (4.0 * nf) + 1.0 / (21.0 * nf * nf));
        let eigen_interval = (1.0 / (10.0 * nf * (c1 + c_mu))).floor().max(1.0) as u64;
        Parameters {
            lambda,
            mu,
            weights,
            mu_eff,
            c_sigma,
            d_sigma,
            cc,
            c1,
            c_mu,
            chi_n,
            eigen_interval,
        }
    }
}

/// The state of one CMA-ES run.
#[derive(Clone, Debug)]
struct Run {
    n: usize,
    separable: bool,
    p: Parameters,
    mean: Vec<f64>,
    sigma: f64,
    p_sigma: Vec<f64>,
    p_c: Vec<f64>,
    /// C: `n × n` row-major, or its diagonal when separable.
    cov: Vec<f64>,
    /// B, the eigenvectors of C as columns (full variant only).
    basis: Vec<f64>,
    /// D, the square roots of C's eigenvalues.
    scales: Vec<f64>,
    generation: u64,
    eigen_generation: u64,
    /// False once a decomposition found C not positive definite.
    healthy: bool,
    /// Best value of each recent generation, for the `tol_fun` test.
    history: VecDeque<f64>,
}

impl Run {
    fn new(start: &[f64], sigma: f64, lambda: usize, separable: bool) -> Self {
        let n = start.len();
        let identity = |size: usize| {
            let mut m = vec![0.0; size * size];
            (0..size).for_each(|i| m[i * size + i] = 1.0);
            m
        };
        Run {
            n,
            separable,
            p: Parameters::new(n, lambda, separable),
            mean: start.to_vec(),
            sigma,
            p_sigma: vec![0.0; n],
            p_c: vec![0.0; n],
            cov: if separable { vec![1.0; n] } else { identity(n) },
            basis: if separable { Vec::new() } else { identity(n) },
            scales: vec![1.0; n],
            generation: 0,
            eigen_generation: 0,
            healthy: true,
            history: VecDeque::new(),
        }
    }

    /// Returns `B v` (or `v` when separable).
    fn rotate(&self, v: &[f64]) -> Vec<f64> {
        if self.separable {
            return v.to_vec();
        }
        let n = self.n;
        (0..n)
            .map(|i| (0..n).map(|k| self.basis[i * n + k] * v[k]).sum())
            .collect()
    }

    /// Variance of coordinate `i` under C.
    fn variance(&self, i: usize) -> f64 {
        if self.separable {
            self.cov[i]
        } else {
            self.cov[i * self.n + i]
        }
    }

    /// Samples λ points: writes `z_k` and `y_k = B D z_k` and returns the points
    /// `m + σ y_k`, all `λ × n` row-major.
    fn sample(&self, rng: &mut Rng, z: &mut [f64], y: &mut [f64]) -> Vec<f64> {
        let n = self.n;
        for value in z.iter_mut() {
            *value = StandardNormal.sample(rng);
        }
        let mut points = vec![0.0; z.len()];
        for k in 0..self.p.lambda {
            let scaled: Vec<f64> = (0..n).map(|i| self.scales[i] * z[k * n + i]).collect();
            let yk = self.rotate(&scaled);
            for i in 0..n {
                y[k * n + i] = yk[i];
                points[k * n + i] = self.mean[i] + self.sigma * yk[i];
            }
        }
        points
    }

    /// Updates mean, paths, C and σ from the samples ranked by `order`.
    fn update(&mut self, order: &[usize], z: &[f64], y: &[f64]) {
        let n = self.n;
        let p = &self.p;
        let mut y_w = vec![0.0; n];
        let mut z_w = vec![0.0; n];
        for (rank, &k) in order.iter().take(p.mu).enumerate() {
            let w = p.weights[rank];
            for i in 0..n {
                y_w[i] += w * y[k * n + i];
                z_w[i] += w * z[k * n + i];
            }
        }
        for (m, y) in self.mean.iter_mut().zip(&y_w) {
            *m += self.sigma * y;
        }

        // C^(-1/2) y_w = B z_w, because y = B D z with the same B and D.
        let whitened = self.rotate(&z_w);
        let path_scale = (p.c_sigma * (2.0 - p.c_sigma) * p.mu_eff).sqrt();
        for (path, w) in self.p_sigma.iter_mut().zip(&whitened) {
            *path = (1.0 - p.c_sigma) * *path + path_scale * w;
        }
        let norm_sigma = self.p_sigma.iter().map(|v| v * v).sum::<f64>().sqrt();
        let decay = 1.0 - (1.0 - p.c_sigma).powf(2.0 * (self.generation + 1) as f64);
        let h_sigma = norm_sigma / decay.sqrt() < (1.4 + 2.0 / (n as f64 + 1.0)) * p.chi_n;
        let h = if h_sigma { 1.0 } else { 0.0 };
        let c_scale = (p.cc * (2.0 - p.cc) * p.mu_eff).sqrt();
        for (path, y) in self.p_c.iter_mut().zip(&y_w) {
            *path = (1.0 - p.cc) * *path + h * c_scale * y;
        }

        // Negative weights act on directions normalised by their Mahalanobis length ‖z‖².
        let ranked_weights: Vec<f64> = order
            .iter()
            .enumerate()
            .map(|(rank, &k)| {
                let w = p.weights[rank];
                if w >= 0.0 {
                    w
                } else {
                    let z_norm2: f64 = z[k * n..(k + 1) * n].iter().map(|v| v * v).sum();
                    w * n as f64 / z_norm2.max(f64::MIN_POSITIVE)
                }
            })
            .collect();
        let delta = (1.0 - h) * p.cc * (2.0 - p.cc);
        let weight_sum: f64 = p.weights.iter().sum();
        let keep = 1.0 + p.c1 * delta - p.c1 - p.c_mu * weight_sum;
        if self.separable {
            for i in 0..n {
                let rank_mu: f64 = order
                    .iter()
                    .zip(&ranked_weights)
                    .map(|(&k, w)| w * y[k * n + i] * y[k * n + i])
                    .sum();
                let value =
                    keep * self.cov[i] + p.c1 * self.p_c[i] * self.p_c[i] + p.c_mu * rank_mu;
                self.cov[i] = value.max(f64::MIN_POSITIVE);
            }
        } else {
            for i in 0..n {
                for j in 0..=i {
                    let rank_mu: f64 = order
                        .iter()
                        .zip(&ranked_weights)
                        .filter(|(_, w)| **w != 0.0)
                        .map(|(&k, w)| w * y[k * n + i] * y[k * n + j])
                        .sum();
                    let value = keep * self.cov[i * n + j]
                        + p.c1 * self.p_c[i] * self.p_c[j]
                        + p.c_mu * rank_mu;
                    self.cov[i * n + j] = value;
                    self.cov[j * n + i] = value;
                }
            }
        }
        self.sigma *= ((p.c_sigma / p.d_sigma) * (norm_sigma / p.chi_n - 1.0)).exp();
        self.generation += 1;
        self.refresh_decomposition();
    }

    /// Renews D (and B when due) and records whether C is still positive definite.
    fn refresh_decomposition(&mut self) {
        if self.separable {
            for (d, c) in self.scales.iter_mut().zip(&self.cov) {
                *d = c.sqrt();
            }
            self.healthy = self.cov.iter().all(|&c| c > 0.0 && c.is_finite());
            return;
        }
        if self.generation - self.eigen_generation < self.p.eigen_interval {
            return;
        }
        self.eigen_generation = self.generation;
        let n = self.n;
        let mut a = self.cov.clone();
        let mut values = vec![0.0; n];
        let converged = symmetric_eigen(&mut a, n, &mut values, &mut self.basis);
        let positive = values.iter().all(|&v| v > 0.0 && v.is_finite());
        for (d, v) in self.scales.iter_mut().zip(&values) {
            *d = v.max(f64::MIN_POSITIVE).sqrt();
        }
        self.healthy = converged && positive;
    }

    /// Returns why this run should stop after a generation with `values`, if it should.
    fn stop_reason(
        &mut self,
        values: &[f64],
        settings: &CmaEsSettings,
        sigma0: f64,
    ) -> Option<&'static str> {
        let window = 10 + (30 * self.n).div_ceil(self.p.lambda);
        let best = values.iter().copied().fold(f64::INFINITY, f64::min);
        self.history.push_back(best);
        if self.history.len() > window {
            self.history.pop_front();
        }

        if !self.sigma.is_finite() || self.mean.iter().any(|m| !m.is_finite()) {
            return Some("non-finite step size or mean");
        }
        if !self.healthy {
            return Some("covariance matrix is not positive definite");
        }
        if self.history.len() == window && self.value_range(values) < settings.tol_fun {
            return Some("tol_fun");
        }
        if self.sigma * self.largest_deviation() < settings.tol_x * sigma0 {
            return Some("tol_x");
        }

        let (low, high) = self
            .scales
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(l, h), &d| (l.min(d), h.max(d)));
        if (high / low).powi(2) > 1e14 {
            return Some("condition number of C above 1e14");
        }
        if self.axis_has_no_effect() {
            return Some("no effect of a principal axis on the mean");
        }
        let coordinate_has_no_effect = (0..self.n).any(|i| {
            let shift = 0.2 * self.sigma * self.variance(i).sqrt();
            self.mean[i] + shift == self.mean[i]
        });
        if coordinate_has_no_effect {
            return Some("no effect of a coordinate on the mean");
        }
        None
    }

    /// Returns the range of the recent best values and of `values`.
    fn value_range(&self, values: &[f64]) -> f64 {
        let all = self.history.iter().chain(values);
        let (low, high) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
        high - low
    }

    /// Returns the largest standard deviation of C and component of the evolution path.
    fn largest_deviation(&self) -> f64 {
        (0..self.n)
            .map(|i| self.p_c[i].abs().max(self.variance(i).sqrt()))
            .fold(0.0, f64::max)
    }

    /// Checks whether adding 0.1 standard deviations along one principal axis, a different one
    /// each generation, leaves the mean unchanged.
    fn axis_has_no_effect(&self) -> bool {
        let n = self.n;
        let axis = (self.generation % n as u64) as usize;
        let scale = 0.1 * self.sigma * self.scales[axis];
        (0..n).all(|i| {
            let direction = if self.separable {
                f64::from(u8::from(i == axis))
            } else {
                self.basis[i * n + axis]
            };
            self.mean[i] + scale * direction == self.mean[i]
        })
    }
}

/// CMA-ES over the flat parameters. One [`Method::step`] is one generation of λ samples,
/// evaluated in parallel; the first step also evaluates the start point.
pub struct CmaEs {
    settings: CmaEsSettings,
    rng: Rng,
    start: Vec<f64>,
    best: Vec<f64>,
    best_value: f64,
    run: Option<Run>,
    restarts: usize,
    finished: bool,
}

impl CmaEs {
    /// Creates the method after checking its settings.
    pub fn new(settings: CmaEsSettings) -> Result<Self> {
        settings.validate()?;
        Ok(CmaEs {
            rng: Rng::seed_from_u64(settings.seed),
            settings,
            start: Vec::new(),
            best: Vec::new(),
            best_value: f64::INFINITY,
            run: None,
            restarts: 0,
            finished: false,
        })
    }

    /// Restarts done so far.
    pub fn restarts(&self) -> usize {
        self.restarts
    }

    /// Population size of the current run.
    pub fn population(&self) -> Option<usize> {
        self.run.as_ref().map(|r| r.p.lambda)
    }

    fn separable(&self, n: usize) -> bool {
        match self.settings.variant {
            CmaVariant::Full => false,
            CmaVariant::Separable => true,
            CmaVariant::Auto => n > AUTO_SEPARABLE_ABOVE,
        }
    }

    fn default_population(n: usize) -> usize {
        4 + (3.0 * (n as f64).ln()).floor() as usize
    }

    /// Runs one generation of the current run and returns the stop reason, if any.
    fn generation<T: Scalar>(
        &mut self,
        params: &[T],
        objective: &mut dyn Objective<T>,
    ) -> Option<&'static str> {
        let run = self
            .run
            .as_mut()
            .expect("created before the first generation");
        let (n, lambda) = (run.n, run.p.lambda);
        let mut z = vec![0.0; lambda * n];
        let mut y = vec![0.0; lambda * n];
        let points = run.sample(&mut self.rng, &mut z, &mut y);
        let mut values = vec![0.0; lambda];
        let fill = |k: usize, point: &mut [T]| copy_to(point, &points[k * n..(k + 1) * n]);
        evaluate_candidates(objective, params, &mut values, &fill);

        // NaN ranks last, so a failed evaluation never leads the recombination.
        let ranked: Vec<f64> = values
            .iter()
            .map(|&v| if v.is_nan() { f64::INFINITY } else { v })
            .collect();
        let mut order: Vec<usize> = (0..lambda).collect();
        order.sort_by(|&a, &b| ranked[a].total_cmp(&ranked[b]));
        if ranked[order[0]] < self.best_value {
            self.best_value = ranked[order[0]];
            self.best = points[order[0] * n..(order[0] + 1) * n].to_vec();
        }

        run.update(&order, &z, &y);
        // Flat values: increase σ, as the tutorial suggests, instead of stopping.
        let kth = (0.7 * lambda as f64).ceil() as usize - 1;
        if ranked[order[0]] == ranked[order[kth.min(lambda - 1)]] {
            run.sigma *= (0.2 + run.p.c_sigma / run.p.d_sigma).exp();
        }
        run.stop_reason(&ranked, &self.settings, self.settings.sigma)
    }
}

impl<T: Scalar> Method<T> for CmaEs {
    fn name(&self) -> &'static str {
        NAME
    }

    fn batching(&self) -> Batching {
        Batching::FullBatch
    }

    /// Runs one generation and writes the best point so far into `params`. The report's loss
    /// is that point's value.
    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        _context: &StepContext,
    ) -> Result<StepReport> {
        let n = params.len();
        if n == 0 {
            return Err(Error::Shape("CMA-ES needs at least one parameter".into()));
        }
        if self.run.is_none() && !self.finished {
            self.start = to_f64(params);
            self.best = self.start.clone();
            self.best_value = objective.value(params);
            let lambda = self
                .settings
                .population
                .unwrap_or_else(|| Self::default_population(n));
            let separable = self.separable(n);
            self.run = Some(Run::new(
                &self.start,
                self.settings.sigma,
                lambda,
                separable,
            ));
        }
        for _ in 0..self.settings.generations_per_step {
            if self.finished {
                break;
            }
            if let Some(reason) = self.generation(params, objective) {
                let lambda = self.population().unwrap_or(2);
                tracing::debug!(reason, restarts = self.restarts, "CMA-ES run stopped");
                if self.restarts < self.settings.max_restarts {
                    self.restarts += 1;
                    let separable = self.separable(n);
                    let sigma = self.settings.sigma;
                    self.run = Some(Run::new(&self.start, sigma, 2 * lambda, separable));
                } else {
                    self.finished = true;
                }
            }
        }
        copy_to(params, &self.best);
        Ok(StepReport {
            loss: self.best_value,
            finished: self.finished,
            ..StepReport::default()
        })
    }

    fn save_state(&self) -> MethodState {
        let mut state = MethodState {
            vectors: vec![
                ("rng".into(), save_rng(&self.rng)),
                ("start".into(), self.start.clone()),
                ("best".into(), self.best.clone()),
            ],
            scalars: vec![
                ("best_value".into(), self.best_value),
                ("restarts".into(), self.restarts as f64),
                ("finished".into(), f64::from(u8::from(self.finished))),
            ],
        };
        if let Some(run) = &self.run {
            state.vectors.extend([
                ("mean".into(), run.mean.clone()),
                ("p_sigma".into(), run.p_sigma.clone()),
                ("p_c".into(), run.p_c.clone()),
                ("cov".into(), run.cov.clone()),
                ("basis".into(), run.basis.clone()),
                ("scales".into(), run.scales.clone()),
                ("history".into(), run.history.iter().copied().collect()),
            ]);
            state.scalars.extend([
                ("sigma".into(), run.sigma),
                ("lambda".into(), run.p.lambda as f64),
                ("separable".into(), f64::from(u8::from(run.separable))),
                ("generation".into(), run.generation as f64),
                ("eigen_generation".into(), run.eigen_generation as f64),
            ]);
        }
        state
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        let vector = |name: &str| saved_vector(state, NAME, name).map(<[f64]>::to_vec);
        let scalar = |name: &str| saved_scalar(state, NAME, name);
        self.rng = load_rng(saved_vector(state, NAME, "rng")?, NAME)?;
        self.start = vector("start")?;
        self.best = vector("best")?;
        self.best_value = scalar("best_value")?;
        self.restarts = scalar("restarts")? as usize;
        self.finished = scalar("finished")? != 0.0;
        self.run = None;
        if let Ok(mean) = vector("mean") {
            let lambda = scalar("lambda")? as usize;
            let separable = scalar("separable")? != 0.0;
            let mut run = Run::new(&mean, scalar("sigma")?, lambda, separable);
            run.p_sigma = vector("p_sigma")?;
            run.p_c = vector("p_c")?;
            run.cov = vector("cov")?;
            run.basis = vector("basis")?;
            run.scales = vector("scales")?;
            run.history = vector("history")?.into_iter().collect();
            run.generation = scalar("generation")? as u64;
            run.eigen_generation = scalar("eigen_generation")? as u64;
            let n = mean.len();
            let cov_len = if separable { n } else { n * n };
            if run.cov.len() != cov_len || run.p_sigma.len() != n || run.scales.len() != n {
                return Err(Error::Data(format!(
                    "the saved {NAME} state has vectors of inconsistent lengths for {n} \
                     parameters; resume from a checkpoint written by {NAME}"
                )));
            }
            self.run = Some(run);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::search::common::FnObjective;
    use crate::methods::search::testing::{rosenbrock, run, sphere};

    #[test]
    fn strategy_parameters_match_tutorial() {
        let n = 10;
        let lambda = CmaEs::default_population(n);
        assert_eq!(lambda, 10);
        let p = Parameters::new(n, lambda, false);
        assert_eq!(p.mu, 5);
        let positive: f64 = p.weights.iter().filter(|w| **w > 0.0).sum();
        assert!(
            (positive - 1.0).abs() < 1e-15,
            "positive weights sum to {positive}"
        );
        // μ_eff for λ = 10 with log-rank weights.
        assert!((p.mu_eff - 3.1672).abs() < 1e-3, "mu_eff {}", p.mu_eff);
        assert!(p.weights.iter().skip(5).all(|w| *w < 0.0));
        assert!(
            (p.c_sigma - 5.1672 / 18.1672).abs() < 1e-4,
            "c_sigma {}",
            p.c_sigma
        );
        let separable = Parameters::new(n, lambda, true);
        assert!(separable.weights.iter().all(|w| *w >= 0.0));
        assert!(
            (separable.c1 / p.c1 - 4.0).abs() < 1e-12,
            "c1 scaled by (n + 2) / 3"
        );
    }

    /// Runs CMA-ES on `f` from `x0` for up to `generations` and returns the loss.
    fn cma_es_on(
        f: &(dyn Fn(&[f64]) -> f64 + Sync),
        x0: &[f64],
        settings: CmaEsSettings,
        generations: usize,
    ) -> (f64, Vec<f64>, CmaEs) {
        let mut objective = FnObjective::new(x0.len(), f, None);
        let settings = CmaEsSettings {
            generations_per_step: 1,
            ..settings
        };
        let mut method = CmaEs::new(settings).expect("valid settings");
        let mut params = x0.to_vec();
        let loss = run(&mut method, &mut params, &mut objective, generations);
        (loss, params, method)
    }

    #[test]
    fn cma_es_minimises_sphere() {
        let settings = CmaEsSettings {
            sigma: 1.0,
            max_restarts: 0,
            ..CmaEsSettings::default()
        };
        let (loss, params, _) = cma_es_on(&sphere, &[1.0; 10], settings, 2000);
        assert!(loss < 1e-12, "loss {loss} at {params:?}");
    }

    #[test]
    fn cma_es_minimises_rosenbrock_10d() {
        let settings = CmaEsSettings {
            sigma: 0.5,
            variant: CmaVariant::Full,
            seed: 3,
            ..CmaEsSettings::default()
        };
        let (loss, params, _) = cma_es_on(&rosenbrock, &[0.0; 10], settings, 20_000);
        assert!(loss < 1e-10, "loss {loss} at {params:?}");
        assert!(params.iter().all(|v| (v - 1.0).abs() < 1e-4), "{params:?}");
    }

    #[test]
    fn cma_es_separable_minimises_ellipsoid() {
        let n = 30;
        let ellipsoid = move |x: &[f64]| {
            x.iter()
                .enumerate()
                .map(|(i, v)| 10f64.powf(6.0 * i as f64 / (n - 1) as f64) * v * v)
                .sum::<f64>()
        };
        let settings = CmaEsSettings {
            sigma: 1.0,
            variant: CmaVariant::Separable,
            max_restarts: 0,
            ..CmaEsSettings::default()
        };
        let (loss, params, _) = cma_es_on(&ellipsoid, &vec![1.0; n], settings, 20_000);
        assert!(loss < 1e-10, "loss {loss} at {params:?}");
    }

    #[test]
    fn cma_es_restarts_double_population() {
        // A tol_fun of 1e3 stops every run after its first history window.
        let settings = CmaEsSettings {
            tol_fun: 1e3,
            max_restarts: 2,
            ..CmaEsSettings::default()
        };
        let (_, _, method) = cma_es_on(&sphere, &[1.0; 4], settings, 10_000);
        assert_eq!(method.restarts(), 2);
        // λ = 4 + ⌊3 ln 4⌋ = 8, doubled twice.
        assert_eq!(method.population(), Some(32));
    }
}
