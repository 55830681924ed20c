//! Label map → one-hot targets and the mask of counted pixels.

use candle_core::{DType, Tensor};

use crate::error::{Result, TrainError};

/// PyTorch's default `ignore_index` for `nn.CrossEntropyLoss` (and the reference's).
pub const IGNORE_INDEX: i64 = -100;

/// Dense targets for a batch of label maps, shared by the cross-entropy and Dice terms.
///
/// Spatial dimensions are flattened: S = H·W (or D·H·W).
#[derive(Debug, Clone)]
pub struct SegTargets {
    /// (N, K, S) f32: 1 where the label equals the class; all-zero at ignored pixels.
    pub one_hot: Tensor,
    /// (N, 1, S) f32: 1 for pixels that count, 0 for ignored ones.
    pub mask: Tensor,
    /// Number of counted pixels (the cross-entropy denominator).
    pub n_valid: u64,
    /// The ignore index the targets were built with.
    pub ignore_index: i64,
}

impl SegTargets {
    /// Builds the targets for `num_classes` classes from `labels`.
    ///
    /// `labels` is (N, spatial...) of an integer dtype (i64, u32 or u8). Each value must be a class
    /// in `0..num_classes` or `ignore_index`, else [`TrainError::LabelOutOfRange`]. If
    /// `ignore_index` is itself a class index, pixels of that class are ignored (as in PyTorch).
    /// The one-hot encoding is one broadcast comparison against `arange(K)`, no per-class loop.
    ///
    /// # Shapes
    /// - `labels`: (N, S...) integer
    /// - `one_hot`: (N, K, ΠS) f32, `mask`: (N, 1, ΠS) f32
    ///
    /// ```
    /// # use candle_core::{Device, Tensor};
    /// use masam_train::losses::{SegTargets, IGNORE_INDEX};
    /// let y = Tensor::new(&[[0i64, 2, -100, 1]], &Device::Cpu).unwrap();
    /// let t = SegTargets::new(&y, 3, IGNORE_INDEX).unwrap();
    /// assert_eq!(t.n_valid, 3);
    /// assert_eq!(t.one_hot.dims(), &[1, 3, 4]);
    /// let m: Vec<f32> = t.mask.flatten_all().unwrap().to_vec1().unwrap();
    /// assert_eq!(m, vec![1., 1., 0., 1.]);
    /// ```
    pub fn new(labels: &Tensor, num_classes: usize, ignore_index: i64) -> Result<Self> {
        let y = match labels.dtype() {
            DType::I64 => labels.clone(),
            DType::U32 | DType::U8 => labels.to_dtype(DType::I64)?,
            dtype => {
                return Err(TrainError::UnsupportedDType {
                    what: "labels".into(),
                    dtype,
                })
            }
        };
        if y.rank() < 1 || num_classes == 0 {
            return Err(TrainError::ShapeMismatch {
                what: "labels (N, spatial...) with K >= 1 classes".into(),
                expected: vec![],
                got: y.dims().to_vec(),
            });
        }
        let n = y.dim(0)?;
        let s = y.elem_count().checked_div(n).unwrap_or(0);
        let y = y.reshape((n, 1, s))?;
        let dev = y.device();
        let classes =
            Tensor::arange(0i64, num_classes as i64, dev)?.reshape((1, num_classes, 1))?;
        let not_ignored = y.ne(ignore_index)?; // (N, 1, S) u8
        let hit = y.broadcast_eq(&classes)?.broadcast_mul(&not_ignored)?; // (N, K, S) u8
        let in_class = hit.sum_keepdim(1)?; // (N, 1, S) u8, 0 or 1 (classes are distinct)
                                            // Pixels that are neither ignored nor a class: not_ignored − in_class ∈ {0, 1}.
        let bad = (not_ignored - &in_class)?
            .to_dtype(DType::I64)?
            .sum_all()?
            .to_scalar::<i64>()?;
        if bad > 0 {
            return Err(TrainError::LabelOutOfRange {
                count: bad as u64,
                num_classes,
                ignore_index,
            });
        }
        let n_valid = in_class
            .to_dtype(DType::I64)?
            .sum_all()?
            .to_scalar::<i64>()? as u64;
        Ok(Self {
            one_hot: hit.to_dtype(DType::F32)?,
            mask: in_class.to_dtype(DType::F32)?,
            n_valid,
            ignore_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn out_of_range_labels_are_an_error() {
        let y = Tensor::new(&[[0i64, 3, -1, -100]], &Device::Cpu).unwrap();
        match SegTargets::new(&y, 3, IGNORE_INDEX) {
            Err(TrainError::LabelOutOfRange { count, .. }) => assert_eq!(count, 2),
            other => panic!("expected LabelOutOfRange, got {other:?}"),
        }
    }

    #[test]
    fn float_labels_are_an_error() {
        let y = Tensor::new(&[[0f32, 1.]], &Device::Cpu).unwrap();
        assert!(matches!(
            SegTargets::new(&y, 3, IGNORE_INDEX),
            Err(TrainError::UnsupportedDType { .. })
        ));
    }

    #[test]
    fn one_hot_is_exact() -> Result<()> {
        let y = Tensor::new(&[[[2u8, 0], [1, 1]]], &Device::Cpu)?;
        let t = SegTargets::new(&y, 3, IGNORE_INDEX)?;
        let oh: Vec<Vec<f32>> = t.one_hot.squeeze(0)?.to_vec2()?;
        assert_eq!(
            oh,
            vec![
                vec![0., 1., 0., 0.],
                vec![0., 0., 1., 1.],
                vec![1., 0., 0., 0.]
            ]
        );
        assert_eq!(t.n_valid, 4);
        Ok(())
    }

    #[test]
    fn ignore_index_inside_class_range_drops_that_class() -> Result<()> {
        let y = Tensor::new(&[[0i64, 1, 2, 0]], &Device::Cpu)?;
        let t = SegTargets::new(&y, 3, 0)?;
        assert_eq!(t.n_valid, 2);
        let m: Vec<f32> = t.mask.flatten_all()?.to_vec1()?;
        assert_eq!(m, vec![0., 1., 1., 0.]);
        Ok(())
    }
}
