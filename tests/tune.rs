//! End-to-end test of `gradus tune`: a grid on digits, its results table and best config, and
//! a rerun of the best config with `gradus train`.

use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn gradus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradus"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("failed to start gradus")
}

fn assert_ok(o: &Output) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "gradus failed: {stderr}");
}

fn summary(dir: &Path) -> Value {
    let text = fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn tune_grid_best_config_reruns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("tune");
    let o = gradus(&[
        "tune",
        "--data",
        "digits",
        "--grid",
        "lr=0.001,0.01,0.1",
        "--grid",
        "layers=32,64",
        "--method",
        "adam",
        "--epochs",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let table_rows = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(char::is_numeric))
        .count();
    assert_eq!(table_rows, 6, "printed table:\n{stdout}");

    let csv = fs::read_to_string(out.join("results.csv")).expect("results.csv");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().expect("CSV header").clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("CSV row")).collect();
    assert_eq!(rows.len(), 6, "results.csv:\n{csv}");
    let column = |name: &str| header.iter().position(|h| h == name).expect(name);
    let loss_column = column("validation_loss");
    assert!(header.iter().any(|h| h == "lr"));
    assert!(header.iter().any(|h| h == "layers"));
    assert!(header.iter().any(|h| h == "validation_accuracy"));
    assert!(header.iter().any(|h| h == "test_accuracy"));

    let losses: Vec<f64> = rows
        .iter()
        .map(|r| r[loss_column].parse().expect("a validation loss"))
        .collect();
    let (best, best_loss) = losses
        .iter()
        .copied()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("six trials");
    let trial = summary(&out.join(format!("trial-{:03}", best + 1)));
    let trial_loss = trial["validation_loss"].as_f64().expect("validation_loss");
    assert!(
        (trial_loss - best_loss).abs() < 1e-6,
        "table {best_loss} vs trial {trial_loss}"
    );

    let rerun = dir.path().join("rerun");
    let best_toml = out.join("best.toml");
    let o = gradus(&[
        "train",
        "--config",
        best_toml.to_str().unwrap(),
        "--out",
        rerun.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let rerun_loss = summary(&rerun)["validation_loss"].as_f64().expect("loss");
    assert_eq!(rerun_loss, trial_loss, "rerun of best.toml");
}

#[test]
fn tune_rejects_unknown_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("tune");
    let o = gradus(&[
        "tune",
        "--data",
        "iris",
        "--grid",
        "speed=1,2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("unknown key \"speed\""), "stderr: {stderr}");
}
