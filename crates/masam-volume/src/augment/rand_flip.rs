//! [`RandFlip`]: mirror the stack along rows or columns.

use super::geometry::NearestMap;
use super::{check_prob, coin, RandTransform, Result, Sample};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which in-plane axis a flip reverses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlipAxis {
    /// Reverse the rows (`np.flip(axis=0)` on (H, W, D)): `y' = H − y`.
    Rows,
    /// Reverse the columns (`np.flip(axis=1)`): `x' = W − x`.
    Cols,
}

/// Flips image, label and boxes along `axis`.
///
/// ```
/// use masam_volume::augment::{flip, FlipAxis, Sample};
/// let mut label = ndarray::Array3::<u8>::zeros((1, 4, 4));
/// label[[0, 1, 0]] = 3;
/// let mut s = Sample::grey(ndarray::Array3::zeros((1, 4, 4)), label)?;
/// flip(&mut s, FlipAxis::Cols);
/// assert_eq!(s.label[[0, 1, 3]], 3);
/// # Ok::<(), masam_volume::augment::AugmentError>(())
/// ```
pub fn flip(sample: &mut Sample, axis: FlipAxis) {
    let (h, w) = (sample.height(), sample.width());
    let map = NearestMap::from_fn(h, w, w, |r, c| match axis {
        FlipAxis::Rows => Some((h - 1 - r, c)),
        FlipAxis::Cols => Some((r, w - 1 - c)),
    });
    sample.image = map.apply4(&sample.image, 0.0);
    sample.label = map.apply3(sample.label.view(), 0);
    let (wf, hf) = (w as f64, h as f64);
    sample.map_boxes(|b| {
        b.map_corners(w, h, |x, y| match axis {
            FlipAxis::Rows => (x, hf - y),
            FlipAxis::Cols => (wf - x, y),
        })
    });
}

/// Config of [`RandFlip`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandFlipConfig {
    /// Probability of flipping at all.
    pub prob: f64,
    /// Axes to choose from uniformly.
    pub axes: Vec<FlipAxis>,
}

impl Default for RandFlipConfig {
    fn default() -> Self {
        Self {
            prob: 0.5,
            axes: vec![FlipAxis::Rows, FlipAxis::Cols],
        }
    }
}

/// Random flip along one uniformly chosen axis, with probability `prob`. (The reference only flips
/// as part of [`RandRotFlip`](super::RandRotFlip); this is the standalone MONAI-style transform.)
#[derive(Debug, Clone)]
pub struct RandFlip {
    cfg: RandFlipConfig,
}

impl RandFlip {
    /// Validates the config.
    pub fn new(cfg: RandFlipConfig) -> Result<Self> {
        check_prob("rand_flip.prob", cfg.prob)?;
        if cfg.axes.is_empty() {
            return Err(super::AugmentError::InvalidConfig {
                field: "rand_flip.axes",
                reason: "no axis to choose from".into(),
            });
        }
        Ok(Self { cfg })
    }
}

impl RandTransform for RandFlip {
    type Params = Option<FlipAxis>;

    fn randomize<R: Rng + ?Sized>(&self, _sample: &Sample, rng: &mut R) -> Self::Params {
        coin(rng, self.cfg.prob).then(|| self.cfg.axes[rng.random_range(0..self.cfg.axes.len())])
    }

    fn apply_params(&self, sample: &mut Sample, params: &Self::Params) -> Result<()> {
        if let Some(axis) = params {
            flip(sample, *axis);
        }
        Ok(())
    }
}
