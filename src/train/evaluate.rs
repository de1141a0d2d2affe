//! Evaluation of a network on a prepared data set: loss and task metrics.

use crate::data::TaskKind;
use crate::nn::{Loss, Mode, Network, Workspace};
use serde::{Deserialize, Serialize};

/// Samples per forward pass during evaluation.
pub const EVAL_BATCH: usize = 1024;

/// Inputs and targets as the network receives them: scaled features, one-hot or standardised
/// targets, all `f32` row-major.
#[derive(Default)]
pub struct Prepared {
    /// `n × input_size`.
    pub x: Vec<f32>,
    /// `n × output_size`.
    pub t: Vec<f32>,
    /// Class labels, for accuracy.
    pub labels: Option<Vec<usize>>,
    /// Samples.
    pub len: usize,
}

/// Loss and metrics on one data set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean loss.
    pub loss: f64,
    /// Fraction of samples classified correctly (classification).
    pub accuracy: Option<f64>,
    /// Root mean squared error in the targets' original units (regression).
    pub rmse: Option<f64>,
    /// Coefficient of determination (regression).
    pub r2: Option<f64>,
    /// Mean squared error per element between input and reconstruction (autoencoder).
    pub reconstruction_error: Option<f64>,
}

/// What evaluation needs besides the network: task, loss and target scaling.
pub struct EvalSpec<'a> {
    /// The task.
    pub task: TaskKind,
    /// The loss.
    pub loss: Loss,
    /// Regression target standard deviations, to report RMSE in original units.
    pub target_std: &'a [f32],
}

/// Accumulates sums over evaluation batches.
#[derive(Default)]
struct Sums {
    loss: f64,
    correct: usize,
    squared: f64,
    elements: usize,
}

/// Evaluates `params` on `data` in batches, reusing `ws`.
pub fn evaluate(
    network: &Network<f32>,
    params: &[f32],
    data: &Prepared,
    spec: &EvalSpec,
    ws: &mut Workspace<f32>,
) -> Metrics {
    let (din, dout) = (network.input_size(), network.output_size());
    let mut sums = Sums::default();
    let mut start = 0;
    while start < data.len {
        let n = EVAL_BATCH.min(data.len - start);
        let x = &data.x[start * din..(start + n) * din];
        let t = &data.t[start * dout..(start + n) * dout];
        let z = network.forward(ws, params, x, n, Mode::Eval, 0);
        sums.loss += spec.loss.value(z, t, n) * n as f64;
        accumulate(
            &mut sums,
            spec,
            z,
            t,
            dout,
            data.labels.as_deref().map(|l| &l[start..start + n]),
        );
        start += n;
    }
    finish(&sums, spec, data)
}

fn accumulate(
    sums: &mut Sums,
    spec: &EvalSpec,
    z: &[f32],
    t: &[f32],
    width: usize,
    labels: Option<&[usize]>,
) {
    match spec.task {
        TaskKind::Classify => {
            let labels = labels.unwrap_or(&[]);
            for (row, &label) in z.chunks(width).zip(labels) {
                sums.correct += usize::from(argmax(row) == label);
            }
        }
        TaskKind::Regress => {
            for (row_z, row_t) in z.chunks(width).zip(t.chunks(width)) {
                for (j, (a, b)) in row_z.iter().zip(row_t).enumerate() {
                    let std = spec.target_std.get(j).copied().unwrap_or(1.0) as f64;
                    sums.squared += ((*a as f64 - *b as f64) * std).powi(2);
                }
            }
            sums.elements += z.len();
        }
        TaskKind::Autoencoder => {
            for (a, b) in z.iter().zip(t) {
                let reconstruction = match spec.loss {
                    Loss::BinaryCrossEntropy => 1.0 / (1.0 + (-(*a as f64)).exp()),
                    _ => *a as f64,
                };
                sums.squared += (reconstruction - *b as f64).powi(2);
            }
            sums.elements += z.len();
        }
    }
}

fn finish(sums: &Sums, spec: &EvalSpec, data: &Prepared) -> Metrics {
    // An empty part (for example --test-fraction 0) has no metrics: NaN and None, which
    // summary.json writes as null, rather than a misleading 0.
    if data.len == 0 {
        return Metrics {
            loss: f64::NAN,
            ..Metrics::default()
        };
    }
    let n = data.len as f64;
    let mut m = Metrics {
        loss: sums.loss / n,
        ..Metrics::default()
    };
    match spec.task {
        TaskKind::Classify => m.accuracy = Some(sums.correct as f64 / n),
        TaskKind::Regress => {
            let mse = sums.squared / sums.elements.max(1) as f64;
            m.rmse = Some(mse.sqrt());
            m.r2 = Some(1.0 - mse / target_variance(data, spec.target_std));
        }
        TaskKind::Autoencoder => {
            m.reconstruction_error = Some(sums.squared / sums.elements.max(1) as f64);
        }
    }
    m
}

/// Mean variance of the targets in original units, the denominator of R².
fn target_variance(data: &Prepared, std: &[f32]) -> f64 {
    let width = std.len().max(1);
    let n = data.len.max(1) as f64;
    let mut total = 0.0;
    for j in 0..width {
        let s = std.get(j).copied().unwrap_or(1.0) as f64;
        let column = data.t.iter().skip(j).step_by(width).map(|&v| v as f64 * s);
        let (sum, sq) = column.fold((0.0, 0.0), |(a, b), v| (a + v, b + v * v));
        total += sq / n - (sum / n).powi(2);
    }
    (total / width as f64).max(f64::MIN_POSITIVE)
}

/// Index of the largest element.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// Mean squared error per element of predicting, for every sample of `data`, the mean of
/// `train`'s inputs: the baseline an autoencoder must beat.
pub fn mean_image_error(train: &Prepared, data: &Prepared) -> f64 {
    let d = train.x.len() / train.len.max(1);
    let mut mean = vec![0.0f64; d];
    for row in train.x.chunks(d) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += *v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= train.len.max(1) as f64);
    let total: f64 = data
        .x
        .chunks(d)
        .flat_map(|row| row.iter().zip(&mean).map(|(v, m)| (*v as f64 - m).powi(2)))
        .sum();
    total / data.x.len().max(1) as f64
}
