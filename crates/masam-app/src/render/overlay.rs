//! Label maps drawn over grey slices: single overlays and image | ground truth | prediction panels.
//!
//! Panels are composed in an [`image`] buffer; their title, captions and legend are set in the
//! embedded font of [`super::text`].
//!
//! ```
//! use masam_app::render::overlay::{overlay_panel, overlay_slice, PanelStyle};
//! use masam_adapter::volume::ndarray::Array2;
//! let image = Array2::from_shape_fn((32, 32), |(y, x)| (x + y) as f32 / 62.0);
//! let gt = Array2::from_shape_fn((32, 32), |(y, x)| u8::from((8..24).contains(&y) && (8..24).contains(&x)));
//! let pred = Array2::from_shape_fn((32, 32), |(y, x)| u8::from((10..26).contains(&y) && (8..24).contains(&x)) * 6);
//! let one = overlay_slice(image.view(), gt.view(), 0.4).unwrap();
//! assert_eq!(one.dimensions(), (32, 32));
//! let style = PanelStyle { scale: 4, ..PanelStyle::default() };
//! let panel = overlay_panel(image.view(), gt.view(), pred.view(), "case 1, slice 40", &style).unwrap();
//! assert!(panel.width() >= 3 * 128);
//! ```

use super::palette::{class_colour, class_name};
use super::text::{draw_text, text_width};
use super::{RenderError, Result};
use image::{imageops, Rgb, RgbImage};
use masam_adapter::volume::ndarray::{Array2, ArrayView2, ArrayView3, Axis};

/// An intensity window mapping `[lo, hi]` linearly onto `[0, 1]` (values outside are clamped).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Intensity shown black.
    pub lo: f32,
    /// Intensity shown white.
    pub hi: f32,
}

impl Window {
    /// The identity window for images already in `[0, 1]`.
    pub const UNIT: Window = Window { lo: 0.0, hi: 1.0 };

    /// A window from its centre and width (e.g. CT abdomen: centre 40 HU, width 400 HU).
    pub fn center_width(center: f32, width: f32) -> Self {
        Self {
            lo: center - width / 2.0,
            hi: center + width / 2.0,
        }
    }

    /// Maps `image` into `[0, 1]`; NaN becomes 0. Errors unless `lo < hi`, both finite.
    pub fn apply(&self, image: ArrayView2<f32>) -> Result<Array2<f32>> {
        if !(self.lo.is_finite() && self.hi.is_finite() && self.lo < self.hi) {
            return Err(RenderError::Invalid(format!(
                "window {:?} needs finite lo < hi",
                self
            )));
        }
        let k = 1.0 / (self.hi - self.lo);
        Ok(image.mapv(|v| {
            if v.is_nan() {
                0.0
            } else {
                ((v - self.lo) * k).clamp(0.0, 1.0)
            }
        }))
    }
}

impl Default for Window {
    fn default() -> Self {
        Self::UNIT
    }
}

fn check_shape(what: &'static str, got: &[usize], expected: &[usize]) -> Result<()> {
    if got != expected {
        return Err(RenderError::Shape {
            what,
            got: got.to_vec(),
            expected: expected.to_vec(),
        });
    }
    Ok(())
}

/// Overlays `labels` on the grey `image`.
///
/// Unlabelled pixels are grey `round(255 · clamp(v, 0, 1))` (NaN → 0); a labelled pixel is its
/// [`class_colour`] blended over the grey at `alpha` (`round(g·(1-α) + c·α)`), except on the
/// class's 1-pixel contour (a labelled pixel with a 4-neighbour of another label), drawn in the
/// full class colour. Window other intensities first with [`Window::apply`].
///
/// # Shapes
/// - `image`: (H, W), values in [0, 1]
/// - `labels`: (H, W) class ids
/// - returns: a W×H image
///
/// # Errors
/// Shapes differ, the image is empty, or `alpha` is outside [0, 1].
pub fn overlay_slice(
    image: ArrayView2<f32>,
    labels: ArrayView2<u8>,
    alpha: f32,
) -> Result<RgbImage> {
    check_shape("labels", labels.shape(), image.shape())?;
    let (h, w) = image.dim();
    if h == 0 || w == 0 || h > u32::MAX as usize || w > u32::MAX as usize {
        return Err(RenderError::Invalid(format!(
            "cannot draw an image of shape {:?}",
            image.shape()
        )));
    }
    if !(0.0..=1.0).contains(&alpha) {
        return Err(RenderError::Invalid(format!(
            "alpha {alpha} is not in [0, 1]"
        )));
    }
    let mut out = RgbImage::new(w as u32, h as u32);
    for ((y, x), &l) in labels.indexed_iter() {
        let v = image[[y, x]];
        let g = if v.is_nan() {
            0.0
        } else {
            v.clamp(0.0, 1.0) * 255.0
        };
        let c = class_colour(l).0;
        let edge = [(0, 1), (2, 1), (1, 0), (1, 2)].iter().any(|&(dy, dx)| {
            let (ny, nx) = ((y + dy).wrapping_sub(1), (x + dx).wrapping_sub(1));
            ny < h && nx < w && labels[[ny, nx]] != l
        });
        let px = match l {
            0 => [g.round() as u8; 3],
            _ if edge => [c[0], c[1], c[2]],
            _ => [0, 1, 2].map(|i| (g * (1.0 - alpha) + c[i] as f32 * alpha).round() as u8),
        };
        out.put_pixel(x as u32, y as u32, Rgb(px));
    }
    Ok(out)
}

/// Font size of the panel title, in pixels.
const TITLE: f64 = 22.0;
/// Font size of the panel captions.
const CAPTION: f64 = 17.0;
/// Font size of the legend entries.
const LEGEND: f64 = 16.0;
/// Side of a legend colour swatch.
const SWATCH: u32 = 13;

/// Rows from the top of a line of text to its baseline (room for capitals and accents).
fn line_ascent(size: f64) -> u32 {
    (0.78 * size).ceil() as u32
}

/// Rows from the baseline to the bottom of a line of text (descenders).
fn line_descent(size: f64) -> u32 {
    (super::text::DESCENT * size).ceil() as u32
}

/// Options of [`overlay_panel`].
#[derive(Clone, Debug, PartialEq)]
pub struct PanelStyle {
    /// Label fill opacity in [0, 1].
    pub alpha: f32,
    /// Intensity window applied to the image.
    pub window: Window,
    /// Integer nearest-neighbour magnification of each panel (1..=16).
    pub scale: u32,
    /// Class names indexed by label; `None` uses the BTCV names, then `class K`.
    pub class_names: Option<Vec<String>>,
    /// Draw a legend of the classes present in the ground truth or prediction.
    pub legend: bool,
}

impl Default for PanelStyle {
    fn default() -> Self {
        Self {
            alpha: 0.4,
            window: Window::UNIT,
            scale: 1,
            class_names: None,
            legend: true,
        }
    }
}

/// Three captioned panels side by side — image, image + ground truth, image + prediction — under
/// `title`, with an optional legend of the classes present. Save it with [`super::save_png`].
///
/// # Shapes
/// - `image`: (H, W) intensities (windowed by `style.window`)
/// - `gt`, `pred`: (H, W) class ids
///
/// # Errors
/// Shapes differ, the image is empty, `alpha` is outside [0, 1], the window is invalid or
/// `scale` is outside 1..=16.
pub fn overlay_panel(
    image: ArrayView2<f32>,
    gt: ArrayView2<u8>,
    pred: ArrayView2<u8>,
    title: &str,
    style: &PanelStyle,
) -> Result<RgbImage> {
    check_shape("prediction", pred.shape(), gt.shape())?;
    if !(1..=16).contains(&style.scale) {
        return Err(RenderError::Invalid(format!(
            "scale {} is not in 1..=16",
            style.scale
        )));
    }
    let grey = style.window.apply(image)?;
    let none = Array2::<u8>::zeros(grey.dim());
    let s = style.scale;
    let panels = [
        (&none, "image"),
        (&gt.to_owned(), "ground truth"),
        (&pred.to_owned(), "prediction"),
    ]
    .map(|(l, c)| overlay_slice(grey.view(), l.view(), style.alpha).map(|p| (p, c)));
    let [a, b, c] = panels;
    let panels = [a?, b?, c?].map(|(p, c)| {
        (
            imageops::resize(
                &p,
                p.width() * s,
                p.height() * s,
                imageops::FilterType::Nearest,
            ),
            c,
        )
    });
    let (pw, ph) = panels[0].0.dimensions();
    // Column width: the panel, or its caption if wider.
    let pw = panels
        .iter()
        .map(|p| text_width(p.1, CAPTION))
        .try_fold(pw, |m, w| w.map(|w| m.max(w)))?;
    let m = 10;
    let mut present: Vec<u8> = gt
        .iter()
        .chain(pred.iter())
        .copied()
        .filter(|&l| l != 0)
        .collect();
    present.sort_unstable();
    present.dedup();
    let entries: Vec<(u8, String, u32)> = match style.legend {
        true => present
            .iter()
            .map(|&l| {
                let name = class_name(l, style.class_names.as_deref());
                text_width(&name, LEGEND).map(|w| (l, name, w + SWATCH + 6 + 16))
            })
            .collect::<Result<_>>()?,
        false => Vec::new(),
    };
    let width = (3 * pw + 4 * m)
        .max(text_width(title, TITLE)? + 2 * m)
        .max(entries.iter().map(|e| e.2).max().unwrap_or(0) + 2 * m);
    // Rows: title, captions, panels, then the legend entries left to right, wrapping at the
    // canvas width.
    let title_base = m + line_ascent(TITLE);
    let caption_base = title_base + line_descent(TITLE) + 8 + line_ascent(CAPTION);
    let panels_y = caption_base + line_descent(CAPTION) + 4;
    let row = SWATCH + 8;
    let legend_y = panels_y + ph + m;
    let (mut lx, mut ly, mut spots) = (m, legend_y, Vec::new());
    for e in &entries {
        if lx + e.2 > width - m && lx > m {
            (lx, ly) = (m, ly + row);
        }
        spots.push((lx, ly));
        lx += e.2;
    }
    let height = if entries.is_empty() {
        legend_y
    } else {
        ly + row + m / 2
    };
    let black = [0, 0, 0];
    let mut out = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (i, (p, _)) in panels.iter().enumerate() {
        let x = m + i as u32 * (pw + m);
        imageops::replace(&mut out, p, x as i64, panels_y as i64);
    }
    for ((l, _, _), (x, y)) in entries.iter().zip(&spots) {
        let [r, g, b, _] = class_colour(*l).0;
        for dy in 0..SWATCH {
            for dx in 0..SWATCH {
                out.put_pixel(x + dx, y + dy, Rgb([r, g, b]));
            }
        }
    }
    draw_text(&mut out, m as i32, title_base as i32, title, TITLE, black)?;
    for (i, (_, caption)) in panels.iter().enumerate() {
        let x = m + i as u32 * (pw + m);
        draw_text(
            &mut out,
            x as i32,
            caption_base as i32,
            caption,
            CAPTION,
            black,
        )?;
    }
    for ((_, name, _), (x, y)) in entries.iter().zip(spots) {
        // Baseline so that the text's capitals centre on the swatch.
        let base = y as f64 + (SWATCH as f64 + super::text::CAP_HEIGHT * LEGEND) / 2.0;
        draw_text(
            &mut out,
            (x + SWATCH + 6) as i32,
            base.round() as i32,
            name,
            LEGEND,
            black,
        )?;
    }
    Ok(out)
}

/// The `n` axial slices (axis 0) to look at: the foreground slices are split into `n` runs of
/// equal length and the slice with the most foreground voxels of each run is taken, so the picks
/// spread through the labelled extent. With no foreground, `n` evenly spaced slices. Returns at
/// most `min(n, Z)` distinct indices in ascending order.
///
/// # Shapes
/// - `labels`: (Z, Y, X) class ids
pub fn pick_slices(labels: ArrayView3<u8>, n: usize) -> Vec<usize> {
    let depth = labels.len_of(Axis(0));
    let counts: Vec<usize> = labels
        .axis_iter(Axis(0))
        .map(|s| s.iter().filter(|&&l| l != 0).count())
        .collect();
    let fg: Vec<usize> = (0..depth).filter(|&z| counts[z] > 0).collect();
    if fg.is_empty() {
        let n = n.min(depth);
        return (0..n).map(|i| (2 * i + 1) * depth / (2 * n)).collect();
    }
    let n = n.min(fg.len());
    (0..n)
        .filter_map(|i| {
            let run = &fg[i * fg.len() / n..(i + 1) * fg.len() / n];
            run.iter()
                .copied()
                .max_by_key(|&z| (counts[z], usize::MAX - z))
        })
        .collect()
}
