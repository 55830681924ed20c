//! [`RandRotFlip`]: the reference's `random_rot_flip` (rot90 by k, then always a flip).

use super::geometry::NearestMap;
use super::rand_flip::{flip, FlipAxis};
use super::{check_prob, coin, RandTransform, Result, Sample};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Rotates image, label and boxes by `k × 90°` exactly as `np.rot90(x, k, axes=(0, 1))` on an
/// (H, W, D) array: for `k = 1`, `out[i, j] = in[j, W − 1 − i]` and the output is (W, H). Boxes follow
/// the reference's `x' = y, y' = W − x` per quarter turn (exact in pixel-edge coordinates).
///
/// ```
/// use masam_volume::augment::{rot90, Sample};
/// let mut label = ndarray::Array3::<u8>::zeros((1, 4, 6)); // H = 4, W = 6
/// label[[0, 1, 5]] = 2; // row 1, col 5
/// let mut s = Sample::grey(ndarray::Array3::zeros((1, 4, 6)), label)?;
/// rot90(&mut s, 1);
/// assert_eq!(s.label.shape(), &[1, 6, 4]);
/// assert_eq!(s.label[[0, 0, 1]], 2); // row W−1−5 = 0, col 1
/// # Ok::<(), masam_volume::augment::AugmentError>(())
/// ```
pub fn rot90(sample: &mut Sample, k: u8) {
    let k = k % 4;
    if k == 0 {
        return;
    }
    let (h, w) = (sample.height(), sample.width());
    let (oh, ow) = if k % 2 == 1 { (w, h) } else { (h, w) };
    let map = NearestMap::from_fn(oh, ow, w, |i, j| match k {
        1 => Some((j, w - 1 - i)),
        2 => Some((h - 1 - i, w - 1 - j)),
        _ => Some((h - 1 - j, i)),
    });
    sample.image = map.apply4(&sample.image, 0.0);
    sample.label = map.apply3(sample.label.view(), 0);
    let (wf, hf) = (w as f64, h as f64);
    sample.map_boxes(|b| {
        b.map_corners(ow, oh, |x, y| match k {
            1 => (y, wf - x),
            2 => (wf - x, hf - y),
            _ => (hf - y, x),
        })
    });
}

/// Config of [`RandRotFlip`] (defaults: the reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandRotFlipConfig {
    /// Probability of applying (reference: `random.random() > 0.5`, i.e. 0.5).
    pub prob: f64,
    /// Flip after the rotation every time it is applied (reference: yes).
    pub always_flip: bool,
}

impl Default for RandRotFlipConfig {
    fn default() -> Self {
        Self {
            prob: 0.5,
            always_flip: true,
        }
    }
}

/// What one [`RandRotFlip`] draw decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotFlipParams {
    /// Quarter turns, 0..=3 (`np.random.randint(0, 4)`).
    pub k: u8,
    /// Flip axis (`np.random.randint(0, 2)`: 0 = rows, 1 = columns), or `None` without a flip.
    pub flip: Option<FlipAxis>,
}

/// Random rot90 by `k ∈ {0, 1, 2, 3}` followed by a flip along a random axis (the reference's
/// `random_rot_flip`, applied with probability `prob`).
#[derive(Debug, Clone)]
pub struct RandRotFlip {
    cfg: RandRotFlipConfig,
}

impl RandRotFlip {
    /// Validates the config.
    pub fn new(cfg: RandRotFlipConfig) -> Result<Self> {
        check_prob("rand_rot_flip.prob", cfg.prob)?;
        Ok(Self { cfg })
    }
}

impl RandTransform for RandRotFlip {
    type Params = Option<RotFlipParams>;

    fn randomize<R: Rng + ?Sized>(&self, _sample: &Sample, rng: &mut R) -> Self::Params {
        if !coin(rng, self.cfg.prob) {
            return None;
        }
        let k = rng.random_range(0..4u8);
        let axis = if rng.random_range(0..2u8) == 0 {
            FlipAxis::Rows
        } else {
            FlipAxis::Cols
        };
        Some(RotFlipParams {
            k,
            flip: self.cfg.always_flip.then_some(axis),
        })
    }

    fn apply_params(&self, sample: &mut Sample, params: &Self::Params) -> Result<()> {
        if let Some(p) = params {
            rot90(sample, p.k);
            if let Some(axis) = p.flip {
                flip(sample, axis);
            }
        }
        Ok(())
    }
}
