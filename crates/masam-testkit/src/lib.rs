//! Test helpers shared by the masam crates. A dev-dependency only (`publish = false`): nothing
//! here is part of any crate's API.
//!
//! - [`fixtures`]: where the repository's fixtures are, from any crate, and loading them;
//! - [`compare`](mod@compare): tensor and slice comparisons whose failure message names the tensor, the
//!   worst element and both values;
//! - [`temp`]: fresh temporary folders removed on drop, and sorted folder listings;
//! - [`mutate`]: a deterministic mutation fuzzer for the readers' CI-sized fuzz runs, and
//!   [`peak_alloc`]: a global allocator measuring peak heap use.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let a = Tensor::new(&[1.0f32, 2.0, 3.0], &Device::Cpu).unwrap();
//! let b = Tensor::new(&[1.0f32, 2.0, 3.000001], &Device::Cpu).unwrap();
//! let e = masam_testkit::assert_close("y", &a, &b, 1e-5);
//! assert!(e < 1e-6);
//! ```

pub mod compare;
pub mod fixtures;
pub mod mutate;
pub mod peak_alloc;
pub mod temp;

pub use compare::{
    assert_close, compare, compare_slices, f32_bits, max_abs, rel_diff, rel_err, Comparison,
};
pub use fixtures::{
    load_reference_tiny, load_safetensors, reference_tiny, workspace_root, RawSafetensors,
};
pub use peak_alloc::PeakAlloc;
pub use temp::{dir_entries, TempDir};
