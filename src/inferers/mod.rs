//! Volume inference: turning per-stack network outputs into a label volume.

pub mod slice_window;

pub use slice_window::{SliceWindowInferer, SliceWindowOutput};
