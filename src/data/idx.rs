//! The IDX reader for MNIST-style image and label files.
//!
//! IDX files are big-endian. An images file starts with the magic number `0x00000803` and
//! the image count, rows and columns as `u32`, followed by one byte per pixel. A labels file
//! starts with `0x00000801` and the count, followed by one byte per label. Files may be
//! gzip-compressed, which is detected from the content, not the file name.

use super::{open_decompressed, Dataset, Loaded, Targets};
use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_HEADER_BYTES: usize = 16;
const LABELS_HEADER_BYTES: usize = 8;

/// The files an `idx:` folder must contain, for error messages.
const FOLDER_LAYOUT: &str = "an IDX folder needs one pair of files whose names contain \
    \"images\" and \"labels\", or the four files train-images*, train-labels*, t10k-images* \
    and t10k-labels*";

/// Reads the IDX files in `dir`: a training and a test pair, or a single pair used as
/// training data.
pub(super) fn read_folder(dir: &Path) -> Result<Loaded> {
    let files = list_files(dir)?;
    let name = folder_name(dir);
    let images: Vec<&(String, PathBuf)> = files.iter().filter(|f| f.0.contains("images")).collect();
    let labels: Vec<&(String, PathBuf)> = files.iter().filter(|f| f.0.contains("labels")).collect();

    if let ([images], [labels]) = (images.as_slice(), labels.as_slice()) {
        let mut train = read_pair(&images.1, &labels.1, name)?;
        set_class_names(&mut [&mut train]);
        return Ok(Loaded { train, test: None });
    }

    let pick = |files: &[&(String, PathBuf)], prefixes: &[&str]| -> Option<PathBuf> {
        let mut matches = files
            .iter()
            .filter(|f| prefixes.iter().any(|prefix| f.0.starts_with(prefix)));
        match (matches.next(), matches.next()) {
            (Some(file), None) => Some(file.1.clone()),
            _ => None,
        }
    };
    let train_images = pick(&images, &["train"]);
    let train_labels = pick(&labels, &["train"]);
    let test_images = pick(&images, &["t10k", "test"]);
    let test_labels = pick(&labels, &["t10k", "test"]);
    let (Some(train_images), Some(train_labels), Some(test_images), Some(test_labels)) =
        (train_images, train_labels, test_images, test_labels)
    else {
        let list = |files: &[&(String, PathBuf)]| {
            let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        return Err(Error::Data(format!(
            "cannot tell which IDX files in {} to use: {FOLDER_LAYOUT}; found images files: \
             {}; labels files: {}",
            dir.display(),
            list(&images),
            list(&labels)
        )));
    };

    let mut train = read_pair(&train_images, &train_labels, name.clone())?;
    let mut test = read_pair(&test_images, &test_labels, name)?;
    set_class_names(&mut [&mut train, &mut test]);
    Ok(Loaded {
        train,
        test: Some(test),
    })
}

/// Lists the regular files in `dir` that are not hidden, as (name, path), sorted by name.
fn list_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let action = "failed to list the IDX folder";
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(action, dir, e))? {
        let path = entry.map_err(|e| Error::io(action, dir, e))?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !name.starts_with('.') && path.is_file() {
            files.push((name, path));
        }
    }
    files.sort();
    Ok(files)
}

/// Returns the folder's own name, resolving `.` and `..`.
fn folder_name(dir: &Path) -> String {
    let resolved = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    match resolved.file_name() {
        Some(name) => name.to_string_lossy().into_owned(),
        None => dir.display().to_string(),
    }
}

/// Gives every set the class names `"0"` up to the largest label over all of them, so that
/// a training and a test set agree on the class count.
fn set_class_names(sets: &mut [&mut Dataset]) {
    let class_count = sets
        .iter()
        .filter_map(|set| set.labels()?.iter().max().map(|&max| max + 1))
        .max()
        .unwrap_or(0);
    for set in sets.iter_mut() {
        if let Targets::Classes { names, .. } = &mut set.targets {
            *names = (0..class_count).map(|id| id.to_string()).collect();
        }
    }
}

/// Reads an images file and its labels file into a data set with raw pixel values 0..255.
/// The class names are left empty for [`set_class_names`].
fn read_pair(images_path: &Path, labels_path: &Path, name: String) -> Result<Dataset> {
    let image_bytes = read_bytes(images_path)?;
    let (count, rows, cols, pixels) = parse_images(images_path, &image_bytes)?;
    let label_bytes = read_bytes(labels_path)?;
    let labels = parse_labels(labels_path, &label_bytes)?;

    if labels.len() != count {
        return Err(Error::Data(format!(
            "IDX files {} and {} do not match: {count} images but {} labels; use the labels \
             file that belongs to these images",
            images_path.display(),
            labels_path.display(),
            labels.len()
        )));
    }
    if count == 0 {
        return Err(Error::Data(format!(
            "IDX file {} contains no images; use a file with at least one image",
            images_path.display()
        )));
    }
    Ok(Dataset {
        name,
        features: pixels.iter().map(|&p| f32::from(p)).collect(),
        sample_dims: vec![1, rows, cols],
        feature_names: Vec::new(),
        targets: Targets::Classes {
            labels: labels.iter().map(|&l| usize::from(l)).collect(),
            names: Vec::new(),
        },
    })
}

/// Reads a whole file, decompressing it when it is gzip.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_decompressed(path)?
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("failed to read", path, e))?;
    Ok(bytes)
}

fn be_u32(bytes: &[u8], offset: usize) -> usize {
    let word = [
        bytes[offset],
        bytes[offset + 1],
        bytes[offset + 2],
        bytes[offset + 3],
    ];
    u32::from_be_bytes(word) as usize
}

/// Checks the magic number and header length of an IDX file.
fn check_header(path: &Path, bytes: &[u8], magic: u32, header_bytes: usize) -> Result<()> {
    let kind = if magic == IMAGES_MAGIC {
        "an images"
    } else {
        "a labels"
    };
    if bytes.len() >= 4 {
        let found = be_u32(bytes, 0) as u32;
        if found != magic {
            return Err(Error::Data(format!(
                "IDX file {} starts with magic number 0x{found:08x}, expected 0x{magic:08x} \
                 for {kind} file; check that the images and labels files are not swapped",
                path.display()
            )));
        }
    }
    if bytes.len() < header_bytes {
        return Err(Error::Data(format!(
            "IDX file {} has {} bytes, fewer than the {header_bytes}-byte header of {kind} \
             file; the file is truncated or not an IDX file",
            path.display(),
            bytes.len()
        )));
    }
    Ok(())
}

/// Parses an images file into (count, rows, columns, pixels).
fn parse_images<'a>(path: &Path, bytes: &'a [u8]) -> Result<(usize, usize, usize, &'a [u8])> {
    check_header(path, bytes, IMAGES_MAGIC, IMAGES_HEADER_BYTES)?;
    let (count, rows, cols) = (be_u32(bytes, 4), be_u32(bytes, 8), be_u32(bytes, 12));
    let pixels = &bytes[IMAGES_HEADER_BYTES..];
    let expected = count.checked_mul(rows).and_then(|n| n.checked_mul(cols));
    if expected != Some(pixels.len()) {
        let expected = expected.map_or("too many".to_string(), |n| n.to_string());
        return Err(Error::Data(format!(
            "IDX file {}: the header gives {count} images of {rows}x{cols} pixels ({expected} \
             bytes), but the file contains {} bytes of pixels; the file is truncated or corrupt, \
             so download it again",
            path.display(),
            pixels.len()
        )));
    }
    Ok((count, rows, cols, pixels))
}

/// Parses a labels file into its label bytes.
fn parse_labels<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8]> {
    check_header(path, bytes, LABELS_MAGIC, LABELS_HEADER_BYTES)?;
    let count = be_u32(bytes, 4);
    let labels = &bytes[LABELS_HEADER_BYTES..];
    if labels.len() != count {
        return Err(Error::Data(format!(
            "IDX file {}: the header gives {count} labels, but the file contains {} bytes of \
             labels; the file is truncated or corrupt, so download it again",
            path.display(),
            labels.len()
        )));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn shared_data(folder: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data")
            .join(folder)
    }

    fn images_file(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [IMAGES_MAGIC, count, rows, cols] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes.extend_from_slice(pixels);
        bytes
    }

    fn labels_file(labels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        bytes.extend_from_slice(labels);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("compress in memory");
        encoder.finish().expect("finish gzip")
    }

    /// Writes `files` as (name, content) into a new temporary folder.
    fn folder_with(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temporary folder");
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).expect("write IDX file");
        }
        dir
    }

    fn error_of(dir: &Path) -> String {
        match read_folder(dir) {
            Ok(loaded) => panic!("expected an error, read {} samples", loaded.train.len()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn mnist_10k_reads() {
        let loaded = read_folder(&shared_data("mnist-10k")).expect("mnist-10k loads");
        assert!(loaded.test.is_none());
        let train = loaded.train;
        assert_eq!(train.name, "mnist-10k");
        assert_eq!(train.len(), 10_000);
        assert_eq!(train.sample_dims, vec![1, 28, 28]);
        assert_eq!(train.features.len(), 10_000 * 784);
        assert_eq!(train.class_count(), Some(10));
        let labels = train.labels().expect("labels");
        assert_eq!(labels[0], 0);
        assert_eq!(labels[9_999], 9);
        assert!(
            labels.windows(2).all(|w| w[0] <= w[1]),
            "mnist-10k is sorted by class"
        );
        let max = train.features.iter().fold(0.0f32, |m, &x| m.max(x));
        assert_eq!(max, 255.0);
    }

    #[test]
    fn fashion_mnist_reads_train_and_test() {
        let loaded = read_folder(&shared_data("fashion-mnist")).expect("fashion-mnist loads");
        let train = loaded.train;
        let test = loaded.test.expect("t10k files give a test set");
        assert_eq!(train.len(), 60_000);
        assert_eq!(test.len(), 10_000);
        assert_eq!(train.sample_dims, vec![1, 28, 28]);
        assert_eq!(test.sample_dims, vec![1, 28, 28]);
        assert_eq!(train.class_count(), Some(10));
        assert_eq!(test.class_count(), Some(10));
        // The first training image is an ankle boot (class 9), the first test image too.
        assert_eq!(train.labels().map(|l| l[0]), Some(9));
        assert_eq!(test.labels().map(|l| l[0]), Some(9));
        let mut per_class = [0usize; 10];
        for &label in train.labels().expect("labels") {
            per_class[label] += 1;
        }
        assert_eq!(per_class, [6_000; 10]);
    }

    #[test]
    fn raw_and_gzip_pair_read() {
        let pixels: Vec<u8> = (0..12).map(|p| p * 20).collect();
        let dir = folder_with(&[
            ("images-idx3-ubyte", images_file(3, 2, 2, &pixels)),
            // Compressed, but the name does not say so: the magic bytes decide.
            ("labels-idx1-ubyte", gzip(&labels_file(&[1, 0, 4]))),
        ]);
        let loaded = read_folder(dir.path()).expect("valid IDX pair");
        let train = loaded.train;
        assert_eq!(train.len(), 3);
        assert_eq!(train.sample_dims, vec![1, 2, 2]);
        assert_eq!(&train.features[4..8], &[80.0, 100.0, 120.0, 140.0]);
        assert_eq!(train.labels(), Some(&[1, 0, 4][..]));
        assert_eq!(train.class_count(), Some(5));
    }

    #[test]
    fn train_and_test_share_class_count() {
        let dir = folder_with(&[
            (
                "train-images-idx3-ubyte.gz",
                gzip(&images_file(2, 1, 1, &[0, 1])),
            ),
            ("train-labels-idx1-ubyte.gz", gzip(&labels_file(&[0, 1]))),
            ("t10k-images-idx3-ubyte", images_file(1, 1, 1, &[2])),
            ("t10k-labels-idx1-ubyte", labels_file(&[3])),
        ]);
        let loaded = read_folder(dir.path()).expect("valid IDX folder");
        let test = loaded.test.expect("test set");
        assert_eq!(loaded.train.class_count(), Some(4));
        assert_eq!(test.class_count(), Some(4));
        assert_eq!(test.features, vec![2.0]);
    }

    #[test]
    fn truncated_images_name_counts() {
        let dir = folder_with(&[
            ("images-idx3-ubyte", images_file(3, 2, 2, &[7; 10])),
            ("labels-idx1-ubyte", labels_file(&[0, 1, 2])),
        ]);
        let message = error_of(dir.path());
        assert!(message.contains("images-idx3-ubyte"), "{message}");
        assert!(
            message.contains("3 images of 2x2 pixels (12 bytes)"),
            "{message}"
        );
        assert!(message.contains("contains 10 bytes"), "{message}");
    }

    #[test]
    fn truncated_labels_name_counts() {
        let mut labels = labels_file(&[0, 1, 2]);
        labels.pop();
        let dir = folder_with(&[
            ("images-idx3-ubyte", images_file(3, 1, 1, &[0, 1, 2])),
            ("labels-idx1-ubyte.gz", gzip(&labels)),
        ]);
        let message = error_of(dir.path());
        assert!(message.contains("labels-idx1-ubyte.gz"), "{message}");
        assert!(message.contains("gives 3 labels"), "{message}");
        assert!(message.contains("contains 2 bytes"), "{message}");
    }

    #[test]
    fn count_mismatch_names_both_counts() {
        let dir = folder_with(&[
            ("images-idx3-ubyte", images_file(3, 1, 1, &[0, 1, 2])),
            ("labels-idx1-ubyte", labels_file(&[0, 1])),
        ]);
        let message = error_of(dir.path());
        assert!(message.contains("3 images but 2 labels"), "{message}");
    }

    #[test]
    fn swapped_files_name_magic() {
        let dir = folder_with(&[
            ("images-idx3-ubyte", labels_file(&[0])),
            ("labels-idx1-ubyte", images_file(1, 1, 1, &[0])),
        ]);
        let message = error_of(dir.path());
        assert!(message.contains("0x00000801"), "{message}");
        assert!(message.contains("expected 0x00000803"), "{message}");
    }

    #[test]
    fn short_header_rejected() {
        let dir = folder_with(&[
            ("images-idx3-ubyte", vec![0, 0, 8, 3, 0, 0]),
            ("labels-idx1-ubyte", labels_file(&[0])),
        ]);
        let message = error_of(dir.path());
        assert!(
            message.contains("has 6 bytes, fewer than the 16-byte header"),
            "{message}"
        );
    }

    #[test]
    fn ambiguous_folder_lists_files() {
        let dir = folder_with(&[
            ("a-images", images_file(1, 1, 1, &[0])),
            ("b-images", images_file(1, 1, 1, &[0])),
            ("a-labels", labels_file(&[0])),
        ]);
        let message = error_of(dir.path());
        assert!(message.contains("a-images, b-images"), "{message}");
        assert!(message.contains("labels files: a-labels"), "{message}");
    }

    #[test]
    fn missing_folder_names_path() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let message = error_of(&dir.path().join("absent"));
        assert!(message.contains("absent"), "{message}");
    }
}
