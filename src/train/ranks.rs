//! Values that the training loop exchanges between the ranks of a data-parallel run, beside
//! the sums inside the objective.

use super::evaluate::Metrics;
use crate::dist::Collective;
use crate::methods::MethodState;

/// Copies rank 0's training loss and validation metrics to every rank, so that every rank
/// takes the same early-stopping and best-epoch decisions.
pub(super) fn broadcast_epoch_scores(
    group: &dyn Collective,
    train_loss: f64,
    metrics: Metrics,
) -> (f64, Metrics) {
    if group.size() == 1 {
        return (train_loss, metrics);
    }
    let optional = [
        metrics.accuracy,
        metrics.rmse,
        metrics.r2,
        metrics.reconstruction_error,
    ];
    // Each optional metric travels as a presence flag and a value.
    let mut packed = vec![train_loss, metrics.loss];
    for value in optional {
        packed.push(f64::from(u8::from(value.is_some())));
        packed.push(value.unwrap_or(0.0));
    }
    group.broadcast_f64(&mut packed);
    let unpack = |k: usize| (packed[2 + 2 * k] > 0.0).then_some(packed[3 + 2 * k]);
    let metrics = Metrics {
        loss: packed[1],
        accuracy: unpack(0),
        rmse: unpack(1),
        r2: unpack(2),
        reconstruction_error: unpack(3),
    };
    (packed[0], metrics)
}

/// Sums this rank's count over all ranks.
pub(super) fn sum_count(group: &dyn Collective, count: u64) -> u64 {
    let mut total = [count as f64];
    group.all_reduce_sum_f64(&mut total);
    total[0] as u64
}

/// Gathers the method state of ranks that split their optimiser steps
/// ([`crate::objective::Objective::update_range`]). Each state vector as long as the `dim`
/// parameters is right on a rank only in its update range, so every rank contributes that
/// range. A method that does not split keeps equal vectors on every rank, which this leaves
/// as they are. Every rank must call it.
pub(super) fn gather_method_state(
    group: &dyn Collective,
    mut state: MethodState,
    dim: usize,
) -> MethodState {
    if group.size() == 1 {
        return state;
    }
    for (_, values) in &mut state.vectors {
        if values.len() == dim {
            group.share_parts_f64(values);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::run_group;

    #[test]
    fn scores_come_from_rank_zero() {
        let results = run_group(3, |group| {
            let rank = group.rank() as f64;
            let metrics = Metrics {
                loss: 1.0 + rank,
                accuracy: (rank == 0.0).then_some(0.75),
                rmse: None,
                r2: Some(rank),
                reconstruction_error: None,
            };
            broadcast_epoch_scores(group, 2.0 + rank, metrics)
        });
        for (train_loss, metrics) in results {
            assert_eq!(train_loss, 2.0);
            assert_eq!(metrics.loss, 1.0);
            assert_eq!(metrics.accuracy, Some(0.75));
            assert_eq!(metrics.rmse, None);
            assert_eq!(metrics.r2, Some(0.0));
            assert_eq!(metrics.reconstruction_error, None);
        }
    }

    #[test]
    fn counts_add_up() {
        let results = run_group(2, |group| sum_count(group, 10 + group.rank() as u64));
        assert_eq!(results, [21, 21]);
    }
}
