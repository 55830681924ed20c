//! [`RandErase`]: the reference's `random_erasing` (a noise rectangle, label set to background).

use super::{check_prob, check_range, coin, uniform, RandTransform, Result, Sample};
use ndarray::{s, Array3};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// One drawn erasing rectangle and its noise.
#[derive(Debug, Clone, PartialEq)]
pub struct EraseParams {
    /// Left column.
    pub x0: usize,
    /// Top row.
    pub y0: usize,
    /// Width in pixels.
    pub nx: usize,
    /// Height in pixels.
    pub ny: usize,
    /// Fill values (C, ny, nx) in [0, 1), the same on every slice.
    pub noise: Array3<f32>,
}

/// Writes `p.noise` into the rectangle on every slice and sets the label there to `label_fill`.
/// Boxes are left as they are (the reference has no box rule for erasing; its box variant drops
/// the transform). The rectangle is clipped to the image.
pub fn erase(sample: &mut Sample, p: &EraseParams, label_fill: u8) {
    let (h, w) = (sample.height(), sample.width());
    let x1 = (p.x0 + p.nx).min(w);
    let y1 = (p.y0 + p.ny).min(h);
    if p.x0 >= x1 || p.y0 >= y1 {
        return;
    }
    let (cw, ch) = (x1 - p.x0, y1 - p.y0);
    let c = sample.channels().min(p.noise.shape()[0]);
    for d in 0..sample.depth() {
        for k in 0..sample.channels() {
            let src = p.noise.slice(s![k % c.max(1), ..ch, ..cw]);
            sample
                .image
                .slice_mut(s![d, k, p.y0..y1, p.x0..x1])
                .assign(&src);
        }
    }
    sample
        .label
        .slice_mut(s![.., p.y0..y1, p.x0..x1])
        .fill(label_fill);
}

/// Config of [`RandErase`] (defaults: the reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandEraseConfig {
    /// Probability of applying (reference: 0.5).
    pub prob: f64,
    /// Area fraction range of the rectangle (reference: [0.02, 0.05]).
    pub area: (f64, f64),
    /// Aspect ratio range `nx / ny` (reference: [0.3, 3.3]).
    pub aspect: (f64, f64),
    /// Label value written inside the rectangle (reference: 0, background).
    pub label_fill: u8,
}

impl Default for RandEraseConfig {
    fn default() -> Self {
        Self {
            prob: 0.5,
            area: (0.02, 0.05),
            aspect: (0.3, 3.3),
            label_fill: 0,
        }
    }
}

/// Random erasing: a rectangle of area `U(area)·H·W` and aspect `U(aspect)`
/// (`nx = ⌊√(se·re)⌋`, `ny = ⌊√(se/re)⌋`), at a uniform position, filled with `U[0, 1)` noise that is
/// the same on all slices (independent per channel); the label inside becomes `label_fill`.
#[derive(Debug, Clone)]
pub struct RandErase {
    cfg: RandEraseConfig,
}

impl RandErase {
    /// Validates the config.
    pub fn new(cfg: RandEraseConfig) -> Result<Self> {
        check_prob("rand_erase.prob", cfg.prob)?;
        check_range("rand_erase.area", cfg.area.0, cfg.area.1)?;
        check_range("rand_erase.aspect", cfg.aspect.0, cfg.aspect.1)?;
        if cfg.area.0 < 0.0 || cfg.area.1 > 1.0 || cfg.aspect.0 <= 0.0 {
            return Err(super::AugmentError::InvalidConfig {
                field: "rand_erase.area/aspect",
                reason: "area must lie in [0, 1] and aspect be positive".into(),
            });
        }
        Ok(Self { cfg })
    }

    /// Draws everything for a `channels × h × w` image: `None` when not applied.
    pub fn draw<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        channels: usize,
        h: usize,
        w: usize,
    ) -> Option<EraseParams> {
        if !coin(rng, self.cfg.prob) {
            return None;
        }
        let se = uniform(rng, self.cfg.area.0, self.cfg.area.1) * (h * w) as f64;
        let re = uniform(rng, self.cfg.aspect.0, self.cfg.aspect.1);
        let nx = ((se * re).sqrt() as usize).min(w);
        let ny = ((se / re).sqrt() as usize).min(h);
        let x0 = rng.random_range(0..=w - nx);
        let y0 = rng.random_range(0..=h - ny);
        let noise = Array3::from_shape_simple_fn((channels, ny, nx), || rng.random::<f32>());
        Some(EraseParams {
            x0,
            y0,
            nx,
            ny,
            noise,
        })
    }
}

impl RandTransform for RandErase {
    type Params = Option<EraseParams>;

    fn randomize<R: Rng + ?Sized>(&self, sample: &Sample, rng: &mut R) -> Self::Params {
        self.draw(rng, sample.channels(), sample.height(), sample.width())
    }

    fn apply_params(&self, sample: &mut Sample, params: &Self::Params) -> Result<()> {
        if let Some(p) = params {
            erase(sample, p, self.cfg.label_fill);
        }
        Ok(())
    }
}
