//! Collective operations across the processes of a data-parallel run.
//!
//! Each process (a rank) trains on its shard of every batch. The [`Collective`] trait holds
//! the few operations that data-parallel training needs: sums across ranks, a broadcast from
//! rank 0, a barrier and a vote. [`Single`] is the one-process case, [`ThreadGroup`] runs
//! ranks as threads of one process for tests, and `Mpi` (with the `mpi` cargo feature) runs
//! them as MPI processes.
//!
//! Every rank must call the same collectives in the same order, from one thread at a time.

mod group;
mod launch;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "mpi")]
mod shared;
mod watchdog;

#[cfg(test)]
pub(crate) use group::run_group;
pub use group::ThreadGroup;
pub use launch::{detect_launch, Launch};
#[cfg(feature = "mpi")]
pub use mpi::Mpi;
pub use watchdog::{Watchdog, WatchdogGuard};

use crate::tensor::Scalar;
use std::ops::Range;

/// Seconds a rank waits in one collective before it aborts the job, unless configured.
pub const DEFAULT_RANK_TIMEOUT_SECONDS: f64 = 300.0;

/// Operations that every rank of a group calls together.
pub trait Collective: Send + Sync {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn size(&self) -> usize;

    /// Replaces `values` on every rank with their element-wise sum over all ranks.
    fn all_reduce_sum_f32(&self, values: &mut [f32]);

    /// Replaces `values` on every rank with their element-wise sum over all ranks.
    fn all_reduce_sum_f64(&self, values: &mut [f64]);

    /// Writes the element-wise sum of `send` over all ranks into `sum`, which saves the copy
    /// that the in-place sum makes under MPI.
    fn all_reduce_sum_f32_from(&self, send: &[f32], sum: &mut [f32]) {
        sum.copy_from_slice(send);
        self.all_reduce_sum_f32(sum);
    }

    /// Writes the element-wise sum of `send` over all ranks into `sum`.
    fn all_reduce_sum_f64_from(&self, send: &[f64], sum: &mut [f64]) {
        sum.copy_from_slice(send);
        self.all_reduce_sum_f64(sum);
    }

    /// Writes into `sum[range]` the element-wise sum of `send[range]` over all ranks, where
    /// every rank passes the whole vector and its own [`update_range`]. The rest of `sum` is
    /// left in any state. Ranks on one machine then add only their part.
    fn all_reduce_sum_f32_in(&self, send: &[f32], sum: &mut [f32], range: Range<usize>) {
        let _ = range;
        self.all_reduce_sum_f32_from(send, sum);
    }

    /// Writes into `sum[range]` the element-wise sum of `send[range]` over all ranks.
    fn all_reduce_sum_f64_in(&self, send: &[f64], sum: &mut [f64], range: Range<usize>) {
        let _ = range;
        self.all_reduce_sum_f64_from(send, sum);
    }

    /// Sums over the ranks a vector and a value that `fill` computes on each rank: `fill`
    /// writes the rank's vector into the slice it is given, as long as `sum`, and returns
    /// the rank's value. Writes the vector sum into `sum[range]` and returns the value sum,
    /// both added in rank order. Ranks on one machine let `fill` write straight into the
    /// memory that the others read; elsewhere it writes into `scratch`.
    fn all_reduce_filled_f32(
        &self,
        fill: &mut dyn FnMut(&mut [f32]) -> f64,
        scratch: &mut Vec<f32>,
        sum: &mut [f32],
        range: Range<usize>,
    ) -> f64 {
        let reduce =
            |send: &[f32], sum: &mut [f32], range| self.all_reduce_sum_f32_in(send, sum, range);
        reduce_filled_by_parts(fill, scratch, sum, range, reduce, |v| {
            self.all_reduce_sum_f64(v)
        })
    }

    /// Like [`Collective::all_reduce_filled_f32`], for f64 vectors.
    fn all_reduce_filled_f64(
        &self,
        fill: &mut dyn FnMut(&mut [f64]) -> f64,
        scratch: &mut Vec<f64>,
        sum: &mut [f64],
        range: Range<usize>,
    ) -> f64 {
        let reduce =
            |send: &[f64], sum: &mut [f64], range| self.all_reduce_sum_f64_in(send, sum, range);
        reduce_filled_by_parts(fill, scratch, sum, range, reduce, |v| {
            self.all_reduce_sum_f64(v)
        })
    }

    /// Whether ranks should split elementwise optimiser steps over `bytes` bytes of
    /// parameters between them, each updating its [`update_range`] and then sharing it,
    /// instead of each updating every parameter.
    fn splits_updates(&self, bytes: usize) -> bool {
        let _ = bytes;
        true
    }

    /// Copies every rank's part of `values`, its [`update_range`], to the other ranks.
    fn share_parts_f32(&self, values: &mut [f32]) {
        share_parts_by_gather(self, values, Self::all_gather_f32);
    }

    /// Copies every rank's part of `values`, its [`update_range`], to the other ranks.
    fn share_parts_f64(&self, values: &mut [f64]) {
        share_parts_by_gather(self, values, Self::all_gather_f64);
    }

    /// Writes every rank's `send` into `all`, in rank order: `all` holds `size()` blocks of
    /// `send.len()` values.
    fn all_gather_f32(&self, send: &[f32], all: &mut [f32]);

    /// Writes every rank's `send` into `all`, in rank order.
    fn all_gather_f64(&self, send: &[f64], all: &mut [f64]);

    /// Copies rank 0's `values` into `values` on every other rank.
    fn broadcast_f32(&self, values: &mut [f32]);

    /// Copies rank 0's `values` into `values` on every other rank.
    fn broadcast_f64(&self, values: &mut [f64]);

    /// Returns once every rank has called it.
    fn barrier(&self);

    /// Returns true on every rank when `flag` is true on at least one rank.
    fn any(&self, flag: bool) -> bool {
        let mut votes = [f64::from(u8::from(flag))];
        self.all_reduce_sum_f64(&mut votes);
        votes[0] > 0.0
    }

    /// Whether this is rank 0, the rank that writes files and reports progress.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// The group of one process: every operation leaves its input unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum_f32(&self, _values: &mut [f32]) {}

    fn all_reduce_sum_f64(&self, _values: &mut [f64]) {}

    fn all_gather_f32(&self, send: &[f32], all: &mut [f32]) {
        all.copy_from_slice(send);
    }

    fn all_gather_f64(&self, send: &[f64], all: &mut [f64]) {
        all.copy_from_slice(send);
    }

    fn broadcast_f32(&self, _values: &mut [f32]) {}

    fn broadcast_f64(&self, _values: &mut [f64]) {}

    fn barrier(&self) {}
}

/// Sums a vector and a value that `fill` computes on every rank with two allreduces:
/// `fill` writes into `scratch`, `reduce` sums the vector into `sum[range]`, and
/// `reduce_value` sums the value.
fn reduce_filled_by_parts<T: Scalar>(
    fill: &mut dyn FnMut(&mut [T]) -> f64,
    scratch: &mut Vec<T>,
    sum: &mut [T],
    range: Range<usize>,
    reduce: impl FnOnce(&[T], &mut [T], Range<usize>),
    reduce_value: impl FnOnce(&mut [f64]),
) -> f64 {
    scratch.resize(sum.len(), T::zero());
    let value = fill(scratch);
    reduce(scratch, sum, range);
    let mut total = [value];
    reduce_value(&mut total);
    total[0]
}

/// Shares the parts of `values` through an all-gather of equal blocks, as long as the
/// longest part.
fn share_parts_by_gather<C: Collective + ?Sized, T: Scalar>(
    group: &C,
    values: &mut [T],
    all_gather: impl Fn(&C, &[T], &mut [T]),
) {
    let (n, size) = (values.len(), group.size());
    if size == 1 {
        return;
    }
    let block = update_range(n, 0, size).len();
    let mine = update_range(n, group.rank(), size);
    let mut send = vec![T::zero(); block];
    send[..mine.len()].copy_from_slice(&values[mine]);
    let mut all = vec![T::zero(); block * size];
    all_gather(group, &send, &mut all);
    for r in 0..size {
        let part = update_range(n, r, size);
        let start = r * block;
        values[part.clone()].copy_from_slice(&all[start..start + part.len()]);
    }
}

/// Elements per block of [`update_range`]'s parts: whole cache lines of f32 and f64, and
/// whole AVX-512 vectors.
const UPDATE_ALIGN: usize = 64;

/// The part of `0..n` whose update `rank` of `size` ranks makes when the ranks split an
/// optimiser step: blocks of equal length, a multiple of 64 elements, in rank order. The last
/// parts are shorter or empty.
pub fn update_range(n: usize, rank: usize, size: usize) -> Range<usize> {
    assert!(rank < size, "rank {rank} is outside a group of {size}");
    let block = n.div_ceil(size).next_multiple_of(UPDATE_ALIGN);
    (rank * block).min(n)..((rank + 1) * block).min(n)
}

/// A scalar type that collectives can sum and broadcast.
pub trait Element: Scalar {
    /// Sums `values` element-wise over all ranks of `group`.
    fn all_reduce_sum(group: &dyn Collective, values: &mut [Self]);

    /// Sums `send[range]` element-wise over all ranks into `sum[range]`
    /// ([`Collective::all_reduce_sum_f32_in`]).
    fn all_reduce_sum_in(
        group: &dyn Collective,
        send: &[Self],
        sum: &mut [Self],
        range: Range<usize>,
    );

    /// Copies every rank's [`update_range`] of `values` to the other ranks.
    fn share_parts(group: &dyn Collective, values: &mut [Self]);

    /// Sums a vector and a value that `fill` computes on every rank
    /// ([`Collective::all_reduce_filled_f32`]).
    fn all_reduce_filled(
        group: &dyn Collective,
        fill: &mut dyn FnMut(&mut [Self]) -> f64,
        scratch: &mut Vec<Self>,
        sum: &mut [Self],
        range: Range<usize>,
    ) -> f64;

    /// Writes every rank's `send` into `all`, in rank order.
    fn all_gather(group: &dyn Collective, send: &[Self], all: &mut [Self]);

    /// Copies rank 0's `values` to every rank of `group`.
    fn broadcast(group: &dyn Collective, values: &mut [Self]);
}

impl Element for f32 {
    fn all_reduce_sum(group: &dyn Collective, values: &mut [f32]) {
        group.all_reduce_sum_f32(values);
    }

    fn all_reduce_sum_in(
        group: &dyn Collective,
        send: &[f32],
        sum: &mut [f32],
        range: Range<usize>,
    ) {
        group.all_reduce_sum_f32_in(send, sum, range);
    }

    fn share_parts(group: &dyn Collective, values: &mut [f32]) {
        group.share_parts_f32(values);
    }

    fn all_reduce_filled(
        group: &dyn Collective,
        fill: &mut dyn FnMut(&mut [f32]) -> f64,
        scratch: &mut Vec<f32>,
        sum: &mut [f32],
        range: Range<usize>,
    ) -> f64 {
        group.all_reduce_filled_f32(fill, scratch, sum, range)
    }

    fn all_gather(group: &dyn Collective, send: &[f32], all: &mut [f32]) {
        group.all_gather_f32(send, all);
    }

    fn broadcast(group: &dyn Collective, values: &mut [f32]) {
        group.broadcast_f32(values);
    }
}

impl Element for f64 {
    fn all_reduce_sum(group: &dyn Collective, values: &mut [f64]) {
        group.all_reduce_sum_f64(values);
    }

    fn all_reduce_sum_in(
        group: &dyn Collective,
        send: &[f64],
        sum: &mut [f64],
        range: Range<usize>,
    ) {
        group.all_reduce_sum_f64_in(send, sum, range);
    }

    fn share_parts(group: &dyn Collective, values: &mut [f64]) {
        group.share_parts_f64(values);
    }

    fn all_reduce_filled(
        group: &dyn Collective,
        fill: &mut dyn FnMut(&mut [f64]) -> f64,
        scratch: &mut Vec<f64>,
        sum: &mut [f64],
        range: Range<usize>,
    ) -> f64 {
        group.all_reduce_filled_f64(fill, scratch, sum, range)
    }

    fn all_gather(group: &dyn Collective, send: &[f64], all: &mut [f64]) {
        group.all_gather_f64(send, all);
    }

    fn broadcast(group: &dyn Collective, values: &mut [f64]) {
        group.broadcast_f64(values);
    }
}

/// Where the fixed summation tree over `len > 1` terms splits them: the first
/// `tree_split(len)` terms form the left subtree, the rest the right.
///
/// A power of two splits in halves. Any other length splits at a multiple of the largest
/// power of two `b` that divides it, halving its `len / b` blocks of `b`. Then every aligned
/// block of a power-of-two size that divides `len` is a subtree, so `len` terms spread over
/// ranks in equal power-of-two shares add up in the same order on any rank count.
pub fn tree_split(len: usize) -> usize {
    debug_assert!(len > 1, "a tree over {len} terms has no split");
    if len.is_power_of_two() {
        return len / 2;
    }
    let block = 1 << len.trailing_zeros();
    (len / block / 2) * block
}

/// Writes into `sum` the element-wise sum of `send` over the ranks of `group`, added in the
/// tree of [`tree_split`] over the ranks when `fixed_order` holds, which makes the sum the
/// same for any MPI library and equal to the same tree computed in one process. `gathered` is
/// scratch space.
///
/// Two ranks need only the library's sum, because one addition does not depend on the order
/// of its operands. More ranks gather every rank's vector and add them locally, which moves
/// `size − 1` vectors instead of about two; without `fixed_order` they use the library's sum.
// NOTE: a reduce-scatter in the same tree would move less for many ranks.
pub fn all_reduce_tree<T: Element>(
    group: &dyn Collective,
    send: &[T],
    sum: &mut [T],
    gathered: &mut Vec<T>,
    fixed_order: bool,
) {
    all_reduce_tree_in(group, send, sum, 0..send.len(), gathered, fixed_order);
}

/// Like [`all_reduce_tree`], but only `sum[range]` need hold the sum afterwards, where
/// `range` is the whole vector or this rank's [`update_range`].
pub fn all_reduce_tree_in<T: Element>(
    group: &dyn Collective,
    send: &[T],
    sum: &mut [T],
    range: Range<usize>,
    gathered: &mut Vec<T>,
    fixed_order: bool,
) {
    let size = group.size();
    if size == 1 {
        sum.copy_from_slice(send);
        return;
    }
    if size == 2 || !fixed_order {
        // One call whatever the range, because ranges differ between ranks.
        T::all_reduce_sum_in(group, send, sum, range);
        return;
    }
    let n = send.len();
    gathered.clear();
    gathered.resize(size * n, T::zero());
    T::all_gather(group, send, gathered);
    add_tree(gathered, n);
    sum.copy_from_slice(&gathered[..n]);
}

/// Adds the blocks of `n` values in `blocks` in the tree of [`tree_split`], leaving the sum
/// in the first block.
fn add_tree<T: Scalar>(blocks: &mut [T], n: usize) {
    let count = blocks.len() / n.max(1);
    if count < 2 {
        return;
    }
    let (left, right) = blocks.split_at_mut(tree_split(count) * n);
    add_tree(left, n);
    add_tree(right, n);
    for (a, &b) in left[..n].iter_mut().zip(&right[..n]) {
        *a += b;
    }
}

/// The contiguous part of `0..n` that `rank` of `size` ranks takes. Parts differ in length
/// by at most one, and a rank gets an empty part when `n < size`.
pub fn shard(n: usize, rank: usize, size: usize) -> Range<usize> {
    assert!(rank < size, "rank {rank} is outside a group of {size}");
    n * rank / size..n * (rank + 1) / size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_range_in_order() {
        for n in [0, 1, 2, 5, 32, 33] {
            for size in 1..=4 {
                let parts: Vec<_> = (0..size).map(|r| shard(n, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, n);
                for pair in parts.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                }
                let (min, max) = (
                    parts.iter().map(|p| p.len()).min().unwrap(),
                    parts.iter().map(|p| p.len()).max().unwrap(),
                );
                assert!(max - min <= 1, "n {n}, size {size}: {parts:?}");
            }
        }
    }

    #[test]
    fn update_ranges_cover_in_aligned_blocks() {
        for n in [0, 1, 63, 64, 65, 1000, 235_146] {
            for size in 1..=5 {
                let parts: Vec<_> = (0..size).map(|r| update_range(n, r, size)).collect();
                assert_eq!(parts[0].start, 0, "n {n}, size {size}");
                assert_eq!(parts[size - 1].end, n, "n {n}, size {size}");
                for pair in parts.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start, "n {n}, size {size}");
                }
                // Empty parts start at n.
                for part in parts.iter().filter(|p| !p.is_empty()) {
                    assert_eq!(part.start % 64, 0, "n {n}, size {size}: {part:?}");
                }
                let longest = parts.iter().map(|p| p.len()).max().unwrap();
                assert!(longest <= n.div_ceil(size) + 63, "n {n}, size {size}");
            }
        }
    }

    #[test]
    fn parts_shared_by_gather_reach_every_rank() {
        for size in [2, 3, 4] {
            let n = 200;
            let results = run_group(size, |g| {
                // Each rank knows only its own part; the rest is its rank number.
                let mine = update_range(n, g.rank(), size);
                let mut values: Vec<f64> = (0..n)
                    .map(|i| {
                        if mine.contains(&i) {
                            i as f64
                        } else {
                            -(g.rank() as f64)
                        }
                    })
                    .collect();
                g.share_parts_f64(&mut values);
                values
            });
            let expected: Vec<f64> = (0..n).map(|i| i as f64).collect();
            for values in results {
                assert_eq!(values, expected, "{size} ranks");
            }
        }
    }

    /// The ranges of the subtrees of the tree over `lo..hi`.
    fn subtrees(lo: usize, hi: usize, found: &mut Vec<(usize, usize)>) {
        found.push((lo, hi));
        if hi - lo > 1 {
            let mid = lo + tree_split(hi - lo);
            subtrees(lo, mid, found);
            subtrees(mid, hi, found);
        }
    }

    #[test]
    fn aligned_power_of_two_blocks_are_subtrees() {
        for len in 1..=96 {
            let mut found = Vec::new();
            subtrees(0, len, &mut found);
            let mut size = 1;
            while len % size == 0 {
                for start in (0..len).step_by(size) {
                    assert!(
                        found.contains(&(start, start + size)),
                        "{start}..{} is no subtree of {len} terms",
                        start + size
                    );
                }
                size *= 2;
            }
        }
        assert_eq!(tree_split(8), 4);
        assert_eq!(tree_split(6), 2);
        assert_eq!(tree_split(12), 4);
        assert_eq!(tree_split(7), 3);
    }

    #[test]
    fn tree_sum_over_ranks_is_the_same_on_every_rank() {
        for size in [3, 4, 5, 6] {
            let results = run_group(size, |g| {
                // Values whose sum depends on the order of the additions.
                let send = [
                    1e8f32 * (g.rank() as f32 - 1.5),
                    1.0 + g.rank() as f32 * 1e-7,
                ];
                let mut sum = [0.0f32; 2];
                all_reduce_tree(g, &send, &mut sum, &mut Vec::new(), true);
                sum
            });
            let mut blocks: Vec<f32> = (0..size)
                .flat_map(|r| [1e8f32 * (r as f32 - 1.5), 1.0 + r as f32 * 1e-7])
                .collect();
            add_tree(&mut blocks, 2);
            for sum in results {
                assert_eq!(sum, [blocks[0], blocks[1]], "{size} ranks");
            }
        }
    }

    #[test]
    fn single_leaves_values() {
        let mut values = [1.5f32, -2.0];
        Single.all_reduce_sum_f32(&mut values);
        Single.broadcast_f32(&mut values);
        assert_eq!(values, [1.5, -2.0]);
        assert!(Single.any(true));
        assert!(!Single.any(false));
    }
}
