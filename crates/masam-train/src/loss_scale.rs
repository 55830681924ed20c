//! Dynamic loss scaling for f16 training (PyTorch's `GradScaler` semantics).

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Settings of a [`LossScaler`]. `Default` is PyTorch's `GradScaler()` (the MA-SAM reference):
/// start at 2¹⁶, double after 2000 steps without overflow, halve on an overflow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LossScaleConfig {
    /// The first scale.
    pub init_scale: f64,
    /// Factor applied after `growth_interval` good steps in a row (> 1).
    pub growth_factor: f64,
    /// Factor applied on an overflow (in (0, 1)).
    pub backoff_factor: f64,
    /// Good steps in a row before the scale grows.
    pub growth_interval: u64,
    /// Below this scale an overflow is no longer believed to be one: the step fails with
    /// [`TrainError::LossScaleCollapsed`] instead of halving the scale forever.
    pub min_scale: f64,
}

impl Default for LossScaleConfig {
    fn default() -> Self {
        Self {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            min_scale: 1.0 / 65536.0,
        }
    }
}

impl LossScaleConfig {
    /// Checks the ranges (finite positive scales, growth > 1, backoff in (0, 1), interval ≥ 1).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| {
            Err(TrainError::InvalidConfig(format!(
                "loss scale: {what} = {v} is out of range"
            )))
        };
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) {
            return bad("init_scale", self.init_scale);
        }
        if !(self.min_scale.is_finite() && self.min_scale > 0.0) {
            return bad("min_scale", self.min_scale);
        }
        if !(self.growth_factor.is_finite() && self.growth_factor > 1.0) {
            return bad("growth_factor", self.growth_factor);
        }
        if !(self.backoff_factor > 0.0 && self.backoff_factor < 1.0) {
            return bad("backoff_factor", self.backoff_factor);
        }
        if self.growth_interval == 0 {
            return bad("growth_interval", 0.0);
        }
        Ok(())
    }
}

/// Where a [`LossScaler`] stands; saved with the training state so that a resumed run scales as
/// the uninterrupted one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaleState {
    /// The current scale.
    pub scale: f64,
    /// Good steps since the last change of scale.
    pub good_steps: u64,
    /// Steps skipped in a row (0 after a good step).
    pub skipped_in_a_row: u64,
    /// Steps skipped in total.
    pub skipped_total: u64,
}

/// What [`LossScaler::update`] decided about a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleUpdate {
    /// The gradients were finite: apply them. The scale may have grown.
    Apply,
    /// The gradients overflowed: skip the optimiser step; the scale was reduced.
    Skip,
}

/// Dynamic loss scaling: the loss is multiplied by a large power of two before the backward
/// pass, so that small f16 gradients do not flush to zero; the gradients are divided by it
/// before the optimiser step. An overflow (an infinite or NaN gradient) skips the step and
/// halves the scale; after `growth_interval` good steps in a row the scale doubles.
///
/// ```
/// use masam_train::{LossScaleConfig, LossScaler, ScaleUpdate};
/// let cfg = LossScaleConfig { growth_interval: 2, ..LossScaleConfig::default() };
/// let mut s = LossScaler::new(cfg).unwrap();
/// assert_eq!(s.scale(), 65536.0);
/// assert_eq!(s.update(false).unwrap(), ScaleUpdate::Skip); // overflow: halve and skip
/// assert_eq!(s.scale(), 32768.0);
/// assert_eq!(s.update(true).unwrap(), ScaleUpdate::Apply);
/// assert_eq!(s.update(true).unwrap(), ScaleUpdate::Apply); // 2 good steps: double
/// assert_eq!(s.scale(), 65536.0);
/// assert_eq!(s.state().skipped_total, 1);
/// ```
#[derive(Debug, Clone)]
pub struct LossScaler {
    cfg: LossScaleConfig,
    state: LossScaleState,
}

impl LossScaler {
    /// A scaler at `cfg.init_scale`.
    pub fn new(cfg: LossScaleConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            state: LossScaleState {
                scale: cfg.init_scale,
                good_steps: 0,
                skipped_in_a_row: 0,
                skipped_total: 0,
            },
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LossScaleConfig {
        &self.cfg
    }

    /// The current scale.
    pub fn scale(&self) -> f64 {
        self.state.scale
    }

    /// The state, for a checkpoint.
    pub fn state(&self) -> LossScaleState {
        self.state
    }

    /// Continues from a saved state.
    ///
    /// # Errors
    /// [`TrainError::BadCheckpoint`] for a scale that is not finite and positive.
    pub fn restore(&mut self, state: LossScaleState) -> Result<()> {
        if !(state.scale.is_finite() && state.scale > 0.0) {
            return Err(TrainError::BadCheckpoint(format!(
                "loss scale {} is not a finite positive number",
                state.scale
            )));
        }
        self.state = state;
        Ok(())
    }

    /// `loss · scale`, the tensor to call `backward` on.
    pub fn scale_loss(&self, loss: &Tensor) -> Result<Tensor> {
        Ok(loss.affine(self.state.scale, 0.0)?)
    }

    /// Divides the gradients of `vars` in `grads` by the scale (exact for the power-of-two scales
    /// of the default configuration).
    pub fn unscale<'a>(
        &self,
        grads: &mut GradStore,
        vars: impl IntoIterator<Item = &'a Var>,
    ) -> Result<()> {
        let inv = 1.0 / self.state.scale;
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), g.affine(inv, 0.0)?);
            }
        }
        Ok(())
    }

    /// Records whether this step's gradients were all finite and says whether to apply them.
    ///
    /// # Errors
    /// [`TrainError::LossScaleCollapsed`] when an overflow would take the scale below
    /// `min_scale`; the state is then left unchanged.
    pub fn update(&mut self, grads_finite: bool) -> Result<ScaleUpdate> {
        let s = &mut self.state;
        if grads_finite {
            s.skipped_in_a_row = 0;
            s.good_steps += 1;
            if s.good_steps >= self.cfg.growth_interval {
                let grown = s.scale * self.cfg.growth_factor;
                if grown.is_finite() {
                    s.scale = grown;
                }
                s.good_steps = 0;
            }
            return Ok(ScaleUpdate::Apply);
        }
        let reduced = s.scale * self.cfg.backoff_factor;
        if reduced < self.cfg.min_scale {
            return Err(TrainError::LossScaleCollapsed {
                scale: s.scale,
                min_scale: self.cfg.min_scale,
                skipped: s.skipped_in_a_row + 1,
            });
        }
        s.scale = reduced;
        s.good_steps = 0;
        s.skipped_in_a_row += 1;
        s.skipped_total += 1;
        Ok(ScaleUpdate::Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn grows_after_the_interval_and_backs_off_on_overflow() -> Result<()> {
        let cfg = LossScaleConfig {
            growth_interval: 3,
            ..LossScaleConfig::default()
        };
        let mut s = LossScaler::new(cfg)?;
        for _ in 0..2 {
            assert_eq!(s.update(true)?, ScaleUpdate::Apply);
        }
        assert_eq!(s.scale(), 65536.0);
        assert_eq!(s.update(false)?, ScaleUpdate::Skip);
        // the overflow reset the count of good steps
        assert_eq!(s.scale(), 32768.0);
        assert_eq!(s.state().good_steps, 0);
        for _ in 0..3 {
            s.update(true)?;
        }
        assert_eq!(s.scale(), 65536.0);
        assert_eq!(s.state().skipped_total, 1);
        assert_eq!(s.state().skipped_in_a_row, 0);
        Ok(())
    }

    #[test]
    fn persistent_overflow_is_an_error_at_the_floor() -> Result<()> {
        let cfg = LossScaleConfig {
            init_scale: 4.0,
            min_scale: 1.0,
            ..LossScaleConfig::default()
        };
        let mut s = LossScaler::new(cfg)?;
        assert_eq!(s.update(false)?, ScaleUpdate::Skip); // 2
        assert_eq!(s.update(false)?, ScaleUpdate::Skip); // 1
        let before = s.state();
        let e = s.update(false).unwrap_err();
        assert!(
            matches!(e, TrainError::LossScaleCollapsed { skipped: 3, .. }),
            "{e}"
        );
        assert_eq!(s.state(), before);
        Ok(())
    }

    #[test]
    fn scales_and_unscales_exactly() -> Result<()> {
        let dev = Device::Cpu;
        let s = LossScaler::new(LossScaleConfig::default())?;
        let w = Var::new(&[1.5f32, -2.0], &dev)?;
        let loss = (w.as_tensor() * 3.0)?.sum_all()?;
        let mut grads = s.scale_loss(&loss)?.backward()?;
        assert_eq!(grads.get(&w).unwrap().to_vec1::<f32>()?, [196608.0; 2]);
        s.unscale(&mut grads, [&w])?;
        assert_eq!(grads.get(&w).unwrap().to_vec1::<f32>()?, [3.0; 2]);
        assert_eq!(grads.get(&w).unwrap().dtype(), DType::F32);
        Ok(())
    }

    #[test]
    fn rejects_bad_settings_and_states() {
        for cfg in [
            LossScaleConfig {
                init_scale: 0.0,
                ..Default::default()
            },
            LossScaleConfig {
                growth_factor: 1.0,
                ..Default::default()
            },
            LossScaleConfig {
                backoff_factor: 1.0,
                ..Default::default()
            },
            LossScaleConfig {
                growth_interval: 0,
                ..Default::default()
            },
            LossScaleConfig {
                min_scale: f64::NAN,
                ..Default::default()
            },
        ] {
            assert!(LossScaler::new(cfg).is_err(), "{cfg:?}");
        }
        let mut s = LossScaler::new(LossScaleConfig::default()).unwrap();
        let bad = LossScaleState {
            scale: f64::INFINITY,
            ..s.state()
        };
        assert!(s.restore(bad).is_err());
        assert_eq!(s.scale(), 65536.0);
    }
}
