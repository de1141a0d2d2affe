//! The in-memory data set: features, their shape and the targets.

use crate::tensor::Scalar;
use crate::{Error, Result};

/// The targets of a data set.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// Class labels in `0..names.len()`, one per sample, with the class names (for example
    /// `"0"` to `"9"`, or `"setosa"`, `"versicolor"`, `"virginica"`).
    Classes {
        /// The class id of each sample.
        labels: Vec<usize>,
        /// The name of each class; its length is the class count.
        names: Vec<String>,
    },
    /// Real-valued targets, `dim` per sample, stored row-major.
    Values {
        /// `n × dim` target values.
        values: Vec<f32>,
        /// Targets per sample.
        dim: usize,
        /// The name of each target column.
        names: Vec<String>,
    },
    /// No targets, as for an autoencoder, which reconstructs the features.
    None,
}

/// A data set held in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// A short name for reports, such as `digits` or a file stem.
    pub name: String,
    /// `n × d` feature values, row-major, where `d` is the product of `sample_dims`.
    pub features: Vec<f32>,
    /// The shape of one sample: `[d]` for a table, `[channels, height, width]` for images.
    pub sample_dims: Vec<usize>,
    /// Feature column names from a CSV header. The list is empty when the source names no
    /// columns, as for images and CSV files without a header.
    pub feature_names: Vec<String>,
    /// The targets.
    pub targets: Targets,
}

impl Dataset {
    /// Returns the number of samples.
    pub fn len(&self) -> usize {
        match &self.targets {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values { values, dim, .. } if *dim > 0 => values.len() / dim,
            _ => self
                .features
                .len()
                .checked_div(self.feature_count())
                .unwrap_or(0),
        }
    }

    /// Returns whether the data set has no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the number of features per sample, the product of `sample_dims`.
    pub fn feature_count(&self) -> usize {
        self.sample_dims.iter().product()
    }

    /// Returns the number of classes, or `None` when the targets are not class labels.
    pub fn class_count(&self) -> Option<usize> {
        match &self.targets {
            Targets::Classes { names, .. } => Some(names.len()),
            _ => None,
        }
    }

    /// Returns the class labels, or `None` when the targets are not class labels.
    pub fn labels(&self) -> Option<&[usize]> {
        match &self.targets {
            Targets::Classes { labels, .. } => Some(labels),
            _ => None,
        }
    }

    /// Returns the number of target values per sample that [`Dataset::gather_targets`]
    /// writes: the class count for labels, `dim` for values, and the feature count when there
    /// are no targets.
    pub fn target_width(&self) -> usize {
        match &self.targets {
            Targets::Classes { names, .. } => names.len(),
            Targets::Values { dim, .. } => *dim,
            Targets::None => self.feature_count(),
        }
    }

    /// Copies the samples at `indices`, in that order, into a new data set with the same
    /// names and shape.
    ///
    /// # Panics
    ///
    /// If an index is not below [`Dataset::len`].
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let d = self.feature_count();
        let mut features = Vec::with_capacity(indices.len() * d);
        for &i in indices {
            features.extend_from_slice(&self.features[i * d..(i + 1) * d]);
        }
        let targets = match &self.targets {
            Targets::Classes { labels, names } => Targets::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                names: names.clone(),
            },
            Targets::Values { values, dim, names } => {
                let mut picked = Vec::with_capacity(indices.len() * dim);
                for &i in indices {
                    picked.extend_from_slice(&values[i * dim..(i + 1) * dim]);
                }
                Targets::Values {
                    values: picked,
                    dim: *dim,
                    names: names.clone(),
                }
            }
            Targets::None => Targets::None,
        };
        Dataset {
            name: self.name.clone(),
            features,
            sample_dims: self.sample_dims.clone(),
            feature_names: self.feature_names.clone(),
            targets,
        }
    }

    /// Copies the features of the samples at `indices` into `out`, one row of
    /// [`Dataset::feature_count`] values per index, converting to `T`.
    ///
    /// # Panics
    ///
    /// If `out.len()` is not `indices.len() * feature_count()` or an index is out of range.
    pub fn gather_features<T: Scalar>(&self, indices: &[usize], out: &mut [T]) {
        let d = self.feature_count();
        assert_eq!(
            out.len(),
            indices.len() * d,
            "gather_features: output has {} values, expected {} samples x {d} features",
            out.len(),
            indices.len()
        );
        for (row, &i) in out.chunks_exact_mut(d).zip(indices) {
            let source = &self.features[i * d..(i + 1) * d];
            for (y, &x) in row.iter_mut().zip(source) {
                *y = T::of(f64::from(x));
            }
        }
    }

    /// Copies the targets of the samples at `indices` into `out`, one row of
    /// [`Dataset::target_width`] values per index, converting to `T`.
    ///
    /// Class labels become one-hot rows, values are copied, and a data set without targets
    /// copies its features, because an autoencoder's target is its input.
    ///
    /// # Panics
    ///
    /// If `out.len()` is not `indices.len() * target_width()`, an index is out of range or a
    /// label is not below the class count.
    pub fn gather_targets<T: Scalar>(&self, indices: &[usize], out: &mut [T]) {
        let width = self.target_width();
        assert_eq!(
            out.len(),
            indices.len() * width,
            "gather_targets: output has {} values, expected {} samples x {width} targets",
            out.len(),
            indices.len()
        );
        match &self.targets {
            Targets::Classes { labels, .. } => {
                out.fill(T::zero());
                for (row, &i) in out.chunks_exact_mut(width).zip(indices) {
                    row[labels[i]] = T::one();
                }
            }
            Targets::Values { values, dim, .. } => {
                for (row, &i) in out.chunks_exact_mut(width).zip(indices) {
                    let source = &values[i * dim..(i + 1) * dim];
                    for (y, &x) in row.iter_mut().zip(source) {
                        *y = T::of(f64::from(x));
                    }
                }
            }
            Targets::None => self.gather_features(indices, out),
        }
    }

    /// Checks that every class label is below `class_count`, for example the output width
    /// of a model trained on other data.
    ///
    /// The error names the first label out of range, its sample index and the valid range.
    /// A data set without class labels is an error too.
    pub fn check_labels(&self, class_count: usize) -> Result<()> {
        let Some(labels) = self.labels() else {
            return Err(Error::Data(format!(
                "data set {} has no class labels, but a classifier with {class_count} classes \
                 needs them; load it with --task classify and a label column",
                self.name
            )));
        };
        for (row, &label) in labels.iter().enumerate() {
            if label >= class_count {
                let valid = match class_count {
                    0 => "none, because the class count is 0".to_string(),
                    _ => format!("0..={}", class_count - 1),
                };
                return Err(Error::Data(format!(
                    "label {label} of sample {row} (0-based) in data set {} is out of range: \
                     the model has {class_count} classes, so valid labels are {valid}; use a \
                     model with at least {} classes or fix the label",
                    self.name,
                    label + 1
                )));
            }
        }
        Ok(())
    }

    /// Renumbers the class labels to the output order of a model whose classes are
    /// `model_names`, and gives the data set those names.
    ///
    /// Numeric labels (class names `"0"`, `"1"`, ...) are class ids and keep their value.
    /// Other labels are matched to the model's classes by name, so a data set may hold fewer
    /// classes than the model, in any order. A label that is not one of the model's classes
    /// is an error.
    pub fn align_classes(&mut self, model_names: &[String]) -> Result<()> {
        let name = self.name.clone();
        let Targets::Classes { labels, names } = &mut self.targets else {
            return self.check_labels(model_names.len());
        };
        let numeric = names.iter().enumerate().all(|(id, n)| *n == id.to_string());
        if numeric {
            self.check_labels(model_names.len())?;
        } else {
            let mut ids = Vec::with_capacity(names.len());
            for label in names.iter() {
                let Some(id) = model_names.iter().position(|m| m == label) else {
                    return Err(Error::Data(format!(
                        "label {label:?} in data set {name} is not a class of the model, \
                         whose classes are {}; fix the label or use a model trained on it",
                        model_names.join(", ")
                    )));
                };
                ids.push(id);
            }
            labels.iter_mut().for_each(|label| *label = ids[*label]);
        }
        if let Targets::Classes { names, .. } = &mut self.targets {
            *names = model_names.to_vec();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three samples of two features with labels 2, 0, 1.
    fn small() -> Dataset {
        Dataset {
            name: "small".into(),
            features: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            sample_dims: vec![2],
            feature_names: vec!["a".into(), "b".into()],
            targets: Targets::Classes {
                labels: vec![2, 0, 1],
                names: vec!["x".into(), "y".into(), "z".into()],
            },
        }
    }

    #[test]
    fn dataset_counts() {
        let data = small();
        assert_eq!(data.len(), 3);
        assert!(!data.is_empty());
        assert_eq!(data.feature_count(), 2);
        assert_eq!(data.class_count(), Some(3));
        assert_eq!(data.labels(), Some(&[2, 0, 1][..]));
        assert_eq!(data.target_width(), 3);
    }

    #[test]
    fn subset_picks_rows_in_order() {
        let data = small().subset(&[2, 0]);
        assert_eq!(data.features, vec![5.0, 6.0, 1.0, 2.0]);
        assert_eq!(data.labels(), Some(&[1, 2][..]));
        assert_eq!(data.class_count(), Some(3));
        assert_eq!(data.feature_names, vec!["a", "b"]);
    }

    #[test]
    fn gather_features_converts_to_f64() {
        let mut out = [0.0f64; 4];
        small().gather_features(&[1, 1], &mut out);
        assert_eq!(out, [3.0, 4.0, 3.0, 4.0]);
    }

    #[test]
    fn gather_targets_one_hot() {
        let mut out = [9.0f32; 6];
        small().gather_targets(&[0, 1], &mut out);
        assert_eq!(out, [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn gather_targets_values_and_none() {
        let mut data = small();
        data.targets = Targets::Values {
            values: vec![0.5, -0.5, 1.5],
            dim: 1,
            names: vec!["y".into()],
        };
        let mut out = [0.0f64; 2];
        data.gather_targets(&[2, 1], &mut out);
        assert_eq!(out, [1.5, -0.5]);
        assert_eq!(
            data.subset(&[2]).targets,
            Targets::Values {
                values: vec![1.5],
                dim: 1,
                names: vec!["y".into()],
            }
        );

        data.targets = Targets::None;
        assert_eq!(data.len(), 3);
        assert_eq!(data.target_width(), 2);
        let mut out = [0.0f32; 2];
        data.gather_targets(&[2], &mut out);
        assert_eq!(out, [5.0, 6.0]);
    }

    #[test]
    fn check_labels_names_label_and_range() {
        let data = small();
        assert!(data.check_labels(3).is_ok());
        let message = data.check_labels(2).unwrap_err().to_string();
        assert!(message.contains("label 2 of sample 0"), "{message}");
        assert!(message.contains("0..=1"), "{message}");
    }

    #[test]
    fn check_labels_without_labels() {
        let mut data = small();
        data.targets = Targets::None;
        let message = data.check_labels(3).unwrap_err().to_string();
        assert!(message.contains("no class labels"), "{message}");
    }

    #[test]
    fn align_classes_maps_names() {
        let mut data = small();
        let model: Vec<String> = ["w", "z", "y", "x"].map(String::from).to_vec();
        data.align_classes(&model).expect("known names");
        assert_eq!(data.labels(), Some(&[1, 3, 2][..]));
        assert_eq!(data.class_count(), Some(4));
    }

    #[test]
    fn align_classes_rejects_unknown_name() {
        let mut data = small();
        let model: Vec<String> = ["x", "y"].map(String::from).to_vec();
        let message = data.align_classes(&model).unwrap_err().to_string();
        assert!(message.contains("label \"z\""), "{message}");
        assert!(message.contains("x, y"), "{message}");
    }

    #[test]
    fn align_classes_keeps_numeric_ids() {
        let mut data = small();
        data.targets = Targets::Classes {
            labels: vec![1, 0],
            names: vec!["0".into(), "1".into()],
        };
        let model: Vec<String> = (0..10).map(|id| id.to_string()).collect();
        data.align_classes(&model).expect("ids in range");
        assert_eq!(data.labels(), Some(&[1, 0][..]));
        assert_eq!(data.class_count(), Some(10));
    }
}
