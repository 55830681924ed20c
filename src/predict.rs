//! Whole-volume prediction with the reference pipeline: per-stack preprocessing, the sliding
//! window with probability averaging, and the labels mapped back onto the volume's grid.

use candle_core::{DType, Device, Tensor};
use masam_sam::Prompt;
use masam_volume::boxes::{project_stack, Box3d, ModelGrid};
use masam_volume::ndarray::{Array3, Axis};
use masam_volume::transforms::SliceStack;
use masam_volume::Volume;

use crate::inferers::SliceWindowInferer;
use crate::model::MaSam;
use crate::{Error, Result};

/// How a volume is predicted: windows per forward pass, window stride, device.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Windows (stacks of D slices) per forward pass: more is faster and needs more memory.
    pub batch: usize,
    /// Slices between window centres: 1 (the reference: a window centred on every slice) to D
    /// (non-overlapping windows, D times fewer forward passes); see
    /// [`SliceWindowInferer::stride`].
    pub stride: usize,
    /// Where the forward passes run.
    pub device: Device,
}

impl Default for PredictOptions {
    /// 4 windows per pass, stride 1, CPU.
    fn default() -> Self {
        Self {
            batch: 4,
            stride: 1,
            device: Device::Cpu,
        }
    }
}

/// Predicts a label volume on the grid of `image` (same shape, spacing and affine).
///
/// Every slice is the centre of one D-slice stack built by `stack` exactly as in training
/// (intensity chain per stack, orientation, resize); windows are evaluated `batch` at a time on
/// `device`; softmax probabilities of all D output slices are averaged (as the reference does);
/// the arg-max labels are resized back (nearest) and re-oriented onto the source grid.
pub fn predict_volume(
    model: &MaSam,
    image: &Volume<f32>,
    stack: &SliceStack,
    batch: usize,
    device: &Device,
) -> Result<Volume<u8>> {
    let opts = PredictOptions {
        batch,
        stride: 1,
        device: device.clone(),
    };
    predict(model, image, stack, &opts, None)
}

/// [`predict_volume`] or [`predict_volume_with_box`] with every option, e.g. a window stride
/// above 1 (faster, and less exact than the reference's stride 1: `docs/performance.md` has the
/// trade-off).
pub fn predict_volume_with(
    model: &MaSam,
    image: &Volume<f32>,
    stack: &SliceStack,
    opts: &PredictOptions,
    box3d: Option<&Box3d>,
) -> Result<Volume<u8>> {
    if let Some(b) = box3d {
        b.check(image.shape_zyx())?;
    }
    predict(model, image, stack, opts, box3d)
}

/// Box-prompted prediction (the reference's box-prompt variant): like
/// [`predict_volume`], but every window gets the 3D box `box3d` (voxel indices of `image`)
/// projected onto the model grid as a per-slice 2D box prompt, tiled over the stack as the
/// reference does. Windows whose slices all miss the box predict background without running the
/// model. A box that is inverted or reaches outside the volume is an [`Error::Box`].
pub fn predict_volume_with_box(
    model: &MaSam,
    image: &Volume<f32>,
    stack: &SliceStack,
    batch: usize,
    device: &Device,
    box3d: &Box3d,
) -> Result<Volume<u8>> {
    box3d.check(image.shape_zyx())?;
    let opts = PredictOptions {
        batch,
        stride: 1,
        device: device.clone(),
    };
    predict(model, image, stack, &opts, Some(box3d))
}

/// Class probabilities (b·D, K, H, W) of a batch of stacks (b, D, H, W).
fn probabilities(
    model: &MaSam,
    stacks: &Tensor,
    prompt: &Prompt,
    device: &Device,
) -> Result<Tensor> {
    let (b, d, h, w) = stacks.dims4()?;
    let x = stacks
        .unsqueeze(2)?
        .broadcast_as((b, d, 3, h, w))?
        .contiguous()?
        .to_device(device)?;
    let prompt = match prompt {
        Prompt::Boxes(t) => Prompt::Boxes(t.to_device(device)?),
        other => other.clone(),
    };
    let o = model.forward(&x, &prompt, crate::Mode::Eval)?;
    Ok(masam_nn::softmax_last_dim(&o.masks.permute((0, 2, 3, 1))?)?
        .permute((0, 3, 1, 2))?
        .to_device(&Device::Cpu)?)
}

fn predict(
    model: &MaSam,
    image: &Volume<f32>,
    stack: &SliceStack,
    opts: &PredictOptions,
    box3d: Option<&Box3d>,
) -> Result<Volume<u8>> {
    // no graph, FacT merged: memory bounded by one batch of windows
    let converted;
    let model = if model.is_inference() {
        model
    } else {
        converted = model.to_inference()?;
        &converted
    };
    let d = model.config.slices;
    if stack.config().depth != d {
        return Err(Error::Config(format!(
            "stack depth {} differs from the model's {d} slices",
            stack.config().depth
        )));
    }
    let [z, y, x] = image.shape_zyx();
    let (h, w) = stack.config().out_size.unwrap_or((y, x));
    let grid = ModelGrid {
        shape_yx: (y, x),
        model_hw: (h, w),
        orient: stack.config().orient,
    };
    let k = model.config.num_classes() + 1;
    let device = &opts.device;
    let inferer = SliceWindowInferer::new(d, opts.batch).with_stride(opts.stride);
    let centres = inferer.centres(z);
    let mut next_window = 0usize;
    let out = inferer.run_with_stacks(
        [z, h, w],
        k,
        false,
        |c| -> Result<Vec<f32>> {
            let s = stack.image_stack(image, c).map_err(|source| Error::Stack {
                volume: 0,
                slice: c,
                source: Box::new(source),
            })?;
            Ok(s.into_iter().collect())
        },
        |stacks: &Tensor| -> Result<Tensor> {
            let b = stacks.dim(0)?;
            let centers = centres[next_window..next_window + b].to_vec();
            next_window += b;
            let Some(box3d) = box3d else {
                return probabilities(model, stacks, &Prompt::None, device);
            };
            // per window: the tiled box prompt, or None when the window misses the box
            let mut boxes = Vec::with_capacity(b);
            for c in centers {
                let idx = stack.indices(z, c)?;
                boxes.push(project_stack(box3d, &idx, &grid));
            }
            let mut background = Tensor::zeros((d, k, h, w), DType::F32, &Device::Cpu)?;
            background = background.slice_assign(
                &[0..d, 0..1, 0..h, 0..w],
                &Tensor::ones((d, 1, h, w), DType::F32, &Device::Cpu)?,
            )?;
            let flat: Vec<f32> = boxes
                .iter()
                .flat_map(|bx| match bx {
                    Some(v) => v.iter().flatten().copied().collect::<Vec<f32>>(),
                    None => [0f32, 0., 1., 1.].repeat(d),
                })
                .collect();
            let probs = if boxes.iter().any(Option::is_some) {
                let prompt = Prompt::Boxes(Tensor::from_vec(flat, (b * d, 4), &Device::Cpu)?);
                Some(probabilities(model, stacks, &prompt, device)?)
            } else {
                None
            };
            let parts: Vec<Tensor> = boxes
                .iter()
                .enumerate()
                .map(|(wi, bx)| match (bx, &probs) {
                    (Some(_), Some(p)) => p.narrow(0, wi * d, d),
                    _ => Ok(background.clone()),
                })
                .collect::<candle_core::Result<_>>()?;
            Ok(Tensor::cat(&parts, 0)?)
        },
    )?;
    let model_grid = Array3::from_shape_vec((z, h, w), out.labels).map_err(|_| Error::Shape {
        what: "predicted labels",
        expected: format!("{z} × {h} × {w} values"),
        found: vec![z, h, w],
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MaSamConfig;
    use masam_volume::transforms::StackConfig;

    fn volume() -> Volume<f32> {
        let data = Array3::from_shape_fn((7, 64, 64), |(z, y, x)| {
            ((z * 13 + y * 7 + x * 3) % 450) as f32 - 200.0
        });
        Volume::with_spacing(data, [1.0, 1.0, 2.0])
    }

    #[test]
    fn box_prompted_prediction_is_background_outside_the_box_slices() -> Result<()> {
        let model = MaSam::random(&MaSamConfig::tiny(), 3, &Device::Cpu)?;
        let stack = SliceStack::new(StackConfig {
            out_size: Some((64, 64)),
            orient: false,
            ..StackConfig::default()
        })?;
        let vol = volume();
        // slices 0..=1 only: windows centred at 4.. (covering slices 2..) miss the box entirely
        let b = Box3d {
            z0: 0,
            z1: 1,
            y0: 10,
            y1: 40,
            x0: 5,
            x1: 50,
        };
        let pred = predict_volume_with_box(&model, &vol, &stack, 3, &Device::Cpu, &b)?;
        assert_eq!(pred.data.dim(), (7, 64, 64));
        assert_eq!(pred.affine, vol.affine);
        // slice 6 is covered only by windows 4, 5, 6, none of which touches slices 0..=1
        assert!(pred.data.index_axis(Axis(0), 6).iter().all(|&v| v == 0));
        assert!(pred.data.iter().all(|&v| (v as usize) <= 3));
        let bad = Box3d { z1: 9, ..b };
        assert!(predict_volume_with_box(&model, &vol, &stack, 3, &Device::Cpu, &bad).is_err());
        // the unprompted prediction has the same grid
        let plain = predict_volume(&model, &vol, &stack, 3, &Device::Cpu)?;
        assert_eq!(plain.data.dim(), pred.data.dim());
        Ok(())
    }
}
