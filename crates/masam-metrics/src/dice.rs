//! Dice similarity coefficient (medpy `dc`): `2 |P ∩ G| / (|P| + |G|)`.
//!
//! - **Input**: label maps (z, y, x) for [`DiceMetric`], binary masks for [`compute_dice`]
//!   (use [`class_mask`](crate::label::class_mask) or [`foreground_mask`](crate::label::foreground_mask)).
//! - **Classes**: [`Classes::foreground`](crate::Classes::foreground) (ids `1..=K`, background
//!   out) by default in the reference;
//!   [`Classes::with_background`](crate::Classes::with_background) includes class 0.
//! - **Empty masks**: [`EmptyPolicy::overlap_reference`] by default (both empty → 1, one empty →
//!   0, as the reference's `calculate_metric_percase`); MONAI's `ignore_empty` is
//!   [`EmptyPolicy::all_nan`]-style (NaN, skipped by the nan-mean aggregation).
//! - **Units**: unitless in `[0, 1]`; spacing is ignored.

use ndarray::ArrayView3;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::label::Mask;
use crate::overlap::overlap_score;
use crate::policy::EmptyPolicy;
use crate::reduction::{BinaryScore, MetricOf};

/// Configuration of [`DiceMetric`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiceConfig {
    /// Scores for empty prediction and/or ground truth.
    pub empty: EmptyPolicy,
}

impl Default for DiceConfig {
    fn default() -> Self {
        Self {
            empty: EmptyPolicy::overlap_reference(),
        }
    }
}

/// Dice of two binary masks of equal shape (z, y, x).
///
/// # Errors
/// [`MetricsError::ShapeMismatch`](crate::MetricsError::ShapeMismatch).
///
/// ```
/// use masam_metrics::{compute_dice, EmptyPolicy};
/// use ndarray::Array3;
/// let p = Array3::from_shape_vec((1, 1, 4), vec![true, true, false, false]).unwrap();
/// let g = Array3::from_shape_vec((1, 1, 4), vec![false, true, true, false]).unwrap();
/// let d = compute_dice(p.view(), g.view(), &EmptyPolicy::overlap_reference()).unwrap();
/// assert_eq!(d, 0.5);
/// ```
pub fn compute_dice(
    pred: ArrayView3<'_, bool>,
    gt: ArrayView3<'_, bool>,
    empty: &EmptyPolicy,
) -> Result<f64> {
    overlap_score(pred, gt, empty, |p, g, i| 2.0 * i as f64 / (p + g) as f64)
}

/// Cumulative Dice over label-map cases, per class.
///
/// ```
/// use masam_metrics::{Classes, DiceConfig, DiceMetric, Metric};
/// use ndarray::Array3;
/// let gt = Array3::from_shape_vec((1, 1, 4), vec![0u8, 1, 1, 2]).unwrap();
/// let pred = Array3::from_shape_vec((1, 1, 4), vec![0u8, 1, 2, 2]).unwrap();
/// let mut m = DiceMetric::new(DiceConfig::default(), Classes::foreground(2)).unwrap();
/// let row = m.update(pred.view(), gt.view(), [1.0; 3]).unwrap();
/// assert_eq!(row, vec![2.0 / 3.0, 2.0 / 3.0]);
/// assert!((m.aggregate().mean() - 2.0 / 3.0).abs() < 1e-12);
/// ```
pub type DiceMetric = MetricOf<DiceConfig>;

/// Reported as `dice`.
impl BinaryScore for DiceConfig {
    fn metric_name(&self) -> String {
        "dice".into()
    }

    fn score_binary(&self, pred: Mask<'_>, gt: Mask<'_>, _spacing: [f64; 3]) -> Result<f64> {
        compute_dice(pred, gt, &self.empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::EmptyScore;
    use crate::reduction::{Classes, Metric};
    use ndarray::Array3;

    #[test]
    fn empty_conventions_and_policy() {
        let e = Array3::from_elem((2, 2, 2), false);
        let mut m = e.clone();
        m[[1, 1, 1]] = true;
        let r = EmptyPolicy::overlap_reference();
        assert_eq!(compute_dice(e.view(), e.view(), &r).unwrap(), 1.0);
        assert_eq!(compute_dice(m.view(), e.view(), &r).unwrap(), 0.0);
        assert_eq!(compute_dice(e.view(), m.view(), &r).unwrap(), 0.0);
        assert_eq!(compute_dice(m.view(), m.view(), &r).unwrap(), 1.0);
        let skip = EmptyPolicy {
            both_empty: EmptyScore::Nan,
            gt_empty: EmptyScore::Nan,
            pred_empty: EmptyScore::Value(0.0),
        };
        assert!(compute_dice(e.view(), e.view(), &skip).unwrap().is_nan());
        assert!(compute_dice(m.view(), e.view(), &skip).unwrap().is_nan());
    }

    #[test]
    fn metric_accumulates_and_resets() {
        let gt = Array3::from_shape_vec((1, 2, 2), vec![1u16, 1, 0, 0]).unwrap();
        let pred = Array3::from_shape_vec((1, 2, 2), vec![1u16, 0, 0, 0]).unwrap();
        let mut m = DiceMetric::new(DiceConfig::default(), Classes::foreground(2)).unwrap();
        m.update(pred.view(), gt.view(), [1.0; 3]).unwrap();
        m.update_case("second", gt.view(), gt.view(), [1.0; 3])
            .unwrap();
        let r = m.aggregate();
        assert_eq!(r.cases, vec!["case_0", "second"]);
        // class 1: (2/3 + 1) / 2; class 2 is empty in both cases → 1.
        assert_eq!(r.class_means(), vec![(2.0 / 3.0 + 1.0) / 2.0, 1.0]);
        let wrong = Array3::from_elem((1, 2, 3), 0u16);
        assert!(m.update(pred.view(), wrong.view(), [1.0; 3]).is_err());
        assert_eq!(
            m.aggregate().cases.len(),
            2,
            "a failed update records nothing"
        );
        m.reset();
        assert!(m.aggregate().values.is_empty());
    }
}
