//! Run folders and atomic file writes.

use crate::{Error, Result};
use serde::Serialize;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: into a temporary file beside it, flushed to disk, then
/// renamed over the target. A crash leaves either the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("failed to write", path, e)
    })
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<V: Serialize>(path: &Path, value: &V) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Data(format!("failed to encode {}: {e}", path.display())))?;
    write_atomic(path, format!("{text}\n").as_bytes())
}

/// Appends one line to `path`, rewriting the whole file atomically so that a reader never
/// sees a half-written line. Metrics files are small (one line per epoch), so the cost is low.
pub fn append_line_atomic(path: &Path, line: &str) -> Result<()> {
    let mut text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("failed to read", path, e)),
    };
    text.push_str(line);
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Reads a file to a string with an error naming the path.
pub fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io("failed to read", path, e))
}

/// Returns the default run folder `runs/<UTC timestamp>`, adding a suffix when it exists.
pub fn default_run_dir() -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let base = PathBuf::from("runs").join(&stamp);
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        dir = PathBuf::from("runs").join(format!("{stamp}-{n}"));
        n += 1;
    }
    dir
}

/// Creates the run folder. An existing folder that already contains a finished or started run
/// (a `config.toml`) is rejected, so that no earlier result is overwritten.
pub fn create_run_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::setting(
            "out",
            dir.display(),
            "a file of that name exists; --out needs a folder path",
        ));
    }
    if dir.join("config.toml").exists() {
        return Err(Error::setting(
            "out",
            dir.display(),
            "the folder already holds a run; choose another --out, or continue it with --resume",
        ));
    }
    fs::create_dir_all(dir).map_err(|e| Error::io("failed to create", dir, e))
}

/// Creates the output folder of a comparison, which must not exist or must be empty, so that
/// no earlier results are replaced.
pub fn create_empty_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let mut entries = fs::read_dir(dir).map_err(|_| {
            Error::setting(
                "out",
                dir.display(),
                "it exists but is not a readable folder; choose a new folder path",
            )
        })?;
        if entries.next().is_some() {
            return Err(Error::setting(
                "out",
                dir.display(),
                "the folder is not empty; choose a new --out so earlier results are kept",
            ));
        }
    }
    fs::create_dir_all(dir).map_err(|e| Error::io("failed to create", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one").expect("first write");
        write_atomic(&path, b"two").expect("second write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "two");
        let names: Vec<_> = fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn run_dir_with_config_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("config.toml"), "x").expect("write");
        let err = create_run_dir(dir.path()).expect_err("must reject");
        assert!(err.to_string().contains("--resume"), "{err}");
    }

    #[test]
    fn comparison_dir_must_be_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        create_empty_dir(dir.path()).expect("an empty folder is accepted");
        fs::write(dir.path().join("summary.csv"), "x").expect("write");
        let err = create_empty_dir(dir.path()).expect_err("must reject");
        assert!(err.to_string().contains("not empty"), "{err}");
    }

    #[test]
    fn run_dir_on_a_file_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("afile");
        fs::write(&file, "x").expect("write");
        let err = create_run_dir(&file).expect_err("must reject");
        assert!(err.to_string().contains("needs a folder"), "{err}");
    }
}
