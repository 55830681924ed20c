//! (Percentile) Hausdorff distance with medpy's semantics (`hd`, `hd95`).
//!
//! The distance sets are medpy's: border voxels (6-connectivity, see [`crate::surface`]) of each
//! mask, each with its Euclidean distance in mm to the nearest border voxel of the other. The
//! score is the `percentile`-th percentile (numpy's linear interpolation) of the **union** of the
//! two directed sets, so `percentile = 95` is medpy's `hd95` and `100` the classic Hausdorff
//! distance (`hd`). This differs from MONAI, which takes the maximum of the two directed
//! percentiles.
//!
//! - **Input**: label maps (z, y, x) for [`HausdorffMetric`], binary masks for
//!   [`compute_hausdorff`]; spacing (z, y, x) in mm.
//! - **Classes**: as configured by [`Classes`] (background out with [`Classes::foreground`]).
//! - **Empty masks** (medpy raises): [`EmptyPolicy::distance_monai`] by default — ground truth
//!   empty → NaN (skipped by the nan-mean), prediction empty with a non-empty ground truth → +∞.
//! - **Units**: mm.

use ndarray::ArrayView3;
use serde::{Deserialize, Serialize};

use crate::error::{check_inputs, MetricsError, Result};
use crate::label::Mask;
use crate::policy::EmptyPolicy;
use crate::reduction::{percentile, BinaryScore, Classes, MetricOf};
use crate::surface::surface_distances;

/// Configuration of [`HausdorffMetric`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HausdorffConfig {
    /// Percentile in `[0, 100]` of the pooled surface distances: 95 (default) or 100 (max).
    pub percentile: f64,
    /// Scores for empty prediction and/or ground truth.
    pub empty: EmptyPolicy,
}

impl Default for HausdorffConfig {
    fn default() -> Self {
        Self {
            percentile: 95.0,
            empty: EmptyPolicy::distance_monai(),
        }
    }
}

impl HausdorffConfig {
    /// The same configuration with another percentile (e.g. 100 for the classic Hausdorff).
    pub fn with_percentile(mut self, percentile: f64) -> Self {
        self.percentile = percentile;
        self
    }
}

/// The `percentile`-th percentile Hausdorff distance (mm) of two binary masks.
///
/// # Errors
/// [`MetricsError::ShapeMismatch`], [`MetricsError::InvalidSpacing`],
/// [`MetricsError::InvalidPercentile`].
pub fn compute_hausdorff(
    pred: ArrayView3<'_, bool>,
    gt: ArrayView3<'_, bool>,
    spacing: [f64; 3],
    percentile_q: f64,
    empty: &EmptyPolicy,
) -> Result<f64> {
    check_inputs(pred.shape(), gt.shape(), &spacing)?;
    if !(0.0..=100.0).contains(&percentile_q) {
        return Err(MetricsError::InvalidPercentile(percentile_q));
    }
    if let Some(v) = empty.resolve_masks(pred, gt) {
        return Ok(v);
    }
    let (mut all, backward) = surface_distances(pred, gt, spacing)?;
    all.extend(backward);
    percentile(&mut all, percentile_q)
}

/// medpy's `hd95(pred, gt, voxelspacing=spacing)` with the default empty policy.
///
/// # Errors
/// As [`compute_hausdorff`].
///
/// ```
/// use masam_metrics::compute_hd95;
/// use ndarray::Array3;
/// let mut p = Array3::from_elem((1, 1, 8), false);
/// let mut g = p.clone();
/// p[[0, 0, 1]] = true;
/// g[[0, 0, 5]] = true;
/// assert_eq!(compute_hd95(p.view(), g.view(), [1.0, 1.0, 0.5]).unwrap(), 2.0);
/// ```
pub fn compute_hd95(
    pred: ArrayView3<'_, bool>,
    gt: ArrayView3<'_, bool>,
    spacing: [f64; 3],
) -> Result<f64> {
    compute_hausdorff(pred, gt, spacing, 95.0, &EmptyPolicy::distance_monai())
}

/// Cumulative percentile Hausdorff distance over label-map cases, per class.
pub type HausdorffMetric = MetricOf<HausdorffConfig>;

/// The HD95 metric: a [`HausdorffMetric`] with the default (95th percentile) configuration.
pub type Hd95Metric = HausdorffMetric;

/// Reported as `hd<percentile>_mm`; [`MetricsError::InvalidPercentile`] unless the percentile
/// is in `[0, 100]`.
impl BinaryScore for HausdorffConfig {
    fn validate(&self) -> Result<()> {
        if !(0.0..=100.0).contains(&self.percentile) {
            return Err(MetricsError::InvalidPercentile(self.percentile));
        }
        Ok(())
    }

    fn metric_name(&self) -> String {
        format!("hd{}_mm", self.percentile)
    }

    fn score_binary(&self, pred: Mask<'_>, gt: Mask<'_>, spacing: [f64; 3]) -> Result<f64> {
        compute_hausdorff(pred, gt, spacing, self.percentile, &self.empty)
    }
}

impl HausdorffMetric {
    /// HD95 with the default configuration.
    ///
    /// # Errors
    /// [`MetricsError::NoClasses`].
    pub fn hd95(classes: Classes) -> Result<Self> {
        Self::new(HausdorffConfig::default(), classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduction::Metric;
    use ndarray::{s, Array3};

    #[test]
    fn two_boxes_classic_hausdorff() {
        // Cubes offset by 2 voxels along z: the classic HD is 2 slices * 2.5 mm.
        let mut p = Array3::from_elem((10, 6, 6), false);
        let mut g = p.clone();
        p.slice_mut(s![1..5, 1..5, 1..5]).fill(true);
        g.slice_mut(s![3..7, 1..5, 1..5]).fill(true);
        let sp = [2.5, 0.7, 0.8];
        let hd = compute_hausdorff(
            p.view(),
            g.view(),
            sp,
            100.0,
            &EmptyPolicy::distance_monai(),
        );
        assert!((hd.unwrap() - 5.0).abs() < 1e-12);
        assert_eq!(compute_hd95(p.view(), p.view(), sp).unwrap(), 0.0);
    }

    #[test]
    fn empty_policy_and_errors() {
        let e = Array3::from_elem((2, 2, 2), false);
        let mut m = e.clone();
        m[[0, 0, 0]] = true;
        assert!(compute_hd95(e.view(), e.view(), [1.0; 3]).unwrap().is_nan());
        assert!(compute_hd95(m.view(), e.view(), [1.0; 3]).unwrap().is_nan());
        assert_eq!(
            compute_hd95(e.view(), m.view(), [1.0; 3]).unwrap(),
            f64::INFINITY
        );
        assert!(matches!(
            compute_hd95(m.view(), m.view(), [1.0, 0.0, 1.0]),
            Err(MetricsError::InvalidSpacing { .. })
        ));
        assert!(matches!(
            HausdorffMetric::new(
                HausdorffConfig::default().with_percentile(150.0),
                Classes::foreground(1)
            ),
            Err(MetricsError::InvalidPercentile(_))
        ));
        let m = HausdorffMetric::hd95(Classes::foreground(1)).unwrap();
        assert_eq!(m.aggregate().metric, "hd95_mm");
    }
}
