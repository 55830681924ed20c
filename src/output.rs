//! Model outputs grouped per volume.

use candle_core::Tensor;
use masam_sam::SamOutput;

use crate::{Error, Result};

/// The outputs of [`MaSam::forward_volumes`](crate::MaSam::forward_volumes): B volumes of D
/// slices, K = classes + 1 mask channels (channel 0 is background).
#[derive(Debug, Clone)]
pub struct VolumeOutput {
    /// Mask logits (B, D, K, H, W).
    pub masks: Tensor,
    /// Predicted IoU per mask (B, D, K).
    pub iou_predictions: Tensor,
}

impl VolumeOutput {
    /// Regroups the per-slice outputs of [`MaSam::forward`](crate::MaSam::forward), whose rows
    /// are volume-major (row `b·D + d` is slice `d` of volume `b`), into `volumes` volumes.
    ///
    /// # Errors
    /// [`Error::Shape`] when the number of rows is not a multiple of `volumes`.
    pub fn from_slices(out: &SamOutput, volumes: usize) -> Result<Self> {
        let dims = out.masks.dims();
        if dims.len() != 4 || volumes == 0 || !dims[0].is_multiple_of(volumes) {
            return Err(Error::Shape {
                what: "per-slice masks",
                expected: format!("(B·D, K, H, W) with B = {volumes}"),
                found: dims.to_vec(),
            });
        }
        let (n, k, h, w) = (dims[0], dims[1], dims[2], dims[3]);
        let d = n / volumes;
        Ok(Self {
            masks: out.masks.reshape((volumes, d, k, h, w))?,
            iou_predictions: out.iou_predictions.reshape((volumes, d, k))?,
        })
    }

    /// The arg-max class of every voxel, (B, D, H, W) as `u32`.
    pub fn labels(&self) -> Result<Tensor> {
        Ok(self.masks.argmax(2)?)
    }
}
