//! Medical volume IO, the MA-SAM reference preprocessing, adjacent-slice stacks, augmentation and
//! dataset layouts.

pub mod augment;
pub mod volume;

pub use volume::Volume;
pub mod phantom;
