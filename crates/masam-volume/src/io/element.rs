//! Voxel element types that can be read from and written to NIfTI files.

/// A voxel type that NIfTI can store and that converts to and from `f64`.
///
/// Reading converts every stored value to `f64`, applies `scl_slope`/`scl_inter` there (as nibabel's
/// `get_fdata()` does) and then calls [`Voxel::from_f64`]. Integer targets round to nearest and
/// saturate, so label maps stored as floats come back as the intended class ids.
pub trait Voxel: Copy + Send + Sync + Default + PartialOrd + std::fmt::Debug + 'static {
    /// The NIfTI `datatype` code used when writing this type.
    const NIFTI_DATATYPE: i16;
    /// Bytes per voxel.
    const SIZE: usize;
    /// Converts from `f64` (round-to-nearest and saturating for integers).
    fn from_f64(v: f64) -> Self;
    /// Converts to `f64` (exact for every supported type except 64-bit integers beyond 2^53).
    fn to_f64(self) -> f64;
    /// Appends the little-endian bytes of `self` to `out`.
    fn put_le(self, out: &mut Vec<u8>);
}

macro_rules! int_voxel {
    ($t:ty, $code:expr) => {
        impl Voxel for $t {
            const NIFTI_DATATYPE: i16 = $code;
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline]
            fn from_f64(v: f64) -> Self {
                v.round() as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}

int_voxel!(u8, 2);
int_voxel!(i16, 4);
int_voxel!(i32, 8);
int_voxel!(i8, 256);
int_voxel!(u16, 512);
int_voxel!(u32, 768);
int_voxel!(i64, 1024);
int_voxel!(u64, 1280);

impl Voxel for f32 {
    const NIFTI_DATATYPE: i16 = 16;
    const SIZE: usize = 4;
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Voxel for f64 {
    const NIFTI_DATATYPE: i16 = 64;
    const SIZE: usize = 8;
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn put_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// The stored (on-disk) NIfTI datatypes this crate decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredType {
    /// `DT_UINT8` (2)
    U8,
    /// `DT_INT8` (256)
    I8,
    /// `DT_INT16` (4)
    I16,
    /// `DT_UINT16` (512)
    U16,
    /// `DT_INT32` (8)
    I32,
    /// `DT_UINT32` (768)
    U32,
    /// `DT_INT64` (1024)
    I64,
    /// `DT_UINT64` (1280)
    U64,
    /// `DT_FLOAT32` (16)
    F32,
    /// `DT_FLOAT64` (64)
    F64,
}

impl StoredType {
    /// Maps a NIfTI `datatype` code; `None` for unsupported codes (complex, RGB, binary, f128).
    pub fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            2 => Self::U8,
            256 => Self::I8,
            4 => Self::I16,
            512 => Self::U16,
            8 => Self::I32,
            768 => Self::U32,
            1024 => Self::I64,
            1280 => Self::U64,
            16 => Self::F32,
            64 => Self::F64,
            _ => return None,
        })
    }

    /// Bytes per stored voxel.
    pub fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
        }
    }

    /// Whether the stored values are floating point (and may hold NaN).
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F64)
    }

    /// Decodes one voxel from `b` (exactly [`StoredType::size`] bytes).
    #[inline]
    pub fn decode(self, b: &[u8], big_endian: bool) -> f64 {
        macro_rules! get {
            ($t:ty, $n:expr) => {{
                let mut a = [0u8; $n];
                a.copy_from_slice(&b[..$n]);
                (if big_endian {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }) as f64
            }};
        }
        match self {
            Self::U8 => b[0] as f64,
            Self::I8 => b[0] as i8 as f64,
            Self::I16 => get!(i16, 2),
            Self::U16 => get!(u16, 2),
            Self::I32 => get!(i32, 4),
            Self::U32 => get!(u32, 4),
            Self::I64 => get!(i64, 8),
            Self::U64 => get!(u64, 8),
            Self::F32 => get!(f32, 4),
            Self::F64 => get!(f64, 8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_both_endians() {
        let v: i16 = -1234;
        assert_eq!(StoredType::I16.decode(&v.to_le_bytes(), false), -1234.0);
        assert_eq!(StoredType::I16.decode(&v.to_be_bytes(), true), -1234.0);
        let f: f32 = 1.5;
        assert_eq!(StoredType::F32.decode(&f.to_be_bytes(), true), 1.5);
        assert_eq!(StoredType::I8.decode(&[0xff], false), -1.0);
    }

    #[test]
    fn integer_targets_round_and_saturate() {
        assert_eq!(u8::from_f64(2.6), 3);
        assert_eq!(u8::from_f64(-5.0), 0);
        assert_eq!(u8::from_f64(300.0), 255);
        assert_eq!(i16::from_f64(-2.5), -3);
    }
}
