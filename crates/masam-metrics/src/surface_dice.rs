//! Normalised surface dice (NSD) at a tolerance in mm, with the semantics of DeepMind's
//! `surface-distance` (`compute_surface_distances` + `compute_surface_dice_at_tolerance`).
//!
//! The surfaces are surfels on the voxel-corner grid with marching-cubes areas (see
//! [`crate::surfel`]); NSD is the surfel area of both surfaces that lies within `tolerance_mm`
//! of the other surface, divided by the total surfel area of both.
//!
//! - **Input**: label maps (z, y, x) for [`SurfaceDiceMetric`], binary masks for
//!   [`compute_surface_dice`]; spacing (z, y, x) in mm.
//! - **Classes**: as configured by [`Classes`](crate::Classes) (background out with
//!   [`Classes::foreground`](crate::Classes::foreground)).
//! - **Empty masks**: [`EmptyPolicy::surface_dice_deepmind`] by default — both empty → NaN (the
//!   library's 0 / 0), exactly one empty → 0.
//! - **Units**: unitless in `[0, 1]`; the tolerance is in mm.

use ndarray::ArrayView3;
use serde::{Deserialize, Serialize};

use crate::error::{check_inputs, MetricsError, Result};
use crate::label::Mask;
use crate::policy::EmptyPolicy;
use crate::reduction::{BinaryScore, MetricOf};
use crate::surfel::compute_surface_distances;

/// Configuration of [`SurfaceDiceMetric`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SurfaceDiceConfig {
    /// Distance (mm) within which a surface element counts as matched; default 1 mm.
    pub tolerance_mm: f64,
    /// Scores for empty prediction and/or ground truth.
    pub empty: EmptyPolicy,
}

impl Default for SurfaceDiceConfig {
    fn default() -> Self {
        Self {
            tolerance_mm: 1.0,
            empty: EmptyPolicy::surface_dice_deepmind(),
        }
    }
}

impl SurfaceDiceConfig {
    /// The same configuration with another tolerance.
    pub fn with_tolerance_mm(mut self, tolerance_mm: f64) -> Self {
        self.tolerance_mm = tolerance_mm;
        self
    }
}

/// NSD of two binary masks at several tolerances (mm), sharing one surfel computation.
///
/// # Errors
/// [`MetricsError::ShapeMismatch`], [`MetricsError::InvalidSpacing`],
/// [`MetricsError::InvalidTolerance`].
pub fn compute_surface_dice_at(
    pred: ArrayView3<'_, bool>,
    gt: ArrayView3<'_, bool>,
    spacing: [f64; 3],
    tolerances_mm: &[f64],
    empty: &EmptyPolicy,
) -> Result<Vec<f64>> {
    check_inputs(pred.shape(), gt.shape(), &spacing)?;
    if let Some(&t) = tolerances_mm.iter().find(|t| !t.is_finite() || **t < 0.0) {
        return Err(MetricsError::InvalidTolerance(t));
    }
    if let Some(v) = empty.resolve_masks(pred, gt) {
        return Ok(vec![v; tolerances_mm.len()]);
    }
    let sd = compute_surface_distances(pred, gt, spacing)?;
    tolerances_mm
        .iter()
        .map(|&t| sd.surface_dice_at(t))
        .collect()
}

/// NSD of two binary masks at `tolerance_mm`.
///
/// # Errors
/// As [`compute_surface_dice_at`].
///
/// ```
/// use masam_metrics::{compute_surface_dice, EmptyPolicy};
/// use ndarray::{s, Array3};
/// let mut p = Array3::from_elem((6, 6, 6), false);
/// p.slice_mut(s![1..4, 1..4, 1..4]).fill(true);
/// let nsd = compute_surface_dice(p.view(), p.view(), [1.0; 3], 0.0, &EmptyPolicy::surface_dice_deepmind());
/// assert_eq!(nsd.unwrap(), 1.0);
/// ```
pub fn compute_surface_dice(
    pred: ArrayView3<'_, bool>,
    gt: ArrayView3<'_, bool>,
    spacing: [f64; 3],
    tolerance_mm: f64,
    empty: &EmptyPolicy,
) -> Result<f64> {
    Ok(compute_surface_dice_at(pred, gt, spacing, &[tolerance_mm], empty)?[0])
}

/// Cumulative NSD over label-map cases, per class.
pub type SurfaceDiceMetric = MetricOf<SurfaceDiceConfig>;

/// Reported as `nsd@<tolerance>mm`; [`MetricsError::InvalidTolerance`] unless the tolerance is
/// finite and non-negative.
impl BinaryScore for SurfaceDiceConfig {
    fn validate(&self) -> Result<()> {
        if !self.tolerance_mm.is_finite() || self.tolerance_mm < 0.0 {
            return Err(MetricsError::InvalidTolerance(self.tolerance_mm));
        }
        Ok(())
    }

    fn metric_name(&self) -> String {
        format!("nsd@{}mm", self.tolerance_mm)
    }

    fn score_binary(&self, pred: Mask<'_>, gt: Mask<'_>, spacing: [f64; 3]) -> Result<f64> {
        compute_surface_dice(pred, gt, spacing, self.tolerance_mm, &self.empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduction::{Classes, Metric};
    use ndarray::{s, Array3};

    #[test]
    fn shifted_cube_tolerance_monotone_and_empty() {
        let mut p = Array3::from_elem((8, 8, 8), false);
        let mut g = p.clone();
        p.slice_mut(s![1..5, 1..5, 1..5]).fill(true);
        g.slice_mut(s![2..6, 1..5, 1..5]).fill(true);
        let e = EmptyPolicy::surface_dice_deepmind();
        let v = compute_surface_dice_at(p.view(), g.view(), [1.0; 3], &[0.0, 0.5, 1.0, 10.0], &e)
            .unwrap();
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "{v:?}");
        assert!(v[0] > 0.0 && v[0] < 1.0);
        assert_eq!(v[3], 1.0);
        let z = Array3::from_elem((8, 8, 8), false);
        assert!(compute_surface_dice(z.view(), z.view(), [1.0; 3], 1.0, &e)
            .unwrap()
            .is_nan());
        assert_eq!(
            compute_surface_dice(p.view(), z.view(), [1.0; 3], 1.0, &e).unwrap(),
            0.0
        );
        assert!(compute_surface_dice(p.view(), g.view(), [1.0; 3], -1.0, &e).is_err());
        let m = SurfaceDiceMetric::new(
            SurfaceDiceConfig::default().with_tolerance_mm(2.0),
            Classes::foreground(1),
        );
        assert_eq!(m.unwrap().aggregate().metric, "nsd@2mm");
    }
}
