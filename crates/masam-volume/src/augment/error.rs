//! Typed errors of the augmentation module.

/// Errors raised by augmentation transforms and their configs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AugmentError {
    /// The image stack and the label stack disagree in depth or in-plane size.
    #[error("image stack {image:?} (D, C, H, W) does not match label stack {label:?} (D, H, W)")]
    ShapeMismatch {
        /// Image shape (D, C, H, W).
        image: [usize; 4],
        /// Label shape (D, H, W).
        label: [usize; 3],
    },
    /// The image has a channel count other than 1 (grey) or 3 (RGB).
    #[error("image has {channels} channels; expected 1 (grey) or 3 (RGB)")]
    Channels {
        /// Channels seen.
        channels: usize,
    },
    /// The stack is empty (zero slices or zero pixels).
    #[error("empty stack {shape:?} (D, C, H, W)")]
    Empty {
        /// Image shape (D, C, H, W).
        shape: [usize; 4],
    },
    /// The number of per-slice boxes differs from the number of slices.
    #[error("{boxes} boxes given for {depth} slices")]
    BoxCount {
        /// Boxes given.
        boxes: usize,
        /// Slices in the stack.
        depth: usize,
    },
    /// A box has non-finite or inverted coordinates.
    #[error("invalid box {coords:?} (x0, y0, x1, y1)")]
    InvalidBox {
        /// The offending coordinates.
        coords: [f32; 4],
    },
    /// A config value is out of its valid domain.
    #[error("invalid augmentation config `{field}`: {reason}")]
    InvalidConfig {
        /// Config field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result alias of the augmentation module.
pub type Result<T> = std::result::Result<T, AugmentError>;
