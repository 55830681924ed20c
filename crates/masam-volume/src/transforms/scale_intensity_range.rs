//! The HU window of the reference loader: `clip(x, a_min, a_max)` → `(x − a_min) / (a_max − a_min)
//! × 255` → `float32`, computed in the precision of the stored stack (f64 for BTCV pickles made
//! with nibabel's `get_fdata()`, f32 for the prostate pickles).
//!
//! ```
//! use masam_volume::transforms::{ScaleIntensityRange, SourcePrecision};
//! let w = ScaleIntensityRange::ct_abdomen();
//! assert_eq!(w.apply(-1000.0, SourcePrecision::F64), 0.0);
//! assert_eq!(w.apply(250.0, SourcePrecision::F64), 255.0);
//! assert_eq!(w.apply(25.0, SourcePrecision::F64), ((225.0f64 / 450.0) * 255.0) as f32);
//! ```

use serde::{Deserialize, Serialize};

/// The dtype the reference's stacks had when the load-time normalisation ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SourcePrecision {
    /// float64 (nibabel `get_fdata()`; BTCV, MSD, AMOS CT).
    #[default]
    F64,
    /// float32 (the prostate script casts to f32 before pickling).
    F32,
}

/// Window clip and linear rescale to `[0, b_max]` (the reference uses `b_max = 255`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaleIntensityRange {
    /// Lower clip bound (HU).
    pub a_min: f64,
    /// Upper clip bound (HU).
    pub a_max: f64,
    /// Output value of `a_max`.
    pub b_max: f64,
}

impl Default for ScaleIntensityRange {
    fn default() -> Self {
        Self::ct_abdomen()
    }
}

impl ScaleIntensityRange {
    /// The abdomen CT window [−200, 250] HU (BTCV, AMOS CT).
    pub fn ct_abdomen() -> Self {
        Self {
            a_min: -200.0,
            a_max: 250.0,
            b_max: 255.0,
        }
    }

    /// The pancreas/tumour window [−50, 200] HU (MSD Task07).
    pub fn pancreas() -> Self {
        Self {
            a_min: -50.0,
            a_max: 200.0,
            b_max: 255.0,
        }
    }

    /// A custom window.
    pub fn new(a_min: f64, a_max: f64) -> Self {
        Self {
            a_min,
            a_max,
            b_max: 255.0,
        }
    }

    /// One value through the window, ending in `f32` exactly as the reference's `float32(x)`.
    #[inline]
    pub fn apply(&self, x: f64, precision: SourcePrecision) -> f32 {
        match precision {
            SourcePrecision::F64 => {
                let c = x.clamp(self.a_min, self.a_max);
                (((c - self.a_min) / (self.a_max - self.a_min)) * self.b_max) as f32
            }
            SourcePrecision::F32 => {
                let x = x as f32;
                let (lo, hi) = (self.a_min as f32, self.a_max as f32);
                let c = x.clamp(lo, hi);
                ((c - lo) / ((self.a_max - self.a_min) as f32)) * self.b_max as f32
            }
        }
    }

    /// Applies [`ScaleIntensityRange::apply`] to a slice of values.
    pub fn apply_slice(&self, xs: &[f64], precision: SourcePrecision, out: &mut [f32]) {
        for (o, &x) in out.iter_mut().zip(xs) {
            *o = self.apply(x, precision);
        }
    }
}
