//! Mini-batches of sample indices.

use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A sample order cut into mini-batches of indices.
///
/// A training loop creates one `Batches`, calls [`Batches::reshuffle`] at the start of each
/// epoch and walks [`Batches::iter`]; neither allocates.
///
/// ```
/// use gradus::data::Batches;
///
/// let mut batches = Batches::new(200, 64, false, Some(1)).unwrap();
/// for epoch in 0..3 {
///     batches.reshuffle(1 + epoch);
///     let sizes: Vec<usize> = batches.iter().map(|batch| batch.len()).collect();
///     assert_eq!(sizes, [64, 64, 64, 8]);
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Batches {
    order: Vec<usize>,
    batch_size: usize,
    drop_last: bool,
}

impl Batches {
    /// Creates batches of `batch_size` over samples `0..n`, in order when `shuffle_seed` is
    /// `None` and else shuffled as by [`Batches::reshuffle`].
    ///
    /// With `drop_last`, a final batch smaller than `batch_size` is skipped, so there may be
    /// no batch at all when `n < batch_size`. A `batch_size` of 0 is an error.
    pub fn new(
        n: usize,
        batch_size: usize,
        drop_last: bool,
        shuffle_seed: Option<u64>,
    ) -> Result<Batches> {
        if batch_size == 0 {
            return Err(Error::setting("batch-size", 0, "must be at least 1"));
        }
        let mut batches = Batches {
            order: (0..n).collect(),
            batch_size,
            drop_last,
        };
        if let Some(seed) = shuffle_seed {
            batches.reshuffle(seed);
        }
        Ok(batches)
    }

    /// Puts the samples in a new random order, which depends only on `seed` and the sample
    /// count, not on earlier orders, so a resumed run repeats the same epochs.
    pub fn reshuffle(&mut self, seed: u64) {
        for (position, index) in self.order.iter_mut().enumerate() {
            *index = position;
        }
        self.order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    }

    /// Returns the batches as slices of sample indices.
    pub fn iter(&self) -> std::iter::Take<std::slice::Chunks<'_, usize>> {
        self.order.chunks(self.batch_size).take(self.len())
    }

    /// Returns the number of batches per epoch.
    pub fn len(&self) -> usize {
        if self.drop_last {
            self.order.len() / self.batch_size
        } else {
            self.order.len().div_ceil(self.batch_size)
        }
    }

    /// Returns whether an epoch has no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the configured batch size; the last batch may be smaller.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Returns the current sample order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl<'a> IntoIterator for &'a Batches {
    type Item = &'a [usize];
    type IntoIter = std::iter::Take<std::slice::Chunks<'a, usize>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(batches: &Batches) -> Vec<usize> {
        batches.iter().map(<[usize]>::len).collect()
    }

    #[test]
    fn last_batch_kept_by_default() {
        let batches = Batches::new(200, 64, false, None).expect("valid size");
        assert_eq!(sizes(&batches), vec![64, 64, 64, 8]);
        assert_eq!(batches.len(), 4);
        let first: Vec<usize> = (0..64).collect();
        assert_eq!(batches.iter().next(), Some(&first[..]));
    }

    #[test]
    fn drop_last_skips_short_batch() {
        let batches = Batches::new(200, 64, true, Some(3)).expect("valid size");
        assert_eq!(sizes(&batches), vec![64, 64, 64]);
        assert_eq!(batches.len(), 3);
        let small = Batches::new(10, 64, true, None).expect("valid size");
        assert!(small.is_empty());
        assert_eq!(small.iter().count(), 0);
    }

    #[test]
    fn exact_multiple_has_no_short_batch() {
        let batches = Batches::new(128, 64, false, None).expect("valid size");
        assert_eq!(sizes(&batches), vec![64, 64]);
    }

    #[test]
    fn zero_batch_size_rejected() {
        let message = Batches::new(10, 0, false, None).unwrap_err().to_string();
        assert!(message.contains("batch-size 0"), "{message}");
        assert!(message.contains("must be at least 1"), "{message}");
    }

    #[test]
    fn shuffle_is_permutation_and_seeded() {
        let mut batches = Batches::new(200, 64, false, Some(9)).expect("valid size");
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        assert_ne!(seen, (0..200).collect::<Vec<_>>());
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());

        let first = batches.order().to_vec();
        batches.reshuffle(10);
        assert_ne!(batches.order(), &first[..]);
        batches.reshuffle(9);
        assert_eq!(batches.order(), &first[..]);
    }

    #[test]
    fn reshuffle_keeps_buffer() {
        let mut batches = Batches::new(1000, 32, false, None).expect("valid size");
        let buffer = batches.order().as_ptr();
        batches.reshuffle(1);
        assert_eq!(batches.order().as_ptr(), buffer);
    }
}
