//! End-to-end test of a search method through `gradus train` with default epochs.

use serde_json::Value;
use std::fs;
use std::process::Command;

#[test]
fn cma_es_trains_iris() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_gradus"))
        .args([
            "train", "--data", "iris", "--layers", "4", "--method", "cma-es", "--out",
        ])
        .arg(&out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("failed to start gradus");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "gradus failed: {stderr}");
    let text = fs::read_to_string(out.join("summary.json")).expect("summary.json");
    let summary: Value = serde_json::from_str(&text).expect("valid JSON");
    let accuracy = summary["test_accuracy"].as_f64().expect("test_accuracy");
    assert!(accuracy >= 0.9, "test accuracy {accuracy}");
}
