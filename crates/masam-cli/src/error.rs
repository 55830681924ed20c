//! The CLI's error type: every variant says what went wrong and what to do about it.

use std::path::PathBuf;

/// Result alias of masam-cli.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// Everything the `masam` subcommands can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A path given on the command line does not exist.
    #[error("{what} `{path}` does not exist{hint}")]
    NotFound {
        /// What the path was meant to be (e.g. "input volume").
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// A suggestion, starting with "; " (or empty).
        hint: String,
    },
    /// A folder holds no file of the expected kind.
    #[error("no {what} in `{dir}`{hint}")]
    NoInputs {
        /// What was looked for.
        what: &'static str,
        /// The folder.
        dir: PathBuf,
        /// A suggestion, starting with "; " (or empty).
        hint: String,
    },
    /// Predictions without a same-named ground truth file.
    #[error(
        "{} prediction(s) have no ground truth of the same file name in `{gt_dir}`: {}; \
         files are matched by name (`case1.nii.gz` ↔ `case1.nii.gz`, `.nii` and `.nii.gz` \
         are interchangeable)",
        names.len(), names.join(", ")
    )]
    MissingGroundTruth {
        /// Case names (file names without `.nii[.gz]`).
        names: Vec<String>,
        /// The ground-truth folder.
        gt_dir: PathBuf,
    },
    /// Ground-truth files without a same-named prediction.
    #[error(
        "{} ground truth file(s) have no prediction of the same name in `{pred_dir}`: {}; \
         predict them first (`masam predict`), or evaluate a ground-truth folder holding only \
         the predicted cases",
        names.len(), names.join(", ")
    )]
    MissingPrediction {
        /// Case names.
        names: Vec<String>,
        /// The prediction folder.
        pred_dir: PathBuf,
    },
    /// A prediction and its ground truth are on different grids.
    #[error(
        "case `{case}`: prediction shape {pred:?} differs from ground truth shape {gt:?} \
         (Z, Y, X); predictions must be on the ground truth's grid (`masam predict` writes \
         them on the input image's grid)"
    )]
    ShapeMismatch {
        /// Case name.
        case: String,
        /// Prediction shape (Z, Y, X).
        pred: [usize; 3],
        /// Ground-truth shape (Z, Y, X).
        gt: [usize; 3],
    },
    /// A label map holds values that are not labels `0..=max_label`.
    #[error(
        "{what} `{file}`: values that are not labels 0..={max_label}: {found}; label maps must \
         hold whole numbers from 0 (background) to the number of classes (--classes, or the \
         task's)"
    )]
    InvalidLabels {
        /// The file.
        file: PathBuf,
        /// "prediction" or "ground truth".
        what: &'static str,
        /// The largest label allowed.
        max_label: u16,
        /// The offending values and their voxel counts.
        found: crate::label_check::BadLabels,
    },
    /// A prediction and its ground truth have the same shape but different affines.
    #[error(
        "case `{case}`: the prediction's affine differs from the ground truth's by up to \
         {max_abs_diff:.4} mm (tolerance {tolerance} mm): prediction {pred:?}, ground truth \
         {gt:?}; a mirrored or shifted prediction would be scored against the wrong voxels. \
         Predict on the ground truth's grid, or pass --accept-geometry-mismatch to score voxel \
         by voxel anyway (on the ground truth's spacing)"
    )]
    GeometryMismatch {
        /// Case name.
        case: String,
        /// Largest absolute difference of the two affines' entries (mm).
        max_abs_diff: f64,
        /// The tolerance (mm).
        tolerance: f64,
        /// The prediction's voxel-to-world affine.
        pred: Box<masam_volume::Affine>,
        /// The ground truth's.
        gt: Box<masam_volume::Affine>,
    },
    /// Two files of one folder name the same case (`c1.nii` and `c1.nii.gz`).
    #[error(
        "{} files in `{dir}` name the same case `{case}`: {}; keep one of them",
        files.len(),
        files.iter().map(|f| format!("`{}`", f.display())).collect::<Vec<_>>().join(", ")
    )]
    DuplicateCase {
        /// The folder.
        dir: PathBuf,
        /// The case name (file name without `.nii[.gz]`).
        case: String,
        /// The files.
        files: Vec<PathBuf>,
    },
    /// Some items of a folder batch failed; the others were processed and their outputs written.
    #[error(
        "{} of {total} {what} failed (the others were written):\n{}",
        failures.len(),
        failures.iter().map(|f| format!("  {}: {}", f.item.display(), f.chain())).collect::<Vec<_>>().join("\n")
    )]
    BatchFailed {
        /// What the items are ("volumes", "cases").
        what: &'static str,
        /// Items in the batch.
        total: usize,
        /// Every failure, in the order met.
        failures: Vec<BatchFailure>,
    },
    /// Flags that contradict each other or are incomplete.
    #[error("{0}")]
    Usage(String),
    /// A box prompt that does not fit its input (inverted, outside the volume, class absent,
    /// unparsable).
    #[error("{input}: {source}")]
    Box {
        /// The input volume (or the box file) concerned.
        input: PathBuf,
        /// What is wrong with the box.
        source: masam_volume::boxes::BoxError,
    },
    /// From the model, training or prediction.
    #[error(transparent)]
    Model(#[from] masam_adapter::Error),
    /// From the run: its configuration, data, run folder and figures.
    #[error(transparent)]
    App(#[from] masam_app::AppError),
    /// From reading or writing volumes.
    #[error(transparent)]
    Volume(#[from] masam_volume::VolumeError),
    /// From the metrics.
    #[error(transparent)]
    Metrics(#[from] masam_metrics::MetricsError),
    /// From SAM checkpoint handling.
    #[error(transparent)]
    Sam(#[from] masam_sam::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// `NotFound` without a hint.
    pub fn not_found(what: &'static str, path: impl Into<PathBuf>) -> Self {
        Self::NotFound {
            what,
            path: path.into(),
            hint: String::new(),
        }
    }

    /// `NotFound` with a hint.
    pub fn not_found_hint(
        what: &'static str,
        path: impl Into<PathBuf>,
        hint: impl AsRef<str>,
    ) -> Self {
        Self::NotFound {
            what,
            path: path.into(),
            hint: format!("; {}", hint.as_ref()),
        }
    }

    /// An IO error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// One failed item of a folder batch.
#[derive(Debug)]
pub struct BatchFailure {
    /// The file (or case) that failed.
    pub item: PathBuf,
    /// Why.
    pub error: Box<CliError>,
}

impl BatchFailure {
    /// A failure of `item`.
    pub fn new(item: impl Into<PathBuf>, error: CliError) -> Self {
        Self {
            item: item.into(),
            error: Box::new(error),
        }
    }

    /// The error and its causes on one line (`error: cause: cause`).
    pub fn chain(&self) -> String {
        let mut text = self.error.to_string();
        let mut source = std::error::Error::source(&*self.error);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}
