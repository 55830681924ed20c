//! The crate's error type.

use std::path::PathBuf;

use crate::projection::Projection;

/// Everything that can go wrong when building, loading or saving FacT parameters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FactError {
    /// A configuration value is out of range.
    #[error("invalid FacT config: {0}")]
    InvalidConfig(String),
    /// A block index past the model's depth.
    #[error("block {block} out of range: the model has {depth} blocks")]
    BlockOutOfRange {
        /// The requested block.
        block: usize,
        /// Number of blocks.
        depth: usize,
    },
    /// A projection that the configuration does not adapt.
    #[error("projection {0:?} is not adapted by this FacT configuration")]
    NotAdapted(Projection),
    /// A tensor with an unexpected shape.
    #[error("{what}: expected shape {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// Which tensor.
        what: String,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A checkpoint lacks a tensor this model needs.
    #[error("checkpoint has no tensor `{0}`")]
    MissingTensor(String),
    /// Column ranges of a hook overlap or do not fit the layer.
    #[error("invalid column ranges: {0}")]
    Columns(String),
    /// A [`crate::backend::ProjectionMap`] template is malformed.
    #[error("invalid projection map: {0}")]
    Mapping(String),
    /// Adapted (block, projection) pairs that a [`crate::backend::FactBackend`] never served:
    /// the model did not ask for a tensor that the map selects for them.
    #[error(
        "FacT increments never served (does the ProjectionMap match the model's tensor names?): {}",
        .0.join(", ")
    )]
    Unserved(Vec<String>),
    /// A gradient check's loss is not a single number.
    #[error("the loss must have exactly one element, got shape {0:?}")]
    NotScalar(Vec<usize>),
    /// An unreadable or unwritable file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file could not be written atomically.
    #[error(transparent)]
    Fs(#[from] masam_fs::FsError),
    /// A checkpoint file was refused by the weight-file reader (it names the file and the
    /// problem).
    #[error(transparent)]
    Weights(#[from] masam_weights::WeightsError),
    /// A candle error (tensor op, or building a tensor from a checkpoint's bytes).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`FactError`].
pub type Result<T> = std::result::Result<T, FactError>;
