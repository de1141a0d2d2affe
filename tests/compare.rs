//! End-to-end test of `gradus compare` and `gradus plot` on iris with a small budget.

use serde_json::Value;
use std::collections::HashMap;
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

fn assert_png(path: &Path) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} has no PNG signature",
        path.display()
    );
    assert!(
        bytes.len() > 5_000,
        "{} is only {} bytes",
        path.display(),
        bytes.len()
    );
}

fn summary(dir: &Path) -> Value {
    let text = fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn compare_writes_table_plots_and_report() {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let out = tmp.path().join("cmp");
    let methods = ["sgd", "adam", "lbfgs"];
    let o = gradus(&[
        "compare",
        "--data",
        "iris",
        "--layers",
        "8",
        "--methods",
        "sgd,adam,lbfgs",
        "--budget",
        "15e",
        "--seeds",
        "2",
        "--grid-size",
        "9",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "gradus compare failed: {stderr}");
    assert!(
        stderr.contains("[6/6] lbfgs, seed 1"),
        "progress missing: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    for m in methods {
        assert!(stdout.contains(m), "table has no row for {m}: {stdout}");
    }

    for stem in [
        "loss_vs_time",
        "loss_vs_evaluations",
        "metric_vs_time",
        "descent_paths",
    ] {
        assert_png(&out.join(format!("{stem}.png")));
        let svg = fs::read_to_string(out.join(format!("{stem}.svg"))).expect("SVG file");
        assert!(svg.contains("<svg"), "{stem}.svg is not SVG");
    }
    let html = fs::read_to_string(out.join("report.html")).expect("report.html");
    assert_eq!(html.matches("data:image/png;base64,").count(), 4);
    assert!(
        !html.contains("http://"),
        "report.html links to a web address"
    );
    assert!(
        !html.contains("https://"),
        "report.html links to a web address"
    );

    let text = fs::read_to_string(out.join("summary.csv")).expect("summary.csv");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("header").clone();
    let column: HashMap<&str, usize> = headers.iter().enumerate().map(|(i, h)| (h, i)).collect();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), methods.len());
    for (row, method) in rows.iter().zip(methods) {
        assert_eq!(&row[column["method"]], method);
        let runs: Vec<Value> = (0..2)
            .map(|seed| summary(&out.join("runs").join(format!("{method}-seed{seed}"))))
            .collect();
        let mean = |key: &str| runs.iter().map(|s| s[key].as_f64().unwrap()).sum::<f64>() / 2.0;
        let number = |name: &str| row[column[name]].parse::<f64>().expect(name);
        assert!(
            close(number("train_loss_mean"), mean("train_loss")),
            "{method} train loss"
        );
        assert!(
            close(number("test_mean"), mean("test_accuracy")),
            "{method} accuracy"
        );
        assert!(
            close(number("wall_seconds_mean"), mean("wall_seconds")),
            "{method} wall time"
        );
        assert!(
            close(number("evaluations_mean"), mean("evaluations")),
            "{method} evaluations"
        );
        assert_eq!(&row[column["test_metric"]], "accuracy");
        assert_eq!(runs[0]["epochs"].as_u64(), Some(15), "{method} epochs");
        // The default target is reached by every run.
        assert_eq!(&row[column["seeds_reaching_target"]], "2");
    }

    let plot = tmp.path().join("loss.png");
    let runs = out.join("runs");
    let o = gradus(&[
        "plot",
        runs.join("sgd-seed0").to_str().unwrap(),
        runs.join("adam-seed0").to_str().unwrap(),
        "--out",
        plot.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "gradus plot failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_png(&plot);
}

#[test]
fn compare_rejects_bad_budget() {
    let o = gradus(&[
        "compare",
        "--data",
        "iris",
        "--methods",
        "sgd",
        "--budget",
        "ten",
        "--out",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("budget"));
}
