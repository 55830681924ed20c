//! [`DiceCeLossConfig`]: the weights and constants of the Dice+CE loss, shared by the composite
//! ([`dice_ce`](super::dice_ce)) and the [`fused`](super::fused) implementations.

use serde::{Deserialize, Serialize};

use super::targets::IGNORE_INDEX;
use crate::error::{Result, TrainError};

/// Weights and constants of [`DiceCeLoss`](super::DiceCeLoss). `Default` is the reference (`trainer.py: calc_loss`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiceCeLossConfig {
    /// Weight of the cross-entropy term (reference: `1 − dice_param` = 0.2).
    pub ce_weight: f64,
    /// Weight of the Dice term (reference: `--dice_param 0.8`).
    pub dice_weight: f64,
    /// Smoothing constant added to the Dice numerator and denominator (reference: 1e-5).
    pub smooth: f64,
    /// Label value excluded from both terms (reference: -100).
    pub ignore_index: i64,
}

impl Default for DiceCeLossConfig {
    fn default() -> Self {
        Self {
            ce_weight: 0.2,
            dice_weight: 0.8,
            smooth: 1e-5,
            ignore_index: IGNORE_INDEX,
        }
    }
}

impl DiceCeLossConfig {
    /// Sets the cross-entropy weight.
    pub fn with_ce_weight(mut self, w: f64) -> Self {
        self.ce_weight = w;
        self
    }
    /// Sets the Dice weight.
    pub fn with_dice_weight(mut self, w: f64) -> Self {
        self.dice_weight = w;
        self
    }
    /// Sets the Dice smoothing constant.
    pub fn with_smooth(mut self, s: f64) -> Self {
        self.smooth = s;
        self
    }
    /// Sets the ignored label value.
    pub fn with_ignore_index(mut self, i: i64) -> Self {
        self.ignore_index = i;
        self
    }

    /// Checks that the weights and `smooth` are finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("ce_weight", self.ce_weight),
            ("dice_weight", self.dice_weight),
            ("smooth", self.smooth),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(TrainError::InvalidConfig(format!(
                    "{name} must be finite and >= 0, got {v}"
                )));
            }
        }
        Ok(())
    }
}
