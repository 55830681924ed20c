//! Cross-entropy with an ignore index, as `torch.nn.CrossEntropyLoss(ignore_index=-100)`.

use candle_core::Tensor;

use super::reduce::sum_batch_and_space;
use super::targets::SegTargets;
use crate::error::{Result, TrainError};

/// Mean over counted pixels of `−log p[label]`, differentiable w.r.t. `log_probs`.
///
/// This is `nn.CrossEntropyLoss(ignore_index=…, reduction='mean')`: ignored pixels contribute
/// neither to the sum nor to the count. When every pixel is ignored the mean is 0/0 (NaN in
/// PyTorch); here it is [`TrainError::AllIgnored`].
///
/// # Shapes
/// - `log_probs`: (N, K, S) f32, a log-softmax over K (see [`super::log_softmax()`])
/// - `targets`: built for the same N, K, S
/// - returns: a scalar (rank 0)
pub fn cross_entropy(log_probs: &Tensor, targets: &SegTargets) -> Result<Tensor> {
    if log_probs.dims() != targets.one_hot.dims() {
        return Err(TrainError::ShapeMismatch {
            what: "log_probs vs one-hot targets".into(),
            expected: targets.one_hot.dims().to_vec(),
            got: log_probs.dims().to_vec(),
        });
    }
    if targets.n_valid == 0 {
        return Err(TrainError::AllIgnored {
            ignore_index: targets.ignore_index,
        });
    }
    let picked = (log_probs * &targets.one_hot)?; // ignored pixels have an all-zero one-hot
    let total = sum_batch_and_space(&picked)?.sum_all()?;
    Ok(total.affine(-1.0 / targets.n_valid as f64, 0.0)?)
}
