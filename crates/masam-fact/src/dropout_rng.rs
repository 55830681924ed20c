//! Seeded, restartable dropout masks for FacT.
//!
//! candle's CPU random generator cannot be seeded, so `candle_nn::ops::dropout` makes every
//! training run different. FacT draws its masks here instead: mask number `i` of training step
//! `t` of a run seeded with `s` is a pure function of `(s, t, i)` (a ChaCha8 stream keyed by the
//! three). Nothing has to be saved for a resumed run to draw the masks an uninterrupted run
//! would have drawn: the trainer calls [`DropoutRng::begin_step`] with the step it is about to
//! take, and the forward pass draws its masks in its fixed order.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Result, Shape, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The source of FacT's dropout masks, shared by every increment of a model.
///
/// ```
/// use candle_core::{DType, Device};
/// use masam_fact::DropoutRng;
/// # fn main() -> candle_core::Result<()> {
/// let rng = DropoutRng::new(42);
/// rng.begin_step(3);
/// let a = rng.mask((4, 8), 0.5, DType::F32, &Device::Cpu)?;
/// rng.begin_step(3); // the same step again (e.g. after a resume): the same masks
/// let b = rng.mask((4, 8), 0.5, DType::F32, &Device::Cpu)?;
/// assert_eq!(a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
/// // kept entries are scaled by 1 / (1 − p), dropped ones are zero
/// assert!(a.flatten_all()?.to_vec1::<f32>()?.iter().all(|&v| v == 0.0 || v == 2.0));
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct DropoutRng {
    seed: AtomicU64,
    step: AtomicU64,
    draws: AtomicU64,
}

impl DropoutRng {
    /// A generator for a run seeded with `seed`, at step 0.
    pub fn new(seed: u64) -> Self {
        Self {
            seed: AtomicU64::new(seed),
            step: AtomicU64::new(0),
            draws: AtomicU64::new(0),
        }
    }

    /// Sets the run seed (and goes back to step 0).
    pub fn reseed(&self, seed: u64) {
        self.seed.store(seed, Ordering::SeqCst);
        self.begin_step(0);
    }

    /// The run seed.
    pub fn seed(&self) -> u64 {
        self.seed.load(Ordering::SeqCst)
    }

    /// Starts the masks of training step `step`: the next mask drawn is that step's first.
    pub fn begin_step(&self, step: u64) {
        self.step.store(step, Ordering::SeqCst);
        self.draws.store(0, Ordering::SeqCst);
    }

    /// How many masks the current step has drawn so far: the number of the next mask.
    ///
    /// With [`DropoutRng::set_draws`] a computation that runs part of a forward pass again
    /// (activation checkpointing) replays that part's masks:
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// use masam_fact::DropoutRng;
    /// # fn main() -> candle_core::Result<()> {
    /// let rng = DropoutRng::new(7);
    /// rng.begin_step(2);
    /// rng.mask(16, 0.5, DType::F32, &Device::Cpu)?; // mask 0
    /// let start = rng.draws(); // 1
    /// let first = rng.mask(16, 0.5, DType::F32, &Device::Cpu)?.to_vec1::<f32>()?;
    /// let end = rng.draws(); // 2
    /// rng.set_draws(start); // run that part again
    /// let again = rng.mask(16, 0.5, DType::F32, &Device::Cpu)?.to_vec1::<f32>()?;
    /// assert_eq!(first, again);
    /// rng.set_draws(end); // and continue where the first run stopped
    /// assert_eq!((start, end, rng.draws()), (1, 2, 2));
    /// # Ok(()) }
    /// ```
    pub fn draws(&self) -> u64 {
        self.draws.load(Ordering::SeqCst)
    }

    /// Makes mask number `draws` of the current step the next one drawn (see
    /// [`DropoutRng::draws`]); the step and the seed do not change.
    pub fn set_draws(&self, draws: u64) {
        self.draws.store(draws, Ordering::SeqCst);
    }

    /// The next inverted-dropout mask: each entry is `1 / (1 − p)` with probability `1 − p`,
    /// else 0 (`x * mask` is dropout of `x`, as `candle_nn::ops::dropout`).
    ///
    /// # Errors
    /// `p` outside `[0, 1)`, or the tensor cannot be made on `device` in `dtype`.
    pub fn mask(
        &self,
        shape: impl Into<Shape>,
        p: f32,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            candle_core::bail!("dropout probability {p} is outside [0, 1)");
        }
        let shape = shape.into();
        let draw = self.draws.fetch_add(1, Ordering::SeqCst);
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed().to_le_bytes());
        key[8..16].copy_from_slice(&self.step.load(Ordering::SeqCst).to_le_bytes());
        key[16..24].copy_from_slice(&draw.to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(key);
        let keep = 1.0 / (1.0 - p);
        let values: Vec<f32> = (0..shape.elem_count())
            .map(|_| if rng.random::<f32>() >= p { keep } else { 0.0 })
            .collect();
        Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(rng: &DropoutRng) -> Vec<f32> {
        rng.mask(1000, 0.3, DType::F32, &Device::Cpu)
            .and_then(|t| t.to_vec1())
            .expect("a mask")
    }

    #[test]
    fn masks_depend_on_seed_step_and_draw_only() {
        let a = DropoutRng::new(1);
        a.begin_step(5);
        let (a0, a1) = (draw(&a), draw(&a));
        assert_ne!(a0, a1, "two draws of a step differ");
        let b = DropoutRng::new(1);
        b.begin_step(5);
        assert_eq!(draw(&b), a0);
        assert_eq!(draw(&b), a1);
        b.begin_step(6);
        assert_ne!(draw(&b), a0, "another step, other masks");
        let c = DropoutRng::new(2);
        c.begin_step(5);
        assert_ne!(draw(&c), a0, "another seed, other masks");
        let dropped = a0.iter().filter(|&&v| v == 0.0).count();
        assert!(
            (200..400).contains(&dropped),
            "{dropped} of 1000 dropped at p = 0.3"
        );
    }

    #[test]
    fn probability_out_of_range_is_an_error() {
        let r = DropoutRng::new(0);
        assert!(r.mask(4, 1.0, DType::F32, &Device::Cpu).is_err());
        assert!(r.mask(4, -0.1, DType::F32, &Device::Cpu).is_err());
        assert!(r.mask(4, f32::NAN, DType::F32, &Device::Cpu).is_err());
    }
}
