//! Volume inference: turning per-stack network outputs into a label volume.

pub mod slice_window;
pub mod window_average;

pub use slice_window::{SliceWindowInferer, SliceWindowOutput};
pub use window_average::WindowAverage;
