//! Class colours for label overlays.
//!
//! Label 0 (background) is transparent. Labels 1..=13 use fixed, clearly distinct colours in the
//! BTCV organ order ([`BTCV_CLASS_NAMES`]); higher labels get deterministic colours from a
//! golden-ratio hue walk, so any K up to 255 classes has stable colours.
//!
//! ```
//! use masam_app::render::palette::class_colour;
//! assert_eq!(class_colour(0).0[3], 0); // background: transparent
//! assert_eq!(class_colour(1).0, [230, 25, 75, 255]);
//! assert_eq!(class_colour(200), class_colour(200)); // deterministic
//! ```

use image::Rgba;

/// Names of the BTCV classes, index = label (0 = background).
pub const BTCV_CLASS_NAMES: [&str; 14] = [
    "background",
    "spleen",
    "right kidney",
    "left kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "IVC",
    "portal/splenic veins",
    "pancreas",
    "right adrenal",
    "left adrenal",
];

/// Fixed colours of labels 1..=13 (BTCV organ order).
pub const FIXED: [[u8; 3]; 13] = [
    [230, 25, 75],   // spleen: red
    [60, 180, 75],   // right kidney: green
    [0, 130, 200],   // left kidney: blue
    [255, 225, 25],  // gallbladder: yellow
    [70, 240, 240],  // esophagus: cyan
    [245, 130, 48],  // liver: orange
    [145, 30, 180],  // stomach: purple
    [240, 50, 230],  // aorta: magenta
    [0, 128, 128],   // IVC: teal
    [170, 110, 40],  // veins: brown
    [250, 190, 212], // pancreas: pink
    [210, 245, 60],  // right adrenal: lime
    [128, 0, 0],     // left adrenal: maroon
];

/// Colour of `label` with alpha 255, or fully transparent black for the background (0).
pub fn class_colour(label: u8) -> Rgba<u8> {
    match label {
        0 => Rgba([0, 0, 0, 0]),
        l if (l as usize) <= FIXED.len() => {
            let [r, g, b] = FIXED[l as usize - 1];
            Rgba([r, g, b, 255])
        }
        l => {
            let k = l as f32;
            let h = (k * 0.618_034).fract() * 6.0;
            let s = if l % 2 == 0 { 0.85 } else { 0.6 };
            let v = if l % 3 == 0 { 0.75 } else { 0.95 };
            let [r, g, b] = hsv_to_rgb(h, s, v);
            Rgba([r, g, b, 255])
        }
    }
}

/// Name of `label`: the BTCV name for 0..=13 when `names` is `None`, `names[label]` when given
/// and long enough, `"class {label}"` otherwise.
pub fn class_name(label: u8, names: Option<&[String]>) -> String {
    match names {
        Some(n) => n.get(label as usize).cloned(),
        None => BTCV_CLASS_NAMES.get(label as usize).map(|s| s.to_string()),
    }
    .unwrap_or_else(|| format!("class {label}"))
}

/// HSV (hue in [0, 6), saturation and value in [0, 1]) to 8-bit RGB.
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [u8; 3] {
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r, g, b].map(|u| ((u + m) * 255.0).round().clamp(0.0, 255.0) as u8)
}
