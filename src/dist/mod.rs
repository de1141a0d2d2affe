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

    fn broadcast_f32(&self, _values: &mut [f32]) {}

    fn broadcast_f64(&self, _values: &mut [f64]) {}

    fn barrier(&self) {}
}

/// A scalar type that collectives can sum and broadcast.
pub trait Element: Scalar {
    /// Sums `values` element-wise over all ranks of `group`.
    fn all_reduce_sum(group: &dyn Collective, values: &mut [Self]);

    /// Writes the element-wise sum of `send` over all ranks of `group` into `sum`.
    fn all_reduce_sum_from(group: &dyn Collective, send: &[Self], sum: &mut [Self]);

    /// Copies rank 0's `values` to every rank of `group`.
    fn broadcast(group: &dyn Collective, values: &mut [Self]);
}

impl Element for f32 {
    fn all_reduce_sum(group: &dyn Collective, values: &mut [f32]) {
        group.all_reduce_sum_f32(values);
    }

    fn all_reduce_sum_from(group: &dyn Collective, send: &[f32], sum: &mut [f32]) {
        group.all_reduce_sum_f32_from(send, sum);
    }

    fn broadcast(group: &dyn Collective, values: &mut [f32]) {
        group.broadcast_f32(values);
    }
}

impl Element for f64 {
    fn all_reduce_sum(group: &dyn Collective, values: &mut [f64]) {
        group.all_reduce_sum_f64(values);
    }

    fn all_reduce_sum_from(group: &dyn Collective, send: &[f64], sum: &mut [f64]) {
        group.all_reduce_sum_f64_from(send, sum);
    }

    fn broadcast(group: &dyn Collective, values: &mut [f64]) {
        group.broadcast_f64(values);
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
    fn single_leaves_values() {
        let mut values = [1.5f32, -2.0];
        Single.all_reduce_sum_f32(&mut values);
        Single.broadcast_f32(&mut values);
        assert_eq!(values, [1.5, -2.0]);
        assert!(Single.any(true));
        assert!(!Single.any(false));
    }
}
