//! [`RandAugment`]: the reference's RandAugment (2 distinct ops out of 10, Pillow semantics).

use super::rand_affine::{affine, AffineCoeffs, ScaleAnchor};
use super::rand_intensity::{dequantize, quantize, IntensityOp};
use super::{check_range, uniform, AugmentError, RandTransform, Result, Sample};
use ndarray::Axis;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The ops RandAugment chooses from, in the reference's index order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AugmentOp {
    /// Pillow affine `[1, v, −v·H/2, 0, 1, 0]`, `v ∈ shear`.
    ShearX,
    /// Pillow affine `[1, 0, 0, v, 1, −v·W/2]`, `v ∈ shear`.
    ShearY,
    /// Pillow affine `[v, 0, 0, 0, v, 0]` (or centred), `v ∈ scale`.
    Scale,
    /// Pillow affine `[1, 0, v·W, 0, 1, 0]`, `v ∈ translate`.
    TranslateX,
    /// Pillow affine `[1, 0, 0, 0, 1, v·H]`, `v ∈ translate`.
    TranslateY,
    /// Keep `int(v)` bits, `v ∈ posterize_bits`.
    Posterize,
    /// `ImageEnhance.Contrast`, `v ∈ contrast`.
    Contrast,
    /// `ImageEnhance.Brightness`, `v ∈ brightness`.
    Brightness,
    /// `ImageEnhance.Sharpness`, `v ∈ sharpness`.
    Sharpness,
    /// No change (still goes through the 8-bit round trip).
    Identity,
}

impl AugmentOp {
    /// The reference pool (`datasets/dataset.py`), in `rng.choice(10, …)` index order.
    pub const REFERENCE: [AugmentOp; 10] = [
        Self::ShearX,
        Self::ShearY,
        Self::Scale,
        Self::TranslateX,
        Self::TranslateY,
        Self::Posterize,
        Self::Contrast,
        Self::Brightness,
        Self::Sharpness,
        Self::Identity,
    ];

    /// The box-prompt variant's pool (`dataset_bbox.py`: geometric ops disabled).
    pub const BOX_VARIANT: [AugmentOp; 5] = [
        Self::Posterize,
        Self::Contrast,
        Self::Brightness,
        Self::Sharpness,
        Self::Identity,
    ];
}

/// Config of [`RandAugment`] (defaults: the reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandAugmentConfig {
    /// Pool to choose from (reference: [`AugmentOp::REFERENCE`]).
    pub ops: Vec<AugmentOp>,
    /// Distinct ops per sample, applied in the drawn order (reference: 2; 0 disables).
    pub num_ops: usize,
    /// Shear magnitude range (reference: ±0.3).
    pub shear: (f64, f64),
    /// Scale factor range (reference: [0.8, 1.2]).
    pub scale: (f64, f64),
    /// Translation range as a fraction of the size (reference: ±0.2).
    pub translate: (f64, f64),
    /// Posterize bits are `int(U(lo, hi))` (reference: [4, 8.99) → 4..=8).
    pub posterize_bits: (f64, f64),
    /// Contrast factor range (reference: [0.7, 1.3]).
    pub contrast: (f64, f64),
    /// Brightness factor range (reference: [0.7, 1.3]).
    pub brightness: (f64, f64),
    /// Sharpness factor range (reference: [0.1, 1.9]).
    pub sharpness: (f64, f64),
    /// Anchor of the scale op (reference: top-left; [`ScaleAnchor::Centre`] is a pure zoom).
    pub scale_anchor: ScaleAnchor,
    /// Run the whole op chain on the reference's 8-bit image (true). With false, geometric ops
    /// warp the `f32` image directly and each intensity op does its own 8-bit round trip.
    pub quantize: bool,
}

impl Default for RandAugmentConfig {
    fn default() -> Self {
        Self {
            ops: AugmentOp::REFERENCE.to_vec(),
            num_ops: 2,
            shear: (-0.3, 0.3),
            scale: (0.8, 1.2),
            translate: (-0.2, 0.2),
            posterize_bits: (4.0, 8.99),
            contrast: (0.7, 1.3),
            brightness: (0.7, 1.3),
            sharpness: (0.1, 1.9),
            scale_anchor: ScaleAnchor::TopLeft,
            quantize: true,
        }
    }
}

/// What one [`RandAugment`] draw decided: the chosen ops with their magnitudes, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct RandAugmentParams {
    /// `(op, magnitude)` pairs; the identity's magnitude is 0.
    pub ops: Vec<(AugmentOp, f64)>,
}

/// RandAugment as in the reference: always applied; picks `num_ops` distinct ops from the pool
/// (a partial Fisher–Yates draw, i.e. `rng.choice(n, k, replace=False)`), draws each magnitude
/// uniformly from its range, then applies the ops in order to every slice. Geometric ops warp the
/// image bilinearly and the label with nearest neighbour (fill 0) and move the boxes.
#[derive(Debug, Clone)]
pub struct RandAugment {
    cfg: RandAugmentConfig,
}

impl RandAugment {
    /// Validates the config.
    pub fn new(cfg: RandAugmentConfig) -> Result<Self> {
        if cfg.num_ops > cfg.ops.len() {
            return Err(AugmentError::InvalidConfig {
                field: "rand_augment.num_ops",
                reason: format!(
                    "{} distinct ops from a pool of {}",
                    cfg.num_ops,
                    cfg.ops.len()
                ),
            });
        }
        for (f, r) in [
            ("rand_augment.shear", cfg.shear),
            ("rand_augment.scale", cfg.scale),
            ("rand_augment.translate", cfg.translate),
            ("rand_augment.posterize_bits", cfg.posterize_bits),
            ("rand_augment.contrast", cfg.contrast),
            ("rand_augment.brightness", cfg.brightness),
            ("rand_augment.sharpness", cfg.sharpness),
        ] {
            check_range(f, r.0, r.1)?;
        }
        if cfg.scale.0 <= 0.0 || cfg.posterize_bits.0 < 1.0 || cfg.posterize_bits.1 >= 9.0 {
            return Err(AugmentError::InvalidConfig {
                field: "rand_augment.scale/posterize_bits",
                reason: "scale must be positive and posterize bits within [1, 9)".into(),
            });
        }
        Ok(Self { cfg })
    }

    fn range(&self, op: AugmentOp) -> Option<(f64, f64)> {
        let c = &self.cfg;
        match op {
            AugmentOp::ShearX | AugmentOp::ShearY => Some(c.shear),
            AugmentOp::Scale => Some(c.scale),
            AugmentOp::TranslateX | AugmentOp::TranslateY => Some(c.translate),
            AugmentOp::Posterize => Some(c.posterize_bits),
            AugmentOp::Contrast => Some(c.contrast),
            AugmentOp::Brightness => Some(c.brightness),
            AugmentOp::Sharpness => Some(c.sharpness),
            AugmentOp::Identity => None,
        }
    }

    fn geometry(&self, op: AugmentOp, v: f64, h: usize, w: usize) -> Option<AffineCoeffs> {
        match op {
            AugmentOp::ShearX => Some(AffineCoeffs::shear_x(v, h)),
            AugmentOp::ShearY => Some(AffineCoeffs::shear_y(v, w)),
            AugmentOp::Scale => Some(AffineCoeffs::scale(v, self.cfg.scale_anchor, h, w)),
            AugmentOp::TranslateX => Some(AffineCoeffs::translate_x(v, w)),
            AugmentOp::TranslateY => Some(AffineCoeffs::translate_y(v, h)),
            _ => None,
        }
    }

    fn intensity(op: AugmentOp, v: f64) -> Option<IntensityOp> {
        match op {
            AugmentOp::Posterize => Some(IntensityOp::Posterize(v as u8)),
            AugmentOp::Contrast => Some(IntensityOp::Contrast(v)),
            AugmentOp::Brightness => Some(IntensityOp::Brightness(v)),
            AugmentOp::Sharpness => Some(IntensityOp::Sharpness(v)),
            _ => None,
        }
    }
}

impl RandTransform for RandAugment {
    type Params = RandAugmentParams;

    fn randomize<R: Rng + ?Sized>(&self, _sample: &Sample, rng: &mut R) -> Self::Params {
        let n = self.cfg.ops.len();
        let mut idx: Vec<usize> = (0..n).collect();
        let mut ops = Vec::with_capacity(self.cfg.num_ops);
        for i in 0..self.cfg.num_ops {
            let j = rng.random_range(i..n);
            idx.swap(i, j);
            let op = self.cfg.ops[idx[i]];
            let v = self.range(op).map_or(0.0, |(lo, hi)| uniform(rng, lo, hi));
            ops.push((op, v));
        }
        RandAugmentParams { ops }
    }

    fn apply_params(&self, sample: &mut Sample, params: &Self::Params) -> Result<()> {
        if params.ops.is_empty() {
            return Ok(());
        }
        let (h, w) = (sample.height(), sample.width());
        if !self.cfg.quantize {
            for &(op, v) in &params.ops {
                if let Some(c) = self.geometry(op, v, h, w) {
                    affine(sample, &c);
                } else if let Some(i) = Self::intensity(op, v) {
                    i.apply(sample);
                }
            }
            return Ok(());
        }
        let mut q = quantize(sample);
        for &(op, v) in &params.ops {
            if let Some(c) = self.geometry(op, v, h, w) {
                let (nearest, bilinear) = c.maps(h, w);
                let s = q.shape().to_vec();
                let planes = q
                    .into_shape_with_order((s[0] * s[1], s[2], s[3]))
                    .expect("standard layout");
                let out = bilinear.apply3(
                    planes.view(),
                    0u8,
                    |v| v as f64,
                    |v| v.clamp(0.0, 255.0) as u8,
                );
                q = out
                    .into_shape_with_order((s[0], s[1], s[2], s[3]))
                    .expect("shape");
                sample.label = nearest.apply3(sample.label.view(), 0);
                c.map_boxes(sample);
            } else if let Some(i) = Self::intensity(op, v) {
                for d in 0..q.shape()[0] {
                    i.apply_u8(q.index_axis_mut(Axis(0), d));
                }
            }
        }
        dequantize(sample, &q);
        Ok(())
    }
}
