//! Medical volume IO, the MA-SAM reference preprocessing, adjacent-slice stacks, augmentation and
//! dataset layouts.
//!
//! * [`io`]: NIfTI-1 and NIfTI-2 read/write (every datatype, both byte orders, scaling, full
//!   geometry, atomic writes), DICOM series and enhanced multi-frame files, EndoVis-style frame
//!   folders; every reader checks a file's claims against [`io::ReadLimits`] before allocating.
//! * [`transforms`]: the reference intensity chain (HU window → ×255/450 → f32 → z-score → per-stack
//!   min-max), the MRI variant, the slice orientation of the authors' checkpoints, resizing, and
//!   adjacent-slice stacks.
//! * [`dataset`]: BTCV, prostate, EndoVis18, MSD, AMOS and generic folder layouts, splits, and a
//!   lazily loading, memory-bounded, thread-safe stack index.
//! * [`boxes`]: 3D box prompts from label maps and their per-slice projections.
//!
//! ```
//! use masam_volume::transforms::{IntensityConfig, SliceStack, StackConfig};
//! use masam_volume::Volume;
//! // A tiny CT-like volume (Z=3, Y=4, X=4) in HU.
//! let ct = Volume::with_spacing(
//!     ndarray::Array3::from_shape_fn((3, 4, 4), |(z, y, x)| (z * 100 + y * 10 + x) as f32 - 200.0),
//!     [0.8, 0.8, 2.5],
//! );
//! let cfg = StackConfig { out_size: None, ..StackConfig::default() };
//! let stack = SliceStack::new(cfg).unwrap().image_stack(&ct, 0).unwrap();
//! assert_eq!(stack.dim(), (5, 4, 4)); // D = 5 slices, edges replicated
//! assert!(stack.iter().all(|v| (0.0..=1.0).contains(v)));
//! # let _ = IntensityConfig::ct_abdomen();
//! ```

pub mod augment;
pub mod boxes;
pub mod dataset;
pub mod error;
pub mod io;
pub mod phantom;
pub mod transforms;
pub mod volume;

pub use error::{BoxError, Result, VolumeError};
/// Re-export of the `ndarray` version used in this crate's API.
pub use ndarray;
pub use volume::{Affine, Volume};
