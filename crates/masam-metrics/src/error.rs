//! The crate's error type. Every variant carries the values that explain it.

/// Result alias used throughout `masam-metrics`.
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

/// Everything that can go wrong while scoring segmentations or writing a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Prediction and ground truth do not have the same shape.
    #[error("shape mismatch: prediction {pred:?} vs ground truth {gt:?}")]
    ShapeMismatch {
        /// Shape of the prediction, (z, y, x).
        pred: Vec<usize>,
        /// Shape of the ground truth, (z, y, x).
        gt: Vec<usize>,
    },
    /// A voxel spacing is zero, negative, NaN or infinite.
    #[error("invalid spacing {spacing:?} mm: every entry must be finite and > 0")]
    InvalidSpacing {
        /// The spacing that was given, in array-axis order.
        spacing: Vec<f64>,
    },
    /// A spacing whose length differs from the number of array axes.
    #[error("spacing has {len} entries for a {ndim}-D array")]
    SpacingLength {
        /// Number of array axes.
        ndim: usize,
        /// Number of spacing entries given.
        len: usize,
    },
    /// A percentile outside `[0, 100]` (or NaN).
    #[error("invalid percentile {0}: must lie in [0, 100]")]
    InvalidPercentile(f64),
    /// A surface-dice tolerance that is negative or not finite.
    #[error("invalid tolerance {0} mm: must be finite and >= 0")]
    InvalidTolerance(f64),
    /// Class names whose count does not match the number of evaluated classes.
    #[error("{names} class name(s) given for {classes} evaluated class(es)")]
    ClassNames {
        /// Number of names given.
        names: usize,
        /// Number of classes the metric evaluates.
        classes: usize,
    },
    /// A metric configured to evaluate no class at all.
    #[error("no class to evaluate: num_classes is 0 and background is excluded")]
    NoClasses,
    /// Writing a report failed (create, write, sync or rename); names the file and keeps the
    /// OS error as its source.
    #[error(transparent)]
    Fs(#[from] masam_fs::FsError),
    /// Serialising a report to JSON failed.
    #[error("JSON serialisation failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// Checks that prediction and ground truth shapes agree.
pub(crate) fn check_shapes(pred: &[usize], gt: &[usize]) -> Result<()> {
    if pred != gt {
        return Err(MetricsError::ShapeMismatch {
            pred: pred.to_vec(),
            gt: gt.to_vec(),
        });
    }
    Ok(())
}

/// Checks that prediction and ground truth shapes agree, then the spacing (as [`check_spacing`]).
pub(crate) fn check_inputs(pred: &[usize], gt: &[usize], spacing: &[f64]) -> Result<()> {
    check_shapes(pred, gt)?;
    check_spacing(spacing)
}

/// Checks that every spacing entry is finite and strictly positive.
pub(crate) fn check_spacing(spacing: &[f64]) -> Result<()> {
    if spacing.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(MetricsError::InvalidSpacing {
            spacing: spacing.to_vec(),
        });
    }
    Ok(())
}
