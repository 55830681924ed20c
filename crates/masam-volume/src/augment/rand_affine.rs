//! [`RandAffine`] and the Pillow `AFFINE` warp behind the RandAugment shear, scale and translate ops.

use super::geometry::{BilinearMap, NearestMap};
use super::{check_prob, check_range, coin, uniform, RandTransform, Result, Sample};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Where a scale op is anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ScaleAnchor {
    /// About the top-left corner, `[v, 0, 0, 0, v, 0]` (the reference: content drifts toward or
    /// away from the origin as well as changing size).
    #[default]
    TopLeft,
    /// About the image centre, `[v, 0, (1 − v)·W/2, 0, v, (1 − v)·H/2]` (a pure zoom).
    Centre,
}

/// Pillow `AFFINE` coefficients `(a, b, c, d, e, f)`: output pixel `(x, y)` samples the input at
/// `(a·x' + b·y' + c, d·x' + e·y' + f)` where `(x', y') = (x + 0.5, y + 0.5)` is the pixel centre,
/// i.e. all positions are in pixel-edge coordinates (the same as [`BoxXyxy`](super::BoxXyxy)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AffineCoeffs(pub [f64; 6]);

impl AffineCoeffs {
    /// The identity map.
    pub const IDENTITY: Self = Self([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);

    /// Horizontal shear by `v` about the middle row: `[1, v, −v·H/2, 0, 1, 0]` (the reference
    /// writes `−v·W/2`, which is the same on its square images).
    pub fn shear_x(v: f64, h: usize) -> Self {
        Self([1.0, v, -v * h as f64 / 2.0, 0.0, 1.0, 0.0])
    }

    /// Vertical shear by `v` about the middle column: `[1, 0, 0, v, 1, −v·W/2]`.
    pub fn shear_y(v: f64, w: usize) -> Self {
        Self([1.0, 0.0, 0.0, v, 1.0, -v * w as f64 / 2.0])
    }

    /// Scale op with factor `v` (> 1 shrinks the content, as Pillow samples further out).
    pub fn scale(v: f64, anchor: ScaleAnchor, h: usize, w: usize) -> Self {
        match anchor {
            ScaleAnchor::TopLeft => Self([v, 0.0, 0.0, 0.0, v, 0.0]),
            ScaleAnchor::Centre => Self([
                v,
                0.0,
                (1.0 - v) * w as f64 / 2.0,
                0.0,
                v,
                (1.0 - v) * h as f64 / 2.0,
            ]),
        }
    }

    /// Translation by `v·W` columns: `[1, 0, v·W, 0, 1, 0]` (content moves left for `v > 0`).
    pub fn translate_x(v: f64, w: usize) -> Self {
        Self([1.0, 0.0, v * w as f64, 0.0, 1.0, 0.0])
    }

    /// Translation by `v·H` rows: `[1, 0, 0, 0, 1, v·H]`.
    pub fn translate_y(v: f64, h: usize) -> Self {
        Self([1.0, 0.0, 0.0, 0.0, 1.0, v * h as f64])
    }

    /// The map of applying `self` first and then `next` (output → input maps compose as
    /// `self ∘ next`).
    pub fn then(&self, next: &Self) -> Self {
        let [a, b, c, d, e, f] = self.0;
        let [p, q, r, s, t, u] = next.0;
        Self([
            a * p + b * s,
            a * q + b * t,
            a * r + b * u + c,
            d * p + e * s,
            d * q + e * t,
            d * r + e * u + f,
        ])
    }

    /// Input position (edge coordinates) sampled by output position `(x, y)`.
    pub fn src(&self, x: f64, y: f64) -> (f64, f64) {
        let [a, b, c, d, e, f] = self.0;
        (a * x + b * y + c, d * x + e * y + f)
    }

    /// Output position of input position `(x, y)` (the inverse map), `None` if singular.
    pub fn dst(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let [a, b, c, d, e, f] = self.0;
        let det = a * e - b * d;
        if det.abs() < 1e-12 {
            return None;
        }
        let (u, v) = (x - c, y - f);
        Some(((e * u - b * v) / det, (-d * u + a * v) / det))
    }

    /// Pillow's nearest map (labels) and bilinear map (images) for an `h × w` image.
    pub(crate) fn maps(&self, h: usize, w: usize) -> (NearestMap, BilinearMap) {
        let (hf, wf) = (h as f64, w as f64);
        let nearest = NearestMap::from_fn(h, w, w, |r, c| {
            let (x, y) = self.src(c as f64 + 0.5, r as f64 + 0.5);
            // Pillow's COORD(): negative → −1, else truncation.
            if x < 0.0 || y < 0.0 || x >= wf || y >= hf {
                None
            } else {
                Some((y as usize, x as usize))
            }
        });
        let bilinear =
            BilinearMap::pillow(h, w, h, w, |r, c| self.src(c as f64 + 0.5, r as f64 + 0.5));
        (nearest, bilinear)
    }

    /// Moves every box with the forward map (bounding box of the four corners, clipped).
    pub(crate) fn map_boxes(&self, sample: &mut Sample) {
        let (h, w) = (sample.height(), sample.width());
        sample.map_boxes(|b| {
            b.map_corners(w, h, |x, y| self.dst(x, y).unwrap_or((f64::NAN, f64::NAN)))
        });
    }
}

/// Warps image (Pillow bilinear, in `f32` without the 8-bit round trip), label (Pillow nearest) and
/// boxes with `coeffs`; outside the input everything is 0.
///
/// ```
/// use masam_volume::augment::{affine, AffineCoeffs, Sample};
/// let mut label = ndarray::Array3::<u8>::zeros((1, 8, 8));
/// label[[0, 2, 4]] = 1;
/// let mut s = Sample::grey(ndarray::Array3::zeros((1, 8, 8)), label)?;
/// affine(&mut s, &AffineCoeffs::translate_x(-0.25, 8)); // content moves 2 columns right
/// assert_eq!(s.label[[0, 2, 6]], 1);
/// # Ok::<(), masam_volume::augment::AugmentError>(())
/// ```
pub fn affine(sample: &mut Sample, coeffs: &AffineCoeffs) {
    let (h, w) = (sample.height(), sample.width());
    let (nearest, bilinear) = coeffs.maps(h, w);
    sample.image = bilinear.apply4_f32(&sample.image);
    sample.label = nearest.apply3(sample.label.view(), 0);
    coeffs.map_boxes(sample);
}

/// Config of [`RandAffine`]. Each component is drawn uniformly from its range; the defaults are
/// the reference RandAugment magnitudes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandAffineConfig {
    /// Probability of applying.
    pub prob: f64,
    /// Shear range for x and for y (reference: ±0.3).
    pub shear: (f64, f64),
    /// Scale factor range (reference: [0.8, 1.2]).
    pub scale: (f64, f64),
    /// Translation range as a fraction of the size, for x and for y (reference: ±0.2).
    pub translate: (f64, f64),
    /// Scale anchor (reference: top-left).
    pub scale_anchor: ScaleAnchor,
}

impl Default for RandAffineConfig {
    fn default() -> Self {
        Self {
            prob: 0.5,
            shear: (-0.3, 0.3),
            scale: (0.8, 1.2),
            translate: (-0.2, 0.2),
            scale_anchor: ScaleAnchor::TopLeft,
        }
    }
}

/// Random combined shear x → shear y → scale → translate, applied with probability `prob` as one
/// Pillow-style warp. (The reference only uses these one at a time inside
/// [`RandAugment`](super::RandAugment); this is the MONAI-style standalone transform.)
#[derive(Debug, Clone)]
pub struct RandAffine {
    cfg: RandAffineConfig,
}

impl RandAffine {
    /// Validates the config.
    pub fn new(cfg: RandAffineConfig) -> Result<Self> {
        check_prob("rand_affine.prob", cfg.prob)?;
        check_range("rand_affine.shear", cfg.shear.0, cfg.shear.1)?;
        check_range("rand_affine.scale", cfg.scale.0, cfg.scale.1)?;
        check_range("rand_affine.translate", cfg.translate.0, cfg.translate.1)?;
        if cfg.scale.0 <= 0.0 {
            return Err(super::AugmentError::InvalidConfig {
                field: "rand_affine.scale",
                reason: format!("scale must be positive, got {}", cfg.scale.0),
            });
        }
        Ok(Self { cfg })
    }
}

impl RandTransform for RandAffine {
    /// The composed coefficients, or `None` when not applied.
    type Params = Option<AffineCoeffs>;

    fn randomize<R: Rng + ?Sized>(&self, sample: &Sample, rng: &mut R) -> Self::Params {
        if !coin(rng, self.cfg.prob) {
            return None;
        }
        let (h, w) = (sample.height(), sample.width());
        let c = &self.cfg;
        let sx = AffineCoeffs::shear_x(uniform(rng, c.shear.0, c.shear.1), h);
        let sy = AffineCoeffs::shear_y(uniform(rng, c.shear.0, c.shear.1), w);
        let sc = AffineCoeffs::scale(uniform(rng, c.scale.0, c.scale.1), c.scale_anchor, h, w);
        let tx = AffineCoeffs::translate_x(uniform(rng, c.translate.0, c.translate.1), w);
        let ty = AffineCoeffs::translate_y(uniform(rng, c.translate.0, c.translate.1), h);
        Some(sx.then(&sy).then(&sc).then(&tx).then(&ty))
    }

    fn apply_params(&self, sample: &mut Sample, params: &Self::Params) -> Result<()> {
        if let Some(c) = params {
            affine(sample, c);
        }
        Ok(())
    }
}
