//! [`RandGamma`]: the reference's `adjust_light` (gamma through an 8-bit lookup table).

use super::{check_prob, check_range, coin, uniform, RandTransform, Result, Sample};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Applies gamma `gamma` to every image value (labels and boxes are untouched).
///
/// With `quantize = true` this is the reference bit for bit: `v = trunc(clamp(x·255, 0, 255))`
/// (`astype(uint8)`, inputs outside [0, 1] are clamped instead of wrapping), then the LUT
/// `trunc(((i/255)^(1/gamma))·255)` built in f64, then `/255`. With `quantize = false` it is the
/// continuous `clamp(x, 0, 1)^(1/gamma)`.
///
/// ```
/// use masam_volume::augment::{gamma, Sample};
/// let image = ndarray::Array3::<f32>::from_elem((1, 2, 2), 0.25);
/// let mut s = Sample::grey(image, ndarray::Array3::zeros((1, 2, 2)))?;
/// gamma(&mut s, 2.0, false);
/// assert!((s.image[[0, 0, 0, 0]] - 0.5).abs() < 1e-6);
/// # Ok::<(), masam_volume::augment::AugmentError>(())
/// ```
pub fn gamma(sample: &mut Sample, gamma: f64, quantize: bool) {
    let inv = 1.0 / gamma;
    if quantize {
        let mut lut = [0f32; 256];
        for (i, v) in lut.iter_mut().enumerate() {
            let t = ((i as f64 / 255.0).powf(inv) * 255.0) as u8;
            *v = t as f32 / 255.0;
        }
        sample
            .image
            .mapv_inplace(|x| lut[(x * 255.0).clamp(0.0, 255.0) as u8 as usize]);
    } else {
        sample
            .image
            .mapv_inplace(|x| (x.clamp(0.0, 1.0) as f64).powf(inv) as f32);
    }
}

/// Config of [`RandGamma`] (defaults: the reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandGammaConfig {
    /// Probability of applying (reference: 0.5).
    pub prob: f64,
    /// Smallest gamma (reference: 0.5).
    pub min_gamma: f64,
    /// Largest gamma, exclusive (reference: 3.5, from `random.random() * 3 + 0.5`).
    pub max_gamma: f64,
    /// Go through the reference's 8-bit LUT (true) or apply the exact power (false).
    pub quantize: bool,
}

impl Default for RandGammaConfig {
    fn default() -> Self {
        Self {
            prob: 0.5,
            min_gamma: 0.5,
            max_gamma: 3.5,
            quantize: true,
        }
    }
}

/// Random gamma (`x^(1/gamma)`, so gamma > 1 brightens), with probability `prob`.
#[derive(Debug, Clone)]
pub struct RandGamma {
    cfg: RandGammaConfig,
}

impl RandGamma {
    /// Validates the config.
    pub fn new(cfg: RandGammaConfig) -> Result<Self> {
        check_prob("rand_gamma.prob", cfg.prob)?;
        check_range(
            "rand_gamma.min_gamma..max_gamma",
            cfg.min_gamma,
            cfg.max_gamma,
        )?;
        if cfg.min_gamma <= 0.0 {
            return Err(super::AugmentError::InvalidConfig {
                field: "rand_gamma.min_gamma",
                reason: format!("gamma must be positive, got {}", cfg.min_gamma),
            });
        }
        Ok(Self { cfg })
    }
}

impl RandTransform for RandGamma {
    /// The gamma, or `None` when not applied.
    type Params = Option<f64>;

    fn randomize<R: Rng + ?Sized>(&self, _sample: &Sample, rng: &mut R) -> Self::Params {
        coin(rng, self.cfg.prob).then(|| uniform(rng, self.cfg.min_gamma, self.cfg.max_gamma))
    }

    fn apply_params(&self, sample: &mut Sample, params: &Self::Params) -> Result<()> {
        if let Some(g) = params {
            gamma(sample, *g, self.cfg.quantize);
        }
        Ok(())
    }
}
