//! Tests of the PNG renderers: font, line plots, overlays, panels, slice picking, atomic writes.

use image::{Rgb, RgbImage};
use masam_adapter::volume::ndarray::{Array2, Array3};
use masam_app::render::font::{draw_text, text_size};
use masam_app::render::overlay::{overlay_panel, overlay_slice, pick_slices, PanelStyle, Window};
use masam_app::render::palette::{class_colour, FIXED};
use masam_app::render::plot::{ema, LinePlot, SERIES_COLOURS};
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

#[test]
fn text_renders_inside_its_box_and_clips() {
    let mut img = RgbImage::from_pixel(200, 30, Rgb([255; 3]));
    let text = "Loss 1e-3 (a/b) 50% x=2, ~";
    let end = draw_text(&mut img, 3, 4, text, Rgb([0; 3]), 1);
    let (w, h) = text_size(text, 1);
    assert_eq!(end, 3 + 6 * text.chars().count() as i64);
    let ink: Vec<(u32, u32)> = img
        .enumerate_pixels()
        .filter(|p| p.2 .0 == [0; 3])
        .map(|p| (p.0, p.1))
        .collect();
    assert!(ink.len() > 100);
    assert!(ink
        .iter()
        .all(|&(x, y)| (3..3 + w).contains(&x) && (4..4 + h).contains(&y)));
    // '~' is unknown: a hollow 5×7 box at its cell.
    let bx = 3 + 6 * (text.chars().count() as u32 - 1);
    assert!((0..7).all(|dy| img.get_pixel(bx, 4 + dy).0 == [0; 3]));
    // Scaled and partly outside the image: clipped, no panic.
    let mut small = RgbImage::new(10, 10);
    draw_text(&mut small, -7, 5, "Ab9", Rgb([255, 0, 0]), 3);
    assert!(small.pixels().any(|p| p.0 == [255, 0, 0]));
}

/// Mean row of the pixels of `colour` per column of `img` inside the plot area.
fn rows_per_column(
    img: &RgbImage,
    colour: Rgb<u8>,
    area: masam_app::render::plot::Rect,
) -> Vec<(u32, f64)> {
    (area.x0..=area.x1)
        .filter_map(|x| {
            let rows: Vec<u32> = (area.y0..=area.y1)
                .filter(|&y| *img.get_pixel(x, y) == colour)
                .collect();
            (!rows.is_empty()).then(|| (x, rows.iter().sum::<u32>() as f64 / rows.len() as f64))
        })
        .collect()
}

#[test]
fn decreasing_series_goes_down_and_png_round_trips() {
    let pts: Vec<(f64, f64)> = (0..300)
        .map(|i| (i as f64, 2.0 * (-(i as f64) / 80.0).exp() + 0.1))
        .collect();
    for log in [false, true] {
        let mut plot = LinePlot::new("Training loss")
            .x_label("step")
            .y_label("loss")
            .log_y(log)
            .series("loss", pts.clone());
        plot.legend = false;
        let img = plot.render();
        keep(&format!("decreasing-log{log}"), &img);
        let area = plot.plot_area();
        let cols = rows_per_column(&img, Rgb(SERIES_COLOURS[0]), area);
        // The line spans the plot area from left to right...
        assert!(
            cols.len() as f64 > 0.9 * (area.x1 - area.x0) as f64,
            "log={log}: {} columns",
            cols.len()
        );
        // ...and descends (image rows grow downwards) monotonically.
        assert!(cols.windows(2).all(|w| w[1].1 >= w[0].1 - 1.0), "log={log}");
        assert!(cols.last().unwrap().1 - cols[0].1 > 0.5 * (area.y1 - area.y0) as f64);
        // Tick labels and title left dark pixels outside the plot area.
        let dark_outside = img
            .enumerate_pixels()
            .filter(|(x, y, p)| p.0 == [0; 3] && (*y < area.y0 || *x < area.x0))
            .count();
        assert!(dark_outside > 200);
    }
    let dir = tmp_dir("plot");
    let path = dir.join("loss.png");
    let plot = LinePlot::new("Loss")
        .size(640, 360)
        .series("loss", pts.clone())
        .series("EMA", ema(&pts, 0.9));
    plot.save_png(&path).unwrap();
    keep("loss-ema", &plot.render());
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!(back.dimensions(), (640, 360));
    assert_eq!(back, plot.render());
    // Both series and the legend (two swatches) are drawn.
    assert!(back.pixels().any(|p| p.0 == SERIES_COLOURS[1]));
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary file left"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn degenerate_series_render() {
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
        ("empty", vec![], false),
        ("single", vec![(5.0, 0.7)], false),
        (
            "constant",
            (0..10).map(|i| (i as f64, 0.25)).collect(),
            false,
        ),
        ("zeros", (0..10).map(|i| (i as f64, 0.0)).collect(), false),
        ("nan", nan_mixed.clone(), false),
        ("nan-log", nan_mixed, true),
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
        let mut plot = LinePlot::new(name)
            .size(10, 10)
            .log_y(log)
            .series(name, pts.clone());
        plot.legend = false;
        let img = plot.render();
        keep(name, &img);
        assert_eq!(img.dimensions(), (200, 150), "{name}");
        let finite = pts
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite() && (!log || p.1 > 0.0))
            .count();
        let a = plot.plot_area();
        let drawn = rows_per_column(&img, Rgb(SERIES_COLOURS[0]), a).len();
        assert_eq!(drawn > 0, finite > 0, "{name}: {drawn} columns drawn");
    }
}

#[test]
fn overlay_blends_labels_and_draws_contours() {
    let (h, w) = (12, 16);
    let image = Array2::from_shape_fn((h, w), |(y, x)| (y * w + x) as f32 / (h * w) as f32);
    let mut labels = Array2::<u8>::zeros((h, w));
    labels
        .slice_mut(masam_adapter::volume::ndarray::s![2..9, 3..10])
        .fill(1);
    labels
        .slice_mut(masam_adapter::volume::ndarray::s![4..7, 12..15])
        .fill(20);
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

#[test]
fn panel_has_three_captioned_panels_and_legend() {
    let (h, w) = (24, 20);
    let image = Array2::from_shape_fn((h, w), |(y, _)| y as f32 / h as f32);
    let gt = Array2::from_shape_fn((h, w), |(y, x)| {
        if (5..15).contains(&y) && (4..12).contains(&x) {
            6
        } else {
            0
        }
    });
    let pred = Array2::from_shape_fn((h, w), |(y, x)| {
        if (6..16).contains(&y) && (4..12).contains(&x) {
            6
        } else {
            0
        }
    });
    // At scale 1 the 20-pixel panels are narrower than their captions: columns widen to fit them.
    let small = overlay_panel(
        image.view(),
        gt.view(),
        pred.view(),
        "t",
        &PanelStyle::default(),
    );
    assert_eq!(small.unwrap().width(), 3 * 71 + 40);
    let style = PanelStyle {
        scale: 4,
        ..PanelStyle::default()
    };
    let panel = overlay_panel(image.view(), gt.view(), pred.view(), "case 3 z=40", &style).unwrap();
    keep("panel", &panel);
    assert_eq!(panel.width(), 3 * 80 + 40);
    assert!(panel.height() > 46 + 96);
    let liver = class_colour(6).0;
    let count = |x0: u32| {
        (x0..x0 + 80)
            .flat_map(|x| (46..46 + 96).map(move |y| (x, y)))
            .filter(|&(x, y)| panel.get_pixel(x, y).0[..] == liver[..3])
            .count()
    };
    assert_eq!(count(10), 0, "plain image panel has no label colour");
    assert!(
        count(100) > 0 && count(190) > 0,
        "contours in the gt and prediction panels"
    );
    // The legend swatch below the panels.
    assert!((46 + 96..panel.height())
        .any(|y| (0..panel.width()).any(|x| panel.get_pixel(x, y).0[..] == liver[..3])));
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
        Err(RenderError::Io { .. })
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
        labels
            .slice_mut(masam_adapter::volume::ndarray::s![z, 0..r, 0..r])
            .fill(1);
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
