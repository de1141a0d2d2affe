//! The objective of a data-parallel run: each rank computes on its shard of the batch, and
//! sums across ranks give the function of the whole batch.

use super::{subset_size, NetworkObjective, Objective};
use crate::dist::{Collective, Element};

/// A rank's part of an objective over a batch that is split across the ranks of `group`.
///
/// The loss is a mean over the batch, so a rank weights its shard's value, gradient and
/// curvature products by `shard / batch` and the sum over ranks is the mean over the whole
/// batch. Every method call is a collective: all ranks must call the same methods in the same
/// order, so [`Objective::fork`] returns `None` and search methods evaluate their candidates
/// one after another, each on all ranks.
pub struct DistributedObjective<'a, T: Element> {
    local: NetworkObjective<'a, T>,
    group: &'a dyn Collective,
    /// Index of this rank's first sample in the whole batch.
    offset: usize,
    /// Samples in the whole batch, over all ranks.
    batch: usize,
    /// This rank's weighted vector before the sum, so the sum can go straight to the caller.
    part: Vec<T>,
}

impl<'a, T: Element> DistributedObjective<'a, T> {
    /// Wraps this rank's objective over samples `offset..offset + local.batch()` of a batch of
    /// `batch` samples. Ranks with no samples pass an objective over an empty batch.
    pub fn new(
        local: NetworkObjective<'a, T>,
        group: &'a dyn Collective,
        offset: usize,
        batch: usize,
    ) -> Self {
        assert!(
            local.batch() == 0 || offset + local.batch() <= batch,
            "shard {offset}..{} lies outside the batch of {batch}",
            offset + local.batch()
        );
        DistributedObjective {
            local,
            group,
            offset,
            batch,
            part: Vec::new(),
        }
    }

    /// Returns this rank's objective, to reuse its workspace.
    pub fn into_local(self) -> NetworkObjective<'a, T> {
        self.local
    }

    /// This rank's share of the batch mean.
    fn weight(&self) -> f64 {
        self.local.batch() as f64 / self.batch.max(1) as f64
    }

    fn has_samples(&self) -> bool {
        self.local.batch() > 0
    }

    fn sum_value(&self, local: f64) -> f64 {
        let mut value = [local * self.weight()];
        self.group.all_reduce_sum_f64(&mut value);
        value[0]
    }

    /// Runs `compute` on this rank's shard into the part buffer (zeros without samples),
    /// then writes the weighted sum over the ranks into `out`. Returns what `compute` returned.
    fn sum_over_ranks<R>(
        &mut self,
        out: &mut [T],
        empty: R,
        compute: impl FnOnce(&mut NetworkObjective<'a, T>, &mut [T]) -> R,
    ) -> R {
        let mut part = std::mem::take(&mut self.part);
        part.clear();
        part.resize(out.len(), T::zero());
        let result = if self.has_samples() {
            let result = compute(&mut self.local, &mut part);
            let weight = T::of(self.weight());
            for v in part.iter_mut() {
                *v *= weight;
            }
            result
        } else {
            empty
        };
        T::all_reduce_sum_from(self.group, &part, out);
        self.part = part;
        result
    }
}

impl<T: Element> Objective<T> for DistributedObjective<'_, T> {
    fn dim(&self) -> usize {
        self.local.dim()
    }

    fn value(&mut self, theta: &[T]) -> f64 {
        let local = if self.has_samples() {
            self.local.value(theta)
        } else {
            0.0
        };
        self.sum_value(local)
    }

    fn gradient(&mut self, theta: &[T], grad: &mut [T]) -> f64 {
        if !self.has_samples() {
            self.local.counter().add_gradient();
        }
        let local = self.sum_over_ranks(grad, 0.0, |local, part| local.gradient(theta, part));
        self.sum_value(local)
    }

    // NOTE: the ranks must agree on whether a curvature product exists. Network objectives
    // always have both, and ranks without samples assume so.
    fn gauss_newton_product(&mut self, theta: &[T], v: &[T], out: &mut [T]) -> bool {
        self.sum_over_ranks(out, true, |local, part| {
            local.gauss_newton_product(theta, v, part)
        })
    }

    fn hessian_product(&mut self, theta: &[T], v: &[T], out: &mut [T]) -> bool {
        self.sum_over_ranks(out, true, |local, part| {
            local.hessian_product(theta, v, part)
        })
    }

    fn evaluations(&self) -> u64 {
        self.local.evaluations()
    }

    /// Returns the function over the first `ceil(fraction · batch)` samples of the whole
    /// batch, as one process takes them. Each rank keeps the part of that prefix in its shard.
    fn subset(&self, fraction: f64) -> Option<Box<dyn Objective<T> + '_>> {
        if self.batch == 0 {
            return None;
        }
        let samples = subset_size(fraction, self.batch);
        let local = samples.saturating_sub(self.offset).min(self.local.batch());
        let part = self.local.first(local);
        Some(Box::new(DistributedObjective::new(
            part,
            self.group,
            self.offset,
            samples,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::{run_group, shard};
    use crate::nn::{self, Activation, Init, Loss, Mode, Network};
    use crate::objective::Counter;
    use crate::tensor::Cpu;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    /// A tanh network on 3 features with 4 classes, and `batch` random samples.
    struct Problem {
        network: Network<f64>,
        x: Vec<f64>,
        t: Vec<f64>,
        batch: usize,
        theta: Vec<f64>,
        direction: Vec<f64>,
    }

    impl Problem {
        fn new(batch: usize) -> Self {
            let specs = nn::mlp(&[6], Activation::Tanh, 0.0, 4);
            let network = Network::new(&[3], &specs, Arc::new(Cpu::new(1))).expect("network");
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
            let x = (0..batch * 3)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let t = (0..batch)
                .flat_map(|i| (0..4).map(move |c| f64::from(u8::from(c == i % 4))))
                .collect();
            let theta = network.init_params(Init::Auto, 3);
            let direction = (0..theta.len())
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            Problem {
                network,
                x,
                t,
                batch,
                theta,
                direction,
            }
        }

        /// Returns the objective over samples `range` of the batch.
        fn part(&self, range: std::ops::Range<usize>) -> NetworkObjective<'_, f64> {
            let x = &self.x[range.start * 3..range.end * 3];
            let t = &self.t[range.start * 4..range.end * 4];
            let counter = Arc::new(Counter::default());
            let loss = Loss::SoftmaxCrossEntropy;
            let n = range.len();
            NetworkObjective::new(&self.network, loss, x, t, n, Mode::Train, 0, counter)
        }

        fn whole(&self) -> NetworkObjective<'_, f64> {
            self.part(0..self.batch)
        }
    }

    /// Value, gradient, Gauss-Newton and Hessian products of one objective.
    fn evaluate_all(objective: &mut dyn Objective<f64>, p: &Problem) -> (f64, [Vec<f64>; 3]) {
        let n = p.theta.len();
        let (mut grad, mut gv, mut hv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let value = objective.value(&p.theta);
        let from_gradient = objective.gradient(&p.theta, &mut grad);
        assert!((value - from_gradient).abs() < 1e-14);
        assert!(objective.gauss_newton_product(&p.theta, &p.direction, &mut gv));
        assert!(objective.hessian_product(&p.theta, &p.direction, &mut hv));
        (value, [grad, gv, hv])
    }

    fn assert_close(a: &[f64], b: &[f64], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    fn check_ranks_match_single(batch: usize, size: usize) {
        let p = Problem::new(batch);
        let (value, vectors) = evaluate_all(&mut p.whole(), &p);
        let results = run_group(size, |group| {
            let range = shard(batch, group.rank(), size);
            let offset = range.start;
            let mut objective = DistributedObjective::new(p.part(range), group, offset, batch);
            evaluate_all(&mut objective, &p)
        });
        for (rank, (v, vs)) in results.iter().enumerate() {
            assert!((v - value).abs() < 1e-12, "rank {rank}: {v} vs {value}");
            for (k, name) in ["gradient", "Gauss-Newton", "Hessian"].iter().enumerate() {
                assert_close(&vs[k], &vectors[k], name);
            }
        }
    }

    #[test]
    fn two_ranks_match_single() {
        check_ranks_match_single(7, 2);
    }

    #[test]
    fn three_ranks_match_single() {
        check_ranks_match_single(11, 3);
    }

    #[test]
    fn ranks_without_samples_add_nothing() {
        check_ranks_match_single(2, 3);
    }

    #[test]
    fn subset_takes_prefix_of_whole_batch() {
        let (batch, size, fraction) = (12, 3, 0.4);
        let p = Problem::new(batch);
        let whole = p.whole();
        let mut single = whole.subset(fraction).expect("subset");
        let (value, vectors) = evaluate_all(single.as_mut(), &p);
        let results = run_group(size, |group| {
            let range = shard(batch, group.rank(), size);
            let offset = range.start;
            let objective = DistributedObjective::new(p.part(range), group, offset, batch);
            let mut part = objective.subset(fraction).expect("subset");
            evaluate_all(part.as_mut(), &p)
        });
        for (v, vs) in &results {
            assert!((v - value).abs() < 1e-12, "{v} vs {value}");
            assert_close(&vs[0], &vectors[0], "gradient");
            assert_close(&vs[1], &vectors[1], "Gauss-Newton");
        }
    }

    #[test]
    fn fork_returns_none() {
        let p = Problem::new(4);
        let results = run_group(2, |group| {
            let range = shard(4, group.rank(), 2);
            let offset = range.start;
            let objective = DistributedObjective::new(p.part(range), group, offset, 4);
            let none = objective.fork().is_none();
            none
        });
        assert_eq!(results, [true, true]);
    }
}
