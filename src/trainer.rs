//! Fine-tuning MA-SAM: AdamW + warmup/poly schedule + Dice+CE, gradient accumulation, resumable
//! checkpoints.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use masam_dist::Communicator;

use masam_sam::Prompt;
use masam_train::{
    AdamW, AdamWConfig, DiceCeLoss, DiceCeLossConfig, GradAccumulator, LossScaleConfig, LossScaler,
    LrSchedule, Precision, ScaleUpdate, TrainingState,
};
use serde::{Deserialize, Serialize};

use crate::block_checkpoint::CheckpointedPass;
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
    /// Run seed (data order, augmentation, fresh weights, FacT dropout masks).
    pub seed: u64,
    /// Deterministic run: a run stopped at any point (even by `kill -9`) and resumed from its
    /// last checkpoint ends bit-identical to an uninterrupted one. Training refuses what would
    /// break that (a time budget instead of a step count, a CUDA device). Off in files written
    /// before the field existed.
    #[serde(default)]
    pub deterministic: bool,
    /// Numeric precision of the forward and backward passes (the model must compute in it:
    /// [`MaSam::with_precision`]). Parameters, gradients given to the optimiser and its state
    /// stay f32. A configuration without it reads as f32.
    #[serde(default)]
    pub precision: Precision,
    /// Dynamic loss scaling, used with [`Precision::F16`] only.
    #[serde(default)]
    pub loss_scale: LossScaleConfig,
    /// Activation checkpointing of the encoder blocks ([`CheckpointedPass`]): the forward pass
    /// keeps only each block's input and the backward pass runs every block again, one at a
    /// time. The encoder's activations shrink to about one block's; each step costs one more
    /// forward pass of the encoder. The results are those without it up to float rounding.
    /// Off in files written before the field existed.
    #[serde(default)]
    pub checkpoint_blocks: bool,
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
            deterministic: false,
            precision: Precision::F32,
            loss_scale: LossScaleConfig::default(),
            checkpoint_blocks: false,
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
    dist: Option<DataParallel>,
    scaler: Option<LossScaler>,
    last_skipped: bool,
}

/// The data-parallel group a [`Trainer`] averages its gradients with.
struct DataParallel {
    comm: Arc<dyn Communicator>,
    bucket_bytes: usize,
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
        if let Some(f) = &model.fact {
            f.dropout_rng().reseed(cfg.seed);
        }
        let loss = DiceCeLoss::new(cfg.loss)?;
        Ok(Self {
            model,
            opt,
            loss,
            cfg,
            step: 0,
            dist: None,
            scaler,
            last_skipped: false,
        })
    }

    /// Makes this trainer one rank of a data-parallel group: rank 0's trainable parameters are
    /// broadcast to every rank now, and from then on every [`step`](Self::step) averages the
    /// gradients over the ranks (all-reduced in buckets of at most `bucket_bytes`, see
    /// [`masam_dist::buckets`]) before the optimiser step, so that all ranks take the same step.
    /// Each rank passes its own share of the global batch to `step`. The frozen weights are not
    /// sent: every rank must build them from the same checkpoint (or seed).
    ///
    /// The loss is computed per rank: its cross-entropy is the mean over the rank's pixels and
    /// its Dice term sums over the rank's stacks only, so `W` ranks with batch `b` train exactly
    /// like one process with batch `b` and `W` accumulated micro-batches (not like batch `W·b`,
    /// whose Dice sums over all `W·b` stacks), as PyTorch's DistributedDataParallel does.
    pub fn set_communicator(
        &mut self,
        comm: Arc<dyn Communicator>,
        bucket_bytes: usize,
    ) -> Result<()> {
        if comm.world_size() > 1 {
            let vars: Vec<_> = self.opt.named_vars().map(|(_, v)| v.clone()).collect();
            let values: Vec<_> = vars.iter().map(|v| v.as_tensor().detach()).collect();
            let root = masam_dist::buckets::broadcast(comm.as_ref(), &values, 0, bucket_bytes)?;
            for (v, t) in vars.iter().zip(root) {
                v.set(&t)?;
            }
        }
        self.dist = Some(DataParallel { comm, bucket_bytes });
        Ok(())
    }

    /// The data-parallel group set by [`set_communicator`](Self::set_communicator), if any.
    pub fn communicator(&self) -> Option<&Arc<dyn Communicator>> {
        self.dist.as_ref().map(|d| &d.comm)
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

    /// Replaces the learning-rate schedule from the next step on (a run with a time budget
    /// fits its horizon this way once it has measured its speed: [`LrSchedule::ending_at`]).
    ///
    /// # Errors
    /// [`Error::Train`] when the schedule is invalid ([`LrSchedule::validate`]).
    pub fn set_schedule(&mut self, schedule: LrSchedule) -> Result<()> {
        schedule.validate()?;
        self.cfg.schedule = schedule;
        Ok(())
    }

    /// The next step number.
    pub fn current_step(&self) -> u64 {
        self.step
    }

    /// The configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.cfg
    }

    /// One optimiser step over `micro` micro-batches (gradients averaged), dropout on; with
    /// [`TrainerConfig::checkpoint_blocks`], each micro-batch's encoder blocks are
    /// checkpointed ([`CheckpointedPass`]).
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
        // the dropout masks of a step depend on (seed, step) only: a resumed run draws the same
        if let Some(f) = &self.model.fact {
            f.dropout_rng().begin_step(self.step);
        }
        let vars: Vec<_> = self.opt.named_vars().map(|(_, v)| v.clone()).collect();
        let mut acc = GradAccumulator::new(vars.iter());
        let (mut tl, mut tce, mut td) = (0f32, 0f32, 0f32);
        let dev = self.model.device();
        let parallel = self.dist.as_ref().filter(|d| d.comm.world_size() > 1);
        let mut bad_loss = None;
        for b in micro {
            let images = b.images.to_device(dev)?;
            let labels = b.labels.to_device(dev)?;
            let prompt = match &b.boxes {
                Some(t) => MaSam::boxes_prompt(&t.to_device(dev)?)?,
                None => Prompt::None,
            };
            let (out, pass) = if self.cfg.checkpoint_blocks {
                let (pass, out) =
                    CheckpointedPass::forward(self.model, &images, &prompt, crate::Mode::Train)?;
                (out, Some(pass))
            } else {
                let out = self.model.forward(&images, &prompt, crate::Mode::Train)?;
                (out, None)
            };
            let l = self.loss.forward(&out.masks, &labels)?;
            let total = l.total.to_scalar::<f32>()?;
            if !total.is_finite() {
                // nothing is updated: the parameters stay those of the last good step
                let what = format!("loss {total}");
                if parallel.is_none() {
                    return Err(Error::NonFinite {
                        step: self.step,
                        what,
                    });
                }
                // the other ranks learn of it in the next collective; all of them then fail
                bad_loss = Some(what);
                break;
            }
            tl += total;
            tce += l.ce.to_scalar::<f32>()?;
            td += l.dice.to_scalar::<f32>()?;
            let objective = match &self.scaler {
                Some(s) => s.scale_loss(&l.total)?,
                None => l.total.clone(),
            };
            // only the objective holds the graph now: a checkpointed pass frees the head's
            // part of it before it rebuilds the blocks
            drop((out, l));
            acc.accumulate(match pass {
                Some(pass) => pass.backward(objective)?,
                None => objective.backward()?,
            })?;
        }
        let mut grads = acc.finish()?;
        let n = micro.len() as f32;
        let (mut loss, mut ce, mut dice) = (tl / n, tce / n, td / n);
        if let Some(dp) = parallel {
            (loss, ce, dice) =
                self.average_over_ranks(dp, &mut grads, [loss, ce, dice], bad_loss)?;
        }
        // an overflow in the backward must not reach the weights: one reduction per gradient,
        // one host read for all of them; the culprit is looked up only when the sum is not finite
        let mut sums = Vec::new();
        for (_, var) in self.opt.named_vars() {
            if let Some(g) = grads.get(var.as_tensor()) {
                sums.push(g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F32)?);
            }
        }
        let stats = StepStats {
            step: self.step,
            loss,
            ce,
            dice,
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

    /// One small all-reduce of the losses, a failure flag and which variables have a gradient
    /// on some rank, then the bucketed all-reduce of those gradients (a variable without a
    /// gradient on this rank contributes zeros, like a micro-batch without one in
    /// [`GradAccumulator`]); `grads` becomes the ranks' mean. Returns the ranks' mean losses.
    fn average_over_ranks(
        &self,
        dp: &DataParallel,
        grads: &mut candle_core::backprop::GradStore,
        losses: [f32; 3],
        bad_loss: Option<String>,
    ) -> Result<(f32, f32, f32)> {
        let vars: Vec<_> = self.opt.named_vars().map(|(_, v)| v.clone()).collect();
        let mut head = losses.to_vec();
        head.push(if bad_loss.is_some() { 1.0 } else { 0.0 });
        head.extend(vars.iter().map(|v| {
            if grads.get(v.as_tensor()).is_some() {
                1.0
            } else {
                0.0
            }
        }));
        let head = candle_core::Tensor::new(head.as_slice(), self.model.device())?;
        let summed = dp.comm.all_reduce_sum(&head)?.to_vec1::<f32>()?;
        if summed[3] > 0.0 {
            return Err(Error::NonFinite {
                step: self.step,
                what: bad_loss.unwrap_or_else(|| "the loss of another rank".into()),
            });
        }
        let mut present = vec![];
        let mut local = vec![];
        for (i, v) in vars.iter().enumerate() {
            if summed[4 + i] > 0.0 {
                local.push(match grads.get(v.as_tensor()) {
                    Some(g) => g.clone(),
                    None => v.as_tensor().zeros_like()?,
                });
                present.push(v);
            }
        }
        let mean = masam_dist::buckets::all_reduce_mean(dp.comm.as_ref(), &local, dp.bucket_bytes)?;
        let mut averaged = candle_core::backprop::GradStore::default();
        for (v, g) in present.into_iter().zip(mean) {
            averaged.insert(v.as_tensor(), g);
        }
        *grads = averaged;
        let w = dp.comm.world_size() as f32;
        Ok((summed[0] / w, summed[1] / w, summed[2] / w))
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
