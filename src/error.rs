//! Errors of masam-adapter.

use std::path::PathBuf;

/// Errors raised while building, loading, saving, training or running MA-SAM. Every variant that
/// wraps another crate's error keeps it as its [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An invalid configuration value (the message says which and why).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An input tensor or volume of the wrong shape.
    #[error("{what}: expected {expected}, found {found:?}")]
    Shape {
        /// What was passed.
        what: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape found.
        found: Vec<usize>,
    },
    /// Building the stack centred on one slice of a volume failed.
    #[error("volume {volume}, slice {slice}: {source}")]
    Stack {
        /// Index of the volume in its list.
        volume: usize,
        /// Centre slice of the stack.
        slice: usize,
        /// The cause.
        #[source]
        source: masam_volume::VolumeError,
    },
    /// Augmenting the stack centred on one slice of a volume failed.
    #[error("volume {volume}, slice {slice}: {source}")]
    Augment {
        /// Index of the volume in its list.
        volume: usize,
        /// Centre slice of the stack.
        slice: usize,
        /// The cause.
        #[source]
        source: masam_volume::augment::AugmentError,
    },
    /// A checkpoint file could not be read.
    #[error("checkpoint {path}: {source}")]
    CheckpointRead {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
    /// From SAM (backbone, prompt encoder, decoder, SAM checkpoints).
    #[error(transparent)]
    Sam(#[from] masam_sam::Error),
    /// From FacT.
    #[error(transparent)]
    Fact(#[from] masam_fact::FactError),
    /// From the 3D adapters and the Conv3D op.
    #[error(transparent)]
    Conv3d(#[from] masam_conv3d::Conv3dError),
    /// From volume IO and preprocessing.
    #[error(transparent)]
    Volume(#[from] masam_volume::VolumeError),
    /// From the metrics.
    #[error(transparent)]
    Metrics(#[from] masam_metrics::MetricsError),
    /// From the loss, the optimiser or a training checkpoint.
    #[error(transparent)]
    Train(#[from] masam_train::TrainError),
    /// A value could not be serialised (configuration into a checkpoint).
    #[error("serialising: {0}")]
    Serialize(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of masam-adapter.
pub type Result<T> = std::result::Result<T, Error>;
