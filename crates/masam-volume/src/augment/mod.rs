//! Training augmentation: the MA-SAM reference recipe, made seedable and deterministic.
//!
//! The authors' reference code (`datasets/dataset.py: RandomGenerator`) applies, in
//! order: [`RandRotFlip`] (rot90 + flip), [`RandRotate`] (free angle in [−15, 14]°), [`RandGamma`]
//! (`adjust_light`), [`RandErase`] and [`RandAugment`] (2 distinct ops out of shear x/y, scale,
//! translate x/y, posterize, contrast, brightness, sharpness, identity). [`Recipe`] chains them with
//! the reference's probabilities and ranges as defaults.
//!
//! Every transform works on a [`Sample`]: an image stack `(D, C, H, W)` (C = 1 grey or 3 RGB, values
//! expected in [0, 1], i.e. after the per-stack min-max normalisation), a label stack `(D, H, W)` and
//! optional per-slice boxes. Geometry is applied identically to every slice, channel, the label and
//! the boxes; labels are only ever resampled with nearest neighbour (no new class id can appear).
//!
//! Randomness is explicit: every `Rand*` implements [`RandTransform`], whose
//! [`randomize`](RandTransform::randomize) draws all parameters once from a caller-supplied
//! [`rand::Rng`], and [`apply_params`](RandTransform::apply_params) applies them. There is no global
//! RNG; [`sample_rng`] derives an independent ChaCha8 stream per (run seed, epoch, sample index),
//! which makes the whole recipe bit-reproducible on any thread count. This fixes the reference's
//! per-worker re-seeding bug, where the gamma, erasing and RandAugment streams repeated every epoch.
//!
//! ```
//! use masam_volume::augment::{Recipe, RecipeConfig, Sample};
//! use ndarray::{Array3, Array4};
//!
//! let image = Array4::<f32>::from_elem((5, 1, 32, 32), 0.5);
//! let label = Array3::<u8>::zeros((5, 32, 32));
//! let recipe = Recipe::new(RecipeConfig::default(), 1234)?;
//! let a = recipe.apply(Sample::new(image.clone(), label.clone())?, 0, 7)?;
//! let b = recipe.apply(Sample::new(image, label)?, 0, 7)?;
//! assert_eq!(a, b); // same (seed, epoch, index) → same output
//! # Ok::<(), masam_volume::augment::AugmentError>(())
//! ```

mod error;
mod geometry;
pub mod rand_affine;
pub mod rand_augment;
pub mod rand_erase;
pub mod rand_flip;
pub mod rand_gamma;
pub mod rand_intensity;
pub mod rand_rot_flip;
pub mod rand_rotate;
pub mod recipe;
mod sample;

pub use error::{AugmentError, Result};
pub use geometry::Interp;
pub use rand_affine::{affine, AffineCoeffs, RandAffine, RandAffineConfig, ScaleAnchor};
pub use rand_augment::{AugmentOp, RandAugment, RandAugmentConfig, RandAugmentParams};
pub use rand_erase::{erase, EraseParams, RandErase, RandEraseConfig};
pub use rand_flip::{flip, FlipAxis, RandFlip, RandFlipConfig};
pub use rand_gamma::{gamma, RandGamma, RandGammaConfig};
pub use rand_intensity::{brightness, contrast, posterize, sharpness, IntensityOp};
pub use rand_rot_flip::{rot90, RandRotFlip, RandRotFlipConfig, RotFlipParams};
pub use rand_rotate::{rotate, RandRotate, RandRotateConfig};
pub use recipe::{sample_rng, Recipe, RecipeConfig};
pub use sample::{BoxXyxy, Sample};

use rand::Rng;

/// A random transform with MONAI's split: draw the parameters once, then apply them to the image,
/// the label and the boxes alike.
pub trait RandTransform {
    /// Everything one draw decides (`None` inside usually means "not applied this time").
    type Params: Clone + std::fmt::Debug;

    /// Draws the parameters from `rng` (the only source of randomness); `sample` is only read for
    /// its size.
    fn randomize<R: Rng + ?Sized>(&self, sample: &Sample, rng: &mut R) -> Self::Params;

    /// Applies already drawn parameters to `sample` in place.
    fn apply_params(&self, sample: &mut Sample, params: &Self::Params) -> Result<()>;

    /// Validates `sample`, draws the parameters and applies them; returns what was drawn.
    fn apply<R: Rng + ?Sized>(&self, sample: &mut Sample, rng: &mut R) -> Result<Self::Params> {
        sample.validate()?;
        let params = self.randomize(sample, rng);
        self.apply_params(sample, &params)?;
        Ok(params)
    }
}

/// One Bernoulli draw: `true` with probability `prob` (always consumes one `f64`).
pub(crate) fn coin<R: Rng + ?Sized>(rng: &mut R, prob: f64) -> bool {
    rng.random::<f64>() < prob
}

/// `numpy`-style `uniform(lo, hi)`: `lo + (hi - lo) * U[0, 1)`.
pub(crate) fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Checks a probability field.
pub(crate) fn check_prob(field: &'static str, p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(AugmentError::InvalidConfig {
            field,
            reason: format!("probability {p} is outside [0, 1]"),
        })
    }
}

/// Checks an ordered finite range field.
pub(crate) fn check_range(field: &'static str, lo: f64, hi: f64) -> Result<()> {
    if lo.is_finite() && hi.is_finite() && lo <= hi {
        Ok(())
    } else {
        Err(AugmentError::InvalidConfig {
            field,
            reason: format!("range [{lo}, {hi}] is empty or not finite"),
        })
    }
}
