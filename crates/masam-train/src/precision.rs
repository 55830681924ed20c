//! The numeric precision of a training run: full f32, or mixed precision in bf16 or f16.

use std::fmt;
use std::str::FromStr;

use candle_core::DType;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// Which floating-point type the model computes in.
///
/// Mixed precision follows PyTorch's autocast as used by the MA-SAM reference: matrix products,
/// linear layers and convolutions run in the low-precision type, frozen weights are stored in it,
/// while the trainable parameters stay `f32` master copies (cast at use), the optimiser state
/// stays `f32`, and softmax, LayerNorm statistics and the loss are computed in `f32`. `F16`
/// needs dynamic loss scaling ([`crate::LossScaler`]) because its range is narrow; `Bf16` has
/// `f32`'s range and needs none.
///
/// ```
/// use masam_train::Precision;
/// use candle_core::DType;
/// let p: Precision = "bf16".parse().unwrap();
/// assert_eq!(p, Precision::Bf16);
/// assert_eq!(p.dtype(), DType::BF16);
/// assert_eq!(p.to_string(), "bf16");
/// assert!(Precision::F16.needs_loss_scaling());
/// assert!("f8".parse::<Precision>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in `f32` (the default).
    #[default]
    F32,
    /// bfloat16 compute: 8 exponent bits (f32's range), 8 significant bits.
    Bf16,
    /// IEEE half precision compute: 5 exponent bits (largest value 65504), 11 significant bits;
    /// trained with dynamic loss scaling.
    F16,
}

impl Precision {
    /// Every precision, in the order of the command-line choices.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    /// The compute dtype.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// The name used in configuration files and on the command line (`f32`, `bf16`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// True for a low-precision (mixed) mode.
    pub fn is_mixed(self) -> bool {
        self != Precision::F32
    }

    /// True when gradients must be protected from underflow with a loss scale (f16 only).
    pub fn needs_loss_scaling(self) -> bool {
        self == Precision::F16
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = TrainError;

    /// Parses `f32`/`fp32`, `bf16`, `f16`/`fp16` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            other => Err(TrainError::InvalidConfig(format!(
                "unknown precision {other:?}: expected f32, bf16 or f16"
            ))),
        }
    }
}

impl TryFrom<DType> for Precision {
    type Error = TrainError;

    /// The precision whose compute dtype is `dtype` (f32, bf16, f16).
    fn try_from(dtype: DType) -> Result<Self, Self::Error> {
        Precision::ALL
            .into_iter()
            .find(|p| p.dtype() == dtype)
            .ok_or_else(|| TrainError::UnsupportedDType {
                what: "compute precision".into(),
                dtype,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_parse_serde_and_dtype() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
            assert_eq!(Precision::try_from(p.dtype()).unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Precision>(&json).unwrap(), p);
        }
        assert_eq!("FP16".parse::<Precision>().unwrap(), Precision::F16);
        assert!(Precision::try_from(DType::F64).is_err());
        let e = "int8".parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("int8") && e.contains("bf16"), "{e}");
    }
}
