//! [`DiceCeLoss`]: `ce_weight·CE + dice_weight·Dice`, the MA-SAM fine-tuning loss.

use candle_core::{DType, Tensor};

use super::cross_entropy::cross_entropy;
use super::dice::soft_dice;
use super::fused::dice_ce_fused;
use super::log_softmax::log_softmax;
use super::targets::SegTargets;
use crate::error::{Result, TrainError};

pub use super::dice_ce_config::DiceCeLossConfig;
pub use super::dice_ce_output::DiceCeOutput;

/// Cross-entropy + soft Dice on class logits, exactly as the reference `calc_loss`.
///
/// - CE = mean over non-ignored pixels of `−log softmax(logits)[label]`;
/// - Dice = mean over all K classes of `1 − (2Σp·t·m + s)/(Σp²·m + Σt²·m + s)` with sums over the
///   whole batch, p = softmax over classes, t = one-hot label, m = non-ignored mask;
/// - total = `ce_weight·CE + dice_weight·Dice`.
///
/// Computation is f32 whatever the logits dtype (the reference's CE autocasts to f32 too).
/// Any number of spatial dimensions works (2D slices or 3D volumes). On the CPU the loss runs as
/// one fused op with an analytic gradient ([`fused`](super::fused), about 10× faster than the
/// composite ops, f64 sums, deterministic for any rayon pool size); elsewhere it is composed of
/// candle ops ([`DiceCeLoss::forward_composite`]).
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use masam_train::losses::{DiceCeLoss, DiceCeLossConfig};
/// # fn main() -> masam_train::Result<()> {
/// let dev = Device::Cpu;
/// let logits = Var::randn(0f32, 1., (2, 3, 4, 4), &dev)?; // (N, K, H, W)
/// let labels = Tensor::zeros((2, 4, 4), candle_core::DType::I64, &dev)?; // (N, H, W)
/// let loss = DiceCeLoss::new(DiceCeLossConfig::default())?;
/// let out = loss.forward(logits.as_tensor(), &labels)?;
/// let grads = out.total.backward()?;
/// assert!(grads.get(logits.as_tensor()).is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DiceCeLoss {
    cfg: DiceCeLossConfig,
}

impl DiceCeLoss {
    /// A loss with the given configuration (validated).
    pub fn new(cfg: DiceCeLossConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &DiceCeLossConfig {
        &self.cfg
    }

    /// Computes the loss.
    ///
    /// Uses the fused CPU op ([`forward_fused`](Self::forward_fused)) when logits and labels are
    /// on the CPU, else the composite implementation ([`forward_composite`](Self::forward_composite)).
    /// Both give the same values (to f32 rounding) and the same errors.
    ///
    /// # Shapes
    /// - `logits`: (N, K, H, W) (or (N, K, spatial...)), any float dtype
    /// - `labels`: (N, H, W) (or (N, spatial...)), i64/u32/u8, values in `0..K` or `ignore_index`
    /// - returns: three scalars
    ///
    /// # Errors
    /// [`TrainError::ShapeMismatch`] if the shapes disagree, [`TrainError::UnsupportedDType`],
    /// [`TrainError::LabelOutOfRange`], [`TrainError::AllIgnored`] if no pixel counts.
    pub fn forward(&self, logits: &Tensor, labels: &Tensor) -> Result<DiceCeOutput> {
        if logits.device().is_cpu() && labels.device().is_cpu() {
            self.forward_fused(logits, labels)
        } else {
            self.forward_composite(logits, labels)
        }
    }

    /// The loss as one fused CPU op with an analytic gradient (see [`fused`](super::fused)).
    ///
    /// Sums are accumulated in f64 over fixed chunks of pixels, so the result does not depend on
    /// the rayon pool size. Logits of another float dtype are first converted to f32, as in
    /// [`forward_composite`](Self::forward_composite).
    ///
    /// # Shapes
    /// As [`forward`](Self::forward).
    ///
    /// # Errors
    /// As [`forward`](Self::forward); also [`TrainError::Candle`] if the tensors are not on the CPU.
    pub fn forward_fused(&self, logits: &Tensor, labels: &Tensor) -> Result<DiceCeOutput> {
        check_shapes(logits, labels)?;
        let logits = logits_as_f32(logits)?;
        dice_ce_fused(&logits, labels, &self.cfg)
    }

    /// The loss built from candle tensor ops (log-softmax, one-hot targets, blocked sums), on any
    /// device; candle's autograd gives the backward.
    ///
    /// # Shapes
    /// As [`forward`](Self::forward).
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    pub fn forward_composite(&self, logits: &Tensor, labels: &Tensor) -> Result<DiceCeOutput> {
        check_shapes(logits, labels)?;
        let logits = logits_as_f32(logits)?;
        let dims = logits.dims();
        let (n, k) = (dims[0], dims[1]);
        let s: usize = dims[2..].iter().product();
        let targets = SegTargets::new(labels, k, self.cfg.ignore_index)?;
        let logits = logits.reshape((n, k, s))?;
        let log_probs = log_softmax(&logits, 1)?;
        let probs = log_probs.exp()?;
        let ce = cross_entropy(&log_probs, &targets)?;
        let dice = soft_dice(&probs, &targets, self.cfg.smooth)?;
        let total =
            (ce.affine(self.cfg.ce_weight, 0.0)? + dice.affine(self.cfg.dice_weight, 0.0)?)?;
        Ok(DiceCeOutput { total, ce, dice })
    }
}

/// Checks that `labels` is `logits`' shape without the class dimension.
fn check_shapes(logits: &Tensor, labels: &Tensor) -> Result<()> {
    let dims = logits.dims();
    let expected_labels: Vec<usize> = dims
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 1)
        .map(|(_, &d)| d)
        .collect();
    if dims.len() < 2 || labels.dims() != expected_labels.as_slice() {
        return Err(TrainError::ShapeMismatch {
            what: "labels (N, spatial...) for logits (N, K, spatial...)".into(),
            expected: expected_labels,
            got: labels.dims().to_vec(),
        });
    }
    Ok(())
}

/// The logits in f32 (a differentiable conversion for the other float dtypes).
fn logits_as_f32(logits: &Tensor) -> Result<Tensor> {
    match logits.dtype() {
        DType::F32 => Ok(logits.clone()),
        DType::F16 | DType::BF16 | DType::F64 => Ok(logits.to_dtype(DType::F32)?),
        dtype => Err(TrainError::UnsupportedDType {
            what: "logits".into(),
            dtype,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn shape_mismatch_is_an_error() {
        let dev = Device::Cpu;
        let logits = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev).unwrap();
        let labels = Tensor::zeros((2, 4, 5), DType::I64, &dev).unwrap();
        let loss = DiceCeLoss::new(DiceCeLossConfig::default()).unwrap();
        assert!(matches!(
            loss.forward(&logits, &labels),
            Err(TrainError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn all_ignored_is_an_error() {
        let dev = Device::Cpu;
        let logits = Tensor::zeros((1, 2, 2, 2), DType::F32, &dev).unwrap();
        let labels = Tensor::full(-100i64, (1, 2, 2), &dev).unwrap();
        let loss = DiceCeLoss::new(DiceCeLossConfig::default()).unwrap();
        assert!(matches!(
            loss.forward(&logits, &labels),
            Err(TrainError::AllIgnored { ignore_index: -100 })
        ));
    }

    #[test]
    fn negative_weight_is_rejected() {
        assert!(DiceCeLoss::new(DiceCeLossConfig::default().with_dice_weight(-1.0)).is_err());
        assert!(DiceCeLoss::new(DiceCeLossConfig::default().with_smooth(f64::NAN)).is_err());
    }

    #[test]
    fn perfect_prediction_has_small_loss() -> Result<()> {
        let dev = Device::Cpu;
        // Class 1 everywhere, predicted with a huge margin: CE ≈ 0; Dice: class 1 ≈ 0, class 0 ≈ 0
        // (no target, no prediction: (0 + s)/(0 + s) = 1 → loss 0).
        let logits = Tensor::new(&[[[-50f32, -50.], [50., 50.]]], &dev)?; // (1, 2, 2)
        let labels = Tensor::new(&[[1i64, 1]], &dev)?; // (1, 2)
        let out = DiceCeLoss::new(DiceCeLossConfig::default())?.forward(&logits, &labels)?;
        let t: f32 = out.total.to_scalar()?;
        assert!(t.abs() < 1e-6, "{t}");
        Ok(())
    }
}
