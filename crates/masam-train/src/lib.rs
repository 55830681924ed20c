//! Training machinery for candle segmentation models, following the MA-SAM reference trainer.
//!
//! - [`losses`]: [`DiceCeLoss`] (`0.2·CE + 0.8·Dice`, ignore index −100), built only from ops
//!   that record a backward;
//! - [`optimizer`]: [`AdamW`] with PyTorch semantics, parameter groups, skipped no-grad vars,
//!   f32 moments and a name-keyed, bit-exact resumable state;
//! - [`grad_accum`]: [`GradAccumulator`], gradient accumulation over micro-batches;
//! - [`schedule`]: [`LrSchedule`], the reference warmup + poly(7) schedule, constant and cosine;
//! - [`precision`]: [`Precision`] (f32, bf16, f16) and [`loss_scale`]: [`LossScaler`], the
//!   dynamic loss scaling of f16 training;
//! - [`checkpoint`]: [`TrainingState`], written atomically (temp file, fsync, rename);
//! - [`rng_state`]: [`RngState`], capture/restore of a ChaCha RNG stream position.
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use masam_train::{AdamW, AdamWConfig, DiceCeLoss, DiceCeLossConfig, LrSchedule, ParamGroup};
//! # fn main() -> masam_train::Result<()> {
//! let dev = Device::Cpu;
//! // A "model": per-pixel logits as a free parameter, (N, K, H, W) = (1, 3, 4, 4).
//! let logits = Var::zeros((1, 3, 4, 4), DType::F32, &dev)?;
//! let labels = Tensor::ones((1, 4, 4), DType::I64, &dev)?;
//! let loss_fn = DiceCeLoss::new(DiceCeLossConfig::default())?;
//! let group = ParamGroup::new("all", vec![("logits".to_string(), logits.clone())]);
//! let mut opt = AdamW::new(vec![group], AdamWConfig::default())?;
//! let schedule = LrSchedule::Constant { lr: 0.1 };
//! let first = loss_fn.forward(logits.as_tensor(), &labels)?.total.to_scalar::<f32>()?;
//! for step in 0..20 {
//!     opt.set_lr(schedule.lr_at(step));
//!     let out = loss_fn.forward(logits.as_tensor(), &labels)?;
//!     opt.step(&out.total.backward()?)?;
//! }
//! let last = loss_fn.forward(logits.as_tensor(), &labels)?.total.to_scalar::<f32>()?;
//! assert!(last < first);
//! # Ok(()) }
//! ```

pub mod checkpoint;
pub mod error;
pub mod grad_accum;
pub mod loss_scale;
pub mod losses;
pub mod optimizer;
pub mod precision;
pub mod rng_state;
pub mod schedule;

pub use checkpoint::{atomic_write, atomic_write_with, TrainingState};
pub use error::{Result, TrainError};
pub use grad_accum::GradAccumulator;
pub use loss_scale::{LossScaleConfig, LossScaleState, LossScaler, ScaleUpdate};
pub use losses::{DiceCeLoss, DiceCeLossConfig, DiceCeOutput};
pub use optimizer::{AdamW, AdamWConfig, ParamGroup};
pub use precision::Precision;
pub use rng_state::RngState;
pub use schedule::LrSchedule;
