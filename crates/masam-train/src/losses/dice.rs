//! Soft Dice loss over all classes, as the reference's `utils.DiceLoss` with `softmax=True`.

use candle_core::Tensor;

use super::reduce::sum_batch_and_space;
use super::targets::SegTargets;
use crate::error::{Result, TrainError};

/// Mean over the K classes (background included) of `1 − (2I + s)/(Z + Y + s)`, differentiable.
///
/// Per class c, with p = softmax probabilities, t = one-hot target and m = counted-pixel mask,
/// summed over the whole batch and every pixel: `I = Σ p·t·m`, `Y = Σ t²·m`, `Z = Σ p²·m`.
/// Ignored pixels are masked out of Z too; the reference fixture (`loss.safetensors`) confirms
/// this: leaving their p² in Z gives 0.69788 instead of the reference's 0.69561.
///
/// # Shapes
/// - `probs`: (N, K, S) f32, a softmax over K
/// - `targets`: built for the same N, K, S
/// - returns: a scalar (rank 0)
pub fn soft_dice(probs: &Tensor, targets: &SegTargets, smooth: f64) -> Result<Tensor> {
    if probs.dims() != targets.one_hot.dims() {
        return Err(TrainError::ShapeMismatch {
            what: "probs vs one-hot targets".into(),
            expected: targets.one_hot.dims().to_vec(),
            got: probs.dims().to_vec(),
        });
    }
    let k = probs.dim(1)?;
    let masked = probs.broadcast_mul(&targets.mask)?; // p·m
    let inter = sum_batch_and_space(&(&masked * &targets.one_hot)?)?; // Σ p·t·m   (K)
    let z = sum_batch_and_space(&(&masked * probs)?)?; //                 Σ p²·m    (K)
    let y = sum_batch_and_space(&targets.one_hot)?; //                     Σ t²·m = Σ t (t is masked, 0/1)
    let num = inter.affine(2.0, smooth)?;
    let den = (z + y)?.affine(1.0, smooth)?;
    let per_class = (num / den)?.affine(-1.0, 1.0)?;
    Ok(per_class.sum_all()?.affine(1.0 / k as f64, 0.0)?)
}
