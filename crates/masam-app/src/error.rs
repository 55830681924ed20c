//! Errors of the application layer.

use std::path::PathBuf;

/// Errors of a run: its configuration, its data, the model and the files it writes. Every
/// variant that wraps another error keeps it as its [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// An invalid setting (the message says which and why).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A configuration file that is not valid TOML for a run.
    #[error("{path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's error (names the key).
        #[source]
        source: toml::de::Error,
    },
    /// A configuration that cannot be written as TOML.
    #[error("writing the configuration: {0}")]
    TomlWrite(#[from] toml::ser::Error),
    /// A JSON file that does not parse.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// An IO error on a file or folder.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Training diverged (a NaN or infinite loss or gradient); nothing was saved as the result.
    #[error("{source}; {}", match checkpoint {
        Some((path, step)) => format!("the last good state is {} (step {step}): resume from it with a lower learning rate", path.display()),
        None => "no checkpoint was written before it".to_string(),
    })]
    Diverged {
        /// The training error.
        #[source]
        source: Box<masam_adapter::Error>,
        /// The last training checkpoint written and its step.
        checkpoint: Option<(PathBuf, u64)>,
    },
    /// A file could not be written (atomically: the target is left as it was).
    #[error(transparent)]
    Fs(#[from] masam_fs::FsError),
    /// A dataset folder without the files its layout needs.
    #[error("{path}: {reason}")]
    Dataset {
        /// The folder.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A volume and its label map on different grids.
    #[error("{image} has shape {image_shape:?} but its label {label} has {label_shape:?}")]
    GridMismatch {
        /// The image file.
        image: PathBuf,
        /// Its shape (Z, Y, X).
        image_shape: Vec<usize>,
        /// The label file.
        label: PathBuf,
        /// Its shape (Z, Y, X).
        label_shape: Vec<usize>,
    },
    /// From the model, training, inference or checkpoints (boxed: the library's error is
    /// large).
    #[error(transparent)]
    Model(Box<masam_adapter::Error>),
    /// From volume IO, preprocessing, dataset layouts and the phantom.
    #[error(transparent)]
    Volume(#[from] masam_adapter::volume::VolumeError),
    /// From the synthetic phantom's settings.
    #[error(transparent)]
    Phantom(#[from] masam_adapter::volume::phantom::PhantomError),
    /// From the augmentation recipe's settings.
    #[error(transparent)]
    Augment(#[from] masam_adapter::volume::augment::AugmentError),
    /// From the metrics and their reports.
    #[error(transparent)]
    Metrics(#[from] masam_adapter::metrics::MetricsError),
    /// From a SAM checkpoint.
    #[error(transparent)]
    Sam(#[from] masam_adapter::sam::Error),
    /// From the figures.
    #[error("rendering: {0}")]
    Render(#[from] crate::render::RenderError),
}

impl From<masam_adapter::Error> for AppError {
    fn from(e: masam_adapter::Error) -> Self {
        AppError::Model(Box::new(e))
    }
}

impl From<masam_adapter::candle::Error> for AppError {
    fn from(e: masam_adapter::candle::Error) -> Self {
        AppError::Model(Box::new(e.into()))
    }
}

/// Result alias of masam-app.
pub type Result<T> = std::result::Result<T, AppError>;

/// An [`AppError::Io`] naming `path`.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AppError {
    let path = path.into();
    move |source| AppError::Io { path, source }
}
