//! Data-parallel training on ranks that run as threads: the run must equal one process's.

use super::checkpoint;
use super::config::RunConfig;
use super::trainer::{train, train_distributed, RunOptions, Silent, Summary};
use crate::dist::{run_group, Collective};
use crate::methods::MethodSpec;
use crate::objective::BatchGroups;
use std::path::Path;

/// Returns the config of a short run on the digits data set with `method`.
fn digits_config(method: &str, layers: &[usize], epochs: usize) -> RunConfig {
    let mut config = RunConfig {
        method: MethodSpec::default_for(method).expect("method is registered"),
        ..RunConfig::default()
    };
    config.model.layers = layers.to_vec();
    config.training.epochs = epochs;
    config.training.threads = 1;
    config
}

/// Training and validation loss of every epoch in a run folder.
fn epoch_losses(dir: &Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let train = record["train_loss"].as_f64().expect("train_loss");
            let validation = record["validation"]["loss"]
                .as_f64()
                .expect("validation loss");
            (train, validation)
        })
        .collect()
}

/// Trains `config` in one process and on `ranks` thread ranks, and checks that the losses of
/// every epoch and the summaries agree bit for bit, with the same final parameters, when
/// one process splits each batch into as many groups as the ranks do. Ranks other than 0 get their
/// own run folder, which must stay unwritten.
fn check_matches_single(config: &RunConfig, ranks: usize) -> (Summary, Summary) {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let single_dir = tmp.path().join("single");
    let options = RunOptions {
        out: single_dir.clone(),
        resume: false,
        stop: None,
    };
    // One process splits each batch as the ranks do.
    let mut one = config.clone();
    one.training.batch_groups = BatchGroups::effective(config.training.batch_groups, ranks);
    let single = train(&one, &options, &mut Silent).expect("single-process run");

    let out = |rank: usize| tmp.path().join(format!("rank{rank}"));
    let summaries = run_group(ranks, |group| {
        let options = RunOptions {
            out: out(group.rank()),
            resume: false,
            stop: None,
        };
        train_distributed(config, &options, &mut Silent, group).expect("data-parallel run")
    });
    for (rank, summary) in summaries.iter().enumerate().skip(1) {
        assert!(summary.is_none(), "rank {rank} returned a summary");
        assert!(
            !out(rank).exists(),
            "rank {rank} wrote {}",
            out(rank).display()
        );
    }
    let distributed = summaries[0].clone().expect("rank 0 returns the summary");

    let (expected, found) = (epoch_losses(&single_dir), epoch_losses(&out(0)));
    assert_eq!(found.len(), expected.len(), "epochs");
    assert_eq!(found, expected, "epoch losses");
    assert_eq!(distributed.test_loss, single.test_loss, "test loss");
    let model = |dir: &Path| std::fs::read(dir.join("model.safetensors")).expect("model");
    assert!(
        model(&out(0)) == model(&single_dir),
        "the final parameters differ"
    );
    // Ranks that split the optimiser step keep each state vector only in their part, so the
    // checkpoint must gather it.
    let state = |dir: &Path| checkpoint::load(dir).expect("checkpoint").method;
    assert!(
        state(&out(0)) == state(&single_dir),
        "the checkpoint's method state differs"
    );
    assert_eq!(distributed.best_epoch, single.best_epoch, "best epoch");
    assert_eq!(distributed.evaluations, single.evaluations, "evaluations");
    assert_eq!(
        distributed.gradient_evaluations, single.gradient_evaluations,
        "gradient evaluations"
    );
    (single, distributed)
}

#[test]
fn adam_on_two_ranks() {
    check_matches_single(&digits_config("adam", &[32], 3), 2);
}

#[test]
fn adam_on_four_ranks_equals_four_groups() {
    let mut config = digits_config("adam", &[32], 2);
    config.training.batch_groups = 4;
    check_matches_single(&config, 4);
}

#[test]
fn adam_with_norm_clipping_on_two_ranks() {
    // Norm clipping needs the whole gradient's norm, so the ranks do not split the step.
    let mut config = digits_config("adam", &[32], 2);
    config.method.set("clip_norm", "0.5").expect("valid limit");
    check_matches_single(&config, 2);
}

#[test]
fn rmsprop_with_weight_decay_on_three_ranks() {
    let mut config = digits_config("rmsprop", &[32], 2);
    config
        .method
        .set("weight_decay", "0.01")
        .expect("valid decay");
    check_matches_single(&config, 3);
}

#[test]
fn adam_with_fewer_parameters_than_a_block() {
    // Iris with one hidden unit has 4 + 1 + 3 + 3 = 11 parameters, fewer than one 64-value
    // block: rank 0 updates all of them and the others none, but all must split alike.
    for ranks in [2, 3] {
        let mut config = digits_config("adam", &[1], 2);
        config.data.source = "iris".into();
        check_matches_single(&config, ranks);
    }
}

#[test]
fn sgd_on_three_ranks_uneven_shards() {
    let mut config = digits_config("sgd", &[32], 3);
    // 50 samples split 16, 17, 17, and a short last batch.
    config.training.batch_size = 50;
    check_matches_single(&config, 3);
}

#[test]
fn hessian_free_on_two_ranks() {
    check_matches_single(&digits_config("hessian-free", &[16], 3), 2);
}

#[test]
fn hessian_free_curvature_subset_on_three_ranks() {
    let mut config = digits_config("hessian-free", &[16], 3);
    config
        .method
        .set("curvature_fraction", "0.3")
        .expect("valid fraction");
    check_matches_single(&config, 3);
}

#[test]
fn lbfgs_on_three_ranks() {
    check_matches_single(&digits_config("lbfgs", &[16], 3), 3);
}

#[test]
fn cma_es_on_two_ranks() {
    check_matches_single(&digits_config("cma-es", &[4], 3), 2);
}

#[test]
fn evaluation_budget_stops_ranks_together() {
    let mut config = digits_config("adam", &[16], 5);
    // Stops inside the second epoch: each epoch costs 3 units for each of the about 1,250
    // training samples.
    config.training.max_evaluations = Some(5_000);
    let (single, distributed) = check_matches_single(&config, 2);
    assert_eq!(single.epochs, 2);
    assert_eq!(distributed.epochs, single.epochs);
}
