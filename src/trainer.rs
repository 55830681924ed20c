//! Fine-tuning MA-SAM: AdamW + warmup/poly schedule + Dice+CE, gradient accumulation, resumable
//! checkpoints.

use std::collections::BTreeMap;
use std::path::Path;

use masam_sam::Prompt;
use masam_train::{
    AdamW, AdamWConfig, DiceCeLoss, DiceCeLossConfig, GradAccumulator, LossScaleConfig, LossScaler,
    LrSchedule, Precision, ScaleUpdate, TrainingState,
};
use serde::{Deserialize, Serialize};

use crate::data::Batch;
use crate::model::MaSam;
use crate::{Error, Result};

/// Hyper-parameters of a fine-tuning run. `Default` is the reference recipe (AdamW with weight
/// decay 0.1, batch 3 × 8 accumulated, warmup + poly schedule, 0.2 CE + 0.8 Dice) except for
/// `steps`, which depends on the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerConfig {
    /// Optimiser steps.
    pub steps: u64,
    /// Stacks (volumes of D slices) per micro-batch.
    pub batch: usize,
    /// Micro-batches accumulated per optimiser step (effective batch = batch × accumulation).
    pub accumulation: usize,
    /// AdamW settings (its `lr` is overwritten by the schedule at every step).
    pub optimizer: AdamWConfig,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Loss weights.
    pub loss: DiceCeLossConfig,
    /// Run seed (data order, augmentation, fresh weights).
    pub seed: u64,
    /// Numeric precision of the forward and backward passes (the model must compute in it:
    /// [`MaSam::with_precision`]). Parameters, gradients given to the optimiser and its state
    /// stay f32. A configuration without it reads as f32.
    #[serde(default)]
    pub precision: Precision,
    /// Dynamic loss scaling, used with [`Precision::F16`] only.
    #[serde(default)]
    pub loss_scale: LossScaleConfig,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch: 3,
            accumulation: 8,
            optimizer: AdamWConfig::default().with_weight_decay(0.1),
            schedule: LrSchedule::reference(400 * 1000),
            loss: DiceCeLossConfig::default(),
            seed: 1234,
            precision: Precision::F32,
            loss_scale: LossScaleConfig::default(),
        }
    }
}

/// What one optimiser step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Step number (0-based) just taken.
    pub step: u64,
    /// Mean total loss over the micro-batches.
    pub loss: f32,
    /// Mean cross-entropy.
    pub ce: f32,
    /// Mean Dice loss.
    pub dice: f32,
    /// Learning rate used.
    pub lr: f64,
}

impl std::fmt::Display for StepStats {
    /// `step    25  lr 1.20e-3  loss 0.5123  (ce 0.4011, dice 0.5401)`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {:5}  lr {:.2e}  loss {:.4}  (ce {:.4}, dice {:.4})",
            self.step, self.lr, self.loss, self.ce, self.dice
        )
    }
}

/// Trains a [`MaSam`]'s trainable variables.
///
/// ```
/// use masam_adapter::candle::{DType, Device, Tensor};
/// use masam_adapter::{Batch, LrSchedule, MaSam, MaSamConfig, Trainer, TrainerConfig};
/// # fn main() -> masam_adapter::Result<()> {
/// let model = MaSam::random(&MaSamConfig::tiny(), 0, &Device::Cpu)?;
/// let cfg = TrainerConfig { steps: 2, batch: 1, accumulation: 1,
///     schedule: LrSchedule::Constant { lr: 1e-3 }, ..TrainerConfig::default() };
/// let mut trainer = Trainer::new(&model, cfg)?;
/// let batch = Batch::new(
///     Tensor::rand(0f32, 1., (1, 5, 3, 64, 64), &Device::Cpu)?,
///     Tensor::zeros((5, 64, 64), DType::I64, &Device::Cpu)?,
/// );
/// let s = trainer.step(&[batch])?;
/// assert_eq!(s.step, 0);
/// assert!(s.loss.is_finite());
/// # Ok(()) }
/// ```
pub struct Trainer<'m> {
    model: &'m MaSam,
    opt: AdamW,
    loss: DiceCeLoss,
    cfg: TrainerConfig,
    step: u64,
    scaler: Option<LossScaler>,
    last_skipped: bool,
}

impl<'m> Trainer<'m> {
    /// A trainer over every trainable variable of `model` (one parameter group, decay on all, as
    /// the reference).
    pub fn new(model: &'m MaSam, cfg: TrainerConfig) -> Result<Self> {
        if model.is_inference() {
            return Err(Error::Config(
                "an inference model (MaSam::to_inference) has no trainable parameters; train \
                 the model it was made from"
                    .into(),
            ));
        }
        cfg.schedule.validate()?;
        if model.precision() != cfg.precision {
            return Err(Error::Config(format!(
                "the trainer is configured for {} but the model computes in {}: build the model \
                 with MaSam::with_precision(Precision::{:?})",
                cfg.precision,
                model.precision(),
                cfg.precision
            )));
        }
        let scaler = if cfg.precision.needs_loss_scaling() {
            Some(LossScaler::new(cfg.loss_scale)?)
        } else {
            None
        };
        if cfg.batch == 0 || cfg.accumulation == 0 {
            return Err(Error::Config(
                "batch and accumulation must be at least 1".into(),
            ));
        }
        let vars = model.trainable_vars().into_iter().collect();
        let opt = AdamW::from_map(vars, cfg.optimizer)?;
        let loss = DiceCeLoss::new(cfg.loss)?;
        Ok(Self {
            model,
            opt,
            loss,
            cfg,
            step: 0,
            scaler,
            last_skipped: false,
        })
    }

    /// The current f16 loss scale (`None` in f32 and bf16, which need none).
    pub fn loss_scale(&self) -> Option<f64> {
        self.scaler.as_ref().map(|s| s.scale())
    }

    /// True when the last [`Trainer::step`] was skipped because of a gradient overflow (f16).
    pub fn last_step_skipped(&self) -> bool {
        self.last_skipped
    }

    /// Steps skipped so far because of gradient overflows (f16; counted across resumes).
    pub fn skipped_steps(&self) -> u64 {
        self.scaler.as_ref().map_or(0, |s| s.state().skipped_total)
    }

    /// The next step number.
    pub fn current_step(&self) -> u64 {
        self.step
    }

    /// The configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.cfg
    }

    /// One optimiser step over `micro` micro-batches (gradients averaged), dropout on.
    ///
    /// With [`Precision::F16`] the loss is multiplied by the loss scale before the backward pass
    /// and the gradients divided by it; a gradient overflow (an infinite or NaN gradient) is
    /// then not an error: the optimiser step is skipped (no parameter changes), the scale is
    /// halved, the step counter moves on (the schedule and the data go on, as PyTorch's
    /// `GradScaler`), and [`Trainer::last_step_skipped`] says so.
    ///
    /// # Errors
    /// [`Error::NonFinite`] when the loss (computed in f32) is NaN or infinite, or, in f32 and
    /// bf16, when a gradient is; then no parameter and no optimiser state has changed, and the
    /// step counter has not moved. In f16, also [`Error::NonFinite`] when an overflow would
    /// take the loss scale below its floor (gradients that stay non-finite: divergence).
    pub fn step(&mut self, micro: &[Batch]) -> Result<StepStats> {
        if micro.is_empty() {
            return Err(Error::Config(
                "a step needs at least one micro-batch".into(),
            ));
        }
        let lr = self.cfg.schedule.lr_at(self.step);
        self.opt.set_lr(lr);
        let vars: Vec<_> = self.opt.named_vars().map(|(_, v)| v.clone()).collect();
        let mut acc = GradAccumulator::new(vars.iter());
        let (mut tl, mut tce, mut td) = (0f32, 0f32, 0f32);
        let dev = self.model.device();
        for b in micro {
            let images = b.images.to_device(dev)?;
            let labels = b.labels.to_device(dev)?;
            let prompt = match &b.boxes {
                Some(t) => MaSam::boxes_prompt(&t.to_device(dev)?)?,
                None => Prompt::None,
            };
            let out = self.model.forward(&images, &prompt, crate::Mode::Train)?;
            let l = self.loss.forward(&out.masks, &labels)?;
            let total = l.total.to_scalar::<f32>()?;
            if !total.is_finite() {
                // nothing is updated: the parameters stay those of the last good step
                return Err(Error::NonFinite {
                    step: self.step,
                    what: format!("loss {total}"),
                });
            }
            tl += total;
            tce += l.ce.to_scalar::<f32>()?;
            td += l.dice.to_scalar::<f32>()?;
            let objective = match &self.scaler {
                Some(s) => s.scale_loss(&l.total)?,
                None => l.total,
            };
            acc.accumulate(objective.backward()?)?;
        }
        let mut grads = acc.finish()?;
        // an overflow in the backward must not reach the weights: one reduction per gradient,
        // one host read for all of them; the culprit is looked up only when the sum is not finite
        let mut sums = Vec::new();
        for (_, var) in self.opt.named_vars() {
            if let Some(g) = grads.get(var.as_tensor()) {
                sums.push(g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F32)?);
            }
        }
        let n = micro.len() as f32;
        let stats = StepStats {
            step: self.step,
            loss: tl / n,
            ce: tce / n,
            dice: td / n,
            lr,
        };
        if !sums.is_empty() {
            let all = candle_core::Tensor::stack(&sums, 0)?.to_vec1::<f32>()?;
            let finite = all.iter().all(|s| s.is_finite());
            if let Some(scaler) = &mut self.scaler {
                // f16: an overflow skips the step and lowers the scale; gradients that stay
                // non-finite down to the scale's floor are a divergence
                let decision = match scaler.update(finite) {
                    Ok(d) => d,
                    Err(masam_train::TrainError::LossScaleCollapsed { scale, skipped, .. }) => {
                        return Err(Error::NonFinite {
                            step: self.step,
                            what: format!(
                                "the gradient at loss scale {scale:e}, after {skipped} \
                                 overflow(s) in a row,"
                            ),
                        })
                    }
                    Err(e) => return Err(e.into()),
                };
                if decision == ScaleUpdate::Skip {
                    self.last_skipped = true;
                    self.step += 1;
                    return Ok(stats);
                }
            }
            if let Some(i) = all.iter().position(|s| !s.is_finite()) {
                let name = self
                    .opt
                    .named_vars()
                    .filter(|(_, v)| grads.get(v.as_tensor()).is_some())
                    .nth(i)
                    .map_or_else(String::new, |(n, _)| n.to_string());
                return Err(Error::NonFinite {
                    step: self.step,
                    what: format!("gradient of `{name}`"),
                });
            }
        }
        if let Some(scaler) = &self.scaler {
            scaler.unscale(&mut grads, vars.iter())?;
        }
        self.opt.step(&grads)?;
        self.last_skipped = false;
        self.step += 1;
        Ok(stats)
    }

    /// Saves parameters, optimiser state, step and configuration atomically (temp file + rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let config = serde_json::to_value(&self.cfg).map_err(|e| Error::Serialize(Box::new(e)))?;
        let mut state = TrainingState::capture(&self.opt, self.step, BTreeMap::new(), config)?;
        state.loss_scale = self.scaler.as_ref().map(|s| s.state());
        Ok(state.save(path)?)
    }

    /// Restores a state written by [`Trainer::save`]: parameters, optimiser moments, step and
    /// (f16) the loss scale; a state without a loss scale leaves the scaler at its start.
    pub fn resume(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let dev = self
            .opt
            .named_vars()
            .next()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let state = TrainingState::load(path, &dev)?;
        if let (Some(scaler), Some(ls)) = (&mut self.scaler, state.loss_scale) {
            scaler.restore(ls)?;
        }
        state.restore(&mut self.opt)?;
        self.step = state.step;
        Ok(())
    }
}
