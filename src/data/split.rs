//! Seeded training, validation and test splits.

use super::{Dataset, Loaded};
use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The three parts of a data set.
#[derive(Clone, Debug)]
pub struct Splits {
    /// Data to fit the parameters on.
    pub train: Dataset,
    /// Data to select settings and stop early on; empty when the fraction is 0.
    pub validation: Dataset,
    /// Data for the final evaluation only; empty when the fraction is 0 and the source has no
    /// test split.
    pub test: Dataset,
}

/// The split a sample is assigned to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Train,
    Validation,
    Test,
}

/// Splits `loaded` into training, validation and test sets after a shuffle seeded by `seed`.
///
/// `validation` and `test` are fractions of the samples in `loaded.train`, each in `[0, 1)`
/// and summing to less than 1. When the source has its own test set, that set is the test
/// split and the `test` fraction is ignored.
///
/// With `stratify` and class labels, each class is split in the same proportions, as close
/// as whole samples allow: a split's count per class is its fraction of the class rounded up
/// or down. Every class with at least 3 samples gets at least one sample in each split with a
/// fraction above 0, and every class keeps at least one training sample. Without labels,
/// `stratify` has no effect. Each split lists its samples in shuffled order.
pub fn split(
    loaded: Loaded,
    validation: f64,
    test: f64,
    seed: u64,
    stratify: bool,
) -> Result<Splits> {
    check_fraction("validation", validation)?;
    check_fraction("test", test)?;
    let test = if loaded.test.is_some() { 0.0 } else { test };
    if validation + test >= 1.0 {
        return Err(Error::setting(
            "validation + test",
            validation + test,
            "the fractions must sum to less than 1 so that training data remain",
        ));
    }

    let data = loaded.train;
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let parts = match (stratify, data.labels()) {
        (true, Some(labels)) => stratified_parts(&order, labels, validation, test),
        _ => plain_parts(&order, validation, test),
    };

    let pick = |part: Part| -> Vec<usize> {
        order
            .iter()
            .copied()
            .filter(|&i| parts[i] == part)
            .collect()
    };
    let train = pick(Part::Train);
    if train.is_empty() {
        return Err(Error::Data(format!(
            "the training set of {} is empty after the split: {} samples with validation \
             fraction {validation} and test fraction {test}; lower the fractions or add data",
            data.name,
            data.len()
        )));
    }
    let validation = data.subset(&pick(Part::Validation));
    let test = match loaded.test {
        Some(test) => test,
        None => data.subset(&pick(Part::Test)),
    };
    Ok(Splits {
        train: data.subset(&train),
        validation,
        test,
    })
}

fn check_fraction(name: &str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::setting(name, value, "expected a fraction in [0, 1)"))
    }
}

/// Assigns the first samples of `order` to validation, the next to test, the rest to train.
fn plain_parts(order: &[usize], validation: f64, test: f64) -> Vec<Part> {
    let n = order.len();
    let validation_count = (n as f64 * validation).round() as usize;
    let test_count = (n as f64 * test).round() as usize;
    let mut parts = vec![Part::Train; n];
    for (position, &i) in order.iter().enumerate() {
        if position < validation_count {
            parts[i] = Part::Validation;
        } else if position < validation_count + test_count {
            parts[i] = Part::Test;
        }
    }
    parts
}

/// Assigns samples to parts class by class, taking each class's samples in `order`.
fn stratified_parts(order: &[usize], labels: &[usize], validation: f64, test: f64) -> Vec<Part> {
    let class_count = labels.iter().max().map_or(0, |&max| max + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); class_count];
    for &i in order {
        by_class[labels[i]].push(i);
    }
    let sizes: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let mut validation_counts = allocate(&sizes, validation);
    let mut test_counts = allocate(&sizes, test);

    for (class, &size) in sizes.iter().enumerate() {
        let (v, t) = (&mut validation_counts[class], &mut test_counts[class]);
        if size >= 3 {
            if validation > 0.0 {
                *v = (*v).max(1);
            }
            if test > 0.0 {
                *t = (*t).max(1);
            }
        }
        // Keep one training sample. For a class of 3 or more, the larger count is then at
        // least 2, so lowering it keeps both at 1 or more.
        while size > 0 && *v + *t >= size {
            if *v > *t {
                *v -= 1;
            } else {
                *t -= 1;
            }
        }
    }

    let mut parts = vec![Part::Train; labels.len()];
    for (class, members) in by_class.iter().enumerate() {
        let (v, t) = (validation_counts[class], test_counts[class]);
        for &i in &members[..v] {
            parts[i] = Part::Validation;
        }
        for &i in &members[v..v + t] {
            parts[i] = Part::Test;
        }
    }
    parts
}

/// Splits `fraction` of the total over the classes by largest remainder: each class gets
/// its share rounded down, and the classes with the largest fractional parts get one more
/// until the total is the rounded fraction of all samples.
fn allocate(sizes: &[usize], fraction: f64) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    let target = (total as f64 * fraction).round() as usize;
    let ideal: Vec<f64> = sizes.iter().map(|&size| size as f64 * fraction).collect();
    let mut counts: Vec<usize> = ideal.iter().map(|x| x.floor() as usize).collect();

    let mut by_remainder: Vec<usize> = (0..sizes.len()).collect();
    by_remainder.sort_by(|&a, &b| {
        let (ra, rb) = (ideal[a] - ideal[a].floor(), ideal[b] - ideal[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let missing = target.saturating_sub(counts.iter().sum());
    for &class in by_remainder.iter().take(missing) {
        if counts[class] < sizes[class] {
            counts[class] += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load, CsvOptions, Source, Targets};

    fn digits() -> Loaded {
        load(&Source::Builtin("digits".into()), &CsvOptions::default()).expect("digits loads")
    }

    fn count_per_class(data: &Dataset) -> Vec<usize> {
        let mut counts = vec![0; data.class_count().unwrap_or(0)];
        for &label in data.labels().expect("labels") {
            counts[label] += 1;
        }
        counts
    }

    #[test]
    fn stratified_keeps_class_proportions() {
        let sizes = count_per_class(&digits().train);
        let splits = split(digits(), 0.2, 0.1, 7, true).expect("valid split");
        let parts = [
            (&splits.validation, 0.2),
            (&splits.test, 0.1),
            (&splits.train, 0.7),
        ];
        for (data, fraction) in parts {
            for (class, &count) in count_per_class(data).iter().enumerate() {
                let ideal = sizes[class] as f64 * fraction;
                assert!(
                    (count as f64 - ideal).abs() <= 1.0,
                    "class {class}: {count} samples, ideal {ideal}"
                );
            }
        }
        assert_eq!(splits.validation.len(), 359);
        assert_eq!(splits.test.len(), 180);
        assert_eq!(splits.train.len(), 1797 - 359 - 180);
    }

    #[test]
    fn split_covers_every_sample_once() {
        let original = digits().train;
        let splits = split(digits(), 0.25, 0.25, 3, true).expect("valid split");
        let mut rows: Vec<&[f32]> = Vec::new();
        for data in [&splits.train, &splits.validation, &splits.test] {
            rows.extend(data.features.chunks(64));
        }
        let mut expected: Vec<&[f32]> = original.features.chunks(64).collect();
        rows.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        expected.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        assert_eq!(rows, expected);
    }

    #[test]
    fn split_reproducible_from_seed() {
        let first = split(digits(), 0.2, 0.2, 42, true).expect("valid split");
        let again = split(digits(), 0.2, 0.2, 42, true).expect("valid split");
        let other = split(digits(), 0.2, 0.2, 43, true).expect("valid split");
        assert_eq!(first.train, again.train);
        assert_eq!(first.validation, again.validation);
        assert_eq!(first.test, again.test);
        assert_ne!(first.train.features, other.train.features);
    }

    #[test]
    fn sorted_data_is_shuffled() {
        // Sorted labels as in mnist-10k: a split without shuffling would put only the last
        // class in the validation set.
        let data = Dataset {
            name: "sorted".into(),
            features: (0..100).map(|i| i as f32).collect(),
            sample_dims: vec![1],
            feature_names: Vec::new(),
            targets: Targets::Classes {
                labels: (0..100).map(|i| i / 10).collect(),
                names: (0..10).map(|c| c.to_string()).collect(),
            },
        };
        let loaded = Loaded {
            train: data,
            test: None,
        };
        let splits = split(loaded, 0.3, 0.0, 1, false).expect("valid split");
        assert_eq!(splits.validation.len(), 30);
        assert!(splits.test.is_empty());
        let classes = count_per_class(&splits.validation)
            .iter()
            .filter(|&&c| c > 0)
            .count();
        assert!(classes >= 5, "validation covers only {classes} classes");
        let labels = splits.train.labels().expect("labels");
        assert!(
            labels.windows(2).any(|w| w[0] > w[1]),
            "training order is still sorted"
        );
    }

    #[test]
    fn small_classes_reach_every_split() {
        let labels = vec![0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        let data = Dataset {
            name: "small".into(),
            features: vec![0.0; labels.len()],
            sample_dims: vec![1],
            feature_names: Vec::new(),
            targets: Targets::Classes {
                labels,
                names: vec!["rare".into(), "common".into()],
            },
        };
        let loaded = Loaded {
            train: data,
            test: None,
        };
        let splits = split(loaded, 0.1, 0.1, 5, true).expect("valid split");
        for data in [&splits.train, &splits.validation, &splits.test] {
            assert_eq!(count_per_class(data)[0], 1);
        }
    }

    #[test]
    fn own_test_set_ignores_test_fraction() {
        let mut loaded = digits();
        let held_out = loaded.train.subset(&[0, 1, 2]);
        loaded.test = Some(held_out.clone());
        let splits = split(loaded, 0.5, 0.9, 1, true).expect("test fraction is ignored");
        assert_eq!(splits.test, held_out);
        assert_eq!(splits.validation.len(), 899);
        assert_eq!(splits.train.len(), 898);
    }

    #[test]
    fn invalid_fractions_rejected() {
        for (validation, test, shown) in
            [(-0.1, 0.1, "-0.1"), (1.0, 0.0, "1"), (0.1, f64::NAN, "NaN")]
        {
            let message = split(digits(), validation, test, 0, true)
                .unwrap_err()
                .to_string();
            assert!(message.contains(shown), "{message}");
            assert!(message.contains("[0, 1)"), "{message}");
        }
        let message = split(digits(), 0.6, 0.4, 0, true).unwrap_err().to_string();
        assert!(message.contains("validation + test 1"), "{message}");
    }

    #[test]
    fn empty_train_rejected() {
        let mut loaded = digits();
        loaded.train = loaded.train.subset(&[0]);
        let message = split(loaded, 0.6, 0.0, 0, false).unwrap_err().to_string();
        assert!(
            message.contains("training set of digits is empty"),
            "{message}"
        );
    }
}
