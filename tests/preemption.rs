//! Runs that survive preemption: SIGTERM writes a checkpoint and stops, and a run killed with
//! SIGKILL at random moments and resumed each time ends with the same parameters as an
//! uninterrupted run.

use rand::{Rng, SeedableRng};
use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A deterministic run of a few seconds on digits, with a checkpoint every 25 steps.
const RUN: &[&str] = &[
    "train",
    "--data",
    "digits",
    "--layers",
    "512,256",
    "--epochs",
    "30",
    "--patience",
    "0",
    "--threads",
    "1",
    "--deterministic",
    "--checkpoint-every",
    "25",
    "--seed",
    "4",
];

fn spawn(args: &[&str], extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gradus"))
        .args(args)
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("failed to start gradus")
}

fn finish(child: Child) -> (ExitStatus, String) {
    let output = child.wait_with_output().expect("gradus runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status, stderr)
}

fn run_to_end(dir: &Path) {
    let out = dir.to_str().expect("UTF-8 path");
    let (status, stderr) = finish(spawn(RUN, &["--out", out]));
    assert!(status.success(), "uninterrupted run failed: {stderr}");
}

/// Parameters and test loss of a finished run, which must match bit for bit.
fn outcome(dir: &Path) -> (Vec<u8>, serde_json::Value, serde_json::Value) {
    let model = fs::read(dir.join("model.safetensors")).expect("model.safetensors");
    let text = fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    let summary: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    (
        model,
        summary["test_loss"].clone(),
        summary["test_accuracy"].clone(),
    )
}

fn epoch_losses(dir: &Path) -> Vec<f64> {
    let text = fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
            record["train_loss"].as_f64().expect("a finite loss")
        })
        .collect()
}

/// Checks that a resumed run ended exactly as the uninterrupted one.
fn assert_same_run(dir: &Path, reference: &Path) {
    assert_eq!(
        outcome(dir),
        outcome(reference),
        "same parameters and test loss"
    );
    assert_eq!(
        epoch_losses(dir),
        epoch_losses(reference),
        "same epoch losses"
    );
}

fn wait_for(path: &Path, limit: Duration) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < limit,
            "{} did not appear",
            path.display()
        );
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_checkpoints_and_resume_matches() {
    let root = tempfile::tempdir().expect("tempdir");
    let reference = root.path().join("reference");
    run_to_end(&reference);

    let dir = root.path().join("stopped");
    let out = dir.to_str().expect("UTF-8 path");
    let child = spawn(RUN, &["--out", out]);
    // Stop it in the middle of an epoch: after the first checkpoint and a little more.
    wait_for(&dir.join("checkpoint.json"), Duration::from_secs(60));
    sleep(Duration::from_millis(150));
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(kill.expect("kill runs").success(), "kill -TERM failed");
    let (status, stderr) = finish(child);
    assert_eq!(
        status.code(),
        Some(143),
        "exit status 128 + SIGTERM; stderr: {stderr}"
    );
    assert!(
        stderr.contains("--resume"),
        "the message says how to resume: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let progress = gradus::train::checkpoint::load(&dir)
        .expect("checkpoint loads")
        .progress;
    assert!(progress.steps > 0, "the final checkpoint has steps");

    let (status, stderr) = finish(spawn(&["train", "--resume", out], &[]));
    assert!(status.success(), "resumed run failed: {stderr}");
    assert_same_run(&dir, &reference);
}

#[test]
fn ten_kills_then_resume_matches() {
    let root = tempfile::tempdir().expect("tempdir");
    let reference = root.path().join("reference");
    let started = Instant::now();
    run_to_end(&reference);
    // Kill delays are fractions of the whole run's time, so that all ten land before the
    // run could finish on a fast or a slow machine.
    let run_millis = started.elapsed().as_millis().max(200) as u64;
    let delays = run_millis / 50..run_millis / 8;

    let dir = root.path().join("killed");
    let out = dir.to_str().expect("UTF-8 path");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut kills = 0;
    let mut completed = false;
    while kills < 10 && !completed {
        // Before the first checkpoint there is nothing to resume, so the run starts afresh.
        let resumable = dir.join("checkpoint.safetensors").exists();
        let mut child = if resumable {
            spawn(&["train", "--resume", out], &[])
        } else {
            let _ = fs::remove_dir_all(&dir);
            spawn(RUN, &["--out", out])
        };
        sleep(Duration::from_millis(rng.random_range(delays.clone())));
        completed = child.try_wait().expect("wait works").is_some();
        if !completed {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        let (status, stderr) = finish(child);
        if completed {
            assert!(status.success(), "run failed: {stderr}");
        }
        if dir.join("checkpoint.safetensors").exists() {
            if let Err(e) = gradus::train::checkpoint::load(&dir) {
                panic!("checkpoint after kill {kills} does not load: {e}");
            }
        }
    }
    if !completed {
        let (status, stderr) = finish(spawn(&["train", "--resume", out], &[]));
        assert!(status.success(), "final resume failed: {stderr}");
    }
    assert_eq!(kills, 10, "kills that landed before the run ended");
    assert_same_run(&dir, &reference);
}
