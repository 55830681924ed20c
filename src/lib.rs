//! masam-adapter: MA-SAM (modality-agnostic SAM adaptation for 3D medical image segmentation)
//! in Rust, on candle. This crate composes the workspace's libraries.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod finetune;
pub mod hooks;
pub mod inferers;
pub mod model;
pub mod predict;
pub mod reference_config;
pub mod render;
pub mod run_dir;
pub mod runtime;
pub mod trainer;

pub use config::{AdapterPlacement, Finetune, MaSamConfig};
pub use error::{Error, Result};
pub use model::MaSam;

pub use masam_conv3d as conv3d;
pub use masam_fact as fact;
pub use masam_metrics as metrics;
pub use masam_nn as nn;
pub use masam_sam as sam;
pub use masam_train as train;
pub use masam_volume as volume;
