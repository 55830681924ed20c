//! masam-metrics: segmentation metrics for 3D medical volumes.

pub mod distance_transform;
pub mod error;

pub use error::{MetricsError, Result};
