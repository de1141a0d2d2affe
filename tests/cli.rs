//! End-to-end tests of the `gradus` binary on real data, including every bad input that must
//! produce one clear error line and exit code 2.

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gradus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradus"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("failed to start gradus")
}

fn shared(path: &str) -> String {
    format!("{}/../shared/data/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn summary(dir: &Path) -> Value {
    let text = fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(o: &Output) {
    assert!(o.status.success(), "gradus failed: {}", stderr(o));
}

/// Checks a bad input: exit code 2, one error line containing `needle`, no panic.
fn assert_bad_input(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn out_arg(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[test]
fn default_train_reaches_accuracy_on_digits() {
    let dir = temp();
    let out = out_arg(dir.path(), "r1");
    let o = gradus(&["train", "--out", out.to_str().unwrap()]);
    assert_ok(&o);
    let s = summary(&out);
    for key in [
        "method",
        "task",
        "epochs",
        "wall_seconds",
        "train_loss",
        "test_loss",
        "test_accuracy",
        "test_rmse",
        "test_r2",
        "test_reconstruction_error",
        "samples_per_second",
        "gradient_evaluations",
        "parameters",
    ] {
        assert!(s.get(key).is_some(), "summary.json lacks {key}");
    }
    let accuracy = s["test_accuracy"].as_f64().expect("accuracy");
    assert!(accuracy >= 0.97, "test accuracy {accuracy}");
    for file in [
        "config.toml",
        "metrics.jsonl",
        "model.safetensors",
        "model.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("test accuracy"), "{stdout}");
}

#[test]
fn sgd_runs_with_same_seed_are_identical() {
    let dir = temp();
    let mut losses = Vec::new();
    for name in ["a", "b"] {
        let out = out_arg(dir.path(), name);
        let args = [
            "train", "--data", "digits", "--method", "sgd", "--seed", "1",
        ];
        let o = gradus(
            &[
                &args[..],
                &["--threads", "1", "--epochs", "5", "--out"],
                &[out.to_str().unwrap()],
            ]
            .concat(),
        );
        assert_ok(&o);
        let s = summary(&out);
        losses.push((s["train_loss"].clone(), s["test_loss"].clone()));
    }
    assert_eq!(losses[0], losses[1]);
}

#[test]
fn config_file_reruns_a_run() {
    let dir = temp();
    let first = out_arg(dir.path(), "first");
    let o = gradus(&[
        "train",
        "--data",
        "iris",
        "--layers",
        "8",
        "--epochs",
        "20",
        "--threads",
        "1",
        "--out",
        first.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let second = out_arg(dir.path(), "second");
    let config = first.join("config.toml");
    let o = gradus(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        second.to_str().unwrap(),
    ]);
    assert_ok(&o);
    assert_eq!(summary(&first)["test_loss"], summary(&second)["test_loss"]);
}

#[test]
fn csv_classification_with_named_target() {
    let dir = temp();
    let csv = dir.path().join("flowers.csv");
    let iris = fs::read_to_string(shared("iris/iris.csv")).expect("iris");
    let names = ["setosa", "versicolor", "virginica"];
    let mut text = String::from("species,sepal_length,sepal_width,petal_length,petal_width\n");
    for line in iris.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let label: usize = cells[4].trim().parse().expect("label");
        text.push_str(&format!("{},{}\n", names[label], cells[..4].join(",")));
    }
    fs::write(&csv, text).expect("write csv");
    let out = out_arg(dir.path(), "run");
    let data = format!("csv:{}", csv.display());
    let o = gradus(&[
        "train",
        "--data",
        &data,
        "--target",
        "species",
        "--layers",
        "16",
        "--epochs",
        "100",
        "--lr",
        "0.01",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let accuracy = summary(&out)["test_accuracy"].as_f64().expect("accuracy");
    assert!(accuracy >= 0.85, "accuracy {accuracy}");

    // The trained model predicts a CSV of raw features, and evaluates on the labelled file.
    let features = dir.path().join("features.csv");
    fs::write(&features, "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n").expect("write");
    let o = gradus(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "--input",
        features.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(rows[1].starts_with("setosa,"), "{stdout}");
    assert!(rows[2].starts_with("virginica,"), "{stdout}");
    let o = gradus(&[
        "evaluate",
        "--model",
        out.to_str().unwrap(),
        "--data",
        &data,
        "--target",
        "species",
    ]);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("accuracy"));
}

#[test]
fn csv_regression_reports_rmse_and_r2() {
    let dir = temp();
    let csv = dir.path().join("curve.csv");
    let mut text = String::from("a,b,y\n");
    for i in 0..400 {
        let a = (i as f64 * 0.37).sin() * 2.0;
        let b = (i as f64 * 0.11).cos();
        let y = 3.0 * a - 2.0 * b * b + 0.5 * a * b + 100.0;
        text.push_str(&format!("{a},{b},{y}\n"));
    }
    fs::write(&csv, text).expect("write");
    let out = out_arg(dir.path(), "run");
    let data = format!("csv:{}", csv.display());
    let o = gradus(&[
        "train",
        "--data",
        &data,
        "--task",
        "regress",
        "--layers",
        "32,32",
        "--epochs",
        "80",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let s = summary(&out);
    let r2 = s["test_r2"].as_f64().expect("r2");
    let rmse = s["test_rmse"].as_f64().expect("rmse");
    assert!(r2 > 0.95, "R² {r2}");
    assert!(rmse < 1.0, "RMSE {rmse}");
}

#[test]
fn autoencoder_beats_mean_image() {
    let dir = temp();
    let out = out_arg(dir.path(), "ae");
    let data = format!("idx:{}", shared("mnist-10k"));
    let o = gradus(&[
        "train",
        "--data",
        &data,
        "--task",
        "autoencoder",
        "--layers",
        "128,32",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let s = summary(&out);
    let error = s["test_reconstruction_error"].as_f64().expect("error");
    let baseline = s["baseline_reconstruction_error"]
        .as_f64()
        .expect("baseline");
    assert!(
        error < 0.7 * baseline,
        "error {error} vs mean image {baseline}"
    );
    // When the run keeps its last epoch's parameters, the final training reconstruction
    // error under the MSE loss is the training loss.
    let train_error = s["final_train_reconstruction_error"]
        .as_f64()
        .expect("train error");
    let train_loss = s["train_loss"].as_f64().expect("train loss");
    if s["best_epoch"] == s["epochs"] {
        assert!(
            (train_error - train_loss).abs() <= 1e-6 * train_loss,
            "train reconstruction error {train_error} vs train loss {train_loss}"
        );
    }
    assert!(
        train_error < 0.7 * baseline,
        "train reconstruction error {train_error} vs mean image {baseline}"
    );
}

#[test]
fn resume_continues_a_run() {
    let dir = temp();
    let out = out_arg(dir.path(), "run");
    let o = gradus(&[
        "train",
        "--data",
        "iris",
        "--epochs",
        "3",
        "--patience",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o);
    assert_eq!(summary(&out)["epochs"], 3);
    let o = gradus(&["train", "--resume", out.to_str().unwrap(), "--epochs", "6"]);
    assert_ok(&o);
    assert_eq!(summary(&out)["epochs"], 6);
    let lines = fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert_eq!(lines.lines().count(), 6);
}

#[test]
fn missing_file_is_reported() {
    let o = gradus(&["train", "--data", "csv:/nonexistent/data.csv"]);
    assert_bad_input(&o, "/nonexistent/data.csv");
}

#[test]
fn ragged_row_is_reported() {
    let dir = temp();
    let csv = dir.path().join("ragged.csv");
    fs::write(&csv, "1,2,0\n3,4,1\n5,1\n").expect("write");
    let o = gradus(&["train", "--data", &format!("csv:{}", csv.display())]);
    assert_bad_input(&o, "line 3");
}

#[test]
fn non_numeric_cell_is_reported() {
    let dir = temp();
    let csv = dir.path().join("text.csv");
    fs::write(&csv, "x,y,label\n1,2,0\n3,abc,1\n").expect("write");
    let o = gradus(&["train", "--data", &format!("csv:{}", csv.display())]);
    assert_bad_input(&o, "abc");
}

#[test]
fn missing_target_column_is_reported() {
    let dir = temp();
    let csv = dir.path().join("t.csv");
    fs::write(&csv, "x,y,label\n1,2,0\n3,4,1\n").expect("write");
    let o = gradus(&[
        "train",
        "--data",
        &format!("csv:{}", csv.display()),
        "--target",
        "price",
    ]);
    assert_bad_input(&o, "price");
}

#[test]
fn label_outside_class_range_is_reported() {
    let dir = temp();
    let out = out_arg(dir.path(), "iris");
    assert_ok(&gradus(&[
        "train",
        "--data",
        "iris",
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]));
    let csv = dir.path().join("bad.csv");
    fs::write(&csv, "5.1,3.5,1.4,0.2,0\n6.7,3.0,5.2,2.3,7\n").expect("write");
    let o = gradus(&[
        "evaluate",
        "--model",
        out.to_str().unwrap(),
        "--data",
        &format!("csv:{}", csv.display()),
    ]);
    assert_bad_input(&o, "7");
}

#[test]
fn idx_header_mismatch_is_reported() {
    let dir = temp();
    let idx = dir.path().join("idx");
    fs::create_dir(&idx).expect("mkdir");
    // The header declares 5 images of 2x2 but only 8 pixel bytes follow.
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 2];
    images.extend([0u8; 8]);
    fs::write(idx.join("images-idx3-ubyte"), images).expect("write");
    fs::write(
        idx.join("labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 5, 0, 1, 0, 1, 0],
    )
    .expect("write");
    let o = gradus(&["train", "--data", &format!("idx:{}", idx.display())]);
    assert_bad_input(&o, "images-idx3-ubyte");
}

#[test]
fn empty_data_set_is_reported() {
    let dir = temp();
    let csv = dir.path().join("empty.csv");
    fs::write(&csv, "x,y,label\n").expect("write");
    let o = gradus(&["train", "--data", &format!("csv:{}", csv.display())]);
    assert_bad_input(&o, "empty");
}

#[test]
fn zero_batch_size_is_reported() {
    let o = gradus(&["train", "--batch-size", "0"]);
    assert_bad_input(&o, "batch-size");
}

#[test]
fn negative_learning_rate_is_reported() {
    let o = gradus(&["train", "--lr", "-0.1"]);
    assert_bad_input(&o, "-0.1");
}

#[test]
fn existing_run_is_not_overwritten() {
    let dir = temp();
    let out = out_arg(dir.path(), "run");
    assert_ok(&gradus(&[
        "train",
        "--data",
        "iris",
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]));
    let before = fs::read(out.join("model.safetensors")).expect("model");
    let o = gradus(&[
        "train",
        "--data",
        "iris",
        "--epochs",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_bad_input(&o, "--resume");
    assert_eq!(
        fs::read(out.join("model.safetensors")).expect("model"),
        before
    );
}

#[test]
fn unknown_method_lists_valid_names() {
    let o = gradus(&["train", "--method", "adamm"]);
    assert_bad_input(&o, "adamw");
}

#[test]
fn divergent_training_stops_with_error() {
    let dir = temp();
    let out = out_arg(dir.path(), "run");
    let o = gradus(&[
        "train",
        "--data",
        "digits",
        "--method",
        "sgd",
        "--lr",
        "1e30",
        "--epochs",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("non-finite") || err.contains("became"),
        "{err}"
    );
    assert!(
        !out.join("model.safetensors").exists(),
        "a diverged model must not be saved"
    );
}

#[test]
fn datasets_lists_builtins() {
    let o = gradus(&["datasets"]);
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("digits") && stdout.contains("iris"),
        "{stdout}"
    );
}

/// Trains a small iris classifier into `dir/run` and returns the run folder.
fn train_iris(dir: &Path) -> PathBuf {
    let out = out_arg(dir, "run");
    assert_ok(&gradus(&[
        "train",
        "--data",
        "iris",
        "--layers",
        "8",
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]));
    out
}

#[test]
fn export_writes_onnx_once() {
    use gradus::export::proto::ModelProto;
    use prost::Message;

    let dir = temp();
    let run = train_iris(dir.path());
    let onnx = dir.path().join("iris.onnx");
    let args = [
        "export",
        "--model",
        run.to_str().unwrap(),
        "--format",
        "onnx",
        "--out",
        onnx.to_str().unwrap(),
    ];
    let o = gradus(&args);
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(r#"input "input" [N, 4]"#), "{stdout}");
    assert!(stdout.contains(r#"output "output" [N, 3]"#), "{stdout}");

    let bytes = fs::read(&onnx).expect("ONNX file");
    let model = ModelProto::decode(bytes.as_slice()).expect("valid ONNX protobuf");
    let graph = model.graph.expect("graph");
    let ops: Vec<&str> = graph
        .node
        .iter()
        .filter_map(|n| n.op_type.as_deref())
        .collect();
    assert_eq!(ops, ["Sub", "Div", "Gemm", "Relu", "Gemm"]);

    // A second export to the same file is rejected and leaves it unchanged.
    let o = gradus(&args);
    assert_bad_input(&o, "--force");
    assert_eq!(fs::read(&onnx).expect("ONNX file"), bytes);

    let mut forced = args.to_vec();
    forced.extend(["--force", "--softmax"]);
    let o = gradus(&forced);
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(r#"output "probabilities" [N, 3]"#),
        "{stdout}"
    );
    assert_ne!(fs::read(&onnx).expect("ONNX file"), bytes);
}

#[test]
fn export_rejects_unknown_format() {
    let o = gradus(&[
        "export",
        "--model",
        "runs/none",
        "--format",
        "tflite",
        "--out",
        "m.tflite",
    ]);
    assert_bad_input(&o, "expected onnx");
}

#[test]
fn export_rejects_opset_outside_range() {
    let o = gradus(&[
        "export",
        "--model",
        "runs/none",
        "--out",
        "m.onnx",
        "--opset",
        "9",
    ]);
    assert_bad_input(&o, "from 13 to 25");
}

#[test]
fn export_reports_missing_model() {
    let dir = temp();
    let out = dir.path().join("m.onnx");
    let missing = dir.path().join("no-run");
    let o = gradus(&[
        "export",
        "--model",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_bad_input(&o, "model.json");
    assert!(!out.exists());
}

#[test]
fn predict_raw_prints_logits() {
    let dir = temp();
    let run = train_iris(dir.path());
    let csv = dir.path().join("flowers.csv");
    fs::write(&csv, "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n5.9,3.0,4.2,1.5\n").expect("write");
    let predict = |raw: bool| {
        let mut args = vec![
            "predict",
            "--model",
            run.to_str().unwrap(),
            "--input",
            csv.to_str().unwrap(),
        ];
        if raw {
            args.push("--raw");
        }
        let o = gradus(&args);
        assert_ok(&o);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let raw = predict(true);
    let plain = predict(false);
    let raw_lines: Vec<&str> = raw.lines().collect();
    let plain_lines: Vec<&str> = plain.lines().collect();
    assert_eq!(
        raw_lines[0],
        "logit_setosa,logit_versicolor,logit_virginica"
    );
    assert_eq!(raw_lines.len(), 4, "{raw}");

    let names = ["setosa", "versicolor", "virginica"];
    for (raw_row, plain_row) in raw_lines[1..].iter().zip(&plain_lines[1..]) {
        let logits: Vec<f32> = raw_row
            .split(',')
            .map(|v| v.parse().expect("a float"))
            .collect();
        assert_eq!(logits.len(), 3, "{raw_row}");
        // The softmax of the raw logits gives the rounded probabilities of plain predict.
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let exp: Vec<f64> = logits.iter().map(|&v| f64::from(v - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        let cells: Vec<&str> = plain_row.split(',').collect();
        for (e, cell) in exp.iter().zip(&cells[1..]) {
            let p: f64 = cell.parse().expect("a probability");
            assert!((e / sum - p).abs() <= 5e-7, "{raw_row} vs {plain_row}");
        }
        let best = (0..3).fold(0, |b, j| if logits[j] > logits[b] { j } else { b });
        assert_eq!(cells[0], names[best], "{raw_row} vs {plain_row}");
    }
}

/// Runs gradus with the environment variables that Open MPI's mpirun sets for `rank` of
/// `size`, without starting MPI.
fn gradus_as_rank(args: &[&str], rank: usize, size: usize) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradus"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("OMPI_COMM_WORLD_RANK", rank.to_string())
        .env("OMPI_COMM_WORLD_SIZE", size.to_string())
        .output()
        .expect("failed to start gradus")
}

#[cfg(not(feature = "mpi"))]
#[test]
fn train_without_mpi_feature_rejects_ranks() {
    let dir = temp();
    let out = out_arg(dir.path(), "r");
    let o = gradus_as_rank(&["train", "--out", out.to_str().unwrap()], 0, 2);
    assert_bad_input(&o, "cargo build --release --features mpi");
    assert!(!out.exists(), "a rejected launch wrote {}", out.display());
}

#[cfg(not(feature = "mpi"))]
#[test]
fn train_without_mpi_feature_runs_one_rank() {
    let dir = temp();
    let out = out_arg(dir.path(), "r");
    let args = ["train", "--epochs", "1", "--out", out.to_str().unwrap()];
    let o = gradus_as_rank(&args, 0, 1);
    assert_ok(&o);
    assert_eq!(summary(&out)["epochs"], 1);
}

#[test]
fn tune_rejects_several_ranks() {
    let o = gradus_as_rank(&["tune", "--trials", "1"], 1, 2);
    assert_bad_input(&o, "only `gradus train` runs data-parallel");
}

#[test]
fn rank_timeout_must_be_positive() {
    let o = gradus(&["train", "--rank-timeout", "0", "--epochs", "1"]);
    assert_bad_input(&o, "invalid rank-timeout 0");
}

#[test]
fn resume_continues_early_stopped_run() {
    let dir = temp();
    let out = out_arg(dir.path(), "iris");
    let out = out.to_str().unwrap();
    assert_ok(&gradus(&[
        "train", "--data", "iris", "--layers", "8", "--method", "lbfgs", "--out", out,
    ]));
    let stopped = summary(Path::new(out))["epochs"].as_u64().expect("epochs");
    assert!(stopped < 100, "the run stops early at epoch {stopped}");

    let o = gradus(&["train", "--resume", out]);
    assert_ok(&o);
    assert!(stderr(&o).contains("already stopped"), "{}", stderr(&o));
    let again = summary(Path::new(out))["epochs"].as_u64().expect("epochs");
    assert_eq!(again, stopped, "an unchanged resume trains nothing");

    assert_ok(&gradus(&["train", "--resume", out, "--epochs", "200"]));
    let longer = summary(Path::new(out))["epochs"].as_u64().expect("epochs");
    assert!(
        longer > stopped,
        "raising --epochs trains on ({longer} epochs)"
    );
    let config = fs::read_to_string(Path::new(out).join("config.toml")).expect("config");
    assert!(
        config.contains("epochs = 200"),
        "config.toml records the override"
    );
}

#[test]
fn compare_rejects_non_empty_out() {
    let dir = temp();
    fs::write(dir.path().join("summary.csv"), "earlier").expect("write");
    let o = gradus(&[
        "compare",
        "--data",
        "iris",
        "--methods",
        "sgd",
        "--budget",
        "1e",
        "--seeds",
        "1",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_bad_input(&o, "not empty");
    let kept = fs::read_to_string(dir.path().join("summary.csv")).expect("read");
    assert_eq!(kept, "earlier");
}

#[test]
fn bad_run_settings_leave_no_folder() {
    let dir = temp();
    let cases: [(&[&str], &str); 7] = [
        (
            &["--data", "iris", "--batch-size", "1000", "--drop-last"],
            "no batch fits",
        ),
        (
            &["--seed", "18446744073709551615"],
            "at most 9223372036854775807",
        ),
        (&["--validation-fraction", "0.9"], "validation-fraction 0.9"),
        (&["--max-evaluations", "0"], "max-evaluations 0"),
        (&["--threads", "100000"], "threads 100000"),
        (&["--batch-groups", "0"], "batch-groups 0"),
        (&["--batch-groups", "65"], "batch-groups 65"),
    ];
    for (i, (args, needle)) in cases.iter().enumerate() {
        let out = out_arg(dir.path(), &format!("r{i}"));
        let mut full = vec!["train", "--out", out.to_str().unwrap()];
        full.extend_from_slice(args);
        assert_bad_input(&gradus(&full), needle);
        assert!(!out.exists(), "{args:?} left a run folder behind");
    }
}

#[test]
fn deterministic_resume_rejects_changes() {
    let dir = temp();
    let out = out_arg(dir.path(), "run");
    let path = out.to_str().unwrap();
    let first = gradus(&[
        "train",
        "--data",
        "digits",
        "--layers",
        "8",
        "--epochs",
        "1",
        "--deterministic",
        "--out",
        path,
    ]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let cases: [(&[&str], &str); 3] = [
        (&["--batch-groups", "4"], "checkpoint's 2 groups per batch"),
        (&["--batch-size", "64"], "changes --batch-size"),
        (&["--seed", "5"], "changes --seed"),
    ];
    for (change, needle) in cases {
        let mut args = vec!["train", "--resume", path, "--epochs", "2"];
        args.extend_from_slice(change);
        assert_bad_input(&gradus(&args), needle);
    }
    let resumed = gradus(&["train", "--resume", path, "--epochs", "2"]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
}

#[test]
fn deterministic_resume_accepts_relative_data_path() {
    // The run folder's config stores the absolute path; giving the launch command's relative
    // path again on resume names the same data.
    let dir = temp();
    let out = out_arg(dir.path(), "run");
    let path = out.to_str().unwrap();
    let data = "csv:../shared/data/iris/iris.csv";
    let first = [
        "train",
        "--data",
        data,
        "--layers",
        "4",
        "--epochs",
        "1",
        "--deterministic",
    ];
    let mut args = first.to_vec();
    args.extend(["--out", path]);
    assert_ok(&gradus(&args));
    for data in [data, "csv:../shared/data/iris/../iris/iris.csv"] {
        let resumed = gradus(&["train", "--resume", path, "--data", data, "--epochs", "2"]);
        assert_ok(&resumed);
    }
    assert_bad_input(
        &gradus(&[
            "train", "--resume", path, "--data", "digits", "--epochs", "3",
        ]),
        "changes the data",
    );
}

/// Returns 300 samples `(label, x, y)` of three well-separated clusters labelled cat, dog
/// and horse.
fn animal_rows() -> Vec<(&'static str, f64, f64)> {
    let centers = [("cat", 0.0, 0.0), ("dog", 3.0, 0.0), ("horse", 0.0, 3.0)];
    (0..300)
        .map(|i| {
            let (label, cx, cy) = centers[i % 3];
            let jitter = |k: usize| ((i * k) % 100) as f64 / 100.0 - 0.5;
            (label, cx + jitter(37), cy + jitter(71))
        })
        .collect()
}

fn write_animals(path: &Path, rows: &[(&str, f64, f64)]) {
    let mut text = String::from("x,kind,y\n");
    for (label, x, y) in rows {
        text.push_str(&format!("{x},{label},{y}\n"));
    }
    fs::write(path, text).expect("write csv");
}

fn train_animals(dir: &Path) -> PathBuf {
    let csv = dir.join("animals.csv");
    write_animals(&csv, &animal_rows());
    let out = out_arg(dir, "animals");
    assert_ok(&gradus(&[
        "train",
        "--data",
        &format!("csv:{}", csv.display()),
        "--target",
        "kind",
        "--layers",
        "8",
        "--epochs",
        "200",
        "--lr",
        "0.05",
        "--out",
        out.to_str().unwrap(),
    ]));
    out
}

fn evaluate_accuracy(model: &Path, csv: &Path) -> f64 {
    let o = gradus(&[
        "evaluate",
        "--model",
        model.to_str().unwrap(),
        "--data",
        &format!("csv:{}", csv.display()),
        "--target",
        "kind",
    ]);
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("accuracy "))
        .unwrap_or_else(|| panic!("no accuracy in: {stdout}"));
    line.parse().expect("accuracy is a number")
}

#[test]
fn evaluate_fewer_word_classes() {
    let dir = temp();
    let model = train_animals(dir.path());
    let all = dir.path().join("all.csv");
    write_animals(&all, &animal_rows());
    let accuracy = evaluate_accuracy(&model, &all);
    assert!(accuracy >= 0.9, "accuracy on all classes {accuracy}");

    // Without dog, horse sorts second in the file but is the model's third class.
    let mut rows = animal_rows();
    rows.retain(|(label, _, _)| *label != "dog");
    let two = dir.path().join("two.csv");
    write_animals(&two, &rows);
    let accuracy = evaluate_accuracy(&model, &two);
    assert!(accuracy >= 0.9, "accuracy on cat and horse {accuracy}");

    rows.retain(|(label, _, _)| *label == "horse");
    let one = dir.path().join("one.csv");
    write_animals(&one, &rows);
    let accuracy = evaluate_accuracy(&model, &one);
    assert!(accuracy >= 0.9, "accuracy on horse only {accuracy}");
}

#[test]
fn evaluate_fewer_numeric_classes() {
    let dir = temp();
    let model = out_arg(dir.path(), "digits");
    assert_ok(&gradus(&[
        "train",
        "--epochs",
        "1",
        "--out",
        model.to_str().unwrap(),
    ]));
    let csv = dir.path().join("low.csv");
    let mut text = String::new();
    for label in 0..5 {
        text.push_str(&vec!["0"; 64].join(","));
        text.push_str(&format!(",{label}\n"));
    }
    fs::write(&csv, text).expect("write csv");
    let o = gradus(&[
        "evaluate",
        "--model",
        model.to_str().unwrap(),
        "--data",
        &format!("csv:{}", csv.display()),
    ]);
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("samples 5"), "{stdout}");
    assert!(stdout.contains("accuracy"), "{stdout}");
}

#[test]
fn evaluate_unknown_label_is_reported() {
    let dir = temp();
    let model = train_animals(dir.path());
    let mut rows = animal_rows();
    for row in &mut rows {
        if row.0 == "cat" {
            row.0 = "zebra";
        }
    }
    let csv = dir.path().join("zebra.csv");
    write_animals(&csv, &rows);
    let o = gradus(&[
        "evaluate",
        "--model",
        model.to_str().unwrap(),
        "--data",
        &format!("csv:{}", csv.display()),
        "--target",
        "kind",
    ]);
    assert_bad_input(&o, "label \"zebra\"");
    assert!(stderr(&o).contains("cat, dog, horse"), "{}", stderr(&o));
}

fn train_houses(dir: &Path) -> PathBuf {
    let csv = dir.join("houses.csv");
    let mut text = String::from("rooms,area,age,price\n");
    for i in 0..300 {
        let (rooms, area, age) = (1 + i % 5, 50 + (i * 37) % 150, (i * 13) % 40);
        let price = 1000 * area + 20000 * rooms - 500 * age;
        text.push_str(&format!("{rooms},{area},{age},{price}\n"));
    }
    fs::write(&csv, text).expect("write csv");
    let out = out_arg(dir, "houses");
    assert_ok(&gradus(&[
        "train",
        "--data",
        &format!("csv:{}", csv.display()),
        "--task",
        "regress",
        "--layers",
        "16",
        "--epochs",
        "20",
        "--out",
        out.to_str().unwrap(),
    ]));
    out
}

fn predict_text(model: &Path, dir: &Path, name: &str, text: &str) -> Output {
    let input = dir.join(name);
    fs::write(&input, text).expect("write input");
    gradus(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ])
}

#[test]
fn predict_reads_columns_by_name() {
    let dir = temp();
    let model = train_houses(dir.path());
    let original = predict_text(
        &model,
        dir.path(),
        "q.csv",
        "rooms,area,age\n3,120,10\n5,180,2\n",
    );
    assert_ok(&original);
    let expected = String::from_utf8_lossy(&original.stdout).into_owned();
    assert_eq!(expected.lines().count(), 3, "{expected}");

    let reordered = predict_text(
        &model,
        dir.path(),
        "r.csv",
        "area,rooms,age\n120,3,10\n180,5,2\n",
    );
    assert_ok(&reordered);
    assert_eq!(String::from_utf8_lossy(&reordered.stdout), expected);

    // A target and an unknown word column between the features are ignored.
    let text = "area,price,note,rooms,age\n120,1,old,3,10\n180,2,new,5,2\n";
    let extra = predict_text(&model, dir.path(), "e.csv", text);
    assert_ok(&extra);
    assert_eq!(String::from_utf8_lossy(&extra.stdout), expected);

    // Without a header the columns are positional, in training order.
    let plain = predict_text(&model, dir.path(), "p.csv", "3,120,10\n5,180,2\n");
    assert_ok(&plain);
    assert_eq!(String::from_utf8_lossy(&plain.stdout), expected);
}

#[test]
fn predict_missing_column_is_reported() {
    let dir = temp();
    let model = train_houses(dir.path());
    let o = predict_text(&model, dir.path(), "q.csv", "rooms,age\n3,10\n5,2\n");
    assert_bad_input(&o, "feature column \"area\" not found");
}

#[test]
fn empty_parts_have_no_metrics() {
    let dir = temp();
    let out = out_arg(dir.path(), "iris");
    assert_ok(&gradus(&[
        "train",
        "--data",
        "iris",
        "--layers",
        "8",
        "--epochs",
        "2",
        "--validation-fraction",
        "0",
        "--test-fraction",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]));
    let s = summary(&out);
    assert!(
        s["test_accuracy"].is_null(),
        "no test part: {}",
        s["test_accuracy"]
    );
    assert!(s["test_loss"].is_null(), "no test part: {}", s["test_loss"]);
    assert!(s["validation_accuracy"].is_null(), "no validation part");
    assert!(s["train_loss"].as_f64().is_some_and(f64::is_finite));
}
