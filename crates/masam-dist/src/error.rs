//! The crate's error type.

use std::path::PathBuf;

/// Errors of communication and of the launch contract.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A world needs at least one rank.
    #[error("the world size must be at least 1")]
    EmptyWorld,
    /// A rank outside `0..world_size`.
    #[error("rank {rank} is not below the world size {world_size}")]
    BadRank {
        /// The rank given.
        rank: usize,
        /// The world size given.
        world_size: usize,
    },
    /// Another rank left the group or failed, so this collective can never complete.
    #[error("the process group was aborted: {0}")]
    Aborted(String),
    /// The ranks called one collective with buffers of different sizes (or different
    /// collectives at the same time): the ranks' models or data disagree.
    #[error("collective mismatch: {0}")]
    Mismatch(String),
    /// A collective over a dtype the communicator cannot reduce.
    #[error("no collective for dtype {0:?}")]
    UnsupportedDType(candle_core::DType),
    /// A variable of the launch contract is malformed or missing.
    #[error("environment variable {name}: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing the rendezvous file failed.
    #[error("rendezvous file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the rendezvous file failed.
    #[error(transparent)]
    Fs(#[from] masam_fs::FsError),
    /// The rendezvous file is not usable.
    #[error("rendezvous file {}: {reason}", path.display())]
    Rendezvous {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An NCCL call failed.
    #[error("NCCL: {0}")]
    Nccl(String),
}

/// Result with [`DistError`].
pub type Result<T> = std::result::Result<T, DistError>;
