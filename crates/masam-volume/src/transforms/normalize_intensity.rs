//! The load-time normalisation of the authors' data loader (`dataset_reader.__getitem__`, the
//! same in their `test.py`) after the window: z-score with f32 dataset statistics, then per-stack
//! min-max with the reference's f32/f64 subtleties (`+ 1e-8` in f64, cast to f32 for the
//! division, so it vanishes unless the range is below ~0.17); and the MRI pre-normalisation of
//! the prostate script (99th-percentile clip, min-max).
//!
//! ```
//! use masam_volume::transforms::{min_max_stack, NormalizeIntensity};
//! let mut x = vec![0.0f32, 127.5, 255.0];
//! NormalizeIntensity::ct_abdomen().apply_inplace(&mut x);
//! min_max_stack(&mut x);
//! assert_eq!(x[0], 0.0);
//! assert_eq!(x[2], 1.0);
//! ```

use serde::{Deserialize, Serialize};

/// Z-score with the dataset mean/std, both rounded to `f32` as the reference does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormalizeIntensity {
    /// Dataset mean (after the window, on the 0..255 scale).
    pub mean: f64,
    /// Dataset standard deviation.
    pub std: f64,
}

impl Default for NormalizeIntensity {
    fn default() -> Self {
        Self::ct_abdomen()
    }
}

impl NormalizeIntensity {
    /// BTCV statistics (used for every dataset by the reference loader).
    pub fn ct_abdomen() -> Self {
        Self {
            mean: 50.21997497685108,
            std: 68.47153712416372,
        }
    }

    /// MSD pancreas statistics for the [−50, 200] window.
    pub fn pancreas() -> Self {
        Self {
            mean: 30.52402855024227,
            std: 64.07289127027198,
        }
    }

    /// `(x − f32(mean)) / f32(std)` in f32, in place.
    pub fn apply_inplace(&self, xs: &mut [f32]) {
        let (m, s) = (self.mean as f32, self.std as f32);
        for x in xs.iter_mut() {
            *x = (*x - m) / s;
        }
    }
}

/// Per-stack min-max exactly as `(x − x.min()) / (x.max() − x.min() + 1e-8)` in NumPy on an f32
/// array: the range is an f32 scalar, `+ 1e-8` promotes it to f64, and the array division casts
/// that scalar back to f32 (so the `1e-8` only matters for ranges below ~0.17). Returns
/// `(min, max)`; empty input is left untouched.
pub fn min_max_stack(xs: &mut [f32]) -> (f32, f32) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &x in xs.iter() {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    let den = ((hi - lo) as f64 + 1e-8) as f32;
    for x in xs.iter_mut() {
        *x = (*x - lo) / den;
    }
    (lo, hi)
}

/// NumPy's default (`linear`) percentile of `xs`, `q` in [0, 100]; `None` for empty input.
pub fn percentile(xs: &[f32], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len();
    let pos = (q / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    let mut v: Vec<f32> = xs.to_vec();
    let (_, &mut a, right) = v.select_nth_unstable_by(lo, f32::total_cmp);
    let b = if hi == lo {
        a
    } else {
        right.iter().copied().fold(f32::INFINITY, f32::min)
    };
    Some(a as f64 + (b as f64 - a as f64) * frac)
}

/// The prostate script's MRI normalisation of a whole volume: f32, clip above at the
/// `q`-th percentile (99), then `(x − min) / (p − min)` in f32.
///
/// NumPy computes the percentile of an f32 array in f32 arithmetic; here it is computed in f64 and
/// rounded to f32, which can differ from NumPy in the last bit of `p`.
pub fn mri_percentile_normalize(xs: &mut [f32], q: f64) {
    let Some(p) = percentile(xs, q) else {
        return;
    };
    let p = p as f32;
    let mut lo = f32::INFINITY;
    for x in xs.iter_mut() {
        *x = x.min(p);
        lo = lo.min(*x);
    }
    let den = p - lo;
    if den > 0.0 {
        for x in xs.iter_mut() {
            *x = (*x - lo) / den;
        }
    } else {
        xs.iter_mut().for_each(|x| *x = 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1,2,3,4,5,6,7,8,9,10], 99) = 9.91
        let v: Vec<f32> = (1..=10).map(|i| i as f32).collect();
        assert!((percentile(&v, 99.0).unwrap() - 9.91).abs() < 1e-12);
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(10.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn tiny_ranges_keep_the_epsilon() {
        // range 0 → division by f32(1e-8), values all 0
        let mut x = vec![3.0f32; 4];
        min_max_stack(&mut x);
        assert!(x.iter().all(|&v| v == 0.0));
    }
}
