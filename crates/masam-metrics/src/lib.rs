//! masam-metrics: segmentation metrics for 3D medical volumes, with anisotropic voxel spacing.
//!
//! | metric | pure function | cumulative struct | reference semantics |
//! |---|---|---|---|
//! | Dice | [`compute_dice`] | [`DiceMetric`] | medpy `dc`, reference empty convention |
//! | IoU / mIoU | [`compute_iou`] | [`IouMetric`] | Jaccard |
//! | HD95 / HD | [`compute_hd95`], [`compute_hausdorff`] | [`Hd95Metric`] = [`HausdorffMetric`] | medpy `hd95` / `hd` |
//! | ASD / ASSD | [`compute_asd`], [`compute_assd`] | [`SurfaceDistanceMetric`] | medpy `asd` / `assd` (0.5) |
//! | NSD | [`compute_surface_dice`] | [`SurfaceDiceMetric`] | DeepMind `compute_surface_dice_at_tolerance` |
//!
//! # Conventions
//! - **Layout.** Every volume is an [`ndarray`] array indexed **(z, y, x)** (slice, row, column),
//!   and every spacing is `[f64; 3]` in **mm, in the same (z, y, x) order**. A NIfTI volume
//!   read as (x, y, z) must be transposed (and its pixdim reordered) first.
//! - **Inputs.** Pure functions take binary masks (`ArrayView3<bool>`); the cumulative metrics
//!   take integer **label maps** (`u8`, `u16`, … see [`Label`]) and score each class id of their
//!   [`Classes`] separately (`labels == id`). Background (0) is excluded by
//!   [`Classes::foreground`] and included by [`Classes::with_background`].
//! - **Empty masks.** Each metric documents its default [`EmptyPolicy`]; all are configurable.
//!   NaN scores are skipped by the aggregation.
//! - **Aggregation.** [`Metric::aggregate`] returns a [`MetricReport`]: per-case × per-class
//!   scores, the per-class nan-mean over cases and the mean over classes (as the reference's
//!   `test.py`), writable as JSON / CSV (atomically) and printable as a text table.
//! - **Distances** use the exact anisotropic Euclidean distance transform of
//!   [`distance_transform`], multi-threaded with rayon.
//!
//! ```
//! use masam_metrics::{Classes, DiceConfig, DiceMetric, Hd95Metric, Metric};
//! use ndarray::{s, Array3};
//!
//! let mut gt = Array3::<u8>::zeros((8, 16, 16));
//! gt.slice_mut(s![2..6, 4..12, 4..12]).fill(1);
//! let mut pred = Array3::<u8>::zeros((8, 16, 16));
//! pred.slice_mut(s![2..6, 5..12, 4..12]).fill(1);
//! let spacing = [2.5, 0.7, 0.7]; // (z, y, x) mm
//!
//! let classes = Classes::foreground(1).with_names(["liver"]).unwrap();
//! let mut dice = DiceMetric::new(DiceConfig::default(), classes.clone()).unwrap();
//! let mut hd95 = Hd95Metric::hd95(classes).unwrap();
//! dice.update_case("case_a", pred.view(), gt.view(), spacing).unwrap();
//! hd95.update_case("case_a", pred.view(), gt.view(), spacing).unwrap();
//!
//! let report = dice.aggregate();
//! assert!((report.mean() - 2.0 * 224.0 / (224.0 + 256.0)).abs() < 1e-12);
//! assert!((hd95.aggregate().mean() - 0.7).abs() < 1e-12);
//! println!("{report}");
//! ```

pub mod dice;
pub mod distance_transform;
pub mod error;
pub mod hausdorff;
pub mod iou;
pub mod label;
mod overlap;
pub mod policy;
pub mod reduction;
pub mod report;
pub mod surface;
pub mod surface_dice;
pub mod surface_distance;
pub mod surfel;
mod surfel_table;

pub use dice::{compute_dice, DiceConfig, DiceMetric};
pub use error::{MetricsError, Result};
pub use hausdorff::{
    compute_hausdorff, compute_hd95, HausdorffConfig, HausdorffMetric, Hd95Metric,
};
pub use iou::{compute_iou, IouConfig, IouMetric};
pub use label::{class_mask, foreground_mask, Label, Mask};
pub use policy::{EmptyPolicy, EmptyScore};
pub use reduction::{percentile, Accumulator, BinaryScore, Classes, Metric, MetricOf};
pub use report::{write_reports_json, MetricReport};
pub use surface_dice::{
    compute_surface_dice, compute_surface_dice_at, SurfaceDiceConfig, SurfaceDiceMetric,
};
pub use surface_distance::{
    compute_asd, compute_assd, compute_average_surface_distance, AsdMode, SurfaceDistanceConfig,
    SurfaceDistanceMetric,
};
pub use surfel::{compute_surface_distances, SurfaceDistances};
