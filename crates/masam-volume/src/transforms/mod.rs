//! The reference preprocessing: intensity window and normalisation, slice orientation, in-plane
//! resize, and adjacent-slice stacks.

pub mod intensity;
pub mod normalize_intensity;
pub mod orientation;
pub mod resize;
pub mod scale_intensity_range;
pub mod slice_stack;

pub use intensity::IntensityConfig;
pub use normalize_intensity::{
    min_max_stack, mri_percentile_normalize, percentile, NormalizeIntensity,
};
pub use orientation::{from_model_orientation, to_model_orientation};
pub use resize::{resize_2d, Interpolation, Resize};
pub use scale_intensity_range::{ScaleIntensityRange, SourcePrecision};
pub use slice_stack::{replicate_channels, SliceStack, StackConfig};
