//! Line plots of training curves (loss per step, EMA-smoothed loss, Dice per evaluation).
//!
//! Axes get "nice" ticks (steps of 1, 2 or 5 × 10^k) with numeric labels, optionally a log-scaled
//! y axis. Non-finite points (and non-positive ones on a log axis) are skipped, the line joining
//! the neighbouring finite points; empty, single-point and constant series render without error.
//!
//! ```
//! use masam_app::render::plot::{ema, LinePlot};
//! let loss: Vec<(f64, f64)> = (0..200).map(|i| (i as f64, (-(i as f64) / 50.0).exp())).collect();
//! let plot = LinePlot::new("Training loss")
//!     .x_label("step")
//!     .y_label("loss")
//!     .log_y(true)
//!     .series("EMA(0.9)", ema(&loss, 0.9))
//!     .series("loss", loss);
//! let img = plot.render();
//! assert_eq!(img.dimensions(), (800, 500));
//! ```

use super::font::{draw_text, text_size};
use super::Result;
use image::{Rgb, RgbImage};
use std::path::Path;

/// Default series colours, in order of addition (then repeating).
pub const SERIES_COLOURS: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [23, 190, 207],
];

const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const GRID: Rgb<u8> = Rgb([228, 228, 228]);

/// A pixel rectangle, `x..=x1`, `y..=y1` inclusive.
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

/// One named curve.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// (x, y) points in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Line colour.
    pub colour: Rgb<u8>,
}

/// A line plot with title, axis labels, ticks, grid, legend and optional log-y.
#[derive(Clone, Debug, PartialEq)]
pub struct LinePlot {
    /// Title, drawn centred at the top.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label above the y axis.
    pub y_label: String,
    /// Image width in pixels (at least 200 is used).
    pub width: u32,
    /// Image height in pixels (at least 150 is used).
    pub height: u32,
    /// Log10-scaled y axis.
    pub log_y: bool,
    /// Draw the legend (top-right or bottom-left of the plot area, whichever holds fewer points).
    pub legend: bool,
    /// The curves.
    pub series: Vec<Series>,
}

struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    /// Position of `v` along the axis, 0 at `lo` and 1 at `hi` (overflow-safe).
    fn frac(&self, v: f64) -> f64 {
        (v / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0)
    }
}

struct Layout {
    area: Rect,
    x: Axis,
    y: Axis,
}

impl LinePlot {
    /// An empty 800×500 plot with a legend and a linear y axis.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            width: 800,
            height: 500,
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
    /// Adds a series coloured with the next of [`SERIES_COLOURS`].
    pub fn series(
        mut self,
        name: impl Into<String>,
        points: impl IntoIterator<Item = (f64, f64)>,
    ) -> Self {
        let colour = Rgb(SERIES_COLOURS[self.series.len() % SERIES_COLOURS.len()]);
        self.series.push(Series {
            name: name.into(),
            points: points.into_iter().collect(),
            colour,
        });
        self
    }

    /// The pixel rectangle of the plot area (its frame included) in the rendered image.
    pub fn plot_area(&self) -> Rect {
        self.layout().area
    }

    fn size_used(&self) -> (u32, u32) {
        (self.width.max(200), self.height.max(150))
    }

    /// Finite points of every series, y already log10-transformed if `log_y`.
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

    fn layout(&self) -> Layout {
        let (w, h) = self.size_used();
        let pts: Vec<(f64, f64)> = self.series.iter().flat_map(|s| self.finite(s)).collect();
        let x = axis(pts.iter().map(|p| p.0), false, (w / 90).clamp(2, 10));
        let y = axis(pts.iter().map(|p| p.1), self.log_y, (h / 60).clamp(2, 10));
        let label_w = y
            .ticks
            .iter()
            .map(|t| text_size(&t.1, 1).0)
            .max()
            .unwrap_or(0);
        let area = Rect {
            x0: (label_w + 18).min(w / 2),
            y0: 48,
            x1: w - 20,
            y1: h - 40,
        };
        Layout { area, x, y }
    }

    /// Rasterises the plot.
    pub fn render(&self) -> RgbImage {
        let (w, h) = self.size_used();
        let mut img = RgbImage::from_pixel(w, h, WHITE);
        let Layout { area: a, x, y } = self.layout();
        let px = |v: f64| a.x0 as f64 + x.frac(v) * (a.x1 - a.x0) as f64;
        let py = |v: f64| a.y1 as f64 - y.frac(v) * (a.y1 - a.y0) as f64;
        // Tick labels that would touch the previous one are left out (their grid lines stay).
        let mut last = i64::MIN / 2;
        for (v, label) in &x.ticks {
            let c = px(*v).round() as u32;
            fill(&mut img, c, a.y0 + 1, c, a.y1 - 1, GRID);
            fill(&mut img, c, a.y1, c, a.y1 + 4, BLACK);
            let left = c as i64 - text_size(label, 1).0 as i64 / 2;
            if left > last + 6 {
                last = draw_text(&mut img, left, a.y1 as i64 + 7, label, BLACK, 1);
            }
        }
        let mut last = i64::MAX / 2;
        for (v, label) in &y.ticks {
            let r = py(*v).round() as u32;
            fill(&mut img, a.x0 + 1, r, a.x1 - 1, r, GRID);
            fill(&mut img, a.x0 - 4, r, a.x0, r, BLACK);
            // Ticks go upwards: skip a label closer than 16 rows to the last one drawn.
            if last - r as i64 >= 16 {
                let tw = text_size(label, 1).0 as i64;
                draw_text(
                    &mut img,
                    a.x0 as i64 - 7 - tw,
                    r as i64 - 3,
                    label,
                    BLACK,
                    1,
                );
                last = r as i64;
            }
        }
        frame(&mut img, a, BLACK);
        let ts = if text_size(&self.title, 2).0 + 20 <= w {
            2
        } else {
            1
        };
        let (tw, th) = text_size(&self.title, ts);
        let ty = 10 + (14 - th as i64) / 2;
        draw_text(
            &mut img,
            (w as i64 - tw as i64) / 2,
            ty,
            &self.title,
            BLACK,
            ts,
        );
        let tw = text_size(&self.x_label, 1).0 as i64;
        let xc = (a.x0 + a.x1) as i64 / 2 - tw / 2;
        draw_text(&mut img, xc, a.y1 as i64 + 22, &self.x_label, BLACK, 1);
        draw_text(&mut img, 8, a.y0 as i64 - 13, &self.y_label, BLACK, 1);

        let inner = Rect {
            x0: a.x0 + 1,
            y0: a.y0 + 1,
            x1: a.x1 - 1,
            y1: a.y1 - 1,
        };
        let mut all_px = Vec::new();
        for s in &self.series {
            let pts: Vec<(i64, i64)> = self
                .finite(s)
                .iter()
                .map(|&(u, v)| (px(u).round() as i64, py(v).round() as i64))
                .collect();
            for seg in pts.windows(2) {
                line(&mut img, seg[0], seg[1], s.colour, inner);
            }
            if pts.len() <= 40 {
                for &(u, v) in &pts {
                    for d in [(-2, -2), (-2, 0), (0, -2), (0, 0)] {
                        line(
                            &mut img,
                            (u + d.0, v + d.1),
                            (u + d.0 + 2, v + d.1),
                            s.colour,
                            inner,
                        );
                    }
                }
            }
            all_px.extend(pts);
        }
        if self.legend && !self.series.is_empty() {
            self.draw_legend(&mut img, a, &all_px);
        }
        img
    }

    fn draw_legend(&self, img: &mut RgbImage, a: Rect, pts: &[(i64, i64)]) {
        let lw = self
            .series
            .iter()
            .map(|s| text_size(&s.name, 1).0)
            .max()
            .unwrap_or(0)
            + 34;
        let lh = 12 * self.series.len() as u32 + 6;
        let top_right = Rect {
            x0: a.x1.saturating_sub(lw + 6),
            y0: a.y0 + 6,
            x1: a.x1 - 6,
            y1: a.y0 + 6 + lh,
        };
        let bottom_left = Rect {
            x0: a.x0 + 6,
            y0: a.y1.saturating_sub(lh + 6),
            x1: a.x0 + 6 + lw,
            y1: a.y1 - 6,
        };
        let inside = |r: Rect| {
            let hit = |&&(x, y): &&(i64, i64)| {
                (r.x0 as i64..=r.x1 as i64).contains(&x) && (r.y0 as i64..=r.y1 as i64).contains(&y)
            };
            pts.iter().filter(hit).count()
        };
        let r = if inside(bottom_left) < inside(top_right) {
            bottom_left
        } else {
            top_right
        };
        fill(img, r.x0, r.y0, r.x1, r.y1, WHITE);
        frame(img, r, Rgb([160, 160, 160]));
        for (i, s) in self.series.iter().enumerate() {
            let yc = r.y0 + 9 + 12 * i as u32;
            fill(img, r.x0 + 5, yc - 1, r.x0 + 23, yc, s.colour);
            draw_text(img, r.x0 as i64 + 29, yc as i64 - 3, &s.name, BLACK, 1);
        }
    }

    /// Renders and writes the plot as a PNG, atomically (see [`super::save_png`]).
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        super::save_png(&self.render(), path)
    }
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

fn fill(img: &mut RgbImage, x0: u32, y0: u32, x1: u32, y1: u32, c: Rgb<u8>) {
    for y in y0..=y1.min(img.height() - 1) {
        for x in x0..=x1.min(img.width() - 1) {
            img.put_pixel(x, y, c);
        }
    }
}

fn frame(img: &mut RgbImage, r: Rect, c: Rgb<u8>) {
    fill(img, r.x0, r.y0, r.x1, r.y0, c);
    fill(img, r.x0, r.y1, r.x1, r.y1, c);
    fill(img, r.x0, r.y0, r.x0, r.y1, c);
    fill(img, r.x1, r.y0, r.x1, r.y1, c);
}

/// A 2-pixel-wide Bresenham line from `p` to `q`, clipped to `clip`.
fn line(img: &mut RgbImage, p: (i64, i64), q: (i64, i64), c: Rgb<u8>, clip: Rect) {
    let (dx, dy) = ((q.0 - p.0).abs(), -(q.1 - p.1).abs());
    let (sx, sy) = (
        if p.0 < q.0 { 1 } else { -1 },
        if p.1 < q.1 { 1 } else { -1 },
    );
    let (mut x, mut y, mut err) = (p.0, p.1, dx + dy);
    loop {
        for (u, v) in [(x, y), (x + 1, y), (x, y + 1), (x + 1, y + 1)] {
            if (clip.x0 as i64..=clip.x1 as i64).contains(&u)
                && (clip.y0 as i64..=clip.y1 as i64).contains(&v)
            {
                img.put_pixel(u as u32, v as u32, c);
            }
        }
        if (x, y) == q {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// Axis limits (data range padded by 4 %, or a unit range around constant/absent data) and ticks.
/// On a log axis the values are log10 already; ticks sit at decades when at least two fit, else at
/// nice linear values.
fn axis(values: impl Iterator<Item = f64>, log: bool, target: u32) -> Axis {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if lo > hi {
        (lo, hi) = if log { (-1.0, 0.0) } else { (0.0, 1.0) };
    }
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
        let pad = 0.08 * (hi / 2.0 - lo / 2.0);
        (lo, hi) = ((lo - pad).max(f64::MIN), (hi + pad).min(f64::MAX));
    }
    // On a log axis lo and hi are exponents (|.| < 400), so this range is short.
    let decades: Vec<f64> = match log {
        true => (lo.ceil() as i64..=hi.floor() as i64)
            .map(|k| k as f64)
            .collect(),
        false => Vec::new(),
    };
    let ticks = if decades.len() >= 2 {
        let step = decades.len().div_ceil(target as usize);
        decades
            .iter()
            .step_by(step)
            .map(|&k| (k, fmt_tick(10f64.powf(k), 10f64.powf(k))))
            .collect()
    } else if log {
        let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
        nice_ticks(a, b, target)
            .into_iter()
            .filter(|t| t.0 > 0.0)
            .map(|(v, s)| (v.log10(), s))
            .collect()
    } else {
        nice_ticks(lo, hi, target)
    };
    Axis { lo, hi, ticks }
}

/// Multiples of a nice step (1, 2 or 5 × 10^k) inside `[lo, hi]`, about `target` of them.
fn nice_ticks(lo: f64, hi: f64, target: u32) -> Vec<(f64, String)> {
    let raw = (hi / 2.0 - lo / 2.0) / target as f64 * 2.0;
    let mag = 10f64.powi(exp10(raw));
    let step = mag
        * match raw / mag {
            n if n < 1.5 => 1.0,
            n if n < 3.0 => 2.0,
            n if n < 7.0 => 5.0,
            _ => 10.0,
        };
    if !(step > 0.0 && step.is_finite()) {
        return Vec::new();
    }
    let (a, b) = (
        (lo / step - 1e-9).ceil() as i64,
        (hi / step + 1e-9).floor() as i64,
    );
    (a..=b.min(a + 4 * target as i64))
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
