//! The objective of a batch split into groups of samples. Each group's value, gradient and
//! curvature products are computed on their own, in parallel threads or on different ranks.
//! They are added in a fixed tree, so the sums do not depend on how many threads or ranks
//! compute them, and neither does the whole run.

use super::{subset_size, values_by_forks, Counter, NetworkObjective, Objective};
use crate::dist::{
    all_reduce_tree, all_reduce_tree_in, shard, tree_split, update_range, Collective, Element,
    Single,
};
use crate::nn::{Loss, Mode, Network, Workspace};
use crate::tensor::with_thread_limit;
use std::ops::Range;
use std::sync::Arc;

/// Groups that a batch splits into unless configured: two, so that one process and a
/// two-rank run compute the same sums.
pub const DEFAULT_BATCH_GROUPS: usize = 2;

/// Vectors at least this long are added on all threads.
const PARALLEL_ADD_LEN: usize = 1 << 16;

/// The split of a batch of `batch` samples into `groups` contiguous groups, and the groups
/// that each of `ranks` ranks computes.
///
/// Group `j` contains samples `⌊batch·j/groups⌋..⌊batch·(j+1)/groups⌋`, so the groups depend on
/// the batch and the group count only. Each rank takes `groups / ranks` consecutive groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchGroups {
    batch: usize,
    groups: usize,
    ranks: usize,
}

impl BatchGroups {
    /// Splits `batch` samples into at least `requested` groups over `ranks` ranks: the
    /// larger of the two when both are powers of two, otherwise their least common multiple,
    /// so that every rank gets the same number of groups.
    pub fn new(batch: usize, requested: usize, ranks: usize) -> Self {
        BatchGroups {
            batch,
            groups: Self::effective(requested, ranks),
            ranks,
        }
    }

    /// Returns the group count that `requested` groups become on `ranks` ranks.
    pub fn effective(requested: usize, ranks: usize) -> usize {
        let (requested, ranks) = (requested.max(1), ranks.max(1));
        if requested.is_power_of_two() && ranks.is_power_of_two() {
            requested.max(ranks)
        } else {
            requested / gcd(requested, ranks) * ranks
        }
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Samples in the whole batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Returns whether each rank's groups form one subtree of the summation tree over all
    /// groups ([`tree_split`]), so that the ranks' sums add up in the order of one process
    /// with this many groups. That is so when each rank has a power-of-two number of groups,
    /// as it has for any rank count when the requested group count is a power of two.
    pub fn fixed_order(&self) -> bool {
        (self.groups / self.ranks).is_power_of_two()
    }

    /// Samples of group `j`.
    pub fn group(&self, j: usize) -> Range<usize> {
        shard(self.batch, j, self.groups)
    }

    /// Groups that `rank` computes.
    pub fn rank_groups(&self, rank: usize) -> Range<usize> {
        let per_rank = self.groups / self.ranks;
        rank * per_rank..(rank + 1) * per_rank
    }

    /// Samples that `rank` computes: the union of its groups.
    pub fn rank_samples(&self, rank: usize) -> Range<usize> {
        shard(self.batch, rank, self.ranks)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Buffers that a grouped objective keeps between steps, so that a training loop allocates
/// nothing per step: one workspace per group of this rank, the groups' vectors, and the
/// space of the sums across ranks.
pub struct GroupScratch<T: Element> {
    /// The last batch's list of groups, emptied, to hold the next batch's.
    parts: Vec<NetworkObjective<'static, T>>,
    workspaces: Vec<Workspace<T>>,
    vectors: Vec<Vec<T>>,
    /// Empty vectors that stand in for `vectors` when a sum has no vector part.
    empty: Vec<Vec<T>>,
    part: Vec<T>,
    gathered: Vec<T>,
    values: Vec<f64>,
}

impl<T: Element> Default for GroupScratch<T> {
    fn default() -> Self {
        GroupScratch {
            parts: Vec::new(),
            workspaces: Vec::new(),
            vectors: Vec::new(),
            empty: Vec::new(),
            part: Vec::new(),
            gathered: Vec::new(),
            values: Vec::new(),
        }
    }
}

/// A rank's part of an objective over a batch that is split into groups (see
/// [`BatchGroups`]).
///
/// The loss is a mean over the batch, so each group computes its share of that mean: its
/// loss sum over the batch size (see [`NetworkObjective::mean_over`]). The shares are added
/// in a fixed tree over the groups ([`tree_split`]), which adds pairs `2i` and `2i + 1`
/// first when the group count is a power of two. The groups of
/// one rank run in parallel on its threads; the levels of the tree above a rank's groups are
/// sums across ranks. With one rank the collective is [`Single`].
///
/// Every method call is a collective: all ranks must call the same methods in the same
/// order, so on more than one rank [`Objective::fork`] returns `None`.
pub struct GroupedObjective<'a, T: Element> {
    network: &'a Network<T>,
    loss: Loss,
    mode: Mode,
    seed: u64,
    /// The inputs and targets of the whole batch, when this rank has them, for spreading
    /// search candidates over the ranks.
    whole: Option<(&'a [T], &'a [T])>,
    parts: Vec<NetworkObjective<'a, T>>,
    collective: &'a dyn Collective,
    layout: BatchGroups,
    scratch: GroupScratch<T>,
    dim: usize,
    counter: Arc<Counter>,
}

impl<'a, T: Element> GroupedObjective<'a, T> {
    /// Creates the objective of one batch on this rank of `collective`. `x` and `t` contain
    /// this rank's samples ([`BatchGroups::rank_samples`]), and `layout` splits the whole
    /// batch. Dropout masks follow `seed` and the group, so they do not depend on the rank
    /// count.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        network: &'a Network<T>,
        loss: Loss,
        x: &'a [T],
        t: &'a [T],
        layout: BatchGroups,
        mode: Mode,
        seed: u64,
        counter: Arc<Counter>,
        collective: &'a dyn Collective,
        scratch: Option<GroupScratch<T>>,
    ) -> Self {
        let rank = collective.rank();
        let samples = layout.rank_samples(rank);
        let (din, dout) = (network.input_size(), network.output_size());
        assert_eq!(
            x.len(),
            samples.len() * din,
            "inputs do not match the rank's samples"
        );
        assert_eq!(
            t.len(),
            samples.len() * dout,
            "targets do not match the rank's samples"
        );

        let mut scratch = scratch.unwrap_or_default();
        let groups = layout.rank_groups(rank);
        let mut parts = recycle(std::mem::take(&mut scratch.parts));
        parts.reserve(groups.len());
        for j in groups {
            let range = layout.group(j);
            let local = range.start - samples.start..range.end - samples.start;
            let n = local.len();
            let workspace = scratch.workspaces.pop();
            let objective = NetworkObjective::with_workspace(
                network,
                loss,
                &x[local.start * din..local.end * din],
                &t[local.start * dout..local.end * dout],
                n,
                mode,
                group_seed(seed, j),
                Arc::clone(&counter),
                workspace,
            )
            .mean_over(layout.batch())
            .without_gradient_count();
            parts.push(objective);
        }

        let dim = network.param_count();
        let count = parts.len();
        scratch
            .vectors
            .resize_with(count.saturating_sub(1), Vec::new);
        scratch.empty.resize_with(count.saturating_sub(1), Vec::new);
        for v in &mut scratch.vectors {
            v.resize(dim, T::zero());
        }
        GroupedObjective {
            network,
            loss,
            mode,
            seed,
            whole: None,
            parts,
            collective,
            layout,
            scratch,
            dim,
            counter,
        }
    }

    /// Gives this rank the inputs and targets of the whole batch, so that
    /// [`Objective::candidate_values`] can spread candidates over the ranks. Each rank then
    /// evaluates its share of them on the whole batch, instead of every rank evaluating
    /// every candidate on its part.
    pub fn with_whole_batch(mut self, x: &'a [T], t: &'a [T]) -> Self {
        let (din, dout) = (self.network.input_size(), self.network.output_size());
        assert_eq!(
            x.len(),
            self.layout.batch() * din,
            "inputs are not the whole batch"
        );
        assert_eq!(
            t.len(),
            self.layout.batch() * dout,
            "targets are not the whole batch"
        );
        self.whole = Some((x, t));
        self
    }

    /// Creates the objective of a whole batch in one process, split into `groups` groups.
    #[allow(clippy::too_many_arguments)]
    pub fn single(
        network: &'a Network<T>,
        loss: Loss,
        x: &'a [T],
        t: &'a [T],
        groups: usize,
        mode: Mode,
        seed: u64,
        counter: Arc<Counter>,
        scratch: Option<GroupScratch<T>>,
    ) -> Self {
        let batch = x.len() / network.input_size().max(1);
        let layout = BatchGroups::new(batch, groups, 1);
        Self::new(
            network, loss, x, t, layout, mode, seed, counter, &Single, scratch,
        )
    }

    /// Returns the buffers for the next batch.
    pub fn into_scratch(self) -> GroupScratch<T> {
        let mut scratch = self.scratch;
        let mut parts = self.parts;
        // Popped in reverse, so that each group gets its workspace back.
        while let Some(part) = parts.pop() {
            scratch.workspaces.push(part.into_workspace());
        }
        scratch.parts = recycle(parts);
        scratch
    }

    /// Returns how the batch is split.
    pub fn layout(&self) -> BatchGroups {
        self.layout
    }

    /// Computes `compute` on every group of this rank into the groups' vectors and writes
    /// their sum over all groups of all ranks into `out`. Returns the sum of what `compute`
    /// returned.
    fn sum_groups(
        &mut self,
        out: &mut [T],
        compute: &(dyn Fn(&mut NetworkObjective<'a, T>, &mut [T]) -> f64 + Sync),
    ) -> f64 {
        self.sum_groups_in(out, 0..out.len(), compute)
    }

    /// Like [`GroupedObjective::sum_groups`], but only `out[range]` need hold the sum over
    /// the ranks afterwards.
    fn sum_groups_in(
        &mut self,
        out: &mut [T],
        range: Range<usize>,
        compute: &(dyn Fn(&mut NetworkObjective<'a, T>, &mut [T]) -> f64 + Sync),
    ) -> f64 {
        let with_vector = !out.is_empty();
        let scratch = &mut self.scratch;
        let rest = if with_vector {
            &mut scratch.vectors
        } else {
            &mut scratch.empty
        };

        let ranks = self.collective.size();
        // The groups run side by side, so each one's products get its share of the threads.
        let threads = (rayon::current_num_threads() / self.parts.len().max(1)).max(1);
        if ranks == 1 {
            return tree_sum(&mut self.parts, out, rest, threads, compute);
        }
        let fixed_order = self.layout.fixed_order();
        if with_vector && (ranks == 2 || !fixed_order) {
            // Two ranks, or sums without a fixed order, need no tree across the ranks, so the
            // groups write their share straight into the collective's buffer.
            let parts = &mut self.parts;
            let mut fill = |share: &mut [T]| tree_sum(parts, share, rest, threads, compute);
            return T::all_reduce_filled(self.collective, &mut fill, &mut scratch.part, out, range);
        }
        scratch.part.resize(out.len(), T::zero());
        let value = tree_sum(&mut self.parts, &mut scratch.part, rest, threads, compute);

        if with_vector {
            all_reduce_tree_in(
                self.collective,
                &scratch.part,
                out,
                range,
                &mut scratch.gathered,
                fixed_order,
            );
        }
        let mut total = [0.0];
        all_reduce_tree(
            self.collective,
            &[value],
            &mut total,
            &mut scratch.values,
            fixed_order,
        );
        total[0]
    }
}

/// Returns the allocation of an empty list of groups as a list for groups that borrow for
/// another lifetime, so that a training loop does not allocate the list at every step.
/// Collecting a vector's own iterator into a vector of an element of the same layout reuses
/// its allocation.
fn recycle<'b, T: Element>(parts: Vec<NetworkObjective<'_, T>>) -> Vec<NetworkObjective<'b, T>> {
    debug_assert!(parts.is_empty(), "only an empty list changes its lifetime");
    parts
        .into_iter()
        .map(|_| unreachable!("the list is empty"))
        .collect()
}

/// Seed of group `j`'s dropout masks.
fn group_seed(seed: u64, j: usize) -> u64 {
    seed ^ (j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Computes the terms of `parts` and adds them in the tree of [`tree_split`]: the sum of the
/// left subtree lands in `first`, that of the right one in `rest[split − 1]`, and then the
/// second is added to the first. The subtrees run in parallel. `rest` contains one vector fewer
/// than there are parts. With an empty `first` only the values are summed.
fn tree_sum<'a, T: Element>(
    parts: &mut [NetworkObjective<'a, T>],
    first: &mut [T],
    rest: &mut [Vec<T>],
    threads: usize,
    compute: &(dyn Fn(&mut NetworkObjective<'a, T>, &mut [T]) -> f64 + Sync),
) -> f64 {
    if let [part] = parts {
        if part.batch() == 0 {
            first.fill(T::zero());
            return 0.0;
        }
        return with_thread_limit(threads, || compute(part, first));
    }
    let split = tree_split(parts.len());
    let (left, right) = parts.split_at_mut(split);
    let (left_rest, tail) = rest.split_at_mut(split - 1);
    let (right_first, right_rest) = tail.split_first_mut().expect("one vector per part");
    let right_first = &mut right_first[..first.len()];
    let (a, b) = rayon::join(
        || tree_sum(left, first, left_rest, threads, compute),
        || tree_sum(right, right_first, right_rest, threads, compute),
    );
    add_assign(first, right_first);
    a + b
}

/// `a += b` element-wise, on all threads for long vectors. Each element is one addition,
/// so the split does not change the result.
fn add_assign<T: Element>(a: &mut [T], b: &[T]) {
    use rayon::prelude::*;
    if a.len() >= PARALLEL_ADD_LEN && rayon::current_num_threads() > 1 {
        let chunk = a.len().div_ceil(rayon::current_num_threads());
        a.par_chunks_mut(chunk)
            .zip(b.par_chunks(chunk))
            .for_each(|(a, b)| add_slices(a, b));
    } else {
        add_slices(a, b);
    }
}

fn add_slices<T: Element>(a: &mut [T], b: &[T]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

impl<T: Element> Objective<T> for GroupedObjective<'_, T> {
    fn dim(&self) -> usize {
        self.dim
    }

    fn value(&mut self, theta: &[T]) -> f64 {
        self.sum_groups(&mut [], &|part, _| part.value(theta))
    }

    fn gradient(&mut self, theta: &[T], grad: &mut [T]) -> f64 {
        self.counter.add_gradient();
        self.sum_groups(grad, &|part, out| part.gradient(theta, out))
    }

    fn update_range(&self) -> Option<Range<usize>> {
        let c = self.collective;
        let splits = c.size() > 1 && c.splits_updates(std::mem::size_of::<T>() * self.dim);
        splits.then(|| update_range(self.dim, c.rank(), c.size()))
    }

    fn gradient_in_range(&mut self, theta: &[T], grad: &mut [T]) -> f64 {
        self.counter.add_gradient();
        let range = self.update_range().unwrap_or(0..self.dim);
        self.sum_groups_in(grad, range, &|part, out| part.gradient(theta, out))
    }

    fn sum_over_ranges(&mut self, x: f64) -> f64 {
        let mut sum = [x];
        self.collective.all_reduce_sum_f64(&mut sum);
        sum[0]
    }

    fn share_updates(&mut self, params: &mut [T]) {
        T::share_parts(self.collective, params);
    }

    // NOTE: the ranks must agree on whether a curvature product exists. Network objectives
    // always have both, and groups without samples assume so.
    fn gauss_newton_product(&mut self, theta: &[T], v: &[T], out: &mut [T]) -> bool {
        self.sum_groups(out, &|part, out| {
            part.gauss_newton_product(theta, v, out);
            0.0
        });
        true
    }

    fn hessian_product(&mut self, theta: &[T], v: &[T], out: &mut [T]) -> bool {
        self.sum_groups(out, &|part, out| {
            part.hessian_product(theta, v, out);
            0.0
        });
        true
    }

    /// Adds up the groups' shares. Each group that cannot give its share adds 1 to the
    /// summed value, so every rank gets the same count and returns the same result.
    fn empirical_fisher_diagonal(&mut self, theta: &[T], out: &mut [T]) -> bool {
        let missing = self.sum_groups(out, &|part, out| {
            let found = part.empirical_fisher_diagonal(theta, out);
            if found {
                0.0
            } else {
                1.0
            }
        });
        missing == 0.0
    }

    fn evaluations(&self) -> u64 {
        self.counter.units()
    }

    /// On several ranks with the whole batch at hand, each rank evaluates a contiguous share
    /// of the candidates on the whole batch. It splits the batch into the same groups, so
    /// every value is bit for bit the one that all ranks would compute together. A sum over the ranks,
    /// where each value comes from one rank and zeros from the others, then gives every rank
    /// all values.
    fn candidate_values(
        &mut self,
        base: &[T],
        values: &mut [f64],
        fill: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let ranks = self.collective.size();
        let Some((x, t)) = self.whole.filter(|_| ranks > 1) else {
            // One process forks; several ranks without the whole batch evaluate each
            // candidate together.
            return values_by_forks(self, base, values, fill);
        };
        let layout = BatchGroups::new(self.layout.batch(), self.layout.groups(), 1);
        let counter = Arc::clone(&self.counter);
        let (network, loss, mode, seed) = (self.network, self.loss, self.mode, self.seed);
        let mut local = GroupedObjective::new(
            network, loss, x, t, layout, mode, seed, counter, &Single, None,
        );
        let mine = shard(values.len(), self.collective.rank(), ranks);
        let offset = mine.start;
        let shifted = |i: usize, point: &mut [T]| fill(offset + i, point);
        local.candidate_values(base, &mut values[mine.clone()], &shifted);
        for (i, v) in values.iter_mut().enumerate() {
            if !mine.contains(&i) {
                *v = 0.0;
            }
        }
        self.collective.all_reduce_sum_f64(values);
    }

    /// Copies for other threads exist in one process only, because on several ranks every
    /// evaluation is a collective.
    fn fork(&self) -> Option<Box<dyn Objective<T> + Send + '_>> {
        if self.collective.size() > 1 {
            return None;
        }
        let parts = self.parts.iter().map(NetworkObjective::copy).collect();
        Some(Box::new(self.derived(parts, self.layout)))
    }

    /// Returns the function over the first `ceil(fraction · n)` samples of each group of
    /// `n` samples: the mean loss over all groups' kept samples.
    fn subset(&self, fraction: f64) -> Option<Box<dyn Objective<T> + '_>> {
        if self.layout.batch() == 0 {
            return None;
        }
        let kept = |j: usize| {
            let n = self.layout.group(j).len();
            if n == 0 {
                0
            } else {
                subset_size(fraction, n)
            }
        };
        let total: usize = (0..self.layout.groups()).map(kept).sum();
        let first = self.layout.rank_groups(self.collective.rank()).start;
        let parts = self
            .parts
            .iter()
            .enumerate()
            .map(|(k, p)| p.first(kept(first + k)).mean_over(total))
            .collect();
        let layout = BatchGroups {
            batch: total,
            ..self.layout
        };
        Some(Box::new(self.derived(parts, layout)))
    }
}

impl<'a, T: Element> GroupedObjective<'a, T> {
    /// Creates a grouped objective over other parts, with buffers of its own.
    fn derived(
        &self,
        parts: Vec<NetworkObjective<'a, T>>,
        layout: BatchGroups,
    ) -> GroupedObjective<'a, T> {
        let count = parts.len();
        let scratch = GroupScratch {
            vectors: vec![vec![T::zero(); self.dim]; count.saturating_sub(1)],
            empty: vec![Vec::new(); count.saturating_sub(1)],
            ..GroupScratch::default()
        };
        GroupedObjective {
            network: self.network,
            loss: self.loss,
            mode: self.mode,
            seed: self.seed,
            whole: None,
            parts,
            collective: self.collective,
            layout,
            scratch,
            dim: self.dim,
            counter: Arc::clone(&self.counter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::run_group;
    use crate::nn::{self, Activation, Init, Loss, Mode, Network};
    use crate::tensor::Cpu;
    use rand::{Rng, SeedableRng};

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

        fn counter() -> Arc<Counter> {
            Arc::new(Counter::default())
        }

        /// Returns the plain objective of the whole batch.
        fn whole(&self) -> NetworkObjective<'_, f64> {
            let (loss, n) = (Loss::SoftmaxCrossEntropy, self.batch);
            let counter = Self::counter();
            NetworkObjective::new(
                &self.network,
                loss,
                &self.x,
                &self.t,
                n,
                Mode::Train,
                0,
                counter,
            )
        }

        /// Returns the whole batch in `groups` groups in one process.
        fn grouped(&self, groups: usize) -> GroupedObjective<'_, f64> {
            let loss = Loss::SoftmaxCrossEntropy;
            let (x, t, counter) = (&self.x, &self.t, Self::counter());
            GroupedObjective::single(
                &self.network,
                loss,
                x,
                t,
                groups,
                Mode::Train,
                0,
                counter,
                None,
            )
        }

        /// This rank's objective of the batch in `groups` groups over the ranks of `group`.
        fn on_rank<'a>(
            &'a self,
            groups: usize,
            group: &'a dyn Collective,
        ) -> GroupedObjective<'a, f64> {
            let layout = BatchGroups::new(self.batch, groups, group.size());
            let r = layout.rank_samples(group.rank());
            let x = &self.x[r.start * 3..r.end * 3];
            let t = &self.t[r.start * 4..r.end * 4];
            let (loss, counter) = (Loss::SoftmaxCrossEntropy, Self::counter());
            GroupedObjective::new(
                &self.network,
                loss,
                x,
                t,
                layout,
                Mode::Train,
                0,
                counter,
                group,
                None,
            )
        }
    }

    type Results = (f64, [Vec<f64>; 3]);

    /// Value, gradient, Gauss-Newton and Hessian products of one objective.
    fn evaluate_all(objective: &mut dyn Objective<f64>, p: &Problem) -> Results {
        let n = p.theta.len();
        let (mut grad, mut gv, mut hv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let value = objective.value(&p.theta);
        let from_gradient = objective.gradient(&p.theta, &mut grad);
        assert_eq!(value, from_gradient);
        assert!(objective.gauss_newton_product(&p.theta, &p.direction, &mut gv));
        assert!(objective.hessian_product(&p.theta, &p.direction, &mut hv));
        (value, [grad, gv, hv])
    }

    fn assert_close(a: &Results, b: &Results) {
        assert!(
            (a.0 - b.0).abs() <= 1e-12 * (1.0 + b.0.abs()),
            "{} vs {}",
            a.0,
            b.0
        );
        for (k, name) in ["gradient", "Gauss-Newton", "Hessian"].iter().enumerate() {
            for (i, (x, y)) in a.1[k].iter().zip(&b.1[k]).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                    "{name}[{i}]: {x} vs {y}"
                );
            }
        }
    }

    /// Checks that `ranks` ranks give bit for bit what one process gives with the same
    /// requested group count.
    fn check_ranks_equal_one_process(batch: usize, groups: usize, ranks: usize) {
        let p = Problem::new(batch);
        let effective = BatchGroups::effective(groups, ranks);
        let single = evaluate_all(&mut p.grouped(effective), &p);
        let results = run_group(ranks, |group| {
            evaluate_all(&mut p.on_rank(groups, group), &p)
        });
        for (rank, result) in results.iter().enumerate() {
            assert_eq!(result, &single, "rank {rank} of {ranks}, {groups} groups");
        }
    }

    #[test]
    fn groups_add_up_to_the_whole_batch() {
        let p = Problem::new(11);
        let whole = evaluate_all(&mut p.whole(), &p);
        for groups in [1, 2, 4, 8, 16] {
            assert_close(&evaluate_all(&mut p.grouped(groups), &p), &whole);
        }
    }

    #[test]
    fn fisher_diagonal_adds_up_over_groups() {
        let p = Problem::new(11);
        let n = p.theta.len();
        let mut whole = vec![0.0; n];
        assert!(p.whole().empirical_fisher_diagonal(&p.theta, &mut whole));
        let scale = whole.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "zero diagonal");
        let check = |diagonal: &[f64], label: &str| {
            for (i, (x, y)) in diagonal.iter().zip(&whole).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-12 * scale,
                    "{label}, entry {i}: {x} vs {y}"
                );
            }
        };

        // Sixteen groups of eleven samples leave some groups empty.
        for groups in [1, 2, 4, 16] {
            let mut diagonal = vec![0.0; n];
            let found = p
                .grouped(groups)
                .empirical_fisher_diagonal(&p.theta, &mut diagonal);
            assert!(found, "{groups} groups: no diagonal");
            check(&diagonal, &format!("{groups} groups"));
        }
        let results = run_group(2, |group| {
            let mut diagonal = vec![0.0; n];
            let found = p
                .on_rank(2, group)
                .empirical_fisher_diagonal(&p.theta, &mut diagonal);
            (found, diagonal)
        });
        for (rank, (found, diagonal)) in results.iter().enumerate() {
            assert!(found, "rank {rank}: no diagonal");
            check(diagonal, &format!("rank {rank} of 2"));
        }
    }

    #[test]
    fn two_ranks_equal_one_process_bit_for_bit() {
        check_ranks_equal_one_process(7, 2, 2);
        check_ranks_equal_one_process(32, 2, 2);
    }

    #[test]
    fn ranks_with_several_groups_equal_one_process() {
        check_ranks_equal_one_process(13, 4, 2);
        check_ranks_equal_one_process(13, 8, 4);
    }

    #[test]
    fn more_ranks_than_groups_equal_that_many_groups() {
        // Four ranks turn two groups into four, which one process matches with four.
        check_ranks_equal_one_process(9, 2, 4);
    }

    #[test]
    fn ranks_without_samples_add_nothing() {
        check_ranks_equal_one_process(2, 2, 4);
        let p = Problem::new(2);
        let whole = evaluate_all(&mut p.whole(), &p);
        assert_close(&evaluate_all(&mut p.grouped(8), &p), &whole);
    }

    #[test]
    fn three_and_six_ranks_equal_six_groups() {
        // Two groups on three ranks become six, two per rank.
        check_ranks_equal_one_process(11, 2, 3);
        check_ranks_equal_one_process(13, 2, 6);
        check_ranks_equal_one_process(25, 4, 3);
    }

    #[test]
    fn groups_of_no_power_of_two_match_closely() {
        // Three groups on two ranks become six, three per rank: no subtree of the sum, so
        // the ranks' sums are added in the library's order.
        let p = Problem::new(11);
        let whole = evaluate_all(&mut p.whole(), &p);
        let layout = BatchGroups::new(11, 3, 2);
        assert!(!layout.fixed_order());
        let results = run_group(2, |group| evaluate_all(&mut p.on_rank(3, group), &p));
        for result in &results {
            assert_close(result, &whole);
        }
    }

    #[test]
    fn layout_gives_each_rank_its_groups() {
        assert_eq!(BatchGroups::effective(2, 1), 2);
        assert_eq!(BatchGroups::effective(2, 4), 4);
        assert_eq!(BatchGroups::effective(8, 2), 8);
        assert_eq!(BatchGroups::effective(2, 3), 6);
        assert_eq!(BatchGroups::effective(4, 6), 12);
        for (batch, groups, ranks) in [(32, 2, 2), (33, 8, 4), (5, 2, 3), (1, 4, 2)] {
            let layout = BatchGroups::new(batch, groups, ranks);
            for rank in 0..ranks {
                let own = layout.rank_groups(rank);
                let samples = layout.rank_samples(rank);
                assert_eq!(layout.group(own.start).start, samples.start);
                assert_eq!(layout.group(own.end - 1).end, samples.end);
            }
        }
    }

    #[test]
    fn subset_is_the_mean_over_kept_samples() {
        let (batch, fraction) = (12, 0.4);
        let p = Problem::new(batch);
        let grouped = p.grouped(2);
        let mut subset = grouped.subset(fraction).expect("subset");
        let single = evaluate_all(subset.as_mut(), &p);
        // ceil(0.4 · 6) = 3 samples from the start of each half.
        let kept: Vec<usize> = (0..3).chain(6..9).collect();
        let x: Vec<f64> = kept
            .iter()
            .flat_map(|&i| p.x[i * 3..i * 3 + 3].to_vec())
            .collect();
        let t: Vec<f64> = kept
            .iter()
            .flat_map(|&i| p.t[i * 4..i * 4 + 4].to_vec())
            .collect();
        let (loss, counter) = (Loss::SoftmaxCrossEntropy, Problem::counter());
        let mut direct =
            NetworkObjective::new(&p.network, loss, &x, &t, 6, Mode::Train, 0, counter);
        assert_close(&single, &evaluate_all(&mut direct, &p));
        let results = run_group(2, |group| {
            let objective = p.on_rank(2, group);
            let mut part = objective.subset(fraction).expect("subset");
            evaluate_all(part.as_mut(), &p)
        });
        for result in &results {
            assert_eq!(result, &single);
        }
    }

    #[test]
    fn fork_copies_in_one_process_only() {
        let p = Problem::new(6);
        let mut grouped = p.grouped(2);
        let value = grouped.value(&p.theta);
        let mut fork = grouped.fork().expect("one process forks");
        assert_eq!(fork.value(&p.theta), value);
        let results = run_group(2, |group| p.on_rank(2, group).fork().is_none());
        assert_eq!(results, [true, true]);
    }

    #[test]
    fn candidates_spread_over_ranks() {
        let p = Problem::new(10);
        let fill = |i: usize, point: &mut [f64]| point[0] = i as f64 * 0.1;
        let mut expected = vec![0.0; 7];
        p.grouped(2)
            .candidate_values(&p.theta, &mut expected, &fill);
        let results = run_group(2, |group| {
            let mut objective = p.on_rank(2, group).with_whole_batch(&p.x, &p.t);
            let mut values = vec![0.0; 7];
            objective.candidate_values(&p.theta, &mut values, &fill);
            (values, objective.evaluations())
        });
        for (values, _) in &results {
            assert_eq!(values, &expected);
        }
        // Rank 0 evaluates candidates 0 to 2 and rank 1 the other four, each on all ten
        // samples.
        assert_eq!(results[0].1, 30);
        assert_eq!(results[1].1, 40);
    }

    #[test]
    fn sums_do_not_depend_on_the_thread_count() {
        // Large enough for the products to split over threads.
        let specs = nn::mlp(&[256, 128], Activation::Relu, 0.0, 10);
        let network = Network::<f32>::new(&[784], &specs, Arc::new(Cpu::new(4))).expect("net");
        let theta = network.init_params(Init::Auto, 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let batch = 96;
        let x: Vec<f32> = (0..batch * 784)
            .map(|_| rng.random_range(0.0..1.0))
            .collect();
        let t: Vec<f32> = (0..batch)
            .flat_map(|i| (0..10).map(move |c| f32::from(u8::from(c == i % 10))))
            .collect();
        let gradient = |threads: usize, groups: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| {
                let loss = Loss::SoftmaxCrossEntropy;
                let counter = Arc::new(Counter::default());
                let mut objective = GroupedObjective::single(
                    &network,
                    loss,
                    &x,
                    &t,
                    groups,
                    Mode::Train,
                    0,
                    counter,
                    None,
                );
                let mut grad = vec![0.0f32; theta.len()];
                let value = objective.gradient(&theta, &mut grad);
                (value, grad)
            })
        };
        for groups in [1, 2, 4] {
            let one = gradient(1, groups);
            assert_eq!(one, gradient(2, groups), "{groups} groups, 2 threads");
            assert_eq!(one, gradient(4, groups), "{groups} groups, 4 threads");
        }
    }
}
