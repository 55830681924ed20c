//! What a metric scores when the prediction and/or the ground truth is empty.

use serde::{Deserialize, Serialize};

use crate::label::Mask;

/// A score used in place of the formula when it is undefined.
///
/// Serialises as `"nan"`, `"pos_inf"` or `{"value": x}` so that configs survive JSON/TOML.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptyScore {
    /// Not a number: the case is skipped by the nan-mean aggregation (MONAI's `ignore_empty`).
    Nan,
    /// Positive infinity (a distance to a surface that does not exist).
    PosInf,
    /// A fixed value.
    Value(f64),
}

impl EmptyScore {
    /// The score as a float.
    pub fn get(self) -> f64 {
        match self {
            EmptyScore::Nan => f64::NAN,
            EmptyScore::PosInf => f64::INFINITY,
            EmptyScore::Value(v) => v,
        }
    }
}

/// Scores for the three empty situations of a binary prediction / ground-truth pair.
///
/// Every metric documents its default; all can be overridden, e.g. MONAI's "skip cases whose
/// ground truth is empty" is `EmptyPolicy { both_empty: EmptyScore::Nan, gt_empty: EmptyScore::Nan, .. }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmptyPolicy {
    /// Prediction and ground truth both empty.
    pub both_empty: EmptyScore,
    /// Ground truth empty, prediction not.
    pub gt_empty: EmptyScore,
    /// Prediction empty, ground truth not.
    pub pred_empty: EmptyScore,
}

impl EmptyPolicy {
    /// The overlap convention of the reference evaluation (`calculate_metric_percase`):
    /// both empty → 1, exactly one empty → 0. Default of Dice and IoU.
    pub const fn overlap_reference() -> Self {
        Self {
            both_empty: EmptyScore::Value(1.0),
            gt_empty: EmptyScore::Value(0.0),
            pred_empty: EmptyScore::Value(0.0),
        }
    }

    /// MONAI's distance convention: ground truth empty → NaN (skipped), prediction empty while
    /// the ground truth is not → +∞. Default of HD95 and ASD.
    pub const fn distance_monai() -> Self {
        Self {
            both_empty: EmptyScore::Nan,
            gt_empty: EmptyScore::Nan,
            pred_empty: EmptyScore::PosInf,
        }
    }

    /// DeepMind `surface-distance`'s surface dice: both empty → NaN (0/0), one empty → 0.
    /// Default of NSD.
    pub const fn surface_dice_deepmind() -> Self {
        Self {
            both_empty: EmptyScore::Nan,
            gt_empty: EmptyScore::Value(0.0),
            pred_empty: EmptyScore::Value(0.0),
        }
    }

    /// NaN for every empty situation (every such case is skipped by the nan-mean).
    pub const fn all_nan() -> Self {
        Self {
            both_empty: EmptyScore::Nan,
            gt_empty: EmptyScore::Nan,
            pred_empty: EmptyScore::Nan,
        }
    }

    /// The policy's score when one of the masks is empty, `None` when both are non-empty.
    pub fn resolve(&self, pred_empty: bool, gt_empty: bool) -> Option<f64> {
        match (pred_empty, gt_empty) {
            (true, true) => Some(self.both_empty.get()),
            (false, true) => Some(self.gt_empty.get()),
            (true, false) => Some(self.pred_empty.get()),
            (false, false) => None,
        }
    }

    /// [`resolve`](Self::resolve) for two binary masks (empty = no voxel set).
    pub(crate) fn resolve_masks(&self, pred: Mask<'_>, gt: Mask<'_>) -> Option<f64> {
        self.resolve(!pred.iter().any(|&b| b), !gt.iter().any(|&b| b))
    }
}
