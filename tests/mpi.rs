//! `gradus train` under `mpirun -np 2`: the losses match one process, only rank 0 writes,
//! and a stalled rank makes the others abort within the rank timeout.
//!
//! Needs the `mpi` feature and Open MPI's mpirun on the PATH:
//! `cargo test --release --features mpi --test mpi`.
#![cfg(feature = "mpi")]

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const GRADUS: &str = env!("CARGO_BIN_EXE_gradus");

/// `mpirun` with the options for a test machine: more ranks than cores, and root allowed.
fn mpirun() -> Command {
    let mut command = Command::new("mpirun");
    command
        .args(["--oversubscribe", "--allow-run-as-root"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Training and validation loss of every epoch in a run folder.
fn epoch_losses(dir: &Path) -> Vec<(f64, f64)> {
    let text = fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).expect("a JSON line");
            let train = record["train_loss"].as_f64().expect("train_loss");
            let validation = record["validation"]["loss"]
                .as_f64()
                .expect("validation loss");
            (train, validation)
        })
        .collect()
}

fn summary(dir: &Path) -> Value {
    let text = fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// The command line of a short run on the built-in digits data, without its model and epochs.
const TRAIN: [&str; 3] = ["train", "--data", "digits"];

/// Model and epochs of most runs.
const SMALL: [&str; 4] = ["--layers", "64,32", "--epochs", "3"];

/// Trains `TRAIN` with `extra` arguments in one process with two threads into `dir`.
fn train_single(dir: &Path, extra: &[&str]) {
    let o = Command::new(GRADUS)
        .args(TRAIN)
        .args(extra)
        .args(["--threads", "2", "--out", path_arg(dir)])
        .output()
        .expect("failed to start gradus");
    assert!(o.status.success(), "single process failed: {}", stderr(&o));
}

/// Trains `TRAIN` with `extra` arguments on two ranks into `rank0` and `rank1`, with the
/// environment variable `GRADUS_SHARED_MEMORY` (the shared window's size in MiB) set to
/// `shared`, and returns what mpirun printed. The two ranks are two programs of one job (MPMD), so that rank 1 gets a run
/// folder of its own, which must stay unwritten.
fn train_ranks(rank0: &Path, rank1: &Path, extra: &[&str], shared: &str) -> String {
    let o = mpirun()
        .env("GRADUS_SHARED_MEMORY", shared)
        .args(["-np", "1", GRADUS])
        .args(TRAIN)
        .args(extra)
        .args([
            "--threads",
            "1",
            "--out",
            path_arg(rank0),
            ":",
            "-np",
            "1",
            GRADUS,
        ])
        .args(TRAIN)
        .args(extra)
        .args(["--threads", "1", "--out", path_arg(rank1)])
        .output()
        .expect("failed to start mpirun");
    assert!(o.status.success(), "mpirun failed: {}", stderr(&o));
    assert!(!rank1.exists(), "rank 1 wrote {}", rank1.display());
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn model(dir: &Path) -> Vec<u8> {
    fs::read(dir.join("model.safetensors")).expect("model")
}

#[test]
fn two_ranks_match_single_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let larger = ["--layers", "512,256", "--epochs", "3"];
    // Through memory that the ranks share, through MPI's own collectives, which ranks on
    // several machines use, and through both when the gradient of 167,178 values does not
    // fit in a window of 1 MiB.
    let cases = [
        ("32", &SMALL, "shared memory"),
        ("0", &SMALL, "MPI"),
        ("1", &larger, "shared memory and MPI"),
    ];
    for (shared, model_and_epochs, through) in cases {
        let single = tmp.path().join(format!("single-{shared}"));
        train_single(&single, model_and_epochs);
        let (rank0, rank1) = (
            tmp.path().join(format!("rank0-{shared}")),
            tmp.path().join(format!("rank1-{shared}")),
        );
        let stdout = train_ranks(&rank0, &rank1, model_and_epochs, shared);
        let expected = format!("data-parallel over 2 ranks through {through},");
        assert!(stdout.contains(&expected), "{stdout}");
        assert_eq!(
            stdout.matches("test accuracy").count(),
            1,
            "one summary: {stdout}"
        );

        let (expected, found) = (epoch_losses(&single), epoch_losses(&rank0));
        assert_eq!(found.len(), 3);
        assert_eq!(expected.len(), 3);
        // The batch's two groups are added in one fixed order on one process and on two
        // ranks, and a rank's half of a split Adam step is the one process's, so the runs
        // agree bit for bit.
        assert_eq!(found, expected, "epoch losses through {through}");
        assert!(
            model(&rank0) == model(&single),
            "the final parameters differ through {through}"
        );
        let (s, d) = (summary(&single), summary(&rank0));
        for key in ["test_loss", "train_loss"] {
            let (a, b) = (d[key].as_f64().expect(key), s[key].as_f64().expect(key));
            assert_eq!(a, b, "{key} through {through}");
        }
        assert_eq!(d["evaluations"], s["evaluations"]);
        for file in ["config.toml", "model.safetensors", "checkpoint.safetensors"] {
            assert!(rank0.join(file).exists(), "rank 0 did not write {file}");
        }
    }
}

#[test]
fn resumed_ranks_match_single_process() {
    // Each rank keeps Adam's moments only for its half of the parameters, so the checkpoint
    // must gather them. A resumed run then ends where an uninterrupted one does.
    let tmp = tempfile::tempdir().expect("tempdir");
    let single = tmp.path().join("single");
    train_single(&single, &SMALL);
    let (rank0, rank1) = (tmp.path().join("rank0"), tmp.path().join("rank1"));
    train_ranks(
        &rank0,
        &rank1,
        &["--layers", "64,32", "--epochs", "1"],
        "32",
    );
    assert_eq!(epoch_losses(&rank0).len(), 1);
    // Every rank reads the checkpoint, from rank 0's folder.
    let o = mpirun()
        .args(["-np", "2", GRADUS])
        .args(TRAIN)
        .args(SMALL)
        .args(["--threads", "1", "--resume", path_arg(&rank0)])
        .output()
        .expect("failed to start mpirun");
    assert!(o.status.success(), "resumed mpirun failed: {}", stderr(&o));
    assert_eq!(epoch_losses(&rank0), epoch_losses(&single), "epoch losses");
    assert!(
        model(&rank0) == model(&single),
        "the resumed run's final parameters differ"
    );
}

/// Process ids of the ranks whose command line contains `marker`, by rank, read from /proc.
fn rank_pids(marker: &str) -> Vec<(usize, u32)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        let rank = environ
            .split(|&b| b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find_map(|v| v.strip_prefix("OMPI_COMM_WORLD_RANK="))
            .and_then(|r| r.parse().ok());
        if let Some(rank) = rank {
            found.push((rank, pid));
        }
    }
    found
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stalled_rank_aborts_job_within_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out: PathBuf = tmp.path().join("stalled");
    let mut job = mpirun()
        .args([
            "-np", "2", GRADUS, "train", "--data", "digits", "--layers", "16",
        ])
        .args(["--epochs", "100000", "--patience", "0", "--threads", "1"])
        .args(["--rank-timeout", "2", "--out", path_arg(&out)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start mpirun");

    wait_for("the first epoch", Duration::from_secs(60), || {
        out.join("metrics.jsonl").exists()
    });
    let marker = path_arg(&out).to_string();
    let pids = rank_pids(&marker);
    let (_, pid) = *pids
        .iter()
        .find(|(rank, _)| *rank == 1)
        .unwrap_or_else(|| panic!("rank 1 not found among {pids:?}"));
    let stopped = Instant::now();
    let status = Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .expect("failed to run kill");
    assert!(status.success(), "kill -STOP {pid} failed");

    let mut finished = None;
    wait_for("the job to end", Duration::from_secs(30), || {
        finished = job.try_wait().expect("wait for mpirun");
        finished.is_some()
    });
    let waited = stopped.elapsed();
    let status = finished.expect("mpirun ended");
    let output = job.wait_with_output().expect("mpirun output");
    let err = stderr(&output);
    assert!(!status.success(), "the job succeeded: {err}");
    assert!(waited >= Duration::from_secs(2), "ended after {waited:?}");
    assert!(
        err.contains("rank 0 of 2 waited 2 s in"),
        "expected the timeout error in: {err}"
    );
    assert!(err.contains("--rank-timeout"), "{err}");
    // The stopped rank must be gone too, or it would hold the machine.
    wait_for("rank 1 to exit", Duration::from_secs(15), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
}
