//! [`DiceCeOutput`]: the loss values of one batch, as returned by both implementations of the
//! Dice+CE loss (composite and [`fused`](super::fused)).

use candle_core::Tensor;

/// The three loss values of one batch. All are scalars (rank 0, f32) and all are differentiable;
/// call `backward()` on `total`.
#[derive(Debug, Clone)]
pub struct DiceCeOutput {
    /// `ce_weight·ce + dice_weight·dice`.
    pub total: Tensor,
    /// Mean cross-entropy over counted pixels.
    pub ce: Tensor,
    /// Soft Dice loss, mean over all classes (background included).
    pub dice: Tensor,
}
