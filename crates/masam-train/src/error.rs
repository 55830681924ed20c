//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in masam-train.
///
/// Bad input (shapes, labels, configs, checkpoint files) is reported here instead of panicking.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A tensor operation failed inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file could not be written atomically (create, write, sync, rename); names the file and
    /// keeps the underlying error as its source.
    #[error(transparent)]
    Fs(#[from] masam_fs::FsError),
    /// A file could not be read.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A safetensors buffer could not be encoded or decoded.
    #[error("safetensors error: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// A JSON blob could not be encoded or decoded.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// A tensor did not have the expected shape.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// Which tensor.
        what: String,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// A tensor had an unsupported data type.
    #[error("unsupported dtype for {what}: {dtype:?}")]
    UnsupportedDType {
        /// Which tensor.
        what: String,
        /// The dtype that was given.
        dtype: candle_core::DType,
    },
    /// Some labels are neither a class index in `0..num_classes` nor the ignore index.
    #[error(
        "{count} label(s) outside 0..{num_classes} and not equal to ignore_index {ignore_index}"
    )]
    LabelOutOfRange {
        /// How many pixels carry an invalid label.
        count: u64,
        /// Number of classes K (logits channels).
        num_classes: usize,
        /// The ignore index in use.
        ignore_index: i64,
    },
    /// Every pixel of the batch is ignored, so the mean cross-entropy is undefined (0/0).
    #[error("every label is ignore_index {ignore_index}: the loss is undefined")]
    AllIgnored {
        /// The ignore index in use.
        ignore_index: i64,
    },
    /// A CPU-only path got a tensor stored on another device.
    #[error("{what} must be on the CPU, found {device:?}")]
    NotOnCpu {
        /// Which tensor.
        what: &'static str,
        /// Where it is.
        device: candle_core::DeviceLocation,
    },
    /// A configuration value is out of range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The same parameter name (or the same variable) was registered twice.
    #[error("duplicate parameter {0:?}")]
    DuplicateParameter(String),
    /// A state entry names a parameter that the optimiser does not know.
    #[error("unknown parameter {0:?} in optimiser state")]
    UnknownParameter(String),
    /// A required entry is missing from a state dict or checkpoint.
    #[error("missing entry {0:?}")]
    MissingEntry(String),
    /// A checkpoint file is malformed (wrong format tag, bad metadata, ...).
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(String),
    /// Gradients stayed infinite or NaN while the f16 loss scale was halved down to its floor:
    /// the run diverged (an overflow would have cleared long before).
    #[error(
        "gradients are still not finite at loss scale {scale:e} (floor {min_scale:e}) after \
         {skipped} skipped step(s) in a row: training diverged"
    )]
    LossScaleCollapsed {
        /// The scale reached.
        scale: f64,
        /// The configured floor.
        min_scale: f64,
        /// Consecutive skipped steps.
        skipped: u64,
    },
}

/// `Result` with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    /// An [`TrainError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
