//! Tests of the PNG renderers: embedded-font text, line plots, overlays, panels, slice picking,
//! atomic writes, and the figures of a run folder.
//!
//! Set `MASAM_RENDER_OUT=/some/dir` to keep the rendered images there and look at them.

use image::{Rgb, RgbImage};
use masam_adapter::data::LabelledVolume;
use masam_adapter::volume::ndarray::{s, Array2, Array3};
use masam_adapter::volume::Volume;
use masam_adapter::StepStats;
use masam_app::figures::{write_figures, HeldOut, RunHistory};
use masam_app::render::overlay::{overlay_panel, overlay_slice, pick_slices, PanelStyle, Window};
use masam_app::render::palette::{class_colour, FIXED};
use masam_app::render::plot::{ema, LinePlot, Rect, Series, TAB10};
use masam_app::render::text::{draw_text, text_width, CAP_HEIGHT, DESCENT};
use masam_app::render::{save_png, RenderError};
use std::path::PathBuf;

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("masam-render-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `img` to `$MASAM_RENDER_OUT/name.png` when that variable is set, to look at the outputs.
fn keep(name: &str, img: &RgbImage) {
    if let Some(dir) = std::env::var_os("MASAM_RENDER_OUT") {
        save_png(img, PathBuf::from(dir).join(format!("{name}.png"))).unwrap();
    }
}

fn is_dark(p: &Rgb<u8>) -> bool {
    p.0.iter().all(|&c| c < 100)
}

/// Dark pixels in the rectangle `x0..x1` × `y0..y1` (exclusive ends).
fn dark_in(img: &RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
    (y0..y1.min(img.height()))
        .flat_map(|y| (x0..x1.min(img.width())).map(move |x| (x, y)))
        .filter(|&(x, y)| is_dark(img.get_pixel(x, y)))
        .count()
}

/// Whether pixel (x, y) lies strictly inside the plot area `a` (the frame excluded).
fn inside(a: Rect, x: u32, y: u32) -> bool {
    a.x0 < x && x < a.x1 && a.y0 < y && y < a.y1
}

/// A deterministic noisy, decaying training loss like a real run's: 1500 steps.
fn realistic_loss() -> Vec<(f64, f64)> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..1500)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let t = i as f64;
            let mean = 0.18 + 0.95 * (-t / 260.0).exp();
            (t, mean * (0.75 + 0.5 * u))
        })
        .collect()
}

const DICE: [(f64, f64); 6] = [
    (250.0, 0.412),
    (500.0, 0.583),
    (750.0, 0.664),
    (1000.0, 0.702),
    (1250.0, 0.731),
    (1500.0, 0.738),
];

#[test]
fn text_uses_the_embedded_font_and_sits_on_its_baseline() {
    // DejaVu Sans: "W" advances 2025 of the 2384 units spanned by the size.
    assert_eq!(text_width("W", 23.84).unwrap(), 20);
    assert!(text_width("Training loss", 20.0).unwrap() > text_width("loss", 20.0).unwrap());
    let mut img = RgbImage::from_pixel(200, 60, Rgb([255; 3]));
    let (x, base, size) = (5, 40, 30.0);
    draw_text(&mut img, x, base, "Hg", size, [0, 0, 0]).unwrap();
    let ink: Vec<(u32, u32)> = img
        .enumerate_pixels()
        .filter(|p| is_dark(p.2))
        .map(|p| (p.0, p.1))
        .collect();
    assert!(ink.len() > 100, "{} dark pixels", ink.len());
    let top = ink.iter().map(|p| p.1).min().unwrap() as f64;
    let bottom = ink.iter().map(|p| p.1).max().unwrap() as f64;
    let (left, right) = (
        ink.iter().map(|p| p.0).min().unwrap(),
        ink.iter().map(|p| p.0).max().unwrap(),
    );
    // "H" reaches the cap height above the baseline, "g" the descent below it.
    assert!(
        (top - (base as f64 - CAP_HEIGHT * size)).abs() <= 2.0,
        "top {top}"
    );
    assert!(
        (bottom - (base as f64 + DESCENT * size)).abs() <= 3.0,
        "bottom {bottom}"
    );
    assert!(left >= x as u32 && right <= x as u32 + text_width("Hg", size).unwrap() + 1);
    // Partly outside the image: clipped, no panic.
    let mut small = RgbImage::new(10, 10);
    draw_text(&mut small, -7, 8, "Ab9", 20.0, [255, 0, 0]).unwrap();
    assert!(small.pixels().any(|p| p.0[0] > 128 && p.0[1] < 100));
}

#[test]
fn loss_plot_looks_like_matplotlib() {
    let loss = realistic_loss();
    let plot = LinePlot::new("Training loss")
        .x_label("step")
        .y_label("loss")
        .add_series(Series::new("loss per step", loss.clone()).alpha(0.35))
        .series("moving average", ema(&loss, 0.95));
    let (img, a) = plot.render_with_area().unwrap();
    keep("loss", &img);
    assert_eq!(img.dimensions(), (1000, 600));
    // The plot area fills most of the figure, with room for title, labels and ticks.
    assert!(
        a.x0 > 40 && a.x0 < 150 && a.x1 > 900 && a.x1 < 1000,
        "{a:?}"
    );
    assert!(a.y0 > 30 && a.y0 < 80 && a.y1 > 450 && a.y1 < 560, "{a:?}");
    // Framed on all four sides.
    let frame = |pts: Vec<(u32, u32)>| pts.iter().all(|&(x, y)| is_dark(img.get_pixel(x, y)));
    assert!(frame((a.x0..=a.x1).map(|x| (x, a.y0)).collect()), "top");
    assert!(frame((a.x0..=a.x1).map(|x| (x, a.y1)).collect()), "bottom");
    assert!(frame((a.y0..=a.y1).map(|y| (a.x0, y)).collect()), "left");
    assert!(frame((a.y0..=a.y1).map(|y| (a.x1, y)).collect()), "right");
    // Title above the plot area, centred.
    let cx = img.width() / 2;
    let title: Vec<u32> = (0..a.y0)
        .flat_map(|y| (a.x0 + 1..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| is_dark(img.get_pixel(x, y)))
        .map(|p| p.0)
        .collect();
    assert!(title.len() > 100, "title");
    let (t0, t1) = (title.iter().min().unwrap(), title.iter().max().unwrap());
    assert!((t0 + t1).abs_diff(2 * cx) < 30, "title centred: {t0}..{t1}");
    // Tick labels under the x axis and left of the y axis; the axis labels beyond them.
    assert!(
        dark_in(&img, (a.x0, a.x1), (a.y1 + 8, a.y1 + 30)) > 150,
        "x ticks"
    );
    assert!(
        dark_in(&img, (cx - 40, cx + 40), (a.y1 + 32, 600)) > 20,
        "x label"
    );
    assert!(
        dark_in(&img, (a.x0 - 60, a.x0 - 8), (a.y0, a.y1)) > 150,
        "y ticks"
    );
    assert!(dark_in(&img, (0, 30), (a.y0, a.y1)) > 20, "y label");
    // Outward tick marks below the x axis.
    let ticks = (a.x0..=a.x1)
        .filter(|&x| (a.y1 + 1..a.y1 + 6).all(|y| is_dark(img.get_pixel(x, y))))
        .count();
    assert!((4..=12).contains(&ticks), "{ticks} x tick marks");
    // The light grid inside the plot area.
    let grid = Rgb([222, 222, 222]);
    assert!(img.pixels().filter(|&&p| p == grid).count() > 1000);
    // The EMA in tab:orange; the raw loss in tab:blue at 35 % over white.
    let count = |c: [u8; 3], tol: i32| {
        img.pixels()
            .filter(|p| (0..3).all(|i| (p.0[i] as i32 - c[i] as i32).abs() <= tol))
            .count()
    };
    assert!(count(TAB10[1], 0) > 1000, "orange EMA");
    let faded = TAB10[0].map(|c| (255.0 - 0.35 * (255.0 - c as f64)).round() as u8);
    assert!(count(faded, 0) > 2000, "faded blue loss");
    assert_eq!(count(TAB10[0], 0), 0, "no opaque blue");
    // A decreasing loss leaves the upper right corner free: the legend (framed in light grey)
    // goes there, with its two entries' samples and names.
    let edge = Rgb([204, 204, 204]);
    let legend: Vec<(u32, u32)> = img
        .enumerate_pixels()
        .filter(|p| *p.2 == edge && inside(a, p.0, p.1))
        .map(|p| (p.0, p.1))
        .collect();
    assert!(legend.len() > 200, "legend frame");
    assert!(legend
        .iter()
        .all(|&(x, y)| x > (a.x0 + a.x1) / 2 && y < (a.y0 + a.y1) / 2));
    let (lx0, ly0) = (
        legend.iter().map(|p| p.0).min().unwrap(),
        legend.iter().map(|p| p.1).min().unwrap(),
    );
    let (lx1, ly1) = (
        legend.iter().map(|p| p.0).max().unwrap(),
        legend.iter().map(|p| p.1).max().unwrap(),
    );
    assert!(dark_in(&img, (lx0, lx1), (ly0, ly1)) > 100, "legend names");
    let orange_in_legend = (ly0..ly1)
        .flat_map(|y| (lx0..lx1).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0 == TAB10[1])
        .count();
    assert!(orange_in_legend > 20, "legend line sample");
}

#[test]
fn dice_plot_has_markers_and_its_legend_off_the_curve() {
    let plot = LinePlot::new("Held-out mean Dice")
        .x_label("step")
        .y_label("mean Dice")
        .add_series(Series::new("mean Dice", DICE).markers(true));
    let (img, a) = plot.render_with_area().unwrap();
    keep("dice", &img);
    // The upper right is taken by the curve: the legend goes to another corner.
    let edge = Rgb([204, 204, 204]);
    let legend: Vec<(u32, u32)> = img
        .enumerate_pixels()
        .filter(|p| *p.2 == edge && inside(a, p.0, p.1))
        .map(|p| (p.0, p.1))
        .collect();
    let (lx1, ly1) = (
        legend.iter().map(|p| p.0).max().unwrap(),
        legend.iter().map(|p| p.1).max().unwrap(),
    );
    assert!(lx1 < (a.x0 + a.x1) / 2, "legend on the left");
    // Rising curve: its left end is low (large row), its right end high.
    let inside: Vec<(u32, u32)> = img
        .enumerate_pixels()
        .filter(|p| p.2 .0 == TAB10[0])
        .map(|p| (p.0, p.1))
        .filter(|p| inside(a, p.0, p.1))
        .filter(|p| p.0 > lx1 || p.1 > ly1)
        .collect();
    let leftmost = inside.iter().min_by_key(|p| p.0).unwrap();
    let rightmost = inside.iter().max_by_key(|p| p.0).unwrap();
    assert!(leftmost.1 > rightmost.1 + 200, "{leftmost:?} {rightmost:?}");
    // Markers: filled discs wider than the line at each of the six points.
    let thick_columns = (a.x0..a.x1)
        .filter(|&x| {
            let n = (a.y0..a.y1)
                .filter(|&y| img.get_pixel(x, y).0 == TAB10[0])
                .count();
            n >= 7
        })
        .count();
    assert!(thick_columns >= 6 * 4, "{thick_columns} marker columns");
}

#[test]
fn series_take_distinct_tab10_colours_and_png_round_trips() {
    let mut plot = LinePlot::new("three").size(640, 400);
    for k in 0..3 {
        let pts: Vec<(f64, f64)> = (0..100)
            .map(|i| {
                (
                    i as f64,
                    (i as f64 / 10.0 + k as f64).sin() + 3.0 * k as f64,
                )
            })
            .collect();
        plot = plot.series(format!("series {k}"), pts);
    }
    let dir = tmp_dir("plot");
    let path = dir.join("three.png");
    plot.save_png(&path).unwrap();
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!(back.dimensions(), (640, 400));
    assert_eq!(back, plot.render().unwrap());
    for (k, c) in TAB10.iter().take(3).enumerate() {
        let n = back.pixels().filter(|p| p.0 == *c).count();
        assert!(n > 300, "series {k}: {n} pixels of {c:?}");
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary file left"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Mean row of the pixels of `colour` per column of `img` strictly inside the plot area.
fn rows_per_column(img: &RgbImage, colour: [u8; 3], a: Rect) -> Vec<(u32, f64)> {
    (a.x0 + 1..a.x1)
        .filter_map(|x| {
            let rows: Vec<u32> = (a.y0 + 1..a.y1)
                .filter(|&y| img.get_pixel(x, y).0 == colour)
                .collect();
            (!rows.is_empty()).then(|| (x, rows.iter().sum::<u32>() as f64 / rows.len() as f64))
        })
        .collect()
}

#[test]
fn decreasing_series_goes_down_on_linear_and_log_axes() {
    let pts: Vec<(f64, f64)> = (0..300)
        .map(|i| (i as f64, 2.0 * (-(i as f64) / 40.0).exp() + 0.01))
        .collect();
    for log in [false, true] {
        let plot = LinePlot::new("Training loss")
            .x_label("step")
            .y_label("loss")
            .log_y(log)
            .legend(false)
            .series("loss", pts.clone());
        let (img, a) = plot.render_with_area().unwrap();
        keep(&format!("decreasing-log{log}"), &img);
        let cols = rows_per_column(&img, TAB10[0], a);
        // The line spans the plot area (less the 5 % margins) from left to right...
        assert!(
            cols.len() as f64 > 0.85 * (a.x1 - a.x0) as f64,
            "log={log}: {} columns",
            cols.len()
        );
        // ...and descends (image rows grow downwards) monotonically.
        assert!(cols.windows(2).all(|w| w[1].1 >= w[0].1 - 1.0), "log={log}");
        assert!(cols.last().unwrap().1 - cols[0].1 > 0.8 * (a.y1 - a.y0) as f64);
        if log {
            // Three decades: on a log axis the curve's last half (the near-flat tail at 0.01
            // to 0.06 above) still spans a decade of rows; on a linear axis it hugs the bottom.
            let half = &cols[cols.len() / 2..];
            let drop = half.last().unwrap().1 - half[0].1;
            assert!(drop > 0.15 * (a.y1 - a.y0) as f64, "log tail drop {drop}");
            // The fainter minor grid at 2…9 × 10^k.
            let minor = Rgb([240, 240, 240]);
            assert!(img.pixels().filter(|&&p| p == minor).count() > 1000);
        }
    }
}

#[test]
fn degenerate_series_render_and_empty_plots_are_errors() {
    let nan_mixed = vec![
        (0.0, 1.0),
        (1.0, f64::NAN),
        (2.0, f64::INFINITY),
        (f64::NAN, 0.3),
        (3.0, 0.5),
    ];
    // (name, points, log-y)
    type Case = (&'static str, Vec<(f64, f64)>, bool);
    let cases: Vec<Case> = vec![
        ("single", vec![(5.0, 0.7)], false),
        (
            "constant",
            (0..10).map(|i| (i as f64, 0.25)).collect(),
            false,
        ),
        ("zeros", (0..10).map(|i| (i as f64, 0.0)).collect(), false),
        ("nan", nan_mixed.clone(), false),
        ("nan-log", nan_mixed.clone(), true),
        (
            "nonpositive-log",
            vec![(0.0, 0.0), (1.0, -1.0), (2.0, 1e-7), (3.0, 1e-2)],
            true,
        ),
        ("huge", vec![(0.0, 1e9), (1e6, 3e9)], false),
        (
            "extreme",
            vec![(-1.7e308, -1.7e308), (1.7e308, 1.7e308)],
            false,
        ),
        ("tiny", vec![(0.0, 1e-300), (1e-300, 2e-300)], true),
        ("subnormal", vec![(0.0, 0.0), (5e-324, 5e-324)], false),
    ];
    for (name, pts, log) in cases {
        let plot = LinePlot::new(name)
            .size(10, 10)
            .log_y(log)
            .series(name, pts.clone());
        assert!(plot.has_data(), "{name}");
        let (img, a) = plot.render_with_area().unwrap();
        keep(name, &img);
        assert_eq!(img.dimensions(), (320, 240), "{name}: the minimum size");
        let drawn = rows_per_column(&img, TAB10[0], a).len();
        assert!(drawn > 0, "{name}: nothing drawn");
    }
    // The NaN-containing series draws the line through its finite points, top-left to the
    // lower right (1.0 at x = 0, 0.5 at x = 3).
    let plot = LinePlot::new("nan").legend(false).series("nan", nan_mixed);
    let (img, a) = plot.render_with_area().unwrap();
    let cols = rows_per_column(&img, TAB10[0], a);
    assert!(cols.len() as f64 > 0.85 * (a.x1 - a.x0) as f64);
    assert!(cols.last().unwrap().1 > cols[0].1 + 300.0);

    let dir = tmp_dir("empty");
    let empties = [
        LinePlot::new("no series"),
        LinePlot::new("empty series").series("s", vec![]),
        LinePlot::new("all NaN").series("s", vec![(0.0, f64::NAN), (f64::NAN, 1.0)]),
        LinePlot::new("log of zero")
            .log_y(true)
            .series("s", vec![(0.0, 0.0), (1.0, -2.0)]),
    ];
    for plot in empties {
        assert!(!plot.has_data(), "{}", plot.title);
        assert!(matches!(plot.render(), Err(RenderError::Empty)));
        let path = dir.join("x.png");
        assert!(matches!(plot.save_png(&path), Err(RenderError::Empty)));
        assert!(!path.exists(), "{}: no file", plot.title);
    }
    // One empty series next to a drawable one: fine, both in the legend.
    let mixed = LinePlot::new("mixed")
        .series("empty", vec![])
        .series("one", vec![(0.0, 1.0), (1.0, 2.0)]);
    assert!(mixed.render().is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ema_is_debiased_and_skips_non_finite() {
    let pts = [(0.0, 2.0), (1.0, f64::NAN), (2.0, 2.0), (3.0, 2.0)];
    let e = ema(&pts, 0.9);
    assert_eq!(e.len(), 3);
    assert!(e.iter().all(|p| (p.1 - 2.0).abs() < 1e-12), "{e:?}");
    let step = ema(&[(0.0, 0.0), (1.0, 1.0)], 0.5);
    assert!((step[1].1 - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn overlay_blends_labels_and_draws_contours() {
    let (h, w) = (12, 16);
    let image = Array2::from_shape_fn((h, w), |(y, x)| (y * w + x) as f32 / (h * w) as f32);
    let mut labels = Array2::<u8>::zeros((h, w));
    labels.slice_mut(s![2..9, 3..10]).fill(1);
    labels.slice_mut(s![4..7, 12..15]).fill(20);
    let alpha = 0.4;
    let img = overlay_slice(image.view(), labels.view(), alpha).unwrap();
    keep("overlay", &img);
    assert_eq!(img.dimensions(), (w as u32, h as u32));
    let grey = |y: usize, x: usize| image[[y, x]] * 255.0;
    for y in 0..h {
        for x in 0..w {
            let p = img.get_pixel(x as u32, y as u32).0;
            let l = labels[[y, x]];
            let border = match l {
                1 => x == 3 || x == 9 || y == 2 || y == 8,
                20 => x == 12 || x == 14 || y == 4 || y == 6,
                _ => false,
            };
            let c = class_colour(l).0;
            let expected = match l {
                0 => [grey(y, x).round() as u8; 3],
                _ if border => [c[0], c[1], c[2]],
                _ => [0, 1, 2]
                    .map(|i| (grey(y, x) * (1.0 - alpha) + c[i] as f32 * alpha).round() as u8),
            };
            assert_eq!(p, expected, "pixel ({y}, {x}) label {l}");
        }
    }
    assert_eq!(
        img.get_pixel(5, 5).0,
        [0, 1, 2].map(|i| (grey(5, 5) * 0.6 + FIXED[0][i] as f32 * 0.4).round() as u8)
    );
    // A window maps HU to [0, 1] first.
    let hu = image.mapv(|v| v * 400.0 - 160.0);
    let windowed = Window::center_width(40.0, 400.0).apply(hu.view()).unwrap();
    assert!(
        (windowed[[0, 0]] - 0.0).abs() < 1e-6 && windowed.iter().all(|v| (0.0..=1.0).contains(v))
    );
}

/// Rows of `panel` where 40 pixels from column `x` are one mid grey: the rows of the image panels.
fn panel_rows(panel: &RgbImage, x: u32) -> Vec<u32> {
    (0..panel.height())
        .filter(|&y| {
            let p = panel.get_pixel(x, y).0;
            (60..200).contains(&p[0])
                && p[0] == p[1]
                && p[1] == p[2]
                && (x..x + 40).all(|u| panel.get_pixel(u, y).0 == p)
        })
        .collect()
}

#[test]
fn panel_has_three_captioned_panels_and_legend() {
    let (h, w) = (24, 20);
    // Mid greys only, so that the panels are told apart from white canvas and black text.
    let image = Array2::from_shape_fn((h, w), |(y, _)| 0.3 + 0.4 * y as f32 / h as f32);
    let gt = Array2::from_shape_fn((h, w), |(y, x)| {
        u8::from((5..15).contains(&y) && (4..12).contains(&x)) * 6
    });
    let pred = Array2::from_shape_fn((h, w), |(y, x)| {
        u8::from((6..16).contains(&y) && (4..12).contains(&x)) * 6
    });
    let style = PanelStyle {
        scale: 4,
        ..PanelStyle::default()
    };
    let panel = overlay_panel(image.view(), gt.view(), pred.view(), "case 3 z=40", &style).unwrap();
    keep("panel", &panel);
    // The panels are 80 pixels wide, but the "ground truth" caption is wider: columns widen.
    let column = text_width("ground truth", 17.0).unwrap().max(80);
    assert_eq!(panel.width(), 3 * column + 40);
    let rows = panel_rows(&panel, 12);
    assert_eq!(rows.len(), 96, "the image panel is 24 × 4 rows");
    let (top, bottom) = (rows[0], rows[95]);
    assert_eq!(bottom - top, 95);
    // Title and captions: dark text above the panels, left to right.
    assert!(dark_in(&panel, (10, 120), (0, top / 2 + 4)) > 40, "title");
    for i in 0..3 {
        let x = 10 + i * (column + 10);
        assert!(
            dark_in(&panel, (x, x + column), (top / 2, top)) > 30,
            "caption {i}"
        );
    }
    let liver = &class_colour(6).0[..3];
    let count = |i: u32| {
        let x0 = 10 + i * (column + 10);
        (x0..x0 + 80)
            .flat_map(|x| (top..=bottom).map(move |y| (x, y)))
            .filter(|&(x, y)| panel.get_pixel(x, y).0[..] == *liver)
            .count()
    };
    assert_eq!(count(0), 0, "plain image panel has no label colour");
    // The contours of the 8 × 10 boxes: 32 pixels, each a 4 × 4 block at scale 4.
    assert_eq!(count(1), 32 * 16, "gt contour");
    assert_eq!(count(2), 32 * 16, "prediction contour");
    // The legend below the panels: a liver swatch and its name.
    let below = (bottom + 1..panel.height())
        .flat_map(|y| (0..panel.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| panel.get_pixel(x, y).0[..] == *liver)
        .count();
    assert_eq!(below, 13 * 13, "one 13 × 13 swatch");
    assert!(
        dark_in(&panel, (25, 80), (bottom + 1, panel.height())) > 30,
        "\"liver\""
    );
    let dir = tmp_dir("panel");
    save_png(&panel, dir.join("p.png")).unwrap();
    assert_eq!(image::open(dir.join("p.png")).unwrap().to_rgb8(), panel);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_are_errors() {
    let image = Array2::<f32>::zeros((8, 8));
    let labels = Array2::<u8>::zeros((8, 7));
    let err = overlay_slice(image.view(), labels.view(), 0.5).unwrap_err();
    assert!(matches!(err, RenderError::Shape { .. }), "{err}");
    let ok = Array2::<u8>::zeros((8, 8));
    assert!(matches!(
        overlay_slice(image.view(), ok.view(), 1.5),
        Err(RenderError::Invalid(_))
    ));
    let empty = Array2::<f32>::zeros((0, 8));
    assert!(overlay_slice(empty.view(), Array2::<u8>::zeros((0, 8)).view(), 0.5).is_err());
    let s = PanelStyle::default();
    assert!(matches!(
        overlay_panel(image.view(), ok.view(), labels.view(), "t", &s),
        Err(RenderError::Shape { .. })
    ));
    assert!(matches!(
        overlay_panel(image.view(), labels.view(), labels.view(), "t", &s),
        Err(RenderError::Shape { .. })
    ));
    let bad = PanelStyle {
        window: Window { lo: 1.0, hi: 1.0 },
        ..PanelStyle::default()
    };
    assert!(overlay_panel(image.view(), ok.view(), ok.view(), "t", &bad).is_err());
    // Failed writes leave nothing behind: a missing folder, and a path that is a directory.
    let dir = tmp_dir("bad");
    let img = RgbImage::new(4, 4);
    assert!(matches!(
        save_png(&img, dir.join("missing/x.png")),
        Err(RenderError::Fs(_))
    ));
    std::fs::create_dir(dir.join("taken.png")).unwrap();
    assert!(save_png(&img, dir.join("taken.png")).is_err());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("taken.png")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pick_slices_spreads_over_foreground() {
    let mut labels = Array3::<u8>::zeros((20, 6, 6));
    for z in 4..16 {
        // Foreground area peaks at z = 6 and z = 13.
        let r = if z == 6 || z == 13 { 5 } else { 2 };
        labels.slice_mut(s![z, 0..r, 0..r]).fill(1);
    }
    assert_eq!(pick_slices(labels.view(), 2), vec![6, 13]);
    let four = pick_slices(labels.view(), 4);
    assert_eq!(four.len(), 4);
    assert!(four.windows(2).all(|w| w[0] < w[1]) && four.iter().all(|z| (4..16).contains(z)));
    assert_eq!(pick_slices(labels.view(), 100).len(), 12);
    assert_eq!(pick_slices(labels.view(), 0), Vec::<usize>::new());
    assert_eq!(
        pick_slices(Array3::<u8>::zeros((10, 2, 2)).view(), 2),
        vec![2, 7]
    );
    assert_eq!(
        pick_slices(Array3::<u8>::zeros((0, 2, 2)).view(), 3),
        Vec::<usize>::new()
    );
}

#[test]
fn palette_is_distinct_and_deterministic() {
    assert_eq!(class_colour(0).0[3], 0);
    let colours: Vec<[u8; 4]> = (1..=255u8).map(|l| class_colour(l).0).collect();
    assert!(colours.iter().all(|c| c[3] == 255));
    for i in 0..13 {
        for j in 0..i {
            let d: i32 = (0..3)
                .map(|k| (colours[i][k] as i32 - colours[j][k] as i32).abs())
                .sum();
            assert!(d > 60, "labels {} and {} too close", i + 1, j + 1);
        }
    }
    assert_eq!(class_colour(77), class_colour(77));
}

fn steps(loss: &[(f64, f64)]) -> Vec<StepStats> {
    loss.iter()
        .map(|&(s, l)| StepStats {
            step: s as u64,
            loss: l as f32,
            ce: 0.0,
            dice: 0.0,
            lr: 1e-3,
        })
        .collect()
}

#[test]
fn run_figures_are_written() {
    let dir = tmp_dir("figures");
    // A CT-like volume: a bright box (HU 60) with label 6 on part of it, a prediction shifted.
    let mut hu = Array3::<f32>::from_elem((6, 48, 48), -100.0);
    hu.slice_mut(s![.., 10..38, 8..40]).fill(60.0);
    let mut label = Array3::<u8>::zeros((6, 48, 48));
    label.slice_mut(s![2..4, 14..30, 12..30]).fill(6);
    label.slice_mut(s![2..4, 30..36, 30..38]).fill(1);
    let mut pred = Array3::<u8>::zeros((6, 48, 48));
    pred.slice_mut(s![2..4, 16..32, 12..32]).fill(6);
    let case = LabelledVolume {
        image: Volume::with_spacing(hu, [1.0; 3]),
        label: Volume::with_spacing(label, [1.0; 3]),
    };
    let loss = realistic_loss();
    let history = steps(&loss);
    let evals: Vec<(u64, f64)> = DICE.iter().map(|&(s, d)| (s as u64, d)).collect();
    let cases = [case];
    let preds = [Volume::with_spacing(pred, [1.0; 3])];
    let held_out = HeldOut {
        cases: &cases,
        predictions: &preds,
        class_names: &[],
        window: (-160.0, 240.0),
    };
    let run = RunHistory {
        steps: &history,
        evaluations: &evals,
    };
    write_figures(&dir, &run, &held_out).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "dice.png",
            "loss.png",
            "overlay_case0_z2.png",
            "overlay_case0_z3.png"
        ]
    );
    for name in ["loss", "dice", "overlay_case0_z2"] {
        let img = image::open(dir.join(format!("{name}.png")))
            .unwrap()
            .to_rgb8();
        keep(&format!("run-{name}"), &img);
        if name != "overlay_case0_z2" {
            assert_eq!(img.dimensions(), (1000, 600));
        }
    }
    // A diverged run (every loss NaN) and no evaluations: no curves, no error.
    let nan = steps(&[(0.0, f64::NAN), (1.0, f64::NAN)]);
    let dir2 = tmp_dir("figures-nan");
    let run = RunHistory {
        steps: &nan,
        evaluations: &[],
    };
    let none = HeldOut {
        cases: &[],
        predictions: &[],
        class_names: &[],
        window: (0.0, 1.0),
    };
    write_figures(&dir2, &run, &none).unwrap();
    assert_eq!(std::fs::read_dir(&dir2).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&dir2).unwrap();
}
