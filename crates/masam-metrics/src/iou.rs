//! Intersection over union (Jaccard index): `|P ∩ G| / |P ∪ G|`; the mIoU is the report's
//! [`mean`](crate::MetricReport::mean) over classes.
//!
//! - **Input**: label maps (z, y, x) for [`IouMetric`], binary masks for [`compute_iou`].
//! - **Classes**: as configured by [`Classes`](crate::Classes) (background out with
//!   [`Classes::foreground`](crate::Classes::foreground)).
//! - **Empty masks**: [`EmptyPolicy::overlap_reference`] by default (both empty → 1, one
//!   empty → 0).
//! - **Units**: unitless in `[0, 1]`; spacing is ignored.

use ndarray::ArrayView3;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::label::Mask;
use crate::overlap::overlap_score;
use crate::policy::EmptyPolicy;
use crate::reduction::{BinaryScore, MetricOf};

/// Configuration of [`IouMetric`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IouConfig {
    /// Scores for empty prediction and/or ground truth.
    pub empty: EmptyPolicy,
}

impl Default for IouConfig {
    fn default() -> Self {
        Self {
            empty: EmptyPolicy::overlap_reference(),
        }
    }
}

/// IoU of two binary masks of equal shape (z, y, x).
///
/// # Errors
/// [`MetricsError::ShapeMismatch`](crate::MetricsError::ShapeMismatch).
///
/// ```
/// use masam_metrics::{compute_iou, EmptyPolicy};
/// use ndarray::Array3;
/// let p = Array3::from_shape_vec((1, 1, 4), vec![true, true, false, false]).unwrap();
/// let g = Array3::from_shape_vec((1, 1, 4), vec![false, true, true, false]).unwrap();
/// assert_eq!(compute_iou(p.view(), g.view(), &EmptyPolicy::overlap_reference()).unwrap(), 1.0 / 3.0);
/// ```
pub fn compute_iou(
    pred: ArrayView3<'_, bool>,
    gt: ArrayView3<'_, bool>,
    empty: &EmptyPolicy,
) -> Result<f64> {
    overlap_score(pred, gt, empty, |p, g, i| i as f64 / (p + g - i) as f64)
}

/// Cumulative IoU over label-map cases, per class (mIoU = `aggregate().mean()`).
pub type IouMetric = MetricOf<IouConfig>;

/// Reported as `iou`.
impl BinaryScore for IouConfig {
    fn metric_name(&self) -> String {
        "iou".into()
    }

    fn score_binary(&self, pred: Mask<'_>, gt: Mask<'_>, _spacing: [f64; 3]) -> Result<f64> {
        compute_iou(pred, gt, &self.empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dice::compute_dice;
    use crate::reduction::{Classes, Metric};
    use ndarray::Array3;

    #[test]
    fn iou_relates_to_dice_and_handles_empty() {
        let p = Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z + y * x) % 3 == 0);
        let g = Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z * y + x) % 2 == 0);
        let r = EmptyPolicy::overlap_reference();
        let j = compute_iou(p.view(), g.view(), &r).unwrap();
        let d = compute_dice(p.view(), g.view(), &r).unwrap();
        assert!((d - 2.0 * j / (1.0 + j)).abs() < 1e-12);
        let e = Array3::from_elem((3, 4, 5), false);
        assert_eq!(compute_iou(e.view(), e.view(), &r).unwrap(), 1.0);
        assert_eq!(compute_iou(p.view(), e.view(), &r).unwrap(), 0.0);
        let mut m = IouMetric::new(IouConfig::default(), Classes::foreground(1)).unwrap();
        let lp = p.mapv(u8::from);
        let lg = g.mapv(u8::from);
        m.update(lp.view(), lg.view(), [1.0; 3]).unwrap();
        assert!((m.aggregate().mean() - j).abs() < 1e-15);
    }
}
