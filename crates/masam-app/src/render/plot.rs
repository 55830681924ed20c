//! Line plots of training curves (loss per step, its moving average, Dice per evaluation), drawn
//! with [plotters] in the look of a matplotlib figure: white background, centred title, a framed
//! plot area with outward ticks, tick labels and a light grid, labelled axes, a framed legend in
//! the emptiest corner, and matplotlib's `tab10` colour cycle ([`TAB10`]). All text uses the
//! embedded font of [`super::text`].
//!
//! Axes span the data with 5 % margins and get "nice" ticks (1, 2 or 5 × 10^k). A log-scaled y
//! axis ([`LinePlot::log_y`]) gets ticks at the powers of ten (labelled `10⁻²`) with a fainter
//! grid at 2…9 × 10^k, or nice ticks when the data spans less than a decade.
//!
//! Edge cases: non-finite points (and non-positive ones on a log axis) are skipped, the line
//! joining their finite neighbours; a series of up to 40 points gets markers too, so a single
//! point shows; a constant series gets a y range padded around its value. A plot with no finite
//! point at all is an error, [`RenderError::Empty`], and [`LinePlot::save_png`] then writes no
//! file ([`LinePlot::has_data`] tells beforehand).
//!
//! ```
//! use masam_app::render::plot::{ema, LinePlot, Series};
//! let loss: Vec<(f64, f64)> = (0..200).map(|i| (i as f64, (-(i as f64) / 50.0).exp())).collect();
//! let plot = LinePlot::new("Training loss")
//!     .x_label("step")
//!     .y_label("loss")
//!     .log_y(true)
//!     .add_series(Series::new("loss", loss.clone()).alpha(0.35))
//!     .series("EMA(0.9)", ema(&loss, 0.9));
//! let img = plot.render().unwrap();
//! assert_eq!(img.dimensions(), (1000, 600));
//! ```

use super::text::{draw_error, font, text_width, CAP_HEIGHT};
use super::{RenderError, Result};
use image::RgbImage;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;

/// matplotlib's default colour cycle (`tab10`); series take them in order of addition.
pub const TAB10: [[u8; 3]; 10] = [
    [31, 119, 180],  // tab:blue
    [255, 127, 14],  // tab:orange
    [44, 160, 44],   // tab:green
    [214, 39, 40],   // tab:red
    [148, 103, 189], // tab:purple
    [140, 86, 75],   // tab:brown
    [227, 119, 194], // tab:pink
    [127, 127, 127], // tab:gray
    [188, 189, 34],  // tab:olive
    [23, 190, 207],  // tab:cyan
];

/// Grid lines at the major ticks.
const GRID: RGBColor = RGBColor(222, 222, 222);
/// Grid lines at the minor ticks of a log axis.
const MINOR_GRID: RGBColor = RGBColor(240, 240, 240);
/// The legend frame (matplotlib's `0.8` grey).
const LEGEND_EDGE: RGBColor = RGBColor(204, 204, 204);
/// Series of at most this many finite points are drawn with markers unless told otherwise.
const AUTO_MARKERS: usize = 40;

/// A pixel rectangle, `x0..=x1`, `y0..=y1` inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x0: u32,
    /// Top row.
    pub y0: u32,
    /// Right column (inclusive).
    pub x1: u32,
    /// Bottom row (inclusive).
    pub y1: u32,
}

/// One named curve and how it is drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend name (an empty name leaves the series out of the legend).
    pub name: String,
    /// (x, y) points in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Line colour; `None` takes the next colour of [`TAB10`].
    pub colour: Option<[u8; 3]>,
    /// Opacity in [0, 1], drawn as the colour blended over the white background.
    pub alpha: f64,
    /// Line width in pixels.
    pub line_width: u32,
    /// Draw a marker at each point; `None`: only for series of at most 40 finite points.
    pub markers: Option<bool>,
}

impl Series {
    /// An opaque 2-pixel line in the next [`TAB10`] colour.
    pub fn new(name: impl Into<String>, points: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points: points.into_iter().collect(),
            colour: None,
            alpha: 1.0,
            line_width: 2,
            markers: None,
        }
    }
    /// Sets the colour.
    pub fn colour(mut self, rgb: [u8; 3]) -> Self {
        self.colour = Some(rgb);
        self
    }
    /// Sets the opacity (clamped to [0, 1]; NaN is opaque), e.g. 0.3 for a noisy raw curve under
    /// its smoothed version.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = if alpha.is_nan() {
            1.0
        } else {
            alpha.clamp(0.0, 1.0)
        };
        self
    }
    /// Sets the line width in pixels (at least 1).
    pub fn line_width(mut self, px: u32) -> Self {
        self.line_width = px.max(1);
        self
    }
    /// Turns the point markers on or off.
    pub fn markers(mut self, on: bool) -> Self {
        self.markers = Some(on);
        self
    }
}

/// A line plot with title, axis labels, ticks, grid, legend and optional log-y.
#[derive(Clone, Debug, PartialEq)]
pub struct LinePlot {
    /// Title, drawn centred at the top.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label left of the y axis (rotated).
    pub y_label: String,
    /// Image width in pixels (at least 320 is used).
    pub width: u32,
    /// Image height in pixels (at least 240 is used).
    pub height: u32,
    /// Log10-scaled y axis.
    pub log_y: bool,
    /// Draw the legend, in the corner of the plot area that covers the fewest data.
    pub legend: bool,
    /// The curves, drawn in order (the last on top).
    pub series: Vec<Series>,
}

/// One axis in plot coordinates: data coordinates (log10 of them on a log axis) times `scale`,
/// a power of two below 1 only when the data span overflows `f64`.
#[derive(Clone, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    scale: f64,
    /// Major ticks: position, label.
    ticks: Vec<(f64, String)>,
    /// Minor ticks (grid only).
    minor: Vec<f64>,
}

/// plotters sees the axis as a linear `lo..hi` range whose key points are our ticks (bold: the
/// major ticks, light: the minor ones) and whose labels are ours.
impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.lo..self.hi).map(v, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        match hint.weight().allow_light_points() {
            true => self.minor.clone(),
            false => self.ticks.iter().map(|t| t.0).collect(),
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, v: &f64) -> String {
        self.ticks
            .iter()
            .find(|t| t.0 == *v)
            .map(|t| t.1.clone())
            .unwrap_or_default()
    }
}

/// Font sizes in pixels.
struct Fonts {
    title: f64,
    label: f64,
    tick: f64,
    legend: f64,
}

impl LinePlot {
    /// An empty 1000×600 plot with a legend and a linear y axis.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            width: 1000,
            height: 600,
            log_y: false,
            legend: true,
            series: Vec::new(),
        }
    }
    /// Sets the x axis label.
    pub fn x_label(mut self, label: impl Into<String>) -> Self {
        self.x_label = label.into();
        self
    }
    /// Sets the y axis label.
    pub fn y_label(mut self, label: impl Into<String>) -> Self {
        self.y_label = label.into();
        self
    }
    /// Sets the image size in pixels.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        (self.width, self.height) = (width, height);
        self
    }
    /// Log10-scales the y axis.
    pub fn log_y(mut self, on: bool) -> Self {
        self.log_y = on;
        self
    }
    /// Shows or hides the legend.
    pub fn legend(mut self, on: bool) -> Self {
        self.legend = on;
        self
    }
    /// Adds a default-styled series (see [`Series::new`]).
    pub fn series(
        self,
        name: impl Into<String>,
        points: impl IntoIterator<Item = (f64, f64)>,
    ) -> Self {
        self.add_series(Series::new(name, points))
    }
    /// Adds a styled series.
    pub fn add_series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Whether any series has a point that can be drawn (finite, and positive on a log axis).
    pub fn has_data(&self) -> bool {
        self.series.iter().any(|s| !self.finite(s).is_empty())
    }

    fn size_used(&self) -> (u32, u32) {
        (self.width.max(320), self.height.max(240))
    }

    /// The drawable points of `s`, y already log10-transformed if `log_y`.
    fn finite(&self, s: &Series) -> Vec<(f64, f64)> {
        let f = |&(x, y): &(f64, f64)| match self.log_y {
            true if y > 0.0 => Some((x, y.log10())),
            true => None,
            false => Some((x, y)),
        };
        s.points
            .iter()
            .filter_map(f)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    }

    fn fonts(&self) -> Fonts {
        let (w, h) = self.size_used();
        let k = (w as f64 / 1000.0).min(h as f64 / 600.0).clamp(0.6, 1.6);
        Fonts {
            title: 24.0 * k,
            label: 20.0 * k,
            tick: 17.0 * k,
            legend: 17.0 * k,
        }
    }

    /// Rasterises the plot.
    ///
    /// # Errors
    /// [`RenderError::Empty`] when no series has a drawable point; [`RenderError::Draw`] if
    /// plotters fails.
    pub fn render(&self) -> Result<RgbImage> {
        self.render_with_area().map(|r| r.0)
    }

    /// Rasterises the plot and returns the pixel rectangle of its plot area (the frame included).
    ///
    /// # Errors
    /// As [`LinePlot::render`].
    pub fn render_with_area(&self) -> Result<(RgbImage, Rect)> {
        let data: Vec<Vec<(f64, f64)>> = self.series.iter().map(|s| self.finite(s)).collect();
        if data.iter().all(|d| d.is_empty()) {
            return Err(RenderError::Empty);
        }
        let (w, h) = self.size_used();
        let f = self.fonts();
        let all = || data.iter().flatten();
        // Tick counts as matplotlib's MaxNLocator: at most 9 intervals, labels 3 (x) or 2 (y)
        // font sizes apart.
        let x_target = ((w as f64 * 0.85) / (3.0 * f.tick)).clamp(2.0, 9.0) as usize;
        let y_target = ((h as f64 * 0.75) / (2.0 * f.tick)).clamp(2.0, 9.0) as usize;
        let xs: Vec<f64> = all().map(|p| p.0).collect();
        let ys: Vec<f64> = all().map(|p| p.1).collect();
        let y = axis(&ys, self.log_y, y_target);
        let tick_font = font(f.tick)?;
        let widest = |a: &Axis| -> Result<u32> {
            a.ticks
                .iter()
                .map(|t| text_width(&t.1, f.tick))
                .try_fold(0, |m, w| w.map(|w| m.max(w)))
        };
        // Fewer x ticks while their labels, a space apart, would not fit along the axis.
        let mut x = axis(&xs, false, x_target);
        for target in (2..x_target).rev() {
            let labels = (widest(&x)? as f64 + f.tick) * x.ticks.len() as f64;
            if labels <= 0.8 * w as f64 {
                break;
            }
            x = axis(&xs, false, target);
        }
        let tick_mark = 6;
        let label_h = (f.label * (CAP_HEIGHT + 0.25)).ceil() as u32;
        let tick_h = (f.tick * 0.85).ceil() as u32;
        let y_area = 2 * tick_mark + widest(&y)? + 12 + label_h;
        let x_area = 2 * tick_mark + tick_h + 12 + label_h;
        // Room on the right for half the last x tick label.
        let last_x = x
            .ticks
            .last()
            .map(|t| text_width(&t.1, f.tick))
            .transpose()?;
        let right = (last_x.unwrap_or(0) / 2 + 8).max(24);

        let mut buf = vec![255u8; w as usize * h as usize * 3];
        let area = {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_error)?;
            let mut builder = ChartBuilder::on(&root);
            builder
                .margin_top(12)
                .margin_bottom(10)
                .margin_left(12)
                .margin_right(right)
                .x_label_area_size(x_area)
                .y_label_area_size(y_area);
            if !self.title.is_empty() {
                builder.caption(&self.title, font(f.title)?.color(&BLACK));
            }
            let (sx, sy) = (x.scale, y.scale);
            let mut chart = builder.build_cartesian_2d(x, y).map_err(draw_error)?;
            let mut mesh = chart.configure_mesh();
            mesh.bold_line_style(GRID)
                .light_line_style(MINOR_GRID)
                .axis_style(BLACK)
                .set_all_tick_mark_size(tick_mark)
                .label_style(tick_font.clone().color(&BLACK))
                .axis_desc_style(font(f.label)?.color(&BLACK));
            if !self.x_label.is_empty() {
                mesh.x_desc(&self.x_label);
            }
            if !self.y_label.is_empty() {
                mesh.y_desc(&self.y_label);
            }
            mesh.draw().map_err(draw_error)?;

            let legend_line = (2.2 * f.legend).round() as i32;
            let mut pixels = Vec::new();
            for (i, (s, pts)) in self.series.iter().zip(&data).enumerate() {
                let rgb = s.colour.unwrap_or(TAB10[i % TAB10.len()]);
                // Opacity as a blend over the white background: overlapping segments of a dense,
                // noisy curve then do not darken where they cross.
                let [r, g, b] = rgb.map(|c| (255.0 - s.alpha * (255.0 - c as f64)).round() as u8);
                let colour = RGBColor(r, g, b);
                let line = colour.stroke_width(s.line_width);
                let pts: Vec<(f64, f64)> = pts.iter().map(|p| (p.0 * sx, p.1 * sy)).collect();
                // plotters joins the segments of a wide polyline with mitres, which spike out of
                // the plot area at the sharp turns of a noisy curve (and to the image corner on a
                // zero-length segment): draw the segments one by one, one point per pixel.
                let mut line_pts: Vec<(f64, f64)> = Vec::with_capacity(pts.len());
                let mut last = None;
                for p in &pts {
                    let px = chart.backend_coord(p);
                    if last != Some(px) {
                        line_pts.push(*p);
                        last = Some(px);
                    }
                }
                let markers = s.markers.unwrap_or(pts.len() <= AUTO_MARKERS);
                let radius = (s.line_width as i32 + 2).max(3);
                let drawn = chart
                    .draw_series(
                        line_pts
                            .windows(2)
                            .map(|w| PathElement::new(vec![w[0], w[1]], line)),
                    )
                    .map_err(draw_error)?;
                if !s.name.is_empty() {
                    drawn.label(&s.name).legend(move |(lx, ly)| {
                        let mark = match markers {
                            true => radius,
                            false => 0,
                        };
                        EmptyElement::at((lx, ly))
                            + PathElement::new(vec![(0, 0), (legend_line, 0)], line)
                            + Circle::new((legend_line / 2, 0), mark, colour.filled())
                    });
                }
                if markers {
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, radius, colour.filled())))
                        .map_err(draw_error)?;
                }
                let px: Vec<(i32, i32)> = pts.iter().map(|p| chart.backend_coord(p)).collect();
                pixels.extend(sample_path(&px));
            }

            let (xr, yr) = chart.plotting_area().get_pixel_range();
            let area = Rect {
                x0: xr.start.max(0) as u32,
                y0: yr.start.max(0) as u32,
                x1: (xr.end - 1).max(0) as u32,
                y1: (yr.end - 1).max(0) as u32,
            };
            let names: Vec<&str> = self
                .series
                .iter()
                .map(|s| s.name.as_str())
                .filter(|n| !n.is_empty())
                .collect();
            if self.legend && !names.is_empty() {
                let margin = (0.6 * f.legend).round() as i32;
                let gap = (0.8 * f.legend).round() as i32;
                let text_w = names
                    .iter()
                    .map(|n| text_width(n, f.legend))
                    .try_fold(0, |m, w| w.map(|w| m.max(w)))?;
                let lw = text_w as i32 + legend_line + gap + 2 * margin;
                let lh = ((names.len() - 1) as f64 * 1.25 * f.legend + f.legend / 1.24).ceil()
                    as i32
                    + 2 * margin;
                let pos = best_corner(area, (lw, lh), &pixels);
                chart
                    .configure_series_labels()
                    .position(pos)
                    .margin(margin as u32)
                    .legend_area_size((legend_line + gap) as u32)
                    .border_style(LEGEND_EDGE)
                    .background_style(WHITE.mix(0.85))
                    .label_font(font(f.legend)?.color(&BLACK))
                    .draw()
                    .map_err(draw_error)?;
            }
            // matplotlib frames the plot area on all four sides.
            root.draw(&Rectangle::new(
                [
                    (area.x0 as i32, area.y0 as i32),
                    (area.x1 as i32, area.y1 as i32),
                ],
                BLACK.stroke_width(1),
            ))
            .map_err(draw_error)?;
            root.present().map_err(draw_error)?;
            area
        };
        let img = RgbImage::from_raw(w, h, buf)
            .ok_or_else(|| RenderError::Draw("plot buffer has the wrong size".into()))?;
        Ok((img, area))
    }

    /// Renders and writes the plot as a PNG, atomically (see [`super::save_png`]).
    ///
    /// # Errors
    /// As [`LinePlot::render`] (no file is written then), or the write fails.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        super::save_png(&self.render()?, path)
    }
}

/// Points along a polyline of pixels, at most 4 pixels apart, to tell where the curves run.
fn sample_path(px: &[(i32, i32)]) -> Vec<(i32, i32)> {
    let mut out: Vec<(i32, i32)> = px.first().copied().into_iter().collect();
    for seg in px.windows(2) {
        let (a, b) = (seg[0], seg[1]);
        let (dx, dy) = ((b.0 - a.0) as f64, (b.1 - a.1) as f64);
        let n = (dx.abs().max(dy.abs()) / 4.0).ceil().clamp(1.0, 1e4) as i32;
        out.extend((1..=n).map(|k| {
            let t = k as f64 / n as f64;
            (a.0 + (dx * t).round() as i32, a.1 + (dy * t).round() as i32)
        }));
    }
    out
}

/// matplotlib's `loc="best"` over the four corners: the corner whose legend box (5 pixels in from
/// the plot area's sides, as plotters places it) covers the fewest curve pixels, in the order
/// upper right, upper left, lower left, lower right on ties.
fn best_corner(area: Rect, (w, h): (i32, i32), pixels: &[(i32, i32)]) -> SeriesLabelPosition {
    let (x0, y0, x1, y1) = (
        area.x0 as i32,
        area.y0 as i32,
        area.x1 as i32,
        area.y1 as i32,
    );
    let left = x0 + 5;
    let right = x1 - 5 - w;
    let top = y0 + 5;
    let bottom = y1 - 5 - h;
    let corners = [
        (SeriesLabelPosition::UpperRight, right, top),
        (SeriesLabelPosition::UpperLeft, left, top),
        (SeriesLabelPosition::LowerLeft, left, bottom),
        (SeriesLabelPosition::LowerRight, right, bottom),
    ];
    let covered = |&(bx, by): &(i32, i32)| {
        pixels
            .iter()
            .filter(|p| (bx..=bx + w).contains(&p.0) && (by..=by + h).contains(&p.1))
            .count()
    };
    corners
        .into_iter()
        .min_by_key(|c| covered(&(c.1, c.2)))
        .map(|c| c.0)
        .unwrap_or(SeriesLabelPosition::UpperRight)
}

/// Exponential moving average of the finite y values (debiased as in TensorBoard:
/// `s_n = β s_{n-1} + (1-β) y_n`, reported as `s_n / (1 - β^n)`); non-finite points are dropped.
pub fn ema(points: &[(f64, f64)], beta: f64) -> Vec<(f64, f64)> {
    let (mut s, mut n) = (0.0, 0);
    let finite = points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    finite
        .map(|&(x, y)| {
            s = beta * s + (1.0 - beta) * y;
            n += 1;
            (x, s / (1.0 - beta.powi(n)))
        })
        .collect()
}

/// Axis limits (the data range with 5 % margins, or a range around constant data) and ticks.
/// On a log axis the values are log10 already; ticks sit at decades when at least two fit (with
/// minor ticks at 2…9 × 10^k when every decade is labelled), else at nice linear values.
/// `values` is not empty.
fn axis(values: &[f64], log: bool, target: usize) -> Axis {
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if hi / 2.0 - lo / 2.0 <= 1e-12 * lo.abs().max(hi.abs()) {
        let pad = if log {
            0.5
        } else if lo == 0.0 {
            1.0
        } else {
            0.1 * lo.abs()
        };
        (lo, hi) = (lo - pad, hi + pad);
    } else {
        let pad = 0.05 * (hi / 2.0 - lo / 2.0) * 2.0;
        (lo, hi) = ((lo - pad).max(f64::MIN), (hi + pad).min(f64::MAX));
    }
    // On a log axis lo and hi are exponents (|.| < 400), so these ranges are short.
    let decades: Vec<i64> = match log {
        true => (lo.ceil() as i64..=hi.floor() as i64).collect(),
        false => Vec::new(),
    };
    let (ticks, minor) = if decades.len() >= 2 {
        let step = decades.len().div_ceil(target);
        let ticks = decades
            .iter()
            .step_by(step)
            .map(|&k| (k as f64, power_of_ten(k)))
            .collect();
        let minor = match step {
            1 => (lo.floor() as i64..=hi.ceil() as i64)
                .flat_map(|k| (2..10).map(move |m| k as f64 + (m as f64).log10()))
                .filter(|v| (lo..=hi).contains(v))
                .collect(),
            _ => Vec::new(),
        };
        (ticks, minor)
    } else if log {
        let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
        let ticks = nice_ticks(a, b, target)
            .into_iter()
            .filter(|t| t.0 > 0.0)
            .map(|(v, s)| (v.log10(), s))
            .collect();
        (ticks, Vec::new())
    } else {
        (nice_ticks(lo, hi, target), Vec::new())
    };
    // plotters maps with `(v - lo) / (hi - lo)`: keep that span finite.
    let scale = if (hi - lo).is_finite() { 1.0 } else { 0.25 };
    Axis {
        lo: lo * scale,
        hi: hi * scale,
        scale,
        ticks: ticks.into_iter().map(|(v, s)| (v * scale, s)).collect(),
        minor: minor.into_iter().map(|v| v * scale).collect(),
    }
}

/// `10^k` with a superscript exponent, as matplotlib labels log axes: `10⁻²`.
fn power_of_ten(k: i64) -> String {
    const SUP: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let digits: String = k
        .unsigned_abs()
        .to_string()
        .chars()
        .map(|c| SUP[c.to_digit(10).unwrap_or(0) as usize])
        .collect();
    format!("10{}{digits}", if k < 0 { "⁻" } else { "" })
}

/// Multiples of a nice step (1, 2 or 5 × 10^k) inside `[lo, hi]`, at most about `target` + 1.
fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<(f64, String)> {
    let raw = (hi / 2.0 - lo / 2.0) / target as f64 * 2.0;
    let mag = 10f64.powi(exp10(raw));
    let step = mag
        * match raw / mag {
            n if n <= 1.0 => 1.0,
            n if n <= 2.0 => 2.0,
            n if n <= 5.0 => 5.0,
            _ => 10.0,
        };
    if !(step > 0.0 && step.is_finite()) {
        return Vec::new();
    }
    let (a, b) = (
        (lo / step - 1e-9).ceil() as i64,
        (hi / step + 1e-9).floor() as i64,
    );
    (a..=b.min(a + 2 * target as i64))
        .map(|i| i as f64 * step)
        .filter(|v| v.is_finite())
        .map(|v| (v, fmt_tick(v, step)))
        .collect()
}

fn exp10(v: f64) -> i32 {
    (v.abs().log10() + 1e-9).floor() as i32
}

/// Formats tick `v` with as many digits as the tick `step` needs.
fn fmt_tick(v: f64, step: f64) -> String {
    let a = v.abs();
    if a < step * 1e-6 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        let digits = (exp10(a) - exp10(step)).clamp(0, 3) as usize;
        format!("{v:.digits$e}")
    } else {
        let decimals = (-exp10(step)).max(0) as usize;
        format!("{v:.decimals$}")
    }
}
