//! Element types of the tensors read.

/// The element type of a [`RawTensor`](crate::RawTensor)'s little-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WeightDtype {
    /// Unsigned 8-bit integer (also PyTorch's `bool`, as 0/1).
    U8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 64-bit integer.
    I64,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
}

impl WeightDtype {
    /// Bytes per element.
    ///
    /// ```
    /// assert_eq!(masam_weights::WeightDtype::BF16.size_in_bytes(), 2);
    /// ```
    pub fn size_in_bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::F64 => 8,
        }
    }

    /// The type of a PyTorch storage class (`FloatStorage`, `HalfStorage`, …) in module `torch`.
    pub fn from_torch_storage(class: &str) -> Option<Self> {
        Some(match class {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "ByteStorage" | "BoolStorage" => Self::U8,
            "ShortStorage" => Self::I16,
            "IntStorage" => Self::I32,
            "LongStorage" => Self::I64,
            _ => return None,
        })
    }

    /// The type of a safetensors dtype, if it has one here.
    pub fn from_safetensors(dtype: safetensors::Dtype) -> Option<Self> {
        use safetensors::Dtype as D;
        Some(match dtype {
            D::U8 | D::BOOL => Self::U8,
            D::I16 => Self::I16,
            D::I32 => Self::I32,
            D::U32 => Self::U32,
            D::I64 => Self::I64,
            D::F16 => Self::F16,
            D::BF16 => Self::BF16,
            D::F32 => Self::F32,
            D::F64 => Self::F64,
            _ => return None,
        })
    }
}
