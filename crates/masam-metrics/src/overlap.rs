//! Voxel counts shared by the overlap metrics (Dice, IoU).

use ndarray::{ArrayView3, Zip};

use crate::error::{check_shapes, Result};

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
