//! Per-feature scaling fitted on the training set.

use super::Dataset;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The kind of feature scaling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleKind {
    /// No scaling.
    None,
    /// Subtract the mean and divide by the standard deviation.
    #[default]
    Standardize,
    /// Map the training range of each feature to `[0, 1]`.
    MinMax,
    /// Map the training range of all features together to `[0, 1]`, as dividing pixels by
    /// 255 does. Suits images, where a per-pixel scale would blow up rare border pixels.
    GlobalMinMax,
}

impl FromStr for ScaleKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(ScaleKind::None),
            "standardize" => Ok(ScaleKind::Standardize),
            "min-max" => Ok(ScaleKind::MinMax),
            "global-min-max" => Ok(ScaleKind::GlobalMinMax),
            _ => Err(Error::setting(
                "scale",
                format!("{s:?}"),
                "expected none, standardize, min-max or global-min-max",
            )),
        }
    }
}

impl fmt::Display for ScaleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScaleKind::None => "none",
            ScaleKind::Standardize => "standardize",
            ScaleKind::MinMax => "min-max",
            ScaleKind::GlobalMinMax => "global-min-max",
        })
    }
}

/// A per-feature affine map `x' = (x - offset) / scale`, saved with a model so that new
/// data are scaled like the training data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Scaler {
    /// The kind the statistics were fitted for.
    pub kind: ScaleKind,
    /// Subtracted from each feature.
    pub offset: Vec<f32>,
    /// Divides each feature after the offset; [`Scaler::fit`] never sets it to 0.
    pub scale: Vec<f32>,
}

impl Scaler {
    /// Fits per-feature statistics on `data`, which should be the training set only, so
    /// that no information from validation or test data leaks into the model.
    ///
    /// A feature that is constant on `data` gets scale 1, so it maps to 0 without a
    /// division by zero. An empty data set gives the identity map.
    pub fn fit(kind: ScaleKind, data: &Dataset) -> Scaler {
        let d = data.feature_count();
        let n = data.len();
        let mut offset = vec![0.0f32; d];
        let mut scale = vec![1.0f32; d];
        if n == 0 || d == 0 {
            return Scaler {
                kind,
                offset,
                scale,
            };
        }
        let rows = || data.features.chunks_exact(d);

        match kind {
            ScaleKind::None => {}
            ScaleKind::Standardize => {
                // Two passes in f64: the mean, then the mean squared deviation, which stays
                // accurate where E[x^2] - E[x]^2 would cancel.
                let mut mean = vec![0.0f64; d];
                for row in rows() {
                    mean.iter_mut()
                        .zip(row)
                        .for_each(|(m, &x)| *m += f64::from(x));
                }
                mean.iter_mut().for_each(|m| *m /= n as f64);
                let mut variance = vec![0.0f64; d];
                for row in rows() {
                    for ((v, &x), m) in variance.iter_mut().zip(row).zip(&mean) {
                        *v += (f64::from(x) - m).powi(2);
                    }
                }
                for j in 0..d {
                    let std = (variance[j] / n as f64).sqrt();
                    offset[j] = mean[j] as f32;
                    scale[j] = nonzero_scale(std);
                }
            }
            ScaleKind::MinMax => {
                let mut min = vec![f32::INFINITY; d];
                let mut max = vec![f32::NEG_INFINITY; d];
                for row in rows() {
                    for (j, &x) in row.iter().enumerate() {
                        min[j] = min[j].min(x);
                        max[j] = max[j].max(x);
                    }
                }
                for j in 0..d {
                    offset[j] = min[j];
                    scale[j] = nonzero_scale(f64::from(max[j]) - f64::from(min[j]));
                }
            }
            ScaleKind::GlobalMinMax => {
                let (min, max) = data
                    .features
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                        (lo.min(x), hi.max(x))
                    });
                offset.fill(min);
                scale.fill(nonzero_scale(f64::from(max) - f64::from(min)));
            }
        }
        Scaler {
            kind,
            offset,
            scale,
        }
    }

    /// Returns the number of features the scaler was fitted on.
    pub fn feature_count(&self) -> usize {
        self.offset.len()
    }

    /// Scales the features of `data` in place.
    ///
    /// Fails when `data` has a different feature count than the fitted data.
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        let d = data.feature_count();
        self.check_width(d, &format!("data set {}", data.name))?;
        if self.kind == ScaleKind::None || d == 0 {
            return Ok(());
        }
        for row in data.features.chunks_exact_mut(d) {
            self.scale_row(row);
        }
        Ok(())
    }

    /// Scales one sample in place.
    ///
    /// Fails when `row` does not have the fitted feature count.
    pub fn transform_row(&self, row: &mut [f32]) -> Result<()> {
        self.check_width(row.len(), "the input row")?;
        if self.kind != ScaleKind::None {
            self.scale_row(row);
        }
        Ok(())
    }

    fn scale_row(&self, row: &mut [f32]) {
        for ((x, &offset), &scale) in row.iter_mut().zip(&self.offset).zip(&self.scale) {
            *x = (*x - offset) / scale;
        }
    }

    fn check_width(&self, width: usize, input: &str) -> Result<()> {
        if width == self.feature_count() {
            return Ok(());
        }
        Err(Error::Shape(format!(
            "{input} has {width} features, but the scaler was fitted on {}; use data with the \
             same columns as the training data",
            self.feature_count()
        )))
    }
}

/// Returns `spread` as a scale, or 1 when it is 0 or not finite.
fn nonzero_scale(spread: f64) -> f32 {
    let scale = spread as f32;
    if scale > 0.0 && scale.is_finite() {
        scale
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Targets;

    /// Rows of two features: the first varies, the second is constant 5.
    fn table(first: &[f32]) -> Dataset {
        Dataset {
            name: "table".into(),
            features: first.iter().flat_map(|&x| [x, 5.0]).collect(),
            sample_dims: vec![2],
            feature_names: Vec::new(),
            targets: Targets::None,
        }
    }

    #[test]
    fn standardize_statistics() {
        let scaler = Scaler::fit(ScaleKind::Standardize, &table(&[1.0, 2.0, 3.0, 6.0]));
        assert_eq!(scaler.offset, vec![3.0, 5.0]);
        // Population variance of 1, 2, 3, 6 around 3 is (4 + 1 + 0 + 9) / 4 = 3.5.
        assert!((scaler.scale[0] - 3.5f32.sqrt()).abs() < 1e-6);
        assert_eq!(scaler.scale[1], 1.0);
    }

    #[test]
    fn standardized_train_has_zero_mean_unit_std() {
        let mut train = table(&[1.0, 2.0, 3.0, 6.0]);
        let scaler = Scaler::fit(ScaleKind::Standardize, &train);
        scaler.apply(&mut train).expect("same width");
        let column: Vec<f32> = train.features.iter().step_by(2).copied().collect();
        let mean = column.iter().sum::<f32>() / 4.0;
        let variance = column.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6, "mean {mean}");
        assert!((variance - 1.0).abs() < 1e-5, "variance {variance}");
        let constant: Vec<f32> = train.features.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(constant, vec![0.0; 4]);
    }

    #[test]
    fn min_max_maps_train_range() {
        let mut train = table(&[-2.0, 0.0, 2.0]);
        let scaler = Scaler::fit(ScaleKind::MinMax, &train);
        assert_eq!(scaler.offset, vec![-2.0, 5.0]);
        assert_eq!(scaler.scale, vec![4.0, 1.0]);
        scaler.apply(&mut train).expect("same width");
        assert_eq!(train.features, vec![0.0, 0.0, 0.5, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn fit_uses_train_statistics_only() {
        let train = table(&[0.0, 2.0]);
        let mut test = table(&[100.0, 300.0]);
        let scaler = Scaler::fit(ScaleKind::Standardize, &train);
        assert_eq!(scaler.offset[0], 1.0);
        assert_eq!(scaler.scale[0], 1.0);
        scaler.apply(&mut test).expect("same width");
        // Scaled with the training mean 1 and deviation 1, not the test set's own 200 and 100.
        assert_eq!(test.features[0], 99.0);
        assert_eq!(test.features[2], 299.0);
    }

    #[test]
    fn none_is_identity() {
        let mut data = table(&[1.0, 7.0]);
        let scaler = Scaler::fit(ScaleKind::None, &data);
        scaler.apply(&mut data).expect("same width");
        assert_eq!(data.features, vec![1.0, 5.0, 7.0, 5.0]);
    }

    #[test]
    fn transform_row_matches_apply() {
        let scaler = Scaler::fit(ScaleKind::MinMax, &table(&[0.0, 10.0]));
        let mut row = [5.0, 6.0];
        scaler.transform_row(&mut row).expect("same width");
        assert_eq!(row, [0.5, 1.0]);
    }

    #[test]
    fn width_mismatch_rejected() {
        let scaler = Scaler::fit(ScaleKind::Standardize, &table(&[0.0, 1.0]));
        let message = scaler
            .transform_row(&mut [1.0, 2.0, 3.0])
            .unwrap_err()
            .to_string();
        assert!(message.contains("has 3 features"), "{message}");
        assert!(message.contains("fitted on 2"), "{message}");
    }

    #[test]
    fn empty_data_gives_identity() {
        let scaler = Scaler::fit(ScaleKind::Standardize, &table(&[]));
        assert_eq!(scaler.offset, vec![0.0, 0.0]);
        assert_eq!(scaler.scale, vec![1.0, 1.0]);
    }

    #[test]
    fn scaler_serde_round_trip() {
        let scaler = Scaler::fit(ScaleKind::MinMax, &table(&[0.0, 4.0]));
        let json = serde_json::to_string(&scaler).expect("serializes");
        assert!(json.contains("\"min-max\""), "{json}");
        let back: Scaler = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, scaler);
        assert_eq!("min-max".parse::<ScaleKind>().ok(), Some(ScaleKind::MinMax));
        let message = "unit".parse::<ScaleKind>().unwrap_err().to_string();
        assert!(message.contains("\"unit\""), "{message}");
    }

    #[test]
    fn global_min_max_uses_one_range_for_all_features() {
        let data = Dataset {
            name: "pixels".into(),
            features: vec![0.0, 10.0, 255.0, 20.0],
            sample_dims: vec![2],
            feature_names: Vec::new(),
            targets: Targets::None,
        };
        let scaler = Scaler::fit(ScaleKind::GlobalMinMax, &data);
        assert_eq!(scaler.offset, vec![0.0, 0.0]);
        assert_eq!(scaler.scale, vec![255.0, 255.0]);
    }
}
