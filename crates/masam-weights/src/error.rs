//! Errors of masam-weights.

use std::path::PathBuf;

/// Why a weight file was refused. Every variant names the file (or the description given for
/// in-memory bytes) and says what was wrong; none is raised after a large allocation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// The file could not be opened or read (missing, not a regular file, IO error).
    #[error(transparent)]
    Fs(#[from] masam_fs::FsError),
    /// Reading the file's metadata or contents failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`Limits::max_file_bytes`](crate::Limits::max_file_bytes).
    #[error("{path}: the file has {size} bytes, more than the limit of {limit}")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The zip container of a `.pth` file is malformed or uses a feature refused here.
    #[error("{path}: bad zip archive: {reason}")]
    Zip {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
        /// The zip reader's error, when it found the problem.
        #[source]
        source: Option<zip::result::ZipError>,
    },
    /// The pickle program (`data.pkl`) was refused: unsupported or disallowed opcode, a global
    /// outside the allow-list, too deep, over budget, malformed.
    #[error("{path}: pickle refused at byte {offset} (opcode {opcode}): {reason}")]
    Pickle {
        /// The file.
        path: PathBuf,
        /// Offset of the opcode in the pickle stream.
        offset: usize,
        /// The opcode, as `0x..` and its name when known.
        opcode: String,
        /// What was wrong.
        reason: String,
    },
    /// A tensor record does not fit its storage, or its storage does not fit the file.
    #[error("{path}: tensor `{name}`: {reason}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name in the state dict.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// A safetensors file was refused (by the `safetensors` crate's validation or ours).
    #[error("{path}: bad safetensors file: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
        /// The `safetensors` crate's error, when it found the problem.
        #[source]
        source: Option<safetensors::SafeTensorError>,
    },
    /// The file is well formed but reading it would exceed a [`Limits`](crate::Limits) budget.
    #[error("{path}: {what} would need {needed}, more than the limit of {limit}")]
    OverBudget {
        /// The file.
        path: PathBuf,
        /// Which budget.
        what: &'static str,
        /// What the file asked for.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// Building a candle tensor from validated bytes failed.
    #[cfg(feature = "candle")]
    #[error("{path}: tensor `{name}`: {source}")]
    Candle {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// candle's error.
        #[source]
        source: Box<candle_core::Error>,
    },
}

impl WeightsError {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Fs(e) => e.path(),
            Self::Io { path, .. }
            | Self::FileTooLarge { path, .. }
            | Self::Zip { path, .. }
            | Self::Pickle { path, .. }
            | Self::Tensor { path, .. }
            | Self::Safetensors { path, .. }
            | Self::OverBudget { path, .. } => path,
            #[cfg(feature = "candle")]
            Self::Candle { path, .. } => path,
        }
    }
}

/// Result alias of masam-weights.
pub type Result<T> = std::result::Result<T, WeightsError>;
