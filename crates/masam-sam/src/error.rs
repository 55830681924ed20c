//! Errors of masam-sam.

use std::path::PathBuf;

/// Errors raised while building SAM or loading its checkpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor the model needs is not in the checkpoint.
    #[error("checkpoint {path}: missing tensor `{key}`")]
    MissingKey {
        /// The checkpoint file (or a description of the source).
        path: PathBuf,
        /// The missing key.
        key: String,
    },
    /// A checkpoint tensor has the wrong shape.
    #[error(
        "checkpoint {path}: tensor `{key}` has shape {found:?}, the model expects {expected:?}"
    )]
    ShapeMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Shape the model expects.
        expected: Vec<usize>,
        /// Shape found in the file.
        found: Vec<usize>,
    },
    /// The checkpoint was made for another backbone than the one requested.
    #[error("checkpoint {path} holds a {found} backbone, but {expected} was requested")]
    BackboneMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// What was requested (e.g. "vit_h (embed dim 1280, 32 blocks)").
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// The file is not a readable checkpoint (not a zip `torch.save` file, corrupt, truncated…).
    #[error("{path}: not a readable checkpoint: {reason}")]
    BadCheckpoint {
        /// The file.
        path: PathBuf,
        /// What went wrong (including the reader's message, if any).
        reason: String,
        /// The reader's error (a `candle_core::Error`, boxed to keep [`Error`] small), when the
        /// file was rejected by candle's reader.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// An invalid configuration value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An input tensor of the wrong shape.
    #[error("{what}: expected shape {expected}, got {found:?}")]
    InputShape {
        /// Which input.
        what: &'static str,
        /// The expected shape, in words (e.g. "(N, 3, 64, 64)").
        expected: String,
        /// The shape received.
        found: Vec<usize>,
    },
    /// An IO error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file atomically failed (see [`masam_fs::FsError`], which names the file and
    /// keeps the encoder's or the OS error as its source).
    #[error(transparent)]
    Fs(#[from] masam_fs::FsError),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of masam-sam.
pub type Result<T> = std::result::Result<T, Error>;
