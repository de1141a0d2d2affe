//! Ranks as threads of one process, for testing data-parallel code without an MPI launcher.

use super::Collective;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};

/// One rank of a group of threads. Create the group with [`ThreadGroup::new`] and move each
/// member to its own thread; every member must call the same operations in the same order.
///
/// Sums run in rank order in the element type, so every rank gets bitwise the same result.
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    barrier: Barrier,
    /// Each rank's contribution to the operation in progress, as f64 (exact for f32).
    slots: Mutex<Vec<Vec<f64>>>,
}

impl ThreadGroup {
    /// Returns the `size` members of a new group, in rank order.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        assert!(size > 0, "a thread group needs at least one rank");
        let shared = Arc::new(Shared {
            size,
            barrier: Barrier::new(size),
            slots: Mutex::new(vec![Vec::new(); size]),
        });
        (0..size)
            .map(|rank| ThreadGroup {
                rank,
                shared: Arc::clone(&shared),
            })
            .collect()
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Vec<f64>>> {
        // A panic on another rank poisons the lock; the slots stay usable for the report.
        self.shared.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes this rank's values, waits for all ranks, and returns every rank's values.
    fn exchange(&self, values: impl Iterator<Item = f64>) -> Vec<Vec<f64>> {
        self.slots()[self.rank] = values.collect();
        self.shared.barrier.wait();
        let all = self.slots().clone();
        // No rank may publish the next operation's values before all have read these.
        self.shared.barrier.wait();
        all
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) {
        let all = self.exchange(values.iter().map(|&v| f64::from(v)));
        for (i, v) in values.iter_mut().enumerate() {
            *v = all.iter().fold(0.0f32, |sum, part| sum + part[i] as f32);
        }
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        let all = self.exchange(values.iter().copied());
        for (i, v) in values.iter_mut().enumerate() {
            *v = all.iter().fold(0.0, |sum, part| sum + part[i]);
        }
    }

    fn all_gather_f32(&self, send: &[f32], all: &mut [f32]) {
        let parts = self.exchange(send.iter().map(|&v| f64::from(v)));
        for (block, part) in all.chunks_mut(send.len().max(1)).zip(&parts) {
            for (v, &p) in block.iter_mut().zip(part) {
                *v = p as f32;
            }
        }
    }

    fn all_gather_f64(&self, send: &[f64], all: &mut [f64]) {
        let parts = self.exchange(send.iter().copied());
        for (block, part) in all.chunks_mut(send.len().max(1)).zip(&parts) {
            block.copy_from_slice(part);
        }
    }

    fn broadcast_f32(&self, values: &mut [f32]) {
        let all = self.exchange(values.iter().map(|&v| f64::from(v)));
        for (v, &root) in values.iter_mut().zip(&all[0]) {
            *v = root as f32;
        }
    }

    fn broadcast_f64(&self, values: &mut [f64]) {
        let all = self.exchange(values.iter().copied());
        values.copy_from_slice(&all[0]);
    }

    fn barrier(&self) {
        self.shared.barrier.wait();
    }
}

/// Runs `work` on every member of a new group of `size` threads and returns the results in
/// rank order.
#[cfg(test)]
pub(crate) fn run_group<R: Send>(size: usize, work: impl Fn(&ThreadGroup) -> R + Sync) -> Vec<R> {
    let members = ThreadGroup::new(size);
    std::thread::scope(|s| {
        let handles: Vec<_> = members.iter().map(|m| s.spawn(|| work(m))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a rank panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_reduce_sums_every_rank() {
        let results = run_group(3, |g| {
            let r = g.rank() as f32;
            let mut values = [r, 10.0 * r, 1.0];
            g.all_reduce_sum_f32(&mut values);
            let mut wide = [r as f64 + 0.5];
            g.all_reduce_sum_f64(&mut wide);
            (values, wide[0])
        });
        for (values, wide) in results {
            assert_eq!(values, [3.0, 30.0, 3.0]);
            assert_eq!(wide, 4.5);
        }
    }

    #[test]
    fn broadcast_copies_rank_zero() {
        let results = run_group(3, |g| {
            let mut values = [g.rank() as f32 + 1.0; 2];
            g.broadcast_f32(&mut values);
            let mut wide = [g.rank() as f64 - 1.0];
            g.broadcast_f64(&mut wide);
            (values, wide[0])
        });
        for (values, wide) in results {
            assert_eq!(values, [1.0, 1.0]);
            assert_eq!(wide, -1.0);
        }
    }

    #[test]
    fn any_agrees_on_every_rank() {
        let some = run_group(3, |g| g.any(g.rank() == 2));
        assert_eq!(some, [true, true, true]);
        let none = run_group(3, |g| g.any(false));
        assert_eq!(none, [false, false, false]);
    }

    #[test]
    fn repeated_operations_stay_in_step() {
        let results = run_group(2, |g| {
            let mut total = 0.0;
            for k in 0..50 {
                let mut v = [(g.rank() * 100 + k) as f64];
                g.all_reduce_sum_f64(&mut v);
                total += v[0];
            }
            total
        });
        // Step k sums k and 100 + k.
        let expected: f64 = (0..50).map(|k| (2 * k + 100) as f64).sum();
        assert_eq!(results, [expected, expected]);
    }
}
