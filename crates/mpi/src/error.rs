//! The crate's error type.

/// What can stop data-parallel training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ranks do not hold the same parameters: the first rank (lowest number)
    /// whose list differs from rank 0's, at the first position where it differs.
    #[error(
        "the ranks' parameters differ: rank {rank} has {found} at position {index}, rank 0 has {expected}"
    )]
    ParamMismatch {
        /// The first rank whose parameters differ from rank 0's.
        rank: usize,
        /// The position (in store order) of the first difference.
        index: usize,
        /// Rank 0's parameter there: `'name' [shape]`, or `nothing`.
        expected: String,
        /// That rank's parameter there.
        found: String,
    },
    /// A [`ShardedOptimizer`](crate::ShardedOptimizer) cannot take this optimiser
    /// or store, or the ranks' parts of its state do not fit together.
    #[error("sharded optimiser: {0}")]
    Sharding(String),
    /// A step was refused on every rank because a rank's shard of the gradient holds
    /// a NaN or an infinity: the lowest such rank, and where.
    #[error("non-finite gradient on rank {rank}: {what}; the step was refused on every rank")]
    NonFiniteGradient {
        /// The lowest rank whose shard holds one.
        rank: usize,
        /// The parameter, element and value.
        what: String,
    },
    /// An optimiser, accumulation or micro-batch error.
    #[error(transparent)]
    Optim(#[from] descent_optim::Error),
    /// A DP-SGD noise error (an invalid standard deviation).
    #[error(transparent)]
    Backprop(#[from] descent_backprop::Error),
    /// Writing or reading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] descent_nn::CheckpointError),
    /// A checkpoint's files (its `LATEST` pointer or `progress.txt`) could not be
    /// written or read.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint's `progress.txt` is not what it should be.
    #[error("checkpoint {path}: {reason}")]
    Progress {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}
