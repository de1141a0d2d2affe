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

#[test]
fn two_ranks_match_single_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (single, rank0, rank1) = (
        tmp.path().join("single"),
        tmp.path().join("rank0"),
        tmp.path().join("rank1"),
    );
    let train = [
        "train", "--data", "digits", "--layers", "64,32", "--epochs", "3",
    ];

    let o = Command::new(GRADUS)
        .args(train)
        .args(["--threads", "2", "--out", path_arg(&single)])
        .output()
        .expect("failed to start gradus");
    assert!(o.status.success(), "single process failed: {}", stderr(&o));

    // Two programs in one job (MPMD), so rank 1 gets a run folder of its own that must stay
    // unwritten.
    let o = mpirun()
        .args(["-np", "1", GRADUS])
        .args(train)
        .args([
            "--threads",
            "1",
            "--out",
            path_arg(&rank0),
            ":",
            "-np",
            "1",
            GRADUS,
        ])
        .args(train)
        .args(["--threads", "1", "--out", path_arg(&rank1)])
        .output()
        .expect("failed to start mpirun");
    assert!(o.status.success(), "mpirun failed: {}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("data-parallel over 2 ranks"), "{stdout}");
    assert_eq!(
        stdout.matches("test accuracy").count(),
        1,
        "one summary: {stdout}"
    );
    assert!(!rank1.exists(), "rank 1 wrote {}", rank1.display());

    let (expected, found) = (epoch_losses(&single), epoch_losses(&rank0));
    assert_eq!(found.len(), 3);
    assert_eq!(expected.len(), 3);
    // The batch's two groups are added in one fixed order on one process and on two ranks,
    // so the runs agree bit for bit.
    assert_eq!(found, expected, "epoch losses");
    let model = |dir: &Path| fs::read(dir.join("model.safetensors")).expect("model");
    assert!(
        model(&rank0) == model(&single),
        "the final parameters differ"
    );
    let (s, d) = (summary(&single), summary(&rank0));
    for key in ["test_loss", "train_loss"] {
        let (a, b) = (d[key].as_f64().expect(key), s[key].as_f64().expect(key));
        assert_eq!(a, b, "{key}");
    }
    assert_eq!(d["evaluations"], s["evaluations"]);
    for file in ["config.toml", "model.safetensors", "checkpoint.safetensors"] {
        assert!(rank0.join(file).exists(), "rank 0 did not write {file}");
    }
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
