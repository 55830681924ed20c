//! Voxel counts shared by the overlap metrics (Dice, IoU).

use ndarray::{ArrayView3, Zip};

use crate::error::{check_shapes, Result};
use crate::label::Mask;
use crate::policy::EmptyPolicy;

/// `(|pred|, |gt|, |pred ∩ gt|)` of two binary masks.
pub(crate) fn counts(
    pred: ArrayView3<'_, bool>,
    gt: ArrayView3<'_, bool>,
) -> Result<(u64, u64, u64)> {
    check_shapes(pred.shape(), gt.shape())?;
    let c = Zip::from(&pred).and(&gt).par_fold(
        || (0u64, 0u64, 0u64),
        |(p, g, i), &a, &b| (p + u64::from(a), g + u64::from(b), i + u64::from(a && b)),
        |x, y| (x.0 + y.0, x.1 + y.1, x.2 + y.2),
    );
    Ok(c)
}

/// `score(|pred|, |gt|, |pred ∩ gt|)`, or the `empty` policy's score when a mask is empty.
pub(crate) fn overlap_score(
    pred: Mask<'_>,
    gt: Mask<'_>,
    empty: &EmptyPolicy,
    score: impl FnOnce(u64, u64, u64) -> f64,
) -> Result<f64> {
    let (p, g, i) = counts(pred, gt)?;
    Ok(empty
        .resolve(p == 0, g == 0)
        .unwrap_or_else(|| score(p, g, i)))
}
