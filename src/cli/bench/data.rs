//! The benchmark's data: Fashion-MNIST or synthetic samples of the same shape, and the files
//! through which both frameworks read the same samples in the same order.

use super::{CLASSES, FEATURES, SEED};
use anyhow::{bail, Result};
use gradus::data::{self, CsvOptions, Source};
use rand::{Rng as _, SeedableRng};
use std::path::{Path, PathBuf};

/// Loads `samples` training samples scaled to [0, 1] from an IDX folder, or makes synthetic
/// ones when the folder does not exist. Returns the features, labels and a description.
pub(super) fn bench_data(dir: &Path, samples: usize) -> Result<(Vec<f32>, Vec<u8>, String)> {
    if !dir.exists() {
        eprintln!(
            "note: {} not found, so the benchmark uses synthetic data",
            dir.display()
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
        let x = (0..samples * FEATURES)
            .map(|_| rng.random::<f32>())
            .collect();
        let labels = (0..samples).map(|i| (i % CLASSES) as u8).collect();
        return Ok((x, labels, "synthetic data".to_string()));
    }
    let loaded = data::load(&Source::Idx(dir.to_path_buf()), &CsvOptions::default())?;
    let train = loaded.train;
    if train.feature_count() != FEATURES || train.class_count() != Some(CLASSES) {
        bail!(
            "{} has {} features and {:?} classes per sample; the benchmark needs \
             {FEATURES} features and {CLASSES} classes (MNIST or Fashion-MNIST)",
            dir.display(),
            train.feature_count(),
            train.class_count()
        );
    }
    let n = samples.min(train.len());
    let x = train.features[..n * FEATURES]
        .iter()
        .map(|&v| v / 255.0)
        .collect();
    let labels = train.labels().expect("class count checked")[..n]
        .iter()
        .map(|&l| l as u8)
        .collect();
    Ok((x, labels, dir.display().to_string()))
}

/// Writes the files that both frameworks read: `x.f32`, `y.u8` and the shuffled sample order
/// `order.u32`, all little-endian.
pub(super) fn write_data(dir: &Path, x: &[f32], labels: &[u8]) -> Result<()> {
    let mut order: Vec<u32> = (0..labels.len() as u32).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
    let x_bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let order_bytes: Vec<u8> = order.iter().flat_map(|v| v.to_le_bytes()).collect();
    for (name, bytes) in [
        ("x.f32", x_bytes.as_slice()),
        ("y.u8", labels),
        ("order.u32", order_bytes.as_slice()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| gradus::Error::io("failed to write", &path, e))?;
    }
    Ok(())
}

/// A folder under the system's temporary directory, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn create() -> Result<Self> {
        let path = std::env::temp_dir().join(format!("gradus-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| gradus::Error::io("failed to create", &path, e))?;
        Ok(TempDir(path))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    Ok(std::fs::read(path).map_err(|e| gradus::Error::io("failed to read", path, e))?)
}

/// Reads a file of little-endian f32 values straight into the vector that keeps them, so
/// that the peak RSS includes one copy of the data.
fn read_f32(path: &Path) -> Result<Vec<f32>> {
    use std::io::Read;
    let io = |e| gradus::Error::io("failed to read", path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len() as usize;
    let mut values = vec![0.0f32; bytes / 4];
    // SAFETY: the byte view covers exactly the vector's initialised elements, and every bit
    // pattern is a valid f32.
    let view = unsafe {
        std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), values.len() * 4)
    };
    file.read_exact(view).map_err(io)?;
    for v in &mut values {
        *v = f32::from_bits(u32::from_le(v.to_bits()));
    }
    Ok(values)
}

/// The samples, labels and sample order that `write_data` wrote.
pub(super) struct BenchData {
    pub(super) x: Vec<f32>,
    pub(super) labels: Vec<u8>,
    pub(super) order: Vec<usize>,
}

impl BenchData {
    /// Reads the files in `dir`, with `features` values per sample.
    pub(super) fn read(dir: &Path, features: usize) -> Result<Self> {
        let x = read_f32(&dir.join("x.f32"))?;
        let labels = read_bytes(&dir.join("y.u8"))?;
        let order: Vec<usize> = read_bytes(&dir.join("order.u32"))?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .collect();
        if x.len() != labels.len() * features || order.len() != labels.len() {
            bail!("the files in {} disagree in length", dir.display());
        }
        Ok(BenchData { x, labels, order })
    }
}
