//! Errors of masam-adapter.

use std::path::PathBuf;

/// Errors raised while building, loading, saving, training or running MA-SAM; the other
/// crates' errors are boxed. Every variant that
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
        source: Box<masam_volume::VolumeError>,
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
        source: Box<masam_volume::augment::AugmentError>,
    },
    /// Training diverged: a loss or gradient became NaN or infinite (nothing was updated).
    #[error("training diverged at step {step}: {what} is not finite (lower the learning rate, or resume from the last checkpoint)")]
    NonFinite {
        /// The step that failed.
        step: u64,
        /// What was not finite.
        what: String,
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
    Sam(Box<masam_sam::Error>),
    /// From FacT.
    #[error(transparent)]
    Fact(Box<masam_fact::FactError>),
    /// From the 3D adapters and the Conv3D op.
    #[error(transparent)]
    Conv3d(Box<masam_conv3d::Conv3dError>),
    /// From volume IO and preprocessing.
    #[error(transparent)]
    Volume(Box<masam_volume::VolumeError>),
    /// From the metrics.
    #[error(transparent)]
    Metrics(Box<masam_metrics::MetricsError>),
    /// From the loss, the optimiser or a training checkpoint.
    #[error(transparent)]
    Train(Box<masam_train::TrainError>),
    /// From data-parallel communication (another rank failed or left, a collective mismatch).
    #[error(transparent)]
    Dist(Box<masam_dist::DistError>),
    /// A value could not be serialised (configuration into a checkpoint).
    #[error("serialising: {0}")]
    Serialize(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A box prompt that does not fit its volume (inverted, outside, class absent).
    #[error(transparent)]
    Box(#[from] masam_volume::boxes::BoxError),
}

/// Conversions from the workspace crates' errors (boxed, so that [`Error`] stays small).
macro_rules! boxed_from {
    ($($variant:ident: $ty:ty),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_from!(
    Sam: masam_sam::Error,
    Fact: masam_fact::FactError,
    Conv3d: masam_conv3d::Conv3dError,
    Volume: masam_volume::VolumeError,
    Metrics: masam_metrics::MetricsError,
    Train: masam_train::TrainError,
    Dist: masam_dist::DistError,
);

/// Result alias of masam-adapter.
pub type Result<T> = std::result::Result<T, Error>;
