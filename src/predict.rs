//! Whole-volume prediction with the reference pipeline: per-stack preprocessing, the sliding
//! window with probability averaging, and the labels mapped back onto the volume's grid.

use candle_core::{Device, Tensor};
use masam_sam::Prompt;
use masam_volume::ndarray::{Array3, Axis};
use masam_volume::transforms::SliceStack;
use masam_volume::Volume;

use crate::inferers::SliceWindowInferer;
use crate::model::MaSam;
use crate::{Error, Result};

/// Predicts a label volume on the grid of `image` (same shape, spacing and affine).
///
/// Every slice is the centre of one D-slice stack built by `stack` exactly as in training
/// (intensity chain per stack, orientation, resize); windows are evaluated `batch` at a time on
/// `device`; softmax probabilities of all D output slices are averaged (`reference-spec.md` §5);
/// the arg-max labels are resized back (nearest) and re-oriented onto the source grid.
pub fn predict_volume(
    model: &MaSam,
    image: &Volume<f32>,
    stack: &SliceStack,
    batch: usize,
    device: &Device,
) -> Result<Volume<u8>> {
    let d = model.config.slices;
    if stack.config().depth != d {
        return Err(Error::Config(format!(
            "stack depth {} differs from the model's {d} slices",
            stack.config().depth
        )));
    }
    let [z, y, x] = image.shape_zyx();
    let first = stack
        .image_stack(image, 0)
        .map_err(|e| Error::Config(format!("preprocessing: {e}")))?;
    let (_, h, w) = first.dim();
    let k = model.config.num_classes() + 1;
    let inferer = SliceWindowInferer::new(d, batch);
    let out = inferer.run_with_stacks(
        [z, h, w],
        k,
        false,
        |c| {
            let s = stack
                .image_stack(image, c)
                .map_err(|e| candle_core::Error::Msg(format!("preprocessing slice {c}: {e}")))?;
            Ok(s.into_iter().collect())
        },
        |stacks: &Tensor| {
            let (b, dd, hh, ww) = stacks.dims4()?;
            let x = stacks
                .unsqueeze(2)?
                .broadcast_as((b, dd, 3, hh, ww))?
                .contiguous()?
                .to_device(device)?;
            let o = model
                .forward(&x, &Prompt::None, false)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            masam_nn::softmax_last_dim(&o.masks.permute((0, 2, 3, 1))?)?
                .permute((0, 3, 1, 2))?
                .to_device(&Device::Cpu)
        },
    )?;
    let model_grid =
        Array3::from_shape_vec((z, h, w), out.labels).map_err(|e| Error::Config(e.to_string()))?;
    let mut labels = Array3::<u8>::zeros((z, y, x));
    for (i, mut dst) in labels.axis_iter_mut(Axis(0)).enumerate() {
        let back = stack.labels_to_volume_grid(&model_grid.index_axis(Axis(0), i), (y, x));
        dst.assign(&back);
    }
    Ok(Volume {
        data: labels,
        spacing: image.spacing,
        affine: image.affine,
    })
}
