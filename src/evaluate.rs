//! Held-out evaluation: whole-volume predictions of a model scored with Dice against label maps.

use masam_metrics::{Classes, DiceConfig, DiceMetric, Metric, MetricReport};
use masam_volume::transforms::{SliceStack, StackConfig};
use masam_volume::Volume;

use crate::data::LabelledVolume;
use crate::model::MaSam;
use crate::predict::{predict_volume, predict_volume_with_box};
use crate::{Error, Result};
use masam_volume::boxes::BoxPromptConfig;

/// Held-out Dice of `model` on `test` volumes (predicted with the sliding window on their own
/// grids, [`predict_volume`]), one row per volume, one column per foreground class.
///
/// `names` names the foreground classes (`class_{k}` when it does not have one per class);
/// `batch` is the number of windows per forward pass.
///
/// ```
/// use masam_adapter::candle::Device;
/// use masam_adapter::data::LabelledVolume;
/// use masam_adapter::evaluate::evaluate;
/// use masam_adapter::volume::ndarray::Array3;
/// use masam_adapter::volume::transforms::StackConfig;
/// use masam_adapter::volume::Volume;
/// use masam_adapter::{MaSam, MaSamConfig};
/// # fn main() -> masam_adapter::Result<()> {
/// let model = MaSam::random(&MaSamConfig::tiny(), 0, &Device::Cpu)?;
/// let case = LabelledVolume {
///     image: Volume::with_spacing(Array3::<f32>::zeros((6, 64, 64)), [1.0; 3]),
///     label: Volume::with_spacing(Array3::<u8>::zeros((6, 64, 64)), [1.0; 3]),
/// };
/// let stack = StackConfig::default().with_out_size(64, 64);
/// let report = evaluate(&model, &[case], &stack, &[], 4)?;
/// assert_eq!(report.cases.len(), 1);
/// # Ok(()) }
/// ```
pub fn evaluate(
    model: &MaSam,
    test: &[LabelledVolume],
    stack: &StackConfig,
    names: &[String],
    batch: usize,
) -> Result<MetricReport> {
    Ok(evaluate_with_predictions(model, test, stack, names, batch)?.0)
}

/// [`evaluate`], also returning the predicted label volumes.
pub fn evaluate_with_predictions(
    model: &MaSam,
    test: &[LabelledVolume],
    stack: &StackConfig,
    names: &[String],
    batch: usize,
) -> Result<(MetricReport, Vec<Volume<u8>>)> {
    evaluate_with_box_prompts(model, test, stack, names, batch, None)
}

/// [`evaluate_with_predictions`] under a box-prompt protocol: each case is predicted with
/// [`predict_volume_with_box`] and the 3D box `prompt` makes from the case's own label map (no
/// jitter: [`BoxPromptConfig::volume_box`]); a case without the class gets no box and is
/// predicted as background. `None`: prompt-free, as [`evaluate_with_predictions`].
///
/// # Errors
/// A label map whose shape is not its image's, or that holds labels above the model's
/// classes ([`Error::Shape`], [`Error::Config`], before any prediction); prediction and
/// metric errors.
pub fn evaluate_with_box_prompts(
    model: &MaSam,
    test: &[LabelledVolume],
    stack: &StackConfig,
    names: &[String],
    batch: usize,
    prompt: Option<&BoxPromptConfig>,
) -> Result<(MetricReport, Vec<Volume<u8>>)> {
    let dev = model.device().clone();
    let model = &model.to_inference()?;
    let k = model.config.num_classes();
    let names: Vec<String> = if names.len() == k {
        names.to_vec()
    } else {
        (1..=k).map(|i| format!("class_{i}")).collect()
    };
    let classes = Classes::foreground(k).with_names(names)?;
    let mut metric = DiceMetric::new(DiceConfig::default(), classes)?;
    let stack = SliceStack::new(*stack)?;
    // checked before any prediction: a bad case found after an hour of inference helps no one
    for (i, case) in test.iter().enumerate() {
        check_case(i, case, k)?;
    }
    let mut preds = Vec::with_capacity(test.len());
    for (i, case) in test.iter().enumerate() {
        let pred = match prompt {
            None => predict_volume(model, &case.image, &stack, batch, &dev)?,
            Some(p) => match p.volume_box(&case.label.data) {
                Some(b) => predict_volume_with_box(model, &case.image, &stack, batch, &dev, &b)?,
                None => Volume {
                    data: masam_volume::ndarray::Array3::zeros(case.label.data.dim()),
                    spacing: case.image.spacing,
                    affine: case.image.affine,
                },
            },
        };
        let s = case.image.spacing;
        metric.update_case(
            format!("case_{i}"),
            pred.data.view(),
            case.label.data.view(),
            [s[2], s[1], s[0]],
        )?;
        preds.push(pred);
    }
    Ok((metric.aggregate(), preds))
}

/// A held-out case must have a label map on its image's grid with labels `0..=k`.
fn check_case(i: usize, case: &LabelledVolume, k: usize) -> Result<()> {
    let (img, lab) = (case.image.data.dim(), case.label.data.dim());
    if img != lab {
        return Err(Error::Shape {
            what: "held-out label map",
            expected: format!("the shape of its image {img:?} (Z, Y, X)"),
            found: vec![lab.0, lab.1, lab.2],
        });
    }
    let (mut over, mut largest) = (0u64, 0u8);
    for &v in case.label.data.iter() {
        if usize::from(v) > k {
            over += 1;
            largest = largest.max(v);
        }
    }
    if over > 0 {
        return Err(Error::Config(format!(
            "held-out case {i}: {over} voxel(s) hold labels above the model's {k} classes \
             (up to {largest}); map the labels to 0..={k}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use masam_volume::ndarray::Array3;

    fn case(label: Array3<u8>) -> LabelledVolume {
        LabelledVolume {
            image: Volume::with_spacing(Array3::<f32>::zeros((2, 4, 4)), [1.0; 3]),
            label: Volume::with_spacing(label, [1.0; 3]),
        }
    }

    #[test]
    fn labels_above_the_classes_are_refused() {
        let mut l = Array3::<u8>::zeros((2, 4, 4));
        l[[0, 1, 1]] = 3;
        assert!(check_case(0, &case(l.clone()), 3).is_ok());
        l[[1, 2, 2]] = 9;
        let e = check_case(4, &case(l), 3).unwrap_err().to_string();
        assert!(
            e.contains("case 4") && e.contains("1 voxel(s)") && e.contains("9"),
            "{e}"
        );
    }

    #[test]
    fn a_label_map_on_another_grid_is_refused() {
        let e = check_case(0, &case(Array3::zeros((2, 4, 5))), 3).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }
}
