//! Data sets embedded in the binary.

use super::{csv, CsvOptions, Dataset, HeaderMode, Targets, TaskKind};
use crate::{Error, Result};

/// UCI "Optical Recognition of Handwritten Digits" (Alpaydin and Kaynak, 1998), CC BY 4.0, as
/// shipped in scikit-learn: gzip CSV without a header, 64 pixel values 0..16 and the label.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/builtin/digits.csv.gz");

/// Fisher's iris data (1936), UCI, CC BY 4.0, as shipped in scikit-learn. The first line is
/// `150,4,setosa,versicolor,virginica` (rows, features, class names), then 4 measurements
/// in cm and the label per row.
const IRIS_CSV: &[u8] = include_bytes!("../../data/builtin/iris.csv");

const IRIS_FEATURES: [&str; 4] = [
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
];

const BUILTINS: &[(&str, &str)] = &[
    (
        "digits",
        "1,797 handwritten digits, 8x8 pixels with values 0..16, 10 classes; UCI Optical \
         Recognition of Handwritten Digits (Alpaydin and Kaynak, 1998), CC BY 4.0",
    ),
    (
        "iris",
        "150 iris flowers, 4 measurements in cm, 3 species; Fisher (1936), UCI, CC BY 4.0",
    ),
];

/// Returns the built-in data sets as (name, one-line description with size and source).
pub fn builtin_names() -> &'static [(&'static str, &'static str)] {
    BUILTINS
}

/// Reads the built-in data set `name` with its class labels.
pub(super) fn load(name: &str) -> Result<Dataset> {
    match name {
        "digits" => digits(),
        "iris" => iris(),
        _ => {
            let names: Vec<&str> = BUILTINS.iter().map(|(name, _)| *name).collect();
            Err(Error::setting(
                "data source",
                format!("{name:?}"),
                &format!(
                    "expected one of the built-in data sets {}",
                    names.join(", ")
                ),
            ))
        }
    }
}

fn label_options() -> CsvOptions {
    CsvOptions {
        header: HeaderMode::No,
        target: None,
        task: TaskKind::Classify,
        delimiter: b',',
        feature_columns: Vec::new(),
    }
}

fn digits() -> Result<Dataset> {
    let reader = flate2::read::GzDecoder::new(DIGITS_CSV_GZ);
    let origin = "built-in data set digits";
    let mut data = csv::read(reader, origin, "digits".into(), &label_options())?;
    if data.feature_count() != 64 {
        return Err(corrupt(
            "digits",
            &format!("{} features, expected 64", data.feature_count()),
        ));
    }
    data.sample_dims = vec![1, 8, 8];
    Ok(data)
}

fn iris() -> Result<Dataset> {
    let (first_line, rows) = match IRIS_CSV.iter().position(|&b| b == b'\n') {
        Some(end) => (&IRIS_CSV[..end], &IRIS_CSV[end + 1..]),
        None => return Err(corrupt("iris", "no line break after the first line")),
    };
    let first_line = String::from_utf8_lossy(first_line);
    let fields: Vec<&str> = first_line.trim().split(',').collect();
    let (Some(count), Some(feature_count), class_names) = (
        fields.first().and_then(|f| f.parse::<usize>().ok()),
        fields.get(1).and_then(|f| f.parse::<usize>().ok()),
        fields.get(2..).unwrap_or_default(),
    ) else {
        return Err(corrupt("iris", &format!("first line {first_line:?}")));
    };

    let origin = "built-in data set iris";
    let mut data = csv::read(rows, origin, "iris".into(), &label_options())?;
    let class_count = data.class_count().unwrap_or(0);
    let expected_features = IRIS_FEATURES.len();
    if data.len() != count
        || data.feature_count() != feature_count
        || feature_count != expected_features
    {
        let found = format!("{} rows of {} features", data.len(), data.feature_count());
        let expected = format!("the first line gives {count} of {feature_count}");
        return Err(corrupt(
            "iris",
            &format!("{found}; {expected}, and gradus names {expected_features}"),
        ));
    }
    if class_count > class_names.len() {
        return Err(corrupt(
            "iris",
            &format!("{class_count} classes for the names {class_names:?}"),
        ));
    }
    if let Targets::Classes { names, .. } = &mut data.targets {
        *names = class_names.iter().map(|name| name.to_string()).collect();
    }
    data.feature_names = IRIS_FEATURES.iter().map(|name| name.to_string()).collect();
    Ok(data)
}

/// Reports a built-in file that does not have the expected content, which means the crate
/// was built from a damaged source tree.
fn corrupt(name: &str, detail: &str) -> Error {
    Error::Data(format!(
        "built-in data set {name} is corrupt ({detail}); reinstall gradus from an intact source"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_shape_and_labels() {
        let data = load("digits").expect("digits loads");
        assert_eq!(data.name, "digits");
        assert_eq!(data.len(), 1797);
        assert_eq!(data.feature_count(), 64);
        assert_eq!(data.sample_dims, vec![1, 8, 8]);
        assert_eq!(data.class_count(), Some(10));
        assert!(data.feature_names.is_empty());
        // The first digit in the UCI file is a 0 whose top row is 0,0,5,13,9,1,0,0.
        assert_eq!(
            &data.features[..8],
            &[0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]
        );
        assert_eq!(data.labels().map(|l| l[0]), Some(0));
        let max = data.features.iter().fold(0.0f32, |m, &x| m.max(x));
        assert_eq!(max, 16.0);
    }

    #[test]
    fn iris_shape_and_names() {
        let data = load("iris").expect("iris loads");
        assert_eq!(data.len(), 150);
        assert_eq!(data.feature_count(), 4);
        assert_eq!(data.sample_dims, vec![4]);
        assert_eq!(data.class_count(), Some(3));
        assert_eq!(data.feature_names[0], "sepal length (cm)");
        let Targets::Classes { labels, names } = &data.targets else {
            panic!("iris has class labels, got {:?}", data.targets);
        };
        assert_eq!(names, &["setosa", "versicolor", "virginica"]);
        for class in 0..3 {
            assert_eq!(labels.iter().filter(|&&l| l == class).count(), 50);
        }
        assert_eq!(&data.features[..4], &[5.1, 3.5, 1.4, 0.2]);
    }

    #[test]
    fn unknown_builtin_lists_names() {
        let message = load("cifar").unwrap_err().to_string();
        assert!(message.contains("\"cifar\""), "{message}");
        assert!(message.contains("digits, iris"), "{message}");
    }

    #[test]
    fn every_listed_builtin_loads() {
        for (name, description) in builtin_names() {
            assert!(!description.is_empty());
            assert!(load(name).is_ok(), "built-in {name} fails to load");
        }
    }
}
