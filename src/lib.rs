//! # masam-adapter
//!
//! MA-SAM (modality-agnostic SAM adaptation for 3D medical image segmentation) in Rust, on
//! candle: the model ([`MaSam`]: SAM + FacT + 3D adapters + a multi-class mask decoder), its
//! configurations ([`MaSamConfig`], with the paper's recipe [`MaSamConfig::paper`]), training
//! ([`Trainer`]), whole-volume inference ([`predict`]), evaluation ([`evaluate`]) and the
//! checkpoint formats ([`checkpoint`]).
//!
//! This is the crate to add as a dependency; it re-exports candle ([`candle`], [`candle_nn`]) and
//! the workspace's building blocks ([`sam`], [`fact`], [`conv3d`], [`volume`], [`metrics`],
//! [`train`], [`nn`]), so no other masam or candle dependency is needed. Run folders, figures and
//! the command-line tool live in the `masam-app` and `masam-cli` crates.
//!
//! ```
//! use masam_adapter::candle::{DType, Device, Tensor};
//! use masam_adapter::{Batch, MaSam, MaSamConfig, Mode, Trainer, TrainerConfig};
//! # fn main() -> masam_adapter::Result<()> {
//! let model = MaSam::random(&MaSamConfig::tiny(), 0, &Device::Cpu)?;
//! let images = Tensor::rand(0f32, 1., (1, 5, 3, 64, 64), &Device::Cpu)?; // B, D slices, RGB, H, W
//! let logits = model.segment(&images, Mode::Eval)?; // (B, D, K, H, W)
//! assert_eq!(logits.dims(), &[1, 5, 4, 64, 64]);
//! let labels = Tensor::zeros((5, 64, 64), DType::I64, &Device::Cpu)?; // (B·D, H, W) class ids
//! let mut trainer = Trainer::new(&model, TrainerConfig::default())?;
//! let stats = trainer.step(&[Batch::new(images, labels)])?;
//! assert!(stats.loss.is_finite());
//! # Ok(()) }
//! ```

pub mod block_checkpoint;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod hooks;
pub mod inferers;
pub mod mode;
pub mod model;
pub mod output;
pub mod predict;
pub mod trainer;

pub use config::{AdapterPlacement, Finetune, MaSamConfig};
pub use data::{Batch, LabelledVolume};
pub use error::{Error, Result};
pub use mode::Mode;
pub use model::MaSam;
pub use output::VolumeOutput;
pub use trainer::{StepStats, Trainer, TrainerConfig};

pub use masam_sam::{ImageEncoderConfig, Prompt, SamCheckpoint, SamOutput};
pub use masam_train::{AdamWConfig, LossScaleConfig, LrSchedule, Precision};

/// candle's tensor crate (`candle-core`), the version this crate is built on.
pub use candle_core as candle;
/// candle's layer crate (`candle-nn`), the version this crate is built on.
pub use candle_nn;

pub use masam_conv3d as conv3d;
pub use masam_dist as dist;
pub use masam_fact as fact;
pub use masam_metrics as metrics;
pub use masam_nn as nn;
pub use masam_sam as sam;
pub use masam_train as train;
pub use masam_volume as volume;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
