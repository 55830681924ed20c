//! Text in the figures, from one embedded TrueType font: DejaVu Sans 2.37 (Bitstream Vera
//! licence, `assets/fonts/LICENSE-DejaVu.txt`), so figures render the same on a machine with no
//! system fonts.
//!
//! The font is registered with plotters (its `ab_glyph` backend) as the family
//! [`FAMILY`] on first use; plots use it through plotters' text styles, and [`draw_text`] draws
//! it onto an [`RgbImage`] for the overlay captions.
//!
//! ```
//! use masam_app::render::text::{draw_text, text_width};
//! let mut img = image::RgbImage::from_pixel(120, 30, image::Rgb([255; 3]));
//! draw_text(&mut img, 4, 20, "liver", 16.0, [0, 0, 0]).unwrap();
//! assert!(img.pixels().any(|p| p.0 == [0, 0, 0]));
//! assert!(text_width("liver", 16.0).unwrap() > 20);
//! ```

use super::{RenderError, Result};
use image::RgbImage;
use plotters::prelude::{BitMapBackend, DrawingBackend, IntoFont, RGBColor};
use plotters::style::{FontDesc, FontStyle, TextStyle};
use std::sync::OnceLock;

/// The font family name the embedded font is registered under with plotters (plotters' default
/// family, so every text style that names no family uses it too).
pub const FAMILY: &str = "sans-serif";

/// The embedded DejaVu Sans font file.
pub static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Height of a capital letter above the baseline, as a fraction of the font size (DejaVu Sans:
/// 1493 of the 2384 font units that plotters' size spans).
pub const CAP_HEIGHT: f64 = 1493.0 / 2384.0;

/// Depth of the descenders below the baseline, as a fraction of the font size (483 / 2384).
pub const DESCENT: f64 = 483.0 / 2384.0;

/// Registers the embedded font with plotters (once per process).
///
/// # Errors
/// The embedded font does not parse (a broken build).
pub fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    match ok {
        true => Ok(()),
        false => Err(RenderError::Invalid(
            "the embedded DejaVu Sans font does not parse".into(),
        )),
    }
}

/// The embedded font at `size` pixels (plotters' size: ascent plus descent).
pub fn font(size: f64) -> Result<FontDesc<'static>> {
    ensure_font()?;
    Ok((FAMILY, size).into_font())
}

/// Width in pixels of `text` set at `size`.
pub fn text_width(text: &str, size: f64) -> Result<u32> {
    let (w, _) = font(size)?.box_size(text).map_err(draw_error)?;
    Ok(w)
}

/// Draws `text` onto `img` with its left end at column `x` and its baseline on row `baseline`,
/// anti-aliased over what is there. Text outside the image is clipped.
pub fn draw_text(
    img: &mut RgbImage,
    x: i32,
    baseline: i32,
    text: &str,
    size: f64,
    colour: [u8; 3],
) -> Result<()> {
    let rgb = RGBColor(colour[0], colour[1], colour[2]);
    let style = TextStyle::from(font(size)?).color(&rgb);
    let dims = img.dimensions();
    let mut backend = BitMapBackend::with_buffer(img.as_mut(), dims);
    // plotters' ab_glyph backend puts the baseline size/2 below a top-left anchored position.
    let top = baseline - (size / 2.0).round() as i32;
    backend
        .draw_text(text, &style, (x, top))
        .map_err(draw_error)?;
    backend.present().map_err(draw_error)
}

/// A plotters error as a [`RenderError::Draw`].
pub(crate) fn draw_error(e: impl std::fmt::Display) -> RenderError {
    RenderError::Draw(e.to_string())
}
