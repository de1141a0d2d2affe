//! `gradus train` under an MPI launcher: one data-parallel rank per process.

use anyhow::{bail, Result};
use gradus::dist::Launch;
use gradus::train::{RunConfig, RunOptions};

/// Build command for a binary with MPI support, for error messages and docs.
const BUILD_WITH_MPI: &str = "cargo build --release --features mpi";

/// Whether this process should train as a rank of an MPI job. Fails when an MPI launcher
/// started several ranks but this binary cannot join them.
pub fn is_launched(launch: &Launch) -> Result<bool> {
    match launch {
        Launch::Single => Ok(false),
        Launch::Mpi { .. } if cfg!(feature = "mpi") => Ok(true),
        Launch::Mpi { variable, size, .. } if launch.is_multi_rank() => {
            let ranks = size.map_or_else(|| "several".to_string(), |s| s.to_string());
            bail!(
                "an MPI launcher started {ranks} ranks ({variable} is set), but this gradus was \
                 built without the `mpi` feature; rebuild with `{BUILD_WITH_MPI}` (needs an \
                 MPI library such as Debian's libopenmpi-dev, and libclang-dev), or run one \
                 process without mpirun"
            )
        }
        // One rank without MPI support: it trains alone, as without the launcher.
        Launch::Mpi { .. } => Ok(false),
    }
}

/// Fails when a command other than `gradus train` runs under an MPI launcher with several
/// ranks, because each rank would repeat the whole command and write the same files.
pub fn reject_multi_rank(command: &str) -> Result<()> {
    let launch = gradus::dist::detect_launch();
    if launch.is_multi_rank() {
        bail!(
            "gradus {command} runs as one process; only `gradus train` runs data-parallel \
             under mpirun or srun. Start it without the MPI launcher"
        );
    }
    Ok(())
}

/// Returns whether this process is a rank other than 0 of an MPI launch, whose logs stay
/// quiet.
pub fn is_secondary_rank() -> bool {
    matches!(gradus::dist::detect_launch(), Launch::Mpi { rank: Some(r), .. } if r > 0)
}

#[cfg(not(feature = "mpi"))]
pub fn train(_config: &RunConfig, _options: &RunOptions, _launch: &Launch) -> Result<()> {
    bail!("this gradus was built without the `mpi` feature; rebuild with `{BUILD_WITH_MPI}`")
}

/// Trains as one rank of the MPI job. Rank 0 draws the progress bar and prints the summary;
/// the other ranks print nothing unless they fail.
#[cfg(feature = "mpi")]
pub fn train(config: &RunConfig, options: &RunOptions, launch: &Launch) -> Result<()> {
    use super::progress::Progress;
    use anyhow::Context;
    use gradus::dist::{Collective, Mpi};
    use gradus::train::{train_distributed, Silent};
    use std::time::Duration;

    let timeout = Duration::from_secs_f64(config.training.rank_timeout_seconds);
    let group = Mpi::init(timeout).context("failed to initialise MPI")?;
    let pool = super::worker_pool(threads_per_rank(config, launch))?;
    if group.is_root() {
        let mut progress = Progress::new();
        let result = pool.install(|| train_distributed(config, options, &mut progress, &group));
        progress.finish();
        if let Some(summary) = result? {
            let ranks = group.size();
            let groups = summary.batch_groups;
            let through = group.transports();
            match summary.matching_batch_groups {
                Some(g) => println!(
                    "data-parallel over {ranks} ranks through {through}, each batch in {groups} \
                     groups (one process with --batch-groups {g} gives the same results)"
                ),
                None => println!(
                    "data-parallel over {ranks} ranks through {through}, each batch in {groups} \
                     groups (no one-process run gives the same results; see \
                     docs/distributed.md)"
                ),
            }
            super::train::print_summary(&summary, &options.out);
        }
    } else {
        let rank = group.rank();
        pool.install(|| train_distributed(config, options, &mut Silent, &group))
            .with_context(|| format!("rank {rank}"))?;
    }
    Ok(())
}

/// Worker threads of this rank: `--threads` when set, otherwise the cores of this host
/// divided among the ranks that the launcher placed on it.
#[cfg(feature = "mpi")]
fn threads_per_rank(config: &RunConfig, launch: &Launch) -> usize {
    let local_ranks = match launch {
        Launch::Mpi {
            local_size: Some(n),
            ..
        } => *n,
        _ => 1,
    };
    match config.training.threads {
        0 => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / local_ranks.max(1)).max(1)
        }
        n => n,
    }
}
