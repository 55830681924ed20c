//! The crate's error type.

use candle_core::DType;

/// Everything that can go wrong when building or applying a [`crate::Conv3d`] or an
/// [`crate::Adapter3d`]. Bad input is reported here, never by a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Conv3dError {
    /// A tensor does not have the rank the operation needs.
    #[error("{what}: expected a rank-{expected} tensor, got shape {got:?}")]
    Rank {
        /// Which tensor.
        what: &'static str,
        /// The rank the operation needs.
        expected: usize,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// The input's channel count differs from the weight's input channels.
    #[error("input has {input} channels but the weight expects {weight}")]
    ChannelMismatch {
        /// Channels of the input, dim 1 of (N, C, D, H, W) (or the last dim for the adapter).
        input: usize,
        /// Channels the weight (or layer) expects.
        weight: usize,
    },
    /// The bias is not a vector of length `out_channels`.
    #[error("bias must have shape ({out_channels},), got {got:?}")]
    BiasShape {
        /// Output channels of the weight.
        out_channels: usize,
        /// The bias shape that was given.
        got: Vec<usize>,
    },
    /// A kernel or channel dimension is zero.
    #[error("zero-sized {what}: {shape:?}")]
    ZeroSize {
        /// Which dimension set.
        what: &'static str,
        /// The offending sizes.
        shape: Vec<usize>,
    },
    /// The kernel does not fit in the padded input (the output would be empty).
    #[error("kernel {kernel:?} does not fit input {input:?} with padding {padding:?}")]
    EmptyOutput {
        /// Spatial input size (D, H, W).
        input: [usize; 3],
        /// Kernel size (kd, kh, kw).
        kernel: [usize; 3],
        /// Padding (front, back) per spatial dim.
        padding: [(usize, usize); 3],
    },
    /// The dtype is not supported on this device.
    #[error("dtype {dtype:?} is not supported on {device} (f32 on CPU; f32, f16, bf16 on CUDA)")]
    UnsupportedDType {
        /// The dtype that was given.
        dtype: DType,
        /// The device's name.
        device: &'static str,
    },
    /// Input, weight and bias do not share one dtype or one device.
    #[error("input, weight and bias must share dtype and device: {0}")]
    Mismatch(String),
    /// The adapter's batch is not a whole number of `slices`-slice volumes.
    #[error("batch of {batch} slices is not a multiple of {slices} slices per volume")]
    SlicesNotDivisor {
        /// B·D, the number of images in the batch.
        batch: usize,
        /// D, the slices per volume.
        slices: usize,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A size does not fit the 32-bit integers the CUDA kernels take.
    #[error("conv3d: size {value} exceeds i32")]
    SizeOverflow {
        /// The size.
        value: i64,
        /// The conversion's error.
        #[source]
        source: std::num::TryFromIntError,
    },
    /// NVRTC could not compile the CUDA kernels (`kernels/conv3d.cu`).
    #[cfg(feature = "cuda")]
    #[error("NVRTC failed on conv3d.cu: {source}")]
    Nvrtc {
        /// NVRTC's error, with the compiler log.
        #[source]
        source: candle_core::cuda_backend::cudarc::nvrtc::CompileError,
    },
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Conv3dError>;

/// Back to candle's error type (for custom ops): a candle error is unwrapped, any other is
/// boxed with [`masam_nn::error::into_candle`], so it keeps its message and source chain and
/// can be recovered with [`masam_nn::error::find_in_candle`].
impl From<Conv3dError> for candle_core::Error {
    fn from(e: Conv3dError) -> Self {
        match e {
            Conv3dError::Candle(c) => c,
            other => masam_nn::error::into_candle(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_errors_survive_the_trip_through_candle() {
        let source = i32::try_from(1i64 << 40).unwrap_err();
        let e: candle_core::Error = Conv3dError::SizeOverflow {
            value: 1 << 40,
            source,
        }
        .into();
        assert_eq!(e.to_string(), "conv3d: size 1099511627776 exceeds i32");
        let typed = masam_nn::error::find_in_candle::<Conv3dError>(&e).expect("typed error");
        assert!(matches!(typed, Conv3dError::SizeOverflow { .. }));
        let source = std::error::Error::source(&e).expect("a source");
        assert!(source.is::<std::num::TryFromIntError>());
    }
}
