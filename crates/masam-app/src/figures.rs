//! The PNG figures of a run folder: the training loss, the held-out Dice over the run, and
//! overlays of ground truth and prediction on held-out slices.

use std::path::Path;

use masam_adapter::data::LabelledVolume;
use masam_adapter::volume::Volume;
use masam_adapter::StepStats;

use crate::render::overlay::{overlay_panel, pick_slices, PanelStyle, Window};
use crate::render::plot::{ema, LinePlot, Series};
use crate::Result;

/// What was recorded during training.
#[derive(Debug, Clone, Copy)]
pub struct RunHistory<'a> {
    /// Every optimiser step.
    pub steps: &'a [StepStats],
    /// (step, mean held-out Dice) of the periodic evaluations.
    pub evaluations: &'a [(u64, f64)],
}

/// The held-out volumes and their predictions, for the overlays.
#[derive(Debug, Clone, Copy)]
pub struct HeldOut<'a> {
    /// The held-out volumes with their ground truth.
    pub cases: &'a [LabelledVolume],
    /// The predicted label maps, one per case.
    pub predictions: &'a [Volume<u8>],
    /// Foreground class names (label 1 first; may be empty).
    pub class_names: &'a [String],
    /// Intensity window (low, high) for showing the images.
    pub window: (f32, f32),
}

/// Writes `loss.png` (loss and its moving average per step), `dice.png` (periodic held-out Dice),
/// each left out when it has no finite value to draw, and, for the first two held-out volumes,
/// `overlay_case{i}_z{z}.png` panels (image, ground truth, prediction) into `dir`.
pub fn write_figures(dir: &Path, history: &RunHistory<'_>, held_out: &HeldOut<'_>) -> Result<()> {
    let RunHistory {
        steps: history,
        evaluations,
    } = *history;
    let HeldOut {
        cases: test,
        predictions: preds,
        class_names: names,
        window,
    } = *held_out;
    let loss: Vec<(f64, f64)> = history
        .iter()
        .map(|s| (s.step as f64, s.loss as f64))
        .collect();
    // The raw loss faded under its moving average, as TensorBoard-style smoothing is usually shown.
    let loss_plot = LinePlot::new("Training loss (0.2 CE + 0.8 Dice)")
        .x_label("step")
        .y_label("loss")
        .add_series(Series::new("loss per step", loss.clone()).alpha(0.35))
        .series("moving average (β = 0.95)", ema(&loss, 0.95));
    // A run whose every loss is non-finite has nothing to draw: no loss.png then.
    if loss_plot.has_data() {
        loss_plot.save_png(dir.join("loss.png"))?;
    }
    let dice_plot = LinePlot::new("Held-out mean Dice")
        .x_label("step")
        .y_label("mean Dice")
        .add_series(
            Series::new(
                "mean Dice",
                evaluations.iter().map(|(s, d)| (*s as f64, *d)),
            )
            .markers(true),
        );
    if dice_plot.has_data() {
        dice_plot.save_png(dir.join("dice.png"))?;
    }
    let style = PanelStyle {
        window: Window {
            lo: window.0,
            hi: window.1,
        },
        scale: 2,
        // the palette names index 0 as background
        class_names: if names.is_empty() {
            None
        } else {
            Some(
                std::iter::once("background".to_string())
                    .chain(names.iter().cloned())
                    .collect(),
            )
        },
        ..PanelStyle::default()
    };
    for (i, (case, pred)) in test.iter().zip(preds).enumerate().take(2) {
        for z in pick_slices(case.label.data.view(), 3) {
            let img = case
                .image
                .data
                .index_axis(masam_adapter::volume::ndarray::Axis(0), z);
            let img = style.window.apply(img)?;
            let panel = overlay_panel(
                img.view(),
                case.label
                    .data
                    .index_axis(masam_adapter::volume::ndarray::Axis(0), z),
                pred.data
                    .index_axis(masam_adapter::volume::ndarray::Axis(0), z),
                &format!("case {i}, slice {z}"),
                &PanelStyle {
                    window: Window::UNIT,
                    ..style.clone()
                },
            )?;
            crate::render::save_png(&panel, dir.join(format!("overlay_case{i}_z{z}.png")))?;
        }
    }
    Ok(())
}
