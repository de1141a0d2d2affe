//! Detection of MPI launchers from the environment variables they set for each process.

/// How this process was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// Not by an MPI launcher.
    Single,
    /// By an MPI launcher (mpirun, mpiexec or srun).
    Mpi {
        /// The environment variable that gave it away.
        variable: &'static str,
        /// Number of ranks, when the launcher sets it.
        size: Option<usize>,
        /// This process's rank, when the launcher sets it.
        rank: Option<usize>,
        /// Ranks on this host, when the launcher sets it.
        local_size: Option<usize>,
    },
}

impl Launch {
    /// Whether the launcher started more than one rank, as far as the environment shows.
    pub fn is_multi_rank(&self) -> bool {
        match self {
            Launch::Single => false,
            Launch::Mpi { size, rank, .. } => {
                size.is_some_and(|s| s > 1) || rank.is_some_and(|r| r > 0)
            }
        }
    }
}

/// Reads the launch from this process's environment.
pub fn detect_launch() -> Launch {
    detect_from(|name| std::env::var(name).ok())
}

/// Size and rank variables of the launchers: Open MPI's mpirun, the PMI interface of MPICH's
/// Hydra and Slurm's srun, and PMIx (Open MPI 5, srun --mpi=pmix), which sets no size.
const LAUNCHERS: [(&str, Option<&str>); 3] = [
    ("OMPI_COMM_WORLD_RANK", Some("OMPI_COMM_WORLD_SIZE")),
    ("PMI_RANK", Some("PMI_SIZE")),
    ("PMIX_RANK", None),
];

/// Ranks per host: Open MPI's and MPICH's variables.
const LOCAL_SIZES: [&str; 2] = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"];

fn detect_from(get: impl Fn(&str) -> Option<String>) -> Launch {
    let number = |name: &str| get(name).and_then(|v| v.trim().parse::<usize>().ok());
    for (rank_variable, size_variable) in LAUNCHERS {
        if get(rank_variable).is_none() {
            continue;
        }
        return Launch::Mpi {
            variable: rank_variable,
            size: size_variable.and_then(number),
            rank: number(rank_variable),
            local_size: LOCAL_SIZES.iter().find_map(|&name| number(name)),
        };
    }
    Launch::Single
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(pairs: &[(&str, &str)]) -> Launch {
        detect_from(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn plain_process_is_single() {
        assert_eq!(launch(&[("HOME", "/root")]), Launch::Single);
        assert!(!launch(&[]).is_multi_rank());
    }

    #[test]
    fn open_mpi_variables_give_size_and_rank() {
        let found = launch(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ]);
        assert_eq!(
            found,
            Launch::Mpi {
                variable: "OMPI_COMM_WORLD_RANK",
                size: Some(4),
                rank: Some(1),
                local_size: Some(2),
            }
        );
        assert!(found.is_multi_rank());
    }

    #[test]
    fn one_rank_launch_is_not_multi_rank() {
        let found = launch(&[("PMI_RANK", "0"), ("PMI_SIZE", "1")]);
        assert!(matches!(found, Launch::Mpi { size: Some(1), .. }));
        assert!(!found.is_multi_rank());
    }

    #[test]
    fn pmix_rank_without_size() {
        let root = launch(&[("PMIX_RANK", "0")]);
        assert!(matches!(
            root,
            Launch::Mpi {
                size: None,
                rank: Some(0),
                ..
            }
        ));
        assert!(!root.is_multi_rank());
        assert!(launch(&[("PMIX_RANK", "3")]).is_multi_rank());
    }
}
