//! Segmentation losses: the reference's `0.2·CE + 0.8·Dice`, built from ops that record a backward.
//!
//! - [`targets`](mod@targets): label map → one-hot targets and the mask of counted pixels;
//! - [`log_softmax`](mod@log_softmax): numerically stable, differentiable log-softmax over the class dimension;
//! - [`cross_entropy`](mod@cross_entropy): mean negative log-likelihood over counted pixels (`ignore_index`);
//! - [`dice`](mod@dice): soft Dice over all classes, background included, summed over the whole batch;
//! - [`dice_ce`](mod@dice_ce): [`DiceCeLoss`], the weighted sum used for MA-SAM fine-tuning;
//! - [`fused`]: the same loss as one CPU op with an analytic gradient (what
//!   [`DiceCeLoss::forward`] runs on the CPU).

pub mod cross_entropy;
pub mod dice;
pub mod dice_ce;
mod dice_ce_config;
mod dice_ce_output;
pub mod fused;
pub mod log_softmax;
pub mod reduce;
pub mod targets;

pub use cross_entropy::cross_entropy;
pub use dice::soft_dice;
pub use dice_ce::{DiceCeLoss, DiceCeLossConfig, DiceCeOutput};
pub use log_softmax::log_softmax;
pub use targets::{SegTargets, IGNORE_INDEX};
