//! Average surface distance with medpy's semantics (`asd`, `assd`).
//!
//! - `asd(pred, gt)` = mean over the border voxels of `pred` of the distance (mm) to the nearest
//!   border voxel of `gt` (directed: prediction → ground truth, exactly medpy's
//!   `asd(result, reference)`).
//! - `assd` = the mean over the **pooled** distances of both directions (medpy ≥ 0.5 `assd`, and
//!   MONAI's `symmetric=True`). medpy 0.4 instead averaged the two directed means; that variant is
//!   [`AsdMode::MeanOfDirected`].
//!
//! - **Input**: label maps (z, y, x) for [`SurfaceDistanceMetric`], binary masks for
//!   [`compute_average_surface_distance`]; spacing (z, y, x) in mm.
//! - **Classes**: as configured by [`Classes`](crate::Classes) (background out with
//!   [`Classes::foreground`](crate::Classes::foreground)).
//! - **Empty masks** (medpy raises): [`EmptyPolicy::distance_monai`] by default — ground truth
//!   empty → NaN, prediction empty with a non-empty ground truth → +∞.
//! - **Units**: mm.

use ndarray::ArrayView3;
use serde::{Deserialize, Serialize};

use crate::error::{check_inputs, Result};
use crate::label::Mask;
use crate::policy::EmptyPolicy;
use crate::reduction::{BinaryScore, MetricOf};
use crate::surface::surface_distances;

/// Which average surface distance to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AsdMode {
    /// Mean distance from the prediction's border to the ground truth's (medpy `asd`). Default.
    #[default]
    Directed,
    /// Mean over both directed distance sets pooled (medpy ≥ 0.5 `assd`, MONAI symmetric ASD).
    Symmetric,
    /// Mean of the two directed means (medpy 0.4 `assd`).
    MeanOfDirected,
}

/// Configuration of [`SurfaceDistanceMetric`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SurfaceDistanceConfig {
    /// Directed ASD (default) or one of the symmetric variants.
    pub mode: AsdMode,
    /// Scores for empty prediction and/or ground truth.
    pub empty: EmptyPolicy,
}

impl Default for SurfaceDistanceConfig {
    fn default() -> Self {
        Self {
            mode: AsdMode::Directed,
            empty: EmptyPolicy::distance_monai(),
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Average surface distance (mm) of two binary masks: medpy `asd(pred, gt)` or a symmetric
/// variant, see [`AsdMode`].
///
/// # Errors
/// [`MetricsError::ShapeMismatch`](crate::MetricsError::ShapeMismatch),
/// [`MetricsError::InvalidSpacing`](crate::MetricsError::InvalidSpacing).
///
/// ```
/// use masam_metrics::{compute_average_surface_distance, AsdMode, EmptyPolicy};
/// use ndarray::Array3;
/// let mut p = Array3::from_elem((1, 1, 8), false);
/// let mut g = p.clone();
/// p[[0, 0, 1]] = true;
/// p[[0, 0, 2]] = true;
/// g[[0, 0, 5]] = true;
/// let e = EmptyPolicy::distance_monai();
/// let asd = |mode| compute_average_surface_distance(p.view(), g.view(), [1.0; 3], mode, &e).unwrap();
/// // pred → gt: (4 + 3) / 2 voxels of 1 mm; gt → pred: 3.
/// assert_eq!(asd(AsdMode::Directed), 3.5);
/// assert_eq!(asd(AsdMode::Symmetric), 10.0 / 3.0);
/// assert_eq!(asd(AsdMode::MeanOfDirected), 3.25);
/// ```
pub fn compute_average_surface_distance(
    pred: ArrayView3<'_, bool>,
    gt: ArrayView3<'_, bool>,
    spacing: [f64; 3],
    mode: AsdMode,
    empty: &EmptyPolicy,
) -> Result<f64> {
    check_inputs(pred.shape(), gt.shape(), &spacing)?;
    if let Some(v) = empty.resolve_masks(pred, gt) {
        return Ok(v);
    }
    let (forward, backward) = surface_distances(pred, gt, spacing)?;
    Ok(match mode {
        AsdMode::Directed => mean(&forward),
        AsdMode::Symmetric => {
            (forward.iter().sum::<f64>() + backward.iter().sum::<f64>())
                / (forward.len() + backward.len()) as f64
        }
        AsdMode::MeanOfDirected => (mean(&forward) + mean(&backward)) / 2.0,
    })
}

/// medpy's `asd(pred, gt, voxelspacing=spacing)` with the default empty policy.
///
/// # Errors
/// As [`compute_average_surface_distance`].
pub fn compute_asd(pred: Mask<'_>, gt: Mask<'_>, spacing: [f64; 3]) -> Result<f64> {
    asd_with_default_policy(pred, gt, spacing, AsdMode::Directed)
}

/// medpy's (≥ 0.5) `assd(pred, gt, voxelspacing=spacing)` with the default empty policy.
///
/// # Errors
/// As [`compute_average_surface_distance`].
pub fn compute_assd(pred: Mask<'_>, gt: Mask<'_>, spacing: [f64; 3]) -> Result<f64> {
    asd_with_default_policy(pred, gt, spacing, AsdMode::Symmetric)
}

/// [`compute_average_surface_distance`] with [`EmptyPolicy::distance_monai`].
fn asd_with_default_policy(
    pred: Mask<'_>,
    gt: Mask<'_>,
    spacing: [f64; 3],
    mode: AsdMode,
) -> Result<f64> {
    compute_average_surface_distance(pred, gt, spacing, mode, &EmptyPolicy::distance_monai())
}

/// Cumulative ASD (or ASSD) over label-map cases, per class.
pub type SurfaceDistanceMetric = MetricOf<SurfaceDistanceConfig>;

/// Reported as `asd_mm`, `assd_mm` or `assd_mean_of_directed_mm`.
impl BinaryScore for SurfaceDistanceConfig {
    fn metric_name(&self) -> String {
        match self.mode {
            AsdMode::Directed => "asd_mm",
            AsdMode::Symmetric => "assd_mm",
            AsdMode::MeanOfDirected => "assd_mean_of_directed_mm",
        }
        .into()
    }

    fn score_binary(&self, pred: Mask<'_>, gt: Mask<'_>, spacing: [f64; 3]) -> Result<f64> {
        compute_average_surface_distance(pred, gt, spacing, self.mode, &self.empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduction::{Classes, Metric};
    use ndarray::Array3;

    #[test]
    fn empty_cases_follow_policy() {
        let e = Array3::from_elem((2, 3, 2), false);
        let mut m = e.clone();
        m[[1, 1, 1]] = true;
        assert!(compute_asd(e.view(), e.view(), [1.0; 3]).unwrap().is_nan());
        assert!(compute_asd(m.view(), e.view(), [1.0; 3]).unwrap().is_nan());
        assert_eq!(
            compute_assd(e.view(), m.view(), [1.0; 3]).unwrap(),
            f64::INFINITY
        );
        assert_eq!(compute_assd(m.view(), m.view(), [1.0; 3]).unwrap(), 0.0);
        let mm = SurfaceDistanceMetric::new(
            SurfaceDistanceConfig {
                mode: AsdMode::Symmetric,
                ..Default::default()
            },
            Classes::foreground(1),
        )
        .unwrap();
        assert_eq!(mm.aggregate().metric, "assd_mm");
    }
}
