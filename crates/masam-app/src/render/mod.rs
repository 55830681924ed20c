//! PNG outputs a researcher looks at: training curves and segmentation overlays.
//!
//! [`plot`] draws line plots (loss per step, its moving average, Dice per evaluation) with
//! [plotters] in the look of matplotlib; [`overlay`] draws label maps over grey slices into
//! [`image`] buffers; [`palette`] holds the class colours. All text comes from one TrueType font
//! embedded in the crate ([`text`]), so nothing depends on system fonts. PNG files are written
//! atomically by [`save_png`].
//!
//! ```
//! use masam_app::render::{plot::LinePlot, save_png};
//! let loss: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 1.0 / (1.0 + i as f64))).collect();
//! let img = LinePlot::new("Training loss").x_label("step").series("loss", loss).render().unwrap();
//! let dir = std::env::temp_dir().join(format!("masam-render-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! save_png(&img, dir.join("loss.png")).unwrap();
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

pub mod overlay;
pub mod palette;
pub mod plot;
pub mod text;

use image::{codecs::png::PngEncoder, ImageBuffer, PixelWithColorType};
use std::path::{Path, PathBuf};

/// Errors of the rendering module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// Two arrays that must have the same shape do not.
    #[error("shape mismatch: {what} has shape {got:?}, expected {expected:?}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// The shape seen.
        got: Vec<usize>,
        /// The shape expected.
        expected: Vec<usize>,
    },
    /// An input value that cannot be rendered (empty image, bad alpha or window...).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A plot has no drawable point (every series is empty, non-finite, or non-positive on a
    /// log axis).
    #[error("nothing to plot: no series has a finite point")]
    Empty,
    /// plotters failed to draw.
    #[error("drawing failed: {0}")]
    Draw(String),
    /// An IO error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written (atomically: the target is left as it was).
    #[error(transparent)]
    Fs(#[from] masam_fs::FsError),
    /// The PNG encoder failed.
    #[error("{path}: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: image::ImageError,
    },
}

/// Result alias of the rendering module.
pub type Result<T> = std::result::Result<T, RenderError>;

/// Writes `img` as a PNG to `path` atomically: the bytes go to a temporary file in the same folder,
/// which is synced and renamed over `path`. On any error the temporary file is removed and `path`
/// is left as it was (absent, or the previous file).
pub fn save_png<P>(img: &ImageBuffer<P, Vec<u8>>, path: impl AsRef<Path>) -> Result<()>
where
    P: PixelWithColorType<Subpixel = u8>,
{
    let path = path.as_ref();
    let mut png = Vec::new();
    img.write_with_encoder(PngEncoder::new(&mut png))
        .map_err(|source| RenderError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
    masam_fs::atomic_write_bytes(path, &png)?;
    Ok(())
}
