//! Learning-rate schedules: the reference warmup + poly decay, constant, warmup + cosine.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// A learning rate as a function of the 0-based optimiser step `i` (the step about to be taken).
///
/// The authors' reference code (`trainer.py`) builds AdamW with `lr = base/W` and after
/// each step `j` sets the lr of step `j + 1`: `base·(j+1)/W` while `j < W`, then
/// `base·(1 − (j − W)/max_iter)^p`. As a function of the step it is used for:
///
/// | step i | lr |
/// |---|---|
/// | 0 | base / W |
/// | 1 ..= W | base · i / W |
/// | ≥ W + 1 | base · (1 − (i − W − 1)/max_iter)^p |
///
/// With W = 250, p = 7, base = 8e-4: steps 0 and 1 both use 3.2e-6, steps 250 and 251 both
/// use 8e-4. With W = 0 (no warmup) step 0 uses base and step i ≥ 1 uses
/// `base·(1 − (i − 1)/max_iter)^p`. The poly factor is clamped at 0 past `max_iter`.
///
/// ```
/// use masam_train::LrSchedule;
/// let s = LrSchedule::reference(10_000);
/// assert_eq!(s.lr_at(0), 8e-4 / 250.0);
/// assert_eq!(s.lr_at(250), 8e-4);
/// assert_eq!(s.lr_at(251), 8e-4);
/// assert!(s.lr_at(5_000) < 8e-4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The same learning rate at every step.
    Constant {
        /// The learning rate.
        lr: f64,
    },
    /// Linear warmup, then polynomial decay (the reference, with `power` 7).
    WarmupPoly {
        /// Peak learning rate (reference 8e-4).
        base_lr: f64,
        /// Warmup length W in steps (reference 250).
        warmup_iters: u64,
        /// Decay horizon (reference: 400 epochs × iterations per epoch).
        max_iter: u64,
        /// Exponent p of `(1 − t/max_iter)^p` (reference 7).
        power: f64,
    },
    /// Linear warmup as [`LrSchedule::WarmupPoly`], then a half cosine from `base_lr` to `min_lr`
    /// over `max_iter` steps (constant `min_lr` afterwards).
    WarmupCosine {
        /// Peak learning rate.
        base_lr: f64,
        /// Warmup length W in steps.
        warmup_iters: u64,
        /// Cosine length in steps after the warmup.
        max_iter: u64,
        /// Final learning rate.
        min_lr: f64,
    },
}

impl Default for LrSchedule {
    /// The reference schedule with `max_iter` = 400 epochs × 100 iterations; set `max_iter` from
    /// your data loader ([`LrSchedule::reference`]).
    fn default() -> Self {
        Self::reference(400 * 100)
    }
}

impl LrSchedule {
    /// The reference schedule: base 8e-4, warmup 250, poly power 7, decay over `max_iter` steps.
    pub fn reference(max_iter: u64) -> Self {
        Self::WarmupPoly {
            base_lr: 8e-4,
            warmup_iters: 250,
            max_iter,
            power: 7.0,
        }
    }

    /// Checks that rates are finite and ≥ 0, `max_iter` ≥ 1 and the power finite and ≥ 0.
    pub fn validate(&self) -> Result<()> {
        let (lrs, max_iter, power) = match *self {
            Self::Constant { lr } => (vec![lr], None, None),
            Self::WarmupPoly {
                base_lr,
                max_iter,
                power,
                ..
            } => (vec![base_lr], Some(max_iter), Some(power)),
            Self::WarmupCosine {
                base_lr,
                max_iter,
                min_lr,
                ..
            } => {
                if min_lr > base_lr {
                    return Err(TrainError::InvalidConfig(format!(
                        "min_lr {min_lr} > base_lr {base_lr}"
                    )));
                }
                (vec![base_lr, min_lr], Some(max_iter), None)
            }
        };
        if let Some(lr) = lrs.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(TrainError::InvalidConfig(format!(
                "learning rate must be finite and >= 0, got {lr}"
            )));
        }
        if max_iter == Some(0) {
            return Err(TrainError::InvalidConfig("max_iter must be >= 1".into()));
        }
        if let Some(p) = power.filter(|p| !(p.is_finite() && *p >= 0.0)) {
            return Err(TrainError::InvalidConfig(format!(
                "poly power must be finite and >= 0, got {p}"
            )));
        }
        Ok(())
    }

    /// This schedule with its decay ending at the last of `total_steps` steps (steps
    /// `0..total_steps`): `max_iter` becomes `total_steps − warmup − 2` (at least 1), so the
    /// rate of step `total_steps − 1` is the schedule's end value. A constant rate is returned
    /// as it is. This is how a run with a time budget fits its horizon to the number of steps
    /// the budget allows.
    ///
    /// ```
    /// use masam_train::LrSchedule;
    /// let s = LrSchedule::WarmupPoly { base_lr: 1e-3, warmup_iters: 10, max_iter: 1_000, power: 1.0 };
    /// let fitted = s.ending_at(111);
    /// assert_eq!(fitted.lr_at(110), 0.0);
    /// assert!(fitted.lr_at(109) > 0.0);
    /// assert_eq!(fitted.lr_at(5), s.lr_at(5)); // the warmup is unchanged
    /// ```
    pub fn ending_at(&self, total_steps: u64) -> Self {
        let mut fitted = *self;
        if let Self::WarmupPoly {
            warmup_iters,
            max_iter,
            ..
        }
        | Self::WarmupCosine {
            warmup_iters,
            max_iter,
            ..
        } = &mut fitted
        {
            *max_iter = total_steps.saturating_sub(*warmup_iters + 2).max(1);
        }
        fitted
    }

    /// The learning rate of 0-based step `step`.
    pub fn lr_at(&self, step: u64) -> f64 {
        match *self {
            Self::Constant { lr } => lr,
            Self::WarmupPoly {
                base_lr,
                warmup_iters,
                max_iter,
                power,
            } => match warmup(base_lr, warmup_iters, step) {
                Some(lr) => lr,
                None => {
                    let t = decay_step(warmup_iters, step) as f64;
                    base_lr * (1.0 - t / max_iter as f64).max(0.0).powf(power)
                }
            },
            Self::WarmupCosine {
                base_lr,
                warmup_iters,
                max_iter,
                min_lr,
            } => match warmup(base_lr, warmup_iters, step) {
                Some(lr) => lr,
                None => {
                    let t = (decay_step(warmup_iters, step) as f64 / max_iter as f64).min(1.0);
                    min_lr + 0.5 * (base_lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
                }
            },
        }
    }
}

/// The warmup lr at `step`, or `None` once the decay phase has begun (step ≥ W + 1, or W = 0 and
/// step ≥ 1).
fn warmup(base_lr: f64, w: u64, step: u64) -> Option<f64> {
    if w == 0 {
        return (step == 0).then_some(base_lr);
    }
    match step {
        0 => Some(base_lr / w as f64),
        s if s <= w => Some(base_lr * s as f64 / w as f64),
        _ => None,
    }
}

/// Steps into the decay phase: `step − W − 1` (the reference's `shift_iter` of the previous step).
fn decay_step(w: u64, step: u64) -> u64 {
    step.saturating_sub(w + 1)
}
