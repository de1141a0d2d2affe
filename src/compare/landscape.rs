//! Descent paths projected on a plane and the training loss on a grid over that plane.
//!
//! The plane passes through the shared starting point and is spanned by the first two
//! principal directions of all paths' displacements from that point (uncentred PCA), so it
//! shows as much of the paths' movement as a plane can.

use crate::nn::Network;
use crate::tensor::Cpu;
use crate::train::evaluate::{evaluate, EvalSpec, Prepared};
use crate::train::prepare::Setup;
use crate::{Error, Result};
use std::sync::Arc;

/// Most parameter snapshots kept per run; beyond it every other one is dropped.
const MAX_SNAPSHOTS: usize = 256;
/// Training samples used for the loss grid.
const GRID_SAMPLES: usize = 256;
/// Snapshots per path used to find the plane.
const PCA_SNAPSHOTS: usize = 48;
const POWER_ITERATIONS: usize = 60;

/// Parameter snapshots of one run, taken at epoch ends.
pub struct PathRecorder {
    /// (epoch, parameters) in epoch order.
    pub snapshots: Vec<(usize, Vec<f32>)>,
    /// A copy of the run's network description and a subset of its training data.
    pub setup: Option<GridData>,
    stride: usize,
}

/// The network description and training samples that the loss grid needs.
pub struct GridData {
    input_shape: Vec<usize>,
    layers: Vec<crate::nn::LayerSpec>,
    task: crate::data::TaskKind,
    loss: crate::nn::Loss,
    target_std: Vec<f32>,
    data: Prepared,
}

impl Default for PathRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl PathRecorder {
    /// Creates an empty recorder.
    pub fn new() -> Self {
        PathRecorder {
            snapshots: Vec::new(),
            setup: None,
            stride: 1,
        }
    }

    /// Copies the network description and the first training samples.
    pub fn on_start(&mut self, setup: &Setup) {
        let train = &setup.train;
        let n = train.len.min(GRID_SAMPLES);
        let (din, dout) = (
            train.x.len() / train.len.max(1),
            train.t.len() / train.len.max(1),
        );
        let info = &setup.info;
        self.setup = Some(GridData {
            input_shape: info.input_shape.clone(),
            layers: info.layers.clone(),
            task: info.task,
            loss: info.loss,
            target_std: info.target_std.clone(),
            data: Prepared {
                x: train.x[..n * din].to_vec(),
                t: train.t[..n * dout].to_vec(),
                labels: train.labels.as_ref().map(|l| l[..n].to_vec()),
                len: n,
            },
        });
    }

    /// Stores a snapshot, thinning the path to at most [`MAX_SNAPSHOTS`]. The first and the
    /// latest snapshot are always kept.
    pub fn record(&mut self, epoch: usize, params: &[f32]) {
        // A latest snapshot kept off the stride gives way to the new latest one.
        if self
            .snapshots
            .last()
            .is_some_and(|s| s.0 % self.stride != 0)
        {
            self.snapshots.pop();
        }
        self.snapshots.push((epoch, params.to_vec()));
        if self.snapshots.len() > MAX_SNAPSHOTS {
            self.stride *= 2;
            let stride = self.stride;
            let last = self.snapshots.len() - 1;
            let mut k = 0;
            self.snapshots.retain(|(e, _)| {
                let keep = e % stride == 0 || k == last;
                k += 1;
                keep
            });
        }
    }
}

/// A method name and its (epoch, parameters) snapshots.
pub type NamedPath = (String, Vec<(usize, Vec<f32>)>);

/// Paths in plane coordinates and the loss on a grid.
pub struct Landscape {
    /// Per method: name and (x, y) of each snapshot.
    pub paths: Vec<(String, Vec<(f64, f64)>)>,
    /// Grid coordinates along each axis.
    pub xs: Vec<f64>,
    /// Grid coordinates along the second axis.
    pub ys: Vec<f64>,
    /// Training loss at (xs[i], ys[j]), stored as `loss[j][i]`.
    pub loss: Vec<Vec<f64>>,
    /// Share of the paths' squared displacement that the plane captures.
    pub explained: f64,
}

impl Landscape {
    /// Projects the paths and evaluates the loss on a `size` × `size` grid.
    pub fn compute(
        data: &GridData,
        paths: &[NamedPath],
        size: usize,
        threads: usize,
    ) -> Result<Landscape> {
        let start = paths
            .first()
            .and_then(|(_, p)| p.first())
            .map(|(_, p)| p.clone())
            .ok_or_else(|| Error::Data("no parameter path was recorded".into()))?;
        let displacements: Vec<Vec<f32>> = paths
            .iter()
            .flat_map(|(_, p)| thin(p, PCA_SNAPSHOTS))
            .map(|s| s.iter().zip(&start).map(|(a, b)| a - b).collect())
            .collect();
        let (u, v, explained) = principal_plane(&displacements, start.len());
        let project = |p: &[f32]| {
            let (mut a, mut b) = (0.0f64, 0.0f64);
            for i in 0..p.len() {
                let d = (p[i] - start[i]) as f64;
                a += d * u[i] as f64;
                b += d * v[i] as f64;
            }
            (a, b)
        };
        let projected: Vec<(String, Vec<(f64, f64)>)> = paths
            .iter()
            .map(|(name, p)| (name.clone(), p.iter().map(|(_, s)| project(s)).collect()))
            .collect();
        let (xs, ys) = grid_axes(&projected, size.max(2));
        let threads = if threads == 0 {
            rayon::current_num_threads()
        } else {
            threads
        };
        let network = Network::new(&data.input_shape, &data.layers, Arc::new(Cpu::new(threads)))?;
        let mut ws = network.workspace(data.data.len.max(1));
        let spec = EvalSpec {
            task: data.task,
            loss: data.loss,
            target_std: &data.target_std,
        };
        let mut point = start.clone();
        let mut loss = Vec::with_capacity(ys.len());
        for &y in &ys {
            let mut row = Vec::with_capacity(xs.len());
            for &x in &xs {
                for i in 0..point.len() {
                    point[i] = start[i] + x as f32 * u[i] + y as f32 * v[i];
                }
                row.push(evaluate(&network, &point, &data.data, &spec, &mut ws).loss);
            }
            loss.push(row);
        }
        Ok(Landscape {
            paths: projected,
            xs,
            ys,
            loss,
            explained,
        })
    }
}

/// Picks at most `n` snapshots spread evenly along a path.
fn thin(path: &[(usize, Vec<f32>)], n: usize) -> Vec<&[f32]> {
    if path.len() <= n {
        return path.iter().map(|(_, p)| p.as_slice()).collect();
    }
    (0..n)
        .map(|k| path[k * (path.len() - 1) / (n - 1)].1.as_slice())
        .collect()
}

/// Returns two orthonormal directions of largest squared projection over `rows`, by power
/// iteration with deflation, and the share of the total squared norm they capture. Falls back
/// to fixed unit directions when the paths do not move.
fn principal_plane(rows: &[Vec<f32>], dim: usize) -> (Vec<f32>, Vec<f32>, f64) {
    let total: f64 = rows
        .iter()
        .map(|r| r.iter().map(|&x| (x as f64).powi(2)).sum::<f64>())
        .sum();
    let u = power_direction(rows, dim, None);
    let v = power_direction(rows, dim, Some(&u));
    let captured: f64 = rows
        .iter()
        .map(|r| dot(r, &u).powi(2) + dot(r, &v).powi(2))
        .sum();
    let explained = if total > 0.0 { captured / total } else { 0.0 };
    (u, v, explained)
}

fn power_direction(rows: &[Vec<f32>], dim: usize, orthogonal_to: Option<&[f32]>) -> Vec<f32> {
    // A fixed, non-degenerate start vector keeps the result reproducible.
    let mut w: Vec<f32> = (0..dim)
        .map(|i| 1.0 + ((i * 7919) % 13) as f32 / 13.0)
        .collect();
    for _ in 0..POWER_ITERATIONS {
        if let Some(o) = orthogonal_to {
            remove_component(&mut w, o);
        }
        if !normalize(&mut w) {
            break;
        }
        let mut next = vec![0.0f32; dim];
        for r in rows {
            let c = dot(r, &w) as f32;
            for (n, x) in next.iter_mut().zip(r) {
                *n += c * x;
            }
        }
        w = next;
    }
    if let Some(o) = orthogonal_to {
        remove_component(&mut w, o);
    }
    if !normalize(&mut w) {
        w = vec![0.0; dim];
        let axis = usize::from(orthogonal_to.is_some()).min(dim.saturating_sub(1));
        w[axis] = 1.0;
    }
    w
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

fn remove_component(w: &mut [f32], o: &[f32]) {
    let c = dot(w, o) as f32;
    for (x, y) in w.iter_mut().zip(o) {
        *x -= c * y;
    }
}

/// Scales `w` to unit length; returns false for a zero or non-finite vector.
fn normalize(w: &mut [f32]) -> bool {
    let norm = dot(w, w).sqrt();
    if !(norm.is_finite() && norm > 1e-30) {
        return false;
    }
    for x in w.iter_mut() {
        *x /= norm as f32;
    }
    true
}

/// Grid axes covering every path point with a 25% margin on each side.
fn grid_axes(paths: &[(String, Vec<(f64, f64)>)], size: usize) -> (Vec<f64>, Vec<f64>) {
    let points = paths.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
    }
    let axis = |lo: f64, hi: f64| {
        let span = (hi - lo).max(1e-3);
        let (lo, hi) = (lo - 0.25 * span, hi + 0.25 * span);
        (0..size)
            .map(|k| lo + (hi - lo) * k as f64 / (size - 1) as f64)
            .collect::<Vec<f64>>()
    };
    (axis(x0, x1), axis(y0, y1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_keeps_ends_when_thinning() {
        let mut r = PathRecorder::new();
        for epoch in 0..=1000 {
            r.record(epoch, &[epoch as f32]);
        }
        assert!(r.snapshots.len() <= MAX_SNAPSHOTS + 1);
        assert_eq!(r.snapshots.first().unwrap().0, 0);
        assert_eq!(r.snapshots.last().unwrap().0, 1000);
    }

    #[test]
    fn plane_spans_two_directions() {
        let rows = vec![
            vec![3.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![6.0, 0.5, 0.0],
        ];
        let (u, v, explained) = principal_plane(&rows, 3);
        assert!((dot(&u, &u) - 1.0).abs() < 1e-5);
        assert!(dot(&u, &v).abs() < 1e-5);
        assert!((explained - 1.0).abs() < 1e-5);
    }
}
