//! Errors of masam-adapter.

use std::path::PathBuf;

/// Errors raised while building, loading, saving or running MA-SAM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An invalid configuration value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A checkpoint does not fit the model.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What does not fit (names the key and shapes).
        reason: String,
    },
    /// An IO error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// From SAM.
    #[error(transparent)]
    Sam(#[from] masam_sam::Error),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of masam-adapter.
pub type Result<T> = std::result::Result<T, Error>;
