//! A tensor read from a weight file, before it becomes a framework tensor.

use crate::WeightDtype;

/// A named tensor as contiguous little-endian bytes in row-major order.
/// `data.len() == shape.iter().product::<usize>() * dtype.size_in_bytes()` always holds.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Element type.
    pub dtype: WeightDtype,
    /// Dimensions (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements.
    pub data: Vec<u8>,
}

impl RawTensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Converts to a candle CPU tensor (U8, I16, I32, U32, I64, F16, BF16, F32, F64 all exist in
    /// candle 0.11).
    ///
    /// # Errors
    /// candle's error, should it refuse the buffer.
    #[cfg(feature = "candle")]
    pub fn to_candle(&self) -> candle_core::Result<candle_core::Tensor> {
        use candle_core::DType;
        let dtype = match self.dtype {
            WeightDtype::U8 => DType::U8,
            WeightDtype::I16 => DType::I16,
            WeightDtype::I32 => DType::I32,
            WeightDtype::U32 => DType::U32,
            WeightDtype::I64 => DType::I64,
            WeightDtype::F16 => DType::F16,
            WeightDtype::BF16 => DType::BF16,
            WeightDtype::F32 => DType::F32,
            WeightDtype::F64 => DType::F64,
        };
        candle_core::Tensor::from_raw_buffer(
            &self.data,
            dtype,
            &self.shape,
            &candle_core::Device::Cpu,
        )
    }
}
