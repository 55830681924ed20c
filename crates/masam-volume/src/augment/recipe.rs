//! [`Recipe`]: the reference training pipeline, seedable and deterministic per sample.

use super::{
    RandAugment, RandAugmentConfig, RandErase, RandEraseConfig, RandGamma, RandGammaConfig,
    RandRotFlip, RandRotFlipConfig, RandRotate, RandRotateConfig, RandTransform, Result, Sample,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Config of [`Recipe`]: one sub-config per step; `Default` is the reference pipeline (the
/// authors' `RandomGenerator`, see the [module docs](super)). Set a step's `prob` to 0 (or
/// `rand_augment.num_ops` to 0) to switch it off.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RecipeConfig {
    /// Step 1: rot90 + flip.
    pub rot_flip: RandRotFlipConfig,
    /// Step 2: free-angle rotation.
    pub rotate: RandRotateConfig,
    /// Step 3: gamma.
    pub gamma: RandGammaConfig,
    /// Step 4: random erasing.
    pub erase: RandEraseConfig,
    /// Step 5: RandAugment.
    pub rand_augment: RandAugmentConfig,
}

impl RecipeConfig {
    /// The reference pipeline (same as `Default`).
    pub fn reference() -> Self {
        Self::default()
    }

    /// The box-prompt variant (`dataset_bbox.py`): no erasing, and RandAugment over
    /// {posterize, contrast, brightness, sharpness, identity} only.
    pub fn box_variant() -> Self {
        let mut c = Self::default();
        c.erase.prob = 0.0;
        c.rand_augment.ops = super::AugmentOp::BOX_VARIANT.to_vec();
        c
    }
}

/// SplitMix64 finaliser: a bijective 64-bit mixer.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG of one sample: ChaCha8 keyed by a hash of `(seed, epoch, index)`.
///
/// Streams for different samples or epochs are independent, and the result does not depend on
/// which thread or in which order samples are processed.
///
/// ```
/// use masam_volume::augment::sample_rng;
/// use rand::Rng;
/// let a: u64 = sample_rng(1, 0, 5).random();
/// assert_eq!(a, sample_rng(1, 0, 5).random::<u64>());
/// assert_ne!(a, sample_rng(1, 1, 5).random::<u64>());
/// ```
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    let mut state = splitmix64(seed ^ 0x6D61_7361_6D2D_6175); // "masam-au"
    state = splitmix64(state ^ splitmix64(epoch.wrapping_add(0x0123_4567_89AB_CDEF)));
    state = splitmix64(state ^ splitmix64(index.wrapping_add(0xFEDC_BA98_7654_3210)));
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        state = splitmix64(state.wrapping_add(i as u64));
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// The reference augmentation pipeline: [`RandRotFlip`] → [`RandRotate`] → [`RandGamma`] →
/// [`RandErase`] → [`RandAugment`], driven by a per-sample RNG from [`sample_rng`].
///
/// Unlike the reference (which re-seeds Python's `random` per worker every epoch and copies the
/// same `default_rng(42)` into each worker, so gamma/erasing/RandAugment repeat every epoch), every
/// (seed, epoch, sample) gets its own stream. The pipeline does not resize; run `Resize` after it
/// for inputs that are not at the model size.
#[derive(Debug, Clone)]
pub struct Recipe {
    seed: u64,
    rot_flip: RandRotFlip,
    rotate: RandRotate,
    gamma: RandGamma,
    erase: RandErase,
    rand_augment: RandAugment,
}

impl Recipe {
    /// Builds the pipeline for a run seed; validates every sub-config.
    pub fn new(cfg: RecipeConfig, seed: u64) -> Result<Self> {
        Ok(Self {
            seed,
            rot_flip: RandRotFlip::new(cfg.rot_flip)?,
            rotate: RandRotate::new(cfg.rotate)?,
            gamma: RandGamma::new(cfg.gamma)?,
            erase: RandErase::new(cfg.erase)?,
            rand_augment: RandAugment::new(cfg.rand_augment)?,
        })
    }

    /// The run seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Augments sample `index` of `epoch` (deterministic in `(seed, epoch, index)`).
    pub fn apply(&self, sample: Sample, epoch: u64, index: u64) -> Result<Sample> {
        self.apply_with_rng(sample, &mut sample_rng(self.seed, epoch, index))
    }

    /// Augments with a caller-supplied RNG.
    pub fn apply_with_rng<R: rand::Rng + ?Sized>(
        &self,
        mut sample: Sample,
        rng: &mut R,
    ) -> Result<Sample> {
        self.rot_flip.apply(&mut sample, rng)?;
        self.rotate.apply(&mut sample, rng)?;
        self.gamma.apply(&mut sample, rng)?;
        self.erase.apply(&mut sample, rng)?;
        self.rand_augment.apply(&mut sample, rng)?;
        Ok(sample)
    }
}
