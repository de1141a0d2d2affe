//! Hessian-free optimisation: Martens (2010), "Deep learning via Hessian-free optimization",
//! ICML. The details follow the MATLAB demo code Martens published with the paper (its
//! training script and `conjgrad_1.m`).
//!
//! Each iteration approximately solves `(C + λ I) d = −∇f` with a Krylov method, where `C`
//! is the Gauss-Newton matrix or the Hessian, applied through curvature products only:
//!
//! 1. The solver starts from the previous solution times `warm_start_decay` (0.95).
//! 2. CG stops by Martens' relative-progress rule on the quadratic model
//!    `φ(x) = ½ xᵀ(C + λI)x + ∇fᵀx`: at iteration `i > k`, with `k = max(10, ⌈0.1 i⌉)`, when
//!    `φ_{i−k} < 0` and `(φ_i − φ_{i−k}) / φ_i < k ε`. Other solvers stop on their residual
//!    tolerance or the iteration limit.
//! 3. Iterates at iterations `⌈1.3^j⌉` and the final one are kept (the demo code keeps
//!    `⌈5 · 1.3^j⌉`, so it never returns iterates 1 to 4). Starting from the last,
//!    the search steps back through them while the objective does not get worse
//!    ("CG backtracking").
//! 4. The reduction ratio `ρ = (f(θ + d) − f(θ)) / (∇fᵀd + ½ dᵀC d)`, with the undamped
//!    model as in Martens' code, adjusts `λ`: `ρ < 1/4` multiplies it by 3/2, `ρ > 3/4`
//!    by 2/3.
//! 5. An Armijo backtracking search on `θ + t d` (`c = 10⁻²`, `t ← 0.8 t`, at most 60
//!    reductions) takes the step, or rejects it when no `t` qualifies.

use super::{restore_scalar, restore_vector, StartPoint, WeightDecay};
use crate::krylov::{self, Diagonal, KrylovMethod, LinearOperator, SolveInfo};
use crate::methods::{Batching, Method, MethodState, StepContext, StepReport};
use crate::objective::Objective;
use crate::tensor::{dot, norm, Scalar};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Factor on `λ` when `ρ < 1/4` (Martens' `boost`).
const DAMPING_INCREASE: f64 = 1.5;
/// Factor on `λ` when `ρ > 3/4` (Martens' `drop`).
const DAMPING_DECREASE: f64 = 2.0 / 3.0;
/// Growth factor between kept iterates.
const ITERATE_SPACING: f64 = 1.3;
/// Sufficient-decrease constant of the final line search.
const ARMIJO_C: f64 = 1e-2;
/// Step-length factor per reduction of the final line search.
const BACKTRACK_FACTOR: f64 = 0.8;
/// Reductions after which the final line search rejects the step.
const MAX_BACKTRACKS: usize = 60;
/// Exponent of the diagonal preconditioner.
const PRECONDITIONER_EXPONENT: f64 = 0.75;

/// The curvature matrix `C` of the quadratic model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Curvature {
    /// The Gauss-Newton matrix `Jᵀ H_L J`, positive semidefinite for the losses here.
    #[default]
    GaussNewton,
    /// The Hessian, which can be indefinite. MINRES, GMRES and the BiCG methods solve
    /// indefinite systems. CG stops at the first direction of negative curvature.
    Hessian,
}

/// Settings of [`HessianFree`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HfSettings {
    /// Initial Tikhonov damping `λ`. Martens' demo code starts at 45 for deep autoencoders
    /// with many outputs. The adaptation moves `λ` by a factor of up to 3/2 per iteration.
    pub damping: f64,
    /// The curvature matrix.
    pub curvature: Curvature,
    /// Fraction of the batch, from its start, used for curvature products. Objectives that
    /// cannot be restricted use the whole batch.
    pub curvature_fraction: f64,
    /// The Krylov solver for the damped system.
    pub krylov: KrylovMethod,
    /// Maximum Krylov iterations per step.
    pub max_krylov_iterations: usize,
    /// Relative residual tolerance of the Krylov solver.
    pub krylov_tolerance: f64,
    /// `ε` of Martens' relative-progress rule for CG.
    pub progress_tolerance: f64,
    /// Factor on the previous solution that starts the next solve.
    pub warm_start_decay: f64,
    /// Precondition CG with Martens' `diag(F + λ + w)^0.75`, where `F` is the diagonal of
    /// the empirical Fisher matrix on the batch and `w` the weight decay.
    pub preconditioner: bool,
    /// Iterations per call of `step`.
    pub max_iterations_per_step: usize,
    /// The method reports `finished` once `‖∇f‖₂` is at most this.
    pub gradient_tolerance: f64,
    /// L2 penalty `w`: the method minimises `f(θ) + ½ w ‖θ‖²`, adding `w θ` to the gradient
    /// and `w I` to the curvature matrix. It covers every parameter, biases included, and
    /// the step losses reported to the training loop include it. 0 turns it off.
    pub weight_decay: f64,
    /// Take one step per minibatch of the training loop's batch size instead of one step
    /// per epoch on the whole training part.
    pub minibatch: bool,
}

impl Default for HfSettings {
    fn default() -> Self {
        HfSettings {
            damping: 1.0,
            curvature: Curvature::GaussNewton,
            curvature_fraction: 1.0,
            krylov: KrylovMethod::Cg,
            max_krylov_iterations: 250,
            krylov_tolerance: 1e-6,
            progress_tolerance: 5e-4,
            warm_start_decay: 0.95,
            preconditioner: false,
            max_iterations_per_step: 1,
            gradient_tolerance: 1e-5,
            weight_decay: 0.0,
            minibatch: false,
        }
    }
}

impl HfSettings {
    /// Checks every setting against its valid range.
    pub fn validate(&self) -> Result<()> {
        if !(self.damping > 0.0 && self.damping.is_finite()) {
            return Err(Error::setting(
                "damping",
                self.damping,
                "expected a finite value > 0",
            ));
        }
        if !(self.curvature_fraction > 0.0 && self.curvature_fraction <= 1.0) {
            return Err(Error::setting(
                "curvature_fraction",
                self.curvature_fraction,
                "expected 0 < curvature_fraction <= 1",
            ));
        }
        if self.max_krylov_iterations == 0 {
            return Err(Error::setting(
                "max_krylov_iterations",
                self.max_krylov_iterations,
                "expected at least 1",
            ));
        }
        let tolerances = [
            ("krylov_tolerance", self.krylov_tolerance),
            ("progress_tolerance", self.progress_tolerance),
            ("gradient_tolerance", self.gradient_tolerance),
            ("weight_decay", self.weight_decay),
        ];
        for (name, value) in tolerances {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(Error::setting(name, value, "expected a finite value >= 0"));
            }
        }
        if !(0.0..=1.0).contains(&self.warm_start_decay) {
            return Err(Error::setting(
                "warm_start_decay",
                self.warm_start_decay,
                "expected 0 <= warm_start_decay <= 1",
            ));
        }
        if self.max_iterations_per_step == 0 {
            return Err(Error::setting(
                "max_iterations_per_step",
                self.max_iterations_per_step,
                "expected at least 1",
            ));
        }
        Ok(())
    }
}

/// The Hessian-free method.
#[derive(Debug)]
pub struct HessianFree<T: Scalar> {
    settings: HfSettings,
    damping: f64,
    start: StartPoint<T>,
    /// The last Krylov solution, which starts the next solve.
    previous_solution: Vec<T>,
    trial: Vec<T>,
    last_solve: Option<SolveInfo>,
}

impl<T: Scalar> HessianFree<T> {
    /// Creates the method after validating `settings`.
    pub fn new(settings: HfSettings) -> Result<Self> {
        settings.validate()?;
        Ok(HessianFree {
            damping: settings.damping,
            settings,
            start: StartPoint::default(),
            previous_solution: Vec::new(),
            trial: Vec::new(),
            last_solve: None,
        })
    }

    /// Returns the current damping `λ`.
    pub fn damping(&self) -> f64 {
        self.damping
    }

    /// Returns the record of the last Krylov solve.
    pub fn last_solve(&self) -> Option<&SolveInfo> {
        self.last_solve.as_ref()
    }

    /// Runs one Hessian-free iteration from `params`, where the loss is `value`. Returns
    /// whether it took a step. When it did not, `params` are unchanged.
    fn iterate(
        &mut self,
        objective: &mut dyn Objective<T>,
        params: &mut [T],
        value: f64,
        gradient: &[T],
    ) -> Result<bool> {
        let fisher = self.settings.preconditioner.then(|| {
            let mut diagonal = vec![T::zero(); params.len()];
            let found = objective.empirical_fisher_diagonal(params, &mut diagonal);
            found.then_some(diagonal)
        });
        let system = DampedSystem {
            settings: &self.settings,
            damping: self.damping,
            params: &*params,
            gradient,
            fisher: fisher.flatten(),
        };
        let warm_start = &self.previous_solution;
        let fraction = self.settings.curvature_fraction;
        let outcome = with_curvature_objective(objective, fraction, |curvature| {
            system.solve(curvature, warm_start)
        })?;
        self.previous_solution = outcome.solution;
        self.last_solve = Some(outcome.info);
        if outcome.candidates.is_empty() {
            return Ok(false);
        }

        let (chosen, chosen_value) = self.backtrack(objective, params, &outcome.candidates);
        let direction = &outcome.candidates[chosen];
        let slope = dot(gradient, direction);
        let kind = self.settings.curvature;
        let quadratic = with_curvature_objective(objective, fraction, |curvature| {
            curvature_quadratic(curvature, kind, params, direction)
        })?;
        let predicted = slope + 0.5 * quadratic;
        let rho = if predicted < 0.0 && chosen_value.is_finite() {
            (chosen_value - value) / predicted
        } else {
            f64::NEG_INFINITY
        };
        if rho < 0.25 || rho.is_nan() {
            self.damping *= DAMPING_INCREASE;
        } else if rho > 0.75 {
            self.damping *= DAMPING_DECREASE;
        }

        let accepted = self.armijo_search(objective, params, value, slope, direction, chosen_value);
        let Some(rate) = accepted else {
            return Ok(false);
        };
        let rate = T::of(rate);
        for (p, &d) in params.iter_mut().zip(direction) {
            *p += rate * d;
        }
        Ok(true)
    }

    /// Returns `f(θ + scale · d)`, building the point in `self.trial`.
    fn value_at(
        &mut self,
        objective: &mut dyn Objective<T>,
        params: &[T],
        direction: &[T],
        scale: f64,
    ) -> f64 {
        let scale = T::of(scale);
        self.trial.clear();
        let points = params.iter().zip(direction);
        self.trial.extend(points.map(|(&p, &d)| p + scale * d));
        objective.value(&self.trial)
    }

    /// Walks back from the last kept iterate while the objective does not get worse, and
    /// returns the index of the chosen iterate with its value. NaN counts as worse than any
    /// number.
    fn backtrack(
        &mut self,
        objective: &mut dyn Objective<T>,
        params: &[T],
        candidates: &[Vec<T>],
    ) -> (usize, f64) {
        let last = candidates.len() - 1;
        let mut chosen = (
            last,
            self.value_at(objective, params, &candidates[last], 1.0),
        );
        for index in (0..last).rev() {
            let value = self.value_at(objective, params, &candidates[index], 1.0);
            let no_worse = value <= chosen.1 || (chosen.1.is_nan() && !value.is_nan());
            if !no_worse {
                break;
            }
            chosen = (index, value);
        }
        chosen
    }

    /// Shrinks the step `t d` from `t = 1` until `f(θ + t d) ≤ f(θ) + c t ∇fᵀd`. Returns
    /// `t`, or `None` when `d` does not descend or 60 reductions fail.
    fn armijo_search(
        &mut self,
        objective: &mut dyn Objective<T>,
        params: &[T],
        value: f64,
        slope: f64,
        direction: &[T],
        full_step_value: f64,
    ) -> Option<f64> {
        if slope >= 0.0 || slope.is_nan() {
            return None;
        }
        let mut rate = 1.0;
        let mut trial_value = full_step_value;
        for _ in 0..MAX_BACKTRACKS {
            if trial_value <= value + ARMIJO_C * rate * slope {
                return Some(rate);
            }
            rate *= BACKTRACK_FACTOR;
            trial_value = self.value_at(objective, params, direction, rate);
        }
        None
    }

    /// Runs up to `max_iterations_per_step` iterations on `objective`, which includes the
    /// weight decay when it is on.
    fn step_on(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
    ) -> Result<StepReport> {
        let mut value = self.start.evaluate(objective, params);
        let mut gradient_norm = norm(&self.start.gradient);
        let mut report = StepReport {
            loss: value,
            gradient_norm: Some(gradient_norm),
            ..StepReport::default()
        };
        if !value.is_finite() || !gradient_norm.is_finite() {
            report.skipped = true;
            report.finished = true;
            return Ok(report);
        }

        for _ in 0..self.settings.max_iterations_per_step {
            if gradient_norm <= self.settings.gradient_tolerance || !gradient_norm.is_finite() {
                break;
            }
            let gradient = std::mem::take(&mut self.start.gradient);
            let outcome = self.iterate(objective, params, value, &gradient);
            self.start.gradient = gradient;
            if !outcome? {
                // The step was rejected, so `params` are unchanged and the next iteration
                // retries with the larger damping.
                continue;
            }
            self.start.forget();
            value = self.start.evaluate(objective, params);
            gradient_norm = norm(&self.start.gradient);
        }
        // A small gradient on one minibatch tells nothing about the others, so only a
        // full-batch step ends the run on it.
        if !self.settings.minibatch && gradient_norm <= self.settings.gradient_tolerance {
            report.finished = true;
        }
        Ok(report)
    }
}

impl<T: Scalar> Method<T> for HessianFree<T> {
    fn name(&self) -> &'static str {
        "hessian-free"
    }

    fn batching(&self) -> Batching {
        if self.settings.minibatch {
            Batching::MiniBatch
        } else {
            Batching::FullBatch
        }
    }

    fn step(
        &mut self,
        params: &mut [T],
        objective: &mut dyn Objective<T>,
        _context: &StepContext,
    ) -> Result<StepReport> {
        if self.settings.weight_decay > 0.0 {
            let mut penalised = WeightDecay::new(objective, self.settings.weight_decay);
            return self.step_on(params, &mut penalised);
        }
        self.step_on(params, objective)
    }

    fn save_state(&self) -> MethodState {
        let solution = self.previous_solution.iter().map(|v| v.as_f64()).collect();
        MethodState {
            vectors: vec![("previous-solution".to_string(), solution)],
            scalars: vec![("damping".to_string(), self.damping)],
        }
    }

    fn load_state(&mut self, state: &MethodState) -> Result<()> {
        self.start.forget();
        match restore_scalar(state, "damping") {
            Some(damping) if damping > 0.0 && damping.is_finite() => self.damping = damping,
            other => {
                return Err(Error::setting(
                    "hessian-free state damping",
                    format!("{other:?}"),
                    "expected a finite scalar named damping > 0",
                ))
            }
        }
        self.previous_solution = restore_vector(state, "previous-solution").unwrap_or_default();
        Ok(())
    }
}

/// Runs `run` on the objective restricted to `fraction` of the batch, or on the whole
/// objective when `fraction` is 1 or the objective cannot be restricted.
fn with_curvature_objective<T: Scalar, R>(
    objective: &mut dyn Objective<T>,
    fraction: f64,
    run: impl FnOnce(&mut dyn Objective<T>) -> R,
) -> R {
    if fraction < 1.0 {
        if let Some(mut part) = objective.subset(fraction) {
            return run(part.as_mut());
        }
    }
    run(objective)
}

/// Writes `C v` into `out`. Returns `false` when the objective lacks that product.
fn curvature_product<T: Scalar>(
    objective: &mut dyn Objective<T>,
    kind: Curvature,
    params: &[T],
    v: &[T],
    out: &mut [T],
) -> bool {
    match kind {
        Curvature::GaussNewton => objective.gauss_newton_product(params, v, out),
        Curvature::Hessian => objective.hessian_product(params, v, out),
    }
}

/// Returns `dᵀ C d`.
fn curvature_quadratic<T: Scalar>(
    objective: &mut dyn Objective<T>,
    kind: Curvature,
    params: &[T],
    d: &[T],
) -> Result<f64> {
    let mut product = vec![T::zero(); d.len()];
    if !curvature_product(objective, kind, params, d, &mut product) {
        return Err(missing_product(kind));
    }
    Ok(dot(d, &product))
}

fn missing_product(kind: Curvature) -> Error {
    let (value, fix) = match kind {
        Curvature::GaussNewton => (
            "gauss-newton",
            "this objective gives no Gauss-Newton products, so use curvature = hessian or lbfgs",
        ),
        Curvature::Hessian => (
            "hessian",
            "this objective gives no Hessian products, so use curvature = gauss-newton or lbfgs",
        ),
    };
    Error::setting("curvature", value, fix)
}

/// The operator `v ↦ C v + λ v` at fixed parameters, where `C` is the Gauss-Newton matrix
/// or the Hessian of an objective. Hand it to any solver in [`crate::krylov`] to solve a
/// curvature system for a vector of your own.
///
/// # Example
///
/// ```
/// use gradus::krylov::{cg, Settings};
/// use gradus::methods::second_order::{Curvature, CurvatureOperator};
/// use gradus::nn::{mlp, Activation, Init, Loss, Mode, Network};
/// use gradus::objective::{Counter, NetworkObjective};
/// use gradus::tensor::Cpu;
/// use std::sync::Arc;
///
/// let specs = mlp(&[4], Activation::Tanh, 0.0, 2);
/// let net = Network::<f64>::new(&[3], &specs, Arc::new(Cpu::new(1))).unwrap();
/// let theta = net.init_params(Init::GlorotNormal, 1);
/// let x = [0.1, -0.2, 0.3, 0.5, 0.4, -0.1];
/// let t = [1.0, 0.0, 0.0, 1.0];
/// let counter = Arc::new(Counter::default());
/// let mut objective =
///     NetworkObjective::new(&net, Loss::SoftmaxCrossEntropy, &x, &t, 2, Mode::Eval, 0, counter);
///
/// // Solve (G + 0.1 I) d = b.
/// let b = vec![1.0; net.param_count()];
/// let mut d = vec![0.0; b.len()];
/// let mut op = CurvatureOperator::new(&mut objective, Curvature::GaussNewton, &theta, 0.1);
/// let info = cg(&mut op, &b, &mut d, None, &Settings::default(), None);
/// assert!(info.converged());
/// ```
pub struct CurvatureOperator<'o, 'p, T: Scalar> {
    objective: &'o mut dyn Objective<T>,
    kind: Curvature,
    params: &'p [T],
    damping: T,
    /// Set when the objective lacked the product; `apply` then writes NaN so that the solver
    /// stops with a breakdown.
    missing: bool,
}

impl<'o, 'p, T: Scalar> CurvatureOperator<'o, 'p, T> {
    /// Creates the operator `v ↦ C(θ) v + damping · v` for `objective` at `params`.
    pub fn new(
        objective: &'o mut dyn Objective<T>,
        kind: Curvature,
        params: &'p [T],
        damping: T,
    ) -> Self {
        CurvatureOperator {
            objective,
            kind,
            params,
            damping,
            missing: false,
        }
    }

    /// Whether the objective lacked the requested product; the operator then returned NaN.
    pub fn is_missing(&self) -> bool {
        self.missing
    }
}

impl<T: Scalar> LinearOperator<T> for CurvatureOperator<'_, '_, T> {
    fn dim(&self) -> usize {
        self.params.len()
    }

    fn apply(&mut self, x: &[T], y: &mut [T]) {
        if !curvature_product(self.objective, self.kind, self.params, x, y) {
            self.missing = true;
            y.fill(T::nan());
            return;
        }
        for (y, &x) in y.iter_mut().zip(x) {
            *y += self.damping * x;
        }
    }

    fn is_symmetric(&self) -> bool {
        true
    }
}

/// One damped system `(C + λ I) d = −g` with what its solve needs.
struct DampedSystem<'a, T> {
    settings: &'a HfSettings,
    damping: f64,
    params: &'a [T],
    gradient: &'a [T],
    /// The diagonal of the empirical Fisher matrix on the gradient's batch, when the
    /// preconditioner is on and the objective gives it.
    fisher: Option<Vec<T>>,
}

/// The result of one Krylov solve.
struct KrylovOutcome<T> {
    /// Steps to try, in iteration order: the kept iterates and the final one.
    candidates: Vec<Vec<T>>,
    /// The final Krylov iterate, which starts the next solve.
    solution: Vec<T>,
    info: SolveInfo,
}

impl<T: Scalar> DampedSystem<'_, T> {
    fn solve(
        &self,
        objective: &mut dyn Objective<T>,
        warm_start: &[T],
    ) -> Result<KrylovOutcome<T>> {
        let n = self.params.len();
        let b: Vec<T> = self.gradient.iter().map(|&g| -g).collect();
        let decay = T::of(self.settings.warm_start_decay);
        let mut x = if warm_start.len() == n && warm_start.iter().all(|v| v.is_finite()) {
            warm_start.iter().map(|&v| decay * v).collect()
        } else {
            vec![T::zero(); n]
        };
        let initial = x.clone();
        let mut operator = CurvatureOperator {
            objective,
            kind: self.settings.curvature,
            params: self.params,
            damping: T::of(self.damping),
            missing: false,
        };

        let track_progress = self.settings.krylov == KrylovMethod::Cg;
        let mut monitor = if track_progress {
            ProgressMonitor::new(&mut operator, &b, &x, self.settings)
        } else {
            ProgressMonitor::disabled(self.settings)
        };
        let mut preconditioner = self.preconditioner();
        let preconditioner = preconditioner
            .as_mut()
            .map(|p| p as &mut dyn krylov::Preconditioner<T>);
        let krylov_settings = krylov::Settings {
            rtol: T::of(self.settings.krylov_tolerance),
            max_iterations: Some(self.settings.max_krylov_iterations),
            ..krylov::Settings::default()
        };

        let mut callback = |iteration: usize, x: &[T], _residual: f64| monitor.record(iteration, x);
        let (info, negative_curvature) = match self.settings.krylov {
            KrylovMethod::Cg => krylov::cg_with_curvature(
                &mut operator,
                &b,
                &mut x,
                preconditioner,
                &krylov_settings,
                Some(&mut callback),
            ),
            method => {
                let info = method.solve(
                    &mut operator,
                    &b,
                    &mut x,
                    preconditioner,
                    &krylov_settings,
                    Some(&mut callback),
                );
                (info, None)
            }
        };
        if operator.missing {
            return Err(missing_product(self.settings.curvature));
        }

        let mut candidates: Vec<(usize, Vec<T>)> = monitor.kept;
        let is_zero = |v: &[T]| v.iter().all(|x| x.is_zero());
        match negative_curvature {
            Some(found) if info.iterations == 0 => {
                // No iterate moved, so the negative-curvature direction itself is the step,
                // turned to descend.
                let mut direction = found.direction;
                if dot(self.gradient, &direction) > 0.0 {
                    direction.iter_mut().for_each(|v| *v = -*v);
                }
                if !is_zero(&initial) {
                    candidates.push((0, initial));
                }
                candidates.push((1, direction));
            }
            _ => {
                let last_kept = candidates.last().map(|(i, _)| *i);
                if last_kept != Some(info.iterations) && !is_zero(&x) {
                    candidates.push((info.iterations, x.clone()));
                }
            }
        }
        let candidates = candidates
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| v.iter().all(|x| x.is_finite()))
            .collect();
        Ok(KrylovOutcome {
            candidates,
            solution: x,
            info,
        })
    }

    /// Builds Martens' preconditioner `diag(F + λ + w)^0.75`, when enabled, where `F` is the
    /// diagonal of the empirical Fisher matrix `(1/n) Σ_i ∇ℓ_i ⊙ ∇ℓ_i` and `w` the weight
    /// decay.
    ///
    /// NOTE: networks without per-sample gradients (convolutions, batch normalisation) fall
    /// back to the squared batch gradient `g ⊙ g`, which is smaller and zero where
    /// per-sample gradients cancel, so the preconditioner is weaker.
    fn preconditioner(&self) -> Option<Diagonal<T>> {
        if !self.settings.preconditioner {
            return None;
        }
        let shift = self.damping + self.settings.weight_decay;
        let scale = |f: f64| T::of((f + shift).powf(PRECONDITIONER_EXPONENT));
        let diagonal = match &self.fisher {
            Some(fisher) => fisher.iter().map(|f| scale(f.as_f64())).collect(),
            None => {
                let squares = self.gradient.iter().map(|g| g.as_f64() * g.as_f64());
                squares.map(scale).collect()
            }
        };
        Diagonal::new(diagonal).ok()
    }
}

/// Keeps iterates at iterations `⌈1.3^j⌉` and applies Martens' relative-progress stop to
/// the quadratic model values of CG.
struct ProgressMonitor<T> {
    /// Iterations whose iterate is kept, ascending.
    keep_at: Vec<usize>,
    kept: Vec<(usize, Vec<T>)>,
    /// `φ_i` by iteration, when progress is tracked.
    model_values: Vec<f64>,
    tracking: Option<ModelValue<T>>,
    progress_tolerance: f64,
}

/// The data for `φ(x_i) = −½ r₀ᵀx_i − ½ bᵀx₀`.
///
/// CG iterates satisfy the Galerkin condition `r_iᵀ(x_i − x₀) = 0`, which turns
/// `φ(x) = ½ xᵀA x − bᵀx` into this form without a product per iteration. Rounding makes it
/// approximate once CG loses orthogonality, which only shifts when the stopping rule fires.
struct ModelValue<T> {
    initial_residual: Vec<T>,
    offset: f64,
}

impl<T: Scalar> ModelValue<T> {
    fn at(&self, x: &[T]) -> f64 {
        -0.5 * dot(&self.initial_residual, x) + self.offset
    }
}

impl<T: Scalar> ProgressMonitor<T> {
    fn disabled(settings: &HfSettings) -> Self {
        ProgressMonitor {
            keep_at: kept_iterations(settings.max_krylov_iterations),
            kept: Vec::new(),
            model_values: Vec::new(),
            tracking: None,
            progress_tolerance: settings.progress_tolerance,
        }
    }

    /// Sets up tracking from `x₀`, which costs one operator product unless `x₀ = 0`.
    fn new(operator: &mut dyn LinearOperator<T>, b: &[T], x0: &[T], settings: &HfSettings) -> Self {
        let mut initial_residual = b.to_vec();
        if x0.iter().any(|v| !v.is_zero()) {
            let mut product = vec![T::zero(); b.len()];
            operator.apply(x0, &mut product);
            for (r, &ax) in initial_residual.iter_mut().zip(&product) {
                *r -= ax;
            }
        }
        let model = ModelValue {
            initial_residual,
            offset: -0.5 * dot(b, x0),
        };
        let mut monitor = ProgressMonitor::disabled(settings);
        monitor.model_values.push(model.at(x0));
        monitor.tracking = Some(model);
        monitor
    }

    /// Keeps `x` when due. Returns `false` to stop the solve when the relative-progress rule
    /// fires.
    fn record(&mut self, iteration: usize, x: &[T]) -> bool {
        if self.keep_at.binary_search(&iteration).is_ok() {
            self.kept.push((iteration, x.to_vec()));
        }
        let Some(model) = &self.tracking else {
            return true;
        };
        if self.model_values.len() != iteration {
            // The callback skipped an iteration, so values no longer line up with iterations.
            self.tracking = None;
            return true;
        }
        let value = model.at(x);
        self.model_values.push(value);
        let gap = ((0.1 * iteration as f64).ceil() as usize).max(10);
        if iteration <= gap {
            return true;
        }
        let earlier = self.model_values[iteration - gap];
        let stop =
            earlier < 0.0 && (value - earlier) / value < gap as f64 * self.progress_tolerance;
        if stop {
            // Keep the iterate that the solver returns, so that backtracking can choose it.
            if self.kept.last().map(|(i, _)| *i) != Some(iteration) {
                self.kept.push((iteration, x.to_vec()));
            }
        }
        !stop
    }
}

/// Returns the iterations `⌈1.3^j⌉`, `j = 0, 1, ...`, up to `max`, without repeats.
fn kept_iterations(max: usize) -> Vec<usize> {
    let mut iterations = Vec::new();
    let mut power = 1.0_f64;
    while power.ceil() as usize <= max {
        let i = power.ceil() as usize;
        if iterations.last() != Some(&i) {
            iterations.push(i);
        }
        power *= ITERATE_SPACING;
    }
    iterations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krylov::StopReason;
    use crate::methods::second_order::test_functions::{Blobs, Quadratic, Rosenbrock};

    /// Runs `steps` calls of `step` and returns the loss before and after.
    fn train(settings: HfSettings, problem: &Blobs<f64>, steps: usize) -> (f64, f64) {
        let mut params = problem.init_params(2);
        let mut objective = problem.objective();
        let initial = objective.value(&params);
        let mut method = HessianFree::new(settings).expect("valid settings");
        for _ in 0..steps {
            let report = method
                .step(&mut params, &mut objective, &StepContext::default())
                .expect("step succeeds");
            assert!(!report.skipped);
            if report.finished {
                break;
            }
        }
        (initial, objective.value(&params))
    }

    #[test]
    fn kept_iterations_grow_geometrically() {
        let expected = [
            1, 2, 3, 4, 5, 7, 9, 11, 14, 18, 24, 31, 40, 52, 67, 87, 113, 147, 191,
        ];
        assert_eq!(kept_iterations(250)[..expected.len()], expected);
        assert_eq!(kept_iterations(250).last(), Some(&248));
        assert_eq!(kept_iterations(1), vec![1]);
    }

    #[test]
    fn hf_trains_mlp_to_low_loss() {
        let problem = Blobs::new(60, 8, 1);
        let (initial, last) = train(HfSettings::default(), &problem, 40);
        assert!(last < 0.05, "loss {initial} -> {last}");
    }

    #[test]
    fn every_krylov_method_reduces_loss() {
        let problem = Blobs::new(60, 8, 1);
        for krylov in KrylovMethod::ALL {
            let settings = HfSettings {
                krylov,
                max_krylov_iterations: 50,
                ..HfSettings::default()
            };
            let (initial, last) = train(settings, &problem, 5);
            assert!(last < 0.5 * initial, "{krylov}: loss {initial} -> {last}");
        }
    }

    #[test]
    fn hessian_curvature_reduces_loss() {
        let problem = Blobs::new(60, 8, 1);
        for krylov in [KrylovMethod::Minres, KrylovMethod::Cg, KrylovMethod::Gmres] {
            let settings = HfSettings {
                curvature: Curvature::Hessian,
                krylov,
                max_krylov_iterations: 50,
                ..HfSettings::default()
            };
            let (initial, last) = train(settings, &problem, 5);
            assert!(
                last < 0.5 * initial,
                "hessian with {krylov}: loss {initial} -> {last}"
            );
        }
    }

    #[test]
    fn preconditioner_uses_fisher_diagonal() {
        let settings = HfSettings {
            preconditioner: true,
            weight_decay: 0.5,
            ..HfSettings::default()
        };
        let gradient = [3.0, -1.0];
        let mut system = DampedSystem {
            settings: &settings,
            damping: 2.0,
            params: &[0.0, 0.0],
            gradient: &gradient,
            fisher: Some(vec![4.0, 0.0]),
        };
        let with_fisher = system.preconditioner().expect("preconditioner");
        // (F + λ + w)^0.75 with λ = 2 and w = 0.5.
        let expected = [6.5f64.powf(0.75), 2.5f64.powf(0.75)];
        assert_eq!(with_fisher.diagonal(), expected.as_slice());

        // Without the diagonal, the squared batch gradient replaces it.
        system.fisher = None;
        let fallback = system.preconditioner().expect("preconditioner");
        let expected = [11.5f64.powf(0.75), 3.5f64.powf(0.75)];
        assert_eq!(fallback.diagonal(), expected.as_slice());
    }

    #[test]
    fn curvature_subset_and_preconditioner_reduce_loss() {
        let problem = Blobs::new(60, 8, 1);
        let cases = [
            (
                "half-batch curvature",
                HfSettings {
                    curvature_fraction: 0.5,
                    ..Default::default()
                },
            ),
            (
                "preconditioner",
                HfSettings {
                    preconditioner: true,
                    ..Default::default()
                },
            ),
        ];
        for (case, settings) in cases {
            let (initial, last) = train(settings, &problem, 10);
            assert!(last < 0.25 * initial, "{case}: loss {initial} -> {last}");
        }
    }

    #[test]
    fn subset_objective_covers_leading_samples() {
        let problem = Blobs::<f64>::new(60, 8, 1);
        let params = problem.init_params(2);
        let objective = problem.objective();
        let mut part = objective
            .subset(0.25)
            .expect("network objectives can be restricted");
        let leading = Blobs {
            samples: 15,
            x: problem.x[..30].to_vec(),
            t: problem.t[..45].to_vec(),
            ..Blobs::new(60, 8, 1)
        };
        let expected = leading.objective().value(&params);
        assert_eq!(part.value(&params), expected);
    }

    #[test]
    fn weight_decay_shrinks_parameters() {
        let problem = Blobs::<f64>::new(60, 8, 1);
        let run = |weight_decay: f64| {
            let mut params = problem.init_params(2);
            let mut objective = problem.objective();
            let settings = HfSettings {
                weight_decay,
                ..HfSettings::default()
            };
            let mut method = HessianFree::new(settings).expect("valid settings");
            for _ in 0..20 {
                method
                    .step(&mut params, &mut objective, &StepContext::default())
                    .expect("step succeeds");
            }
            (norm(&params), objective.value(&params))
        };
        let (plain_norm, plain_loss) = run(0.0);
        let (decayed_norm, decayed_loss) = run(0.05);
        assert!(
            decayed_norm < 0.7 * plain_norm,
            "norm {plain_norm} without decay, {decayed_norm} with"
        );
        assert!(decayed_loss > plain_loss, "{decayed_loss} vs {plain_loss}");
        assert!(decayed_loss < 0.5, "loss with decay {decayed_loss}");
    }

    #[test]
    fn step_loss_includes_weight_decay() {
        let problem = Blobs::<f64>::new(60, 8, 1);
        let mut params = problem.init_params(2);
        let penalty = 0.5 * 0.1 * dot(&params, &params);
        let expected = problem.objective().value(&params) + penalty;
        let settings = HfSettings {
            weight_decay: 0.1,
            ..HfSettings::default()
        };
        let mut method = HessianFree::new(settings).expect("valid settings");
        let report = method
            .step(
                &mut params,
                &mut problem.objective(),
                &StepContext::default(),
            )
            .expect("step succeeds");
        assert!((report.loss - expected).abs() < 1e-12, "{}", report.loss);
    }

    #[test]
    fn minibatch_setting_selects_batching() {
        let full = HessianFree::<f64>::new(HfSettings::default()).expect("valid");
        assert_eq!(full.batching(), Batching::FullBatch);
        let settings = HfSettings {
            minibatch: true,
            ..HfSettings::default()
        };
        let minibatch = HessianFree::<f64>::new(settings).expect("valid");
        assert_eq!(minibatch.batching(), Batching::MiniBatch);
    }

    #[test]
    fn small_minibatch_gradient_does_not_finish() {
        let mut f = Quadratic::random(6, 3);
        let minimiser = f.minimiser();
        for (minibatch, finishes) in [(false, true), (true, false)] {
            let settings = HfSettings {
                minibatch,
                ..HfSettings::default()
            };
            let mut method = HessianFree::<f64>::new(settings).expect("valid");
            let mut x = minimiser.clone();
            let report = method
                .step(&mut x, &mut f, &StepContext::default())
                .expect("step succeeds");
            assert_eq!(report.finished, finishes, "minibatch {minibatch}");
        }
    }

    #[test]
    fn hf_solves_quadratic() {
        let mut f = Quadratic::random(10, 12);
        let expected = f.minimiser();
        let mut x = vec![0.0; 10];
        let settings = HfSettings {
            damping: 1e-3,
            krylov_tolerance: 1e-12,
            ..HfSettings::default()
        };
        let mut method = HessianFree::new(settings).expect("valid settings");
        for _ in 0..10 {
            method
                .step(&mut x, &mut f, &StepContext::default())
                .expect("step succeeds");
        }
        for (i, (x, e)) in x.iter().zip(&expected).enumerate() {
            assert!((x - e).abs() < 1e-6, "x[{i}] = {x}, expected {e}");
        }
    }

    #[test]
    fn hessian_minres_minimises_rosenbrock() {
        let mut f = Rosenbrock::new(2);
        let mut x = f.start();
        let settings = HfSettings {
            curvature: Curvature::Hessian,
            krylov: KrylovMethod::Minres,
            max_iterations_per_step: 200,
            gradient_tolerance: 1e-6,
            ..HfSettings::default()
        };
        let mut method = HessianFree::new(settings).expect("valid settings");
        let report = method
            .step(&mut x, &mut f, &StepContext::default())
            .expect("step succeeds");
        assert!(report.loss > 1.0);
        assert!(f.value(&x) < 1e-8, "x = {x:?}");
    }

    #[test]
    fn missing_curvature_product_is_an_error() {
        let mut f = Rosenbrock::new(2);
        let mut x = f.start();
        let mut method = HessianFree::new(HfSettings::default()).expect("valid settings");
        let error = method
            .step(&mut x, &mut f, &StepContext::default())
            .expect_err("Rosenbrock has no Gauss-Newton products");
        assert!(
            error.to_string().contains("curvature gauss-newton"),
            "{error}"
        );
        assert_eq!(x, f.start(), "params changed");
    }

    #[test]
    fn model_value_matches_direct_formula() {
        let f = Quadratic::random(12, 21);
        let mut matrix = krylov::DenseMatrix::new(12, f.a.clone()).expect("square matrix");
        let b = f.b.clone();
        let x0: Vec<f64> = (0..12).map(|i| 0.1 * i as f64).collect();
        let settings = HfSettings::default();
        let mut monitor = ProgressMonitor::new(&mut matrix, &b, &x0, &settings);
        let mut product = vec![0.0; 12];
        let mut checked = 0;
        let mut x = x0.clone();
        let mut callback = |iteration: usize, x: &[f64], _: f64| {
            monitor.record(iteration, x);
            f.product(x, &mut product);
            let direct = 0.5 * dot(x, &product) - dot(&b, x);
            let tracked = monitor.model_values[iteration];
            assert!(
                (tracked - direct).abs() < 1e-9 * direct.abs().max(1.0),
                "iteration {iteration}"
            );
            checked += 1;
            true
        };
        let solver = krylov::Settings::default();
        krylov::cg(&mut matrix, &b, &mut x, None, &solver, Some(&mut callback));
        assert!(checked > 3, "only {checked} iterations checked");
    }

    #[test]
    fn progress_rule_stops_cg_early() {
        // Eigenvalues spread over four decades make CG progress slowly but steadily, so the
        // relative-progress rule stops it long before the iteration limit.
        let n = 400;
        let diagonal: Vec<f64> = (0..n)
            .map(|i| 10f64.powf(4.0 * i as f64 / n as f64))
            .collect();
        let mut values = vec![0.0; n * n];
        for i in 0..n {
            values[i * n + i] = diagonal[i];
        }
        let mut matrix = krylov::DenseMatrix::new(n, values).expect("square matrix");
        let b = vec![1.0; n];
        let mut x = vec![0.0; n];
        let settings = HfSettings::default();
        let mut monitor = ProgressMonitor::new(&mut matrix, &b, &x, &settings);
        let mut callback = |iteration: usize, x: &[f64], _: f64| monitor.record(iteration, x);
        let solver = krylov::Settings {
            rtol: 1e-12,
            max_iterations: Some(400),
            ..krylov::Settings::default()
        };
        let info = krylov::cg(&mut matrix, &b, &mut x, None, &solver, Some(&mut callback));
        assert_eq!(info.reason, StopReason::UserStop);
        assert!(
            info.iterations < 200,
            "stopped after {} iterations",
            info.iterations
        );
        assert!(info.iterations > 10);
    }

    /// `½ x₀² − ½ x₁² + x₁`, a saddle whose Hessian `diag(1, −1)` is indefinite.
    struct Saddle;

    impl Objective<f64> for Saddle {
        fn dim(&self) -> usize {
            2
        }

        fn value(&mut self, x: &[f64]) -> f64 {
            0.5 * x[0] * x[0] - 0.5 * x[1] * x[1] + x[1]
        }

        fn gradient(&mut self, x: &[f64], grad: &mut [f64]) -> f64 {
            grad[0] = x[0];
            grad[1] = 1.0 - x[1];
            self.value(x)
        }

        fn hessian_product(&mut self, _x: &[f64], v: &[f64], out: &mut [f64]) -> bool {
            out[0] = v[0];
            out[1] = -v[1];
            true
        }

        fn evaluations(&self) -> u64 {
            0
        }
    }

    #[test]
    fn cg_steps_along_negative_curvature() {
        let settings = HfSettings {
            curvature: Curvature::Hessian,
            damping: 1e-3,
            ..HfSettings::default()
        };
        let mut method = HessianFree::new(settings).expect("valid settings");
        let mut x = vec![0.0, 0.0];
        let report = method
            .step(&mut x, &mut Saddle, &StepContext::default())
            .expect("step succeeds");
        let solve = method.last_solve().expect("a solve ran");
        assert_eq!(solve.reason, StopReason::NegativeCurvature);
        assert_eq!(x[0], 0.0);
        assert!(x[1] < 0.0, "x = {x:?}");
        assert!(Saddle.value(&x) < report.loss);
    }

    #[test]
    fn hf_trains_mlp_in_f32() {
        let problem = Blobs::<f32>::new(60, 8, 3);
        let mut params = problem.init_params(4);
        let mut objective = problem.objective();
        let initial = objective.value(&params);
        let mut method = HessianFree::new(HfSettings::default()).expect("valid settings");
        for _ in 0..20 {
            method
                .step(&mut params, &mut objective, &StepContext::default())
                .expect("step succeeds");
        }
        let last = objective.value(&params);
        assert!(last < 0.05, "loss {initial} -> {last}");
    }

    #[test]
    fn saved_state_is_restored() {
        let mut method = HessianFree::<f64>::new(HfSettings::default()).expect("valid");
        let state = MethodState {
            vectors: vec![("previous-solution".to_string(), vec![0.5, -1.0])],
            scalars: vec![("damping".to_string(), 0.3)],
        };
        method.load_state(&state).expect("valid state");
        assert_eq!(method.damping(), 0.3);
        assert_eq!(method.save_state(), state);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let cases = [
            (
                "damping",
                HfSettings {
                    damping: 0.0,
                    ..Default::default()
                },
            ),
            (
                "curvature_fraction",
                HfSettings {
                    curvature_fraction: 1.5,
                    ..Default::default()
                },
            ),
            (
                "max_krylov_iterations",
                HfSettings {
                    max_krylov_iterations: 0,
                    ..Default::default()
                },
            ),
            (
                "progress_tolerance",
                HfSettings {
                    progress_tolerance: -1.0,
                    ..Default::default()
                },
            ),
            (
                "warm_start_decay",
                HfSettings {
                    warm_start_decay: 2.0,
                    ..Default::default()
                },
            ),
            (
                "weight_decay",
                HfSettings {
                    weight_decay: -1e-4,
                    ..Default::default()
                },
            ),
            (
                "weight_decay",
                HfSettings {
                    weight_decay: f64::NAN,
                    ..Default::default()
                },
            ),
        ];
        for (name, settings) in cases {
            match HessianFree::<f64>::new(settings) {
                Err(Error::InvalidSetting { name: got, .. }) => assert_eq!(got, name),
                other => panic!("{name}: expected an invalid-setting error, got {other:?}"),
            }
        }
    }
}
