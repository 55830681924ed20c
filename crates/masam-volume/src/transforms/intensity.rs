//! The complete reference intensity chain, configurable per dataset.
//!
//! Per stack: window ([`ScaleIntensityRange`], f64 or f32 by [`SourcePrecision`]) → `float32` →
//! z-score ([`NormalizeIntensity`]) → per-stack min-max ([`min_max_stack`]). Per volume, before
//! stacking, the MRI variant first applies [`mri_percentile_normalize`].
//!
//! ```
//! use masam_volume::transforms::IntensityConfig;
//! let cfg = IntensityConfig::ct_abdomen();
//! let out = cfg.normalize_stack(&[-1000.0, 25.0, 3000.0]);
//! // A stack spanning the whole window maps to (clip(x) + 200) / 450 up to f32 rounding.
//! assert_eq!(out[0], 0.0);
//! assert!((out[1] - 0.5).abs() < 1e-6);
//! assert_eq!(out[2], 1.0);
//! ```

use serde::{Deserialize, Serialize};

use super::normalize_intensity::{min_max_stack, mri_percentile_normalize, NormalizeIntensity};
use super::scale_intensity_range::{ScaleIntensityRange, SourcePrecision};
use crate::error::{Result, VolumeError};

/// Intensity settings of one dataset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntensityConfig {
    /// HU window and ×255 rescale.
    pub window: ScaleIntensityRange,
    /// Dataset statistics for the z-score.
    pub stats: NormalizeIntensity,
    /// Precision of the reference's stored stacks.
    pub precision: SourcePrecision,
    /// MRI pre-normalisation percentile (99 for prostate); `None` for CT.
    pub mri_percentile: Option<f64>,
}

impl Default for IntensityConfig {
    fn default() -> Self {
        Self::ct_abdomen()
    }
}

impl IntensityConfig {
    /// Abdomen CT (BTCV, AMOS CT): window [−200, 250], mean 50.21997497685108, std 68.47153712416372.
    pub fn ct_abdomen() -> Self {
        Self {
            window: ScaleIntensityRange::ct_abdomen(),
            stats: NormalizeIntensity::ct_abdomen(),
            precision: SourcePrecision::F64,
            mri_percentile: None,
        }
    }

    /// MSD pancreas: window [−50, 200], mean 30.52402855024227, std 64.07289127027198.
    pub fn pancreas() -> Self {
        Self {
            window: ScaleIntensityRange::pancreas(),
            stats: NormalizeIntensity::pancreas(),
            ..Self::ct_abdomen()
        }
    }

    /// MRI (prostate, AMOS MRI): f32, 99th-percentile clip and min-max per volume, then the load
    /// chain with the CT constants (a no-op clip followed by the per-stack min-max), as the
    /// reference does.
    pub fn mri() -> Self {
        Self {
            precision: SourcePrecision::F32,
            mri_percentile: Some(99.0),
            ..Self::ct_abdomen()
        }
    }

    /// RGB video frames (0..255): the same chain with a [0, 255] window and identity statistics,
    /// i.e. a per-stack min-max of the raw values.
    pub fn video() -> Self {
        Self {
            window: ScaleIntensityRange::new(0.0, 255.0),
            stats: NormalizeIntensity {
                mean: 0.0,
                std: 1.0,
            },
            precision: SourcePrecision::F32,
            mri_percentile: None,
        }
    }

    /// Checks the window and statistics.
    pub fn validate(&self) -> Result<()> {
        let w = &self.window;
        if !(w.a_min.is_finite() && w.a_max.is_finite() && w.a_min < w.a_max && w.b_max > 0.0) {
            return Err(VolumeError::InvalidConfig(format!(
                "window [{}, {}] → [0, {}] is invalid",
                w.a_min, w.a_max, w.b_max
            )));
        }
        if !(self.stats.std.is_finite() && self.stats.std > 0.0 && self.stats.mean.is_finite()) {
            return Err(VolumeError::InvalidConfig(format!(
                "statistics mean {} std {} are invalid",
                self.stats.mean, self.stats.std
            )));
        }
        if let Some(p) = self.mri_percentile {
            if !(0.0..=100.0).contains(&p) {
                return Err(VolumeError::InvalidConfig(format!(
                    "percentile {p} outside [0, 100]"
                )));
            }
        }
        Ok(())
    }

    /// Volume-level step (MRI percentile normalisation; identity for CT), in place.
    pub fn prepare_volume(&self, data: &mut [f32]) {
        if let Some(q) = self.mri_percentile {
            mri_percentile_normalize(data, q);
        }
    }

    /// The per-stack chain on one stack's values (any order; min-max is over all of them).
    pub fn normalize_stack(&self, stack: &[f64]) -> Vec<f32> {
        let mut out = vec![0.0f32; stack.len()];
        self.window.apply_slice(stack, self.precision, &mut out);
        self.stats.apply_inplace(&mut out);
        min_max_stack(&mut out);
        out
    }
}
