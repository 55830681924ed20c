//! Video frame folders (EndoVis18 layout): RGB frames and colour-coded label PNGs.
//!
//! Labels are decoded with the colour map of the authors' EndoVis18 preprocessing script (see
//! [`ColorMap::endovis18`]): an exact RGB match gives the class id, anything else is background
//! 0. [`encode_label_frame`] is the exact inverse for ids present in the map.
//!
//! ```
//! use masam_volume::io::frames::{decode_label_rgb, encode_label_frame, ColorMap};
//! let cmap = ColorMap::endovis18();
//! let ids = ndarray::array![[0u8, 1, 11], [5, 0, 2]];
//! let rgb = encode_label_frame(&ids, &cmap).unwrap();
//! assert_eq!(decode_label_rgb(&rgb, &cmap), ids);
//! ```

use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3};

use crate::error::{Result, VolumeError};

/// A colour → class id table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColorMap {
    /// `(rgb, class id)` pairs; ids must be unique and non-zero.
    pub entries: Vec<([u8; 3], u8)>,
}

impl ColorMap {
    /// The EndoVis18 map used by the reference preprocessing (11 classes; anything else is 0).
    pub fn endovis18() -> Self {
        Self {
            entries: vec![
                ([0, 255, 0], 1),
                ([0, 255, 255], 2),
                ([125, 255, 12], 3),
                ([255, 55, 0], 4),
                ([24, 55, 125], 5),
                ([187, 155, 25], 6),
                ([0, 255, 125], 7),
                ([255, 255, 125], 8),
                ([123, 15, 175], 9),
                ([124, 155, 5], 10),
                ([12, 255, 141], 11),
            ],
        }
    }

    /// Class id of `rgb` (0 when the colour is not in the map).
    #[inline]
    pub fn class_of(&self, rgb: [u8; 3]) -> u8 {
        self.entries
            .iter()
            .find(|(c, _)| *c == rgb)
            .map(|e| e.1)
            .unwrap_or(0)
    }

    /// Colour of class `id` (`None` for ids not in the map; 0 is black).
    pub fn color_of(&self, id: u8) -> Option<[u8; 3]> {
        if id == 0 {
            return Some([0, 0, 0]);
        }
        self.entries.iter().find(|e| e.1 == id).map(|e| e.0)
    }

    /// Number of classes including background.
    pub fn num_classes(&self) -> usize {
        self.entries.iter().map(|e| e.1 as usize).max().unwrap_or(0) + 1
    }
}

/// Largest decoded frame, in bytes (a 4K RGBA frame is 33 MB): a PNG header claiming more is an
/// error before anything is allocated.
pub const MAX_FRAME_BYTES: usize = 256 << 20;

/// Reads a PNG frame as RGB, shape (H, W, 3): grey, grey + alpha, palette and 16-bit images are
/// converted (alpha dropped, 16-bit reduced to the high byte).
pub fn read_rgb_frame(path: impl AsRef<Path>) -> Result<Array3<u8>> {
    let path = path.as_ref();
    let image_err = |e: png::DecodingError| VolumeError::Image {
        path: path.to_path_buf(),
        reason: VolumeError::caused("", &e),
        source: Some(e.into()),
    };
    let file = masam_fs::open_regular_file(path)?;
    let mut decoder = png::Decoder::new_with_limits(
        std::io::BufReader::new(file),
        png::Limits {
            bytes: MAX_FRAME_BYTES,
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(image_err)?;
    let size = reader.output_buffer_size().ok_or_else(|| {
        VolumeError::invalid_header(path, "the PNG header claims an impossible image size")
    })?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(image_err)?;
    buf.truncate(info.buffer_size());
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(VolumeError::invalid_header(
                path,
                "indexed PNG was not expanded to RGB",
            ))
        }
    };
    let mut rgb = Vec::with_capacity(w * h * 3);
    for px in buf.chunks_exact(channels) {
        match channels {
            1 | 2 => rgb.extend_from_slice(&[px[0], px[0], px[0]]),
            _ => rgb.extend_from_slice(&px[..3]),
        }
    }
    Array3::from_shape_vec((h, w, 3), rgb).map_err(|e| VolumeError::Image {
        path: path.to_path_buf(),
        reason: VolumeError::caused("", &e),
        source: Some(e.into()),
    })
}

/// Maps an (H, W, 3) RGB label image to class ids with `cmap`.
pub fn decode_label_rgb(rgb: &Array3<u8>, cmap: &ColorMap) -> Array2<u8> {
    let (h, w, _) = rgb.dim();
    Array2::from_shape_fn((h, w), |(y, x)| {
        cmap.class_of([rgb[[y, x, 0]], rgb[[y, x, 1]], rgb[[y, x, 2]]])
    })
}

/// Reads a colour-coded label PNG as class ids, shape (H, W).
pub fn read_label_frame(path: impl AsRef<Path>, cmap: &ColorMap) -> Result<Array2<u8>> {
    Ok(decode_label_rgb(&read_rgb_frame(path)?, cmap))
}

/// Colour-codes class ids (inverse of [`decode_label_rgb`]); errors on ids absent from the map.
pub fn encode_label_frame(ids: &Array2<u8>, cmap: &ColorMap) -> Result<Array3<u8>> {
    let (h, w) = ids.dim();
    let mut out = Array3::<u8>::zeros((h, w, 3));
    for ((y, x), &id) in ids.indexed_iter() {
        let c = cmap.color_of(id).ok_or_else(|| {
            VolumeError::InvalidArgument(format!("class id {id} has no colour in the map"))
        })?;
        for ch in 0..3 {
            out[[y, x, ch]] = c[ch];
        }
    }
    Ok(out)
}

/// Writes an (H, W, 3) RGB array as PNG, atomically.
pub fn write_rgb_png(path: impl AsRef<Path>, rgb: &Array3<u8>) -> Result<()> {
    let path = path.as_ref();
    let (h, w, c) = rgb.dim();
    if c != 3 {
        return Err(VolumeError::InvalidArgument(format!(
            "{}: expected (H, W, 3), got {:?}",
            path.display(),
            rgb.dim()
        )));
    }
    let buf: Vec<u8> = rgb.iter().copied().collect();
    write_png(path, (w, h), png::ColorType::Rgb, &buf)
}

/// Writes an (H, W) array of 8-bit values (e.g. class ids) as a grey PNG, atomically.
pub fn write_grey_png(path: impl AsRef<Path>, grey: &Array2<u8>) -> Result<()> {
    let (h, w) = grey.dim();
    let buf: Vec<u8> = grey.iter().copied().collect();
    write_png(path.as_ref(), (w, h), png::ColorType::Grayscale, &buf)
}

/// Reads a grey 8-bit PNG (e.g. class ids written by [`write_grey_png`]) as (H, W); of a colour
/// image, the first channel.
pub fn read_grey_frame(path: impl AsRef<Path>) -> Result<Array2<u8>> {
    Ok(read_rgb_frame(path)?
        .index_axis(ndarray::Axis(2), 0)
        .to_owned())
}

/// Encodes 8-bit pixels (`width × height`, row-major) as PNG and writes them atomically.
fn write_png(
    path: &Path,
    (w, h): (usize, usize),
    colour: png::ColorType,
    pixels: &[u8],
) -> Result<()> {
    let image_err = |e: png::EncodingError| VolumeError::Image {
        path: path.to_path_buf(),
        reason: VolumeError::caused("", &e),
        source: Some(e.into()),
    };
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w as u32, h as u32);
        enc.set_color(colour);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(image_err)?;
        writer.write_image_data(pixels).map_err(image_err)?;
        writer.finish().map_err(image_err)?;
    }
    masam_fs::atomic_write_bytes(path, &bytes)?;
    Ok(())
}

/// Sorted `.png` files of a folder (without macOS `._*` resource forks); [`VolumeError::Empty`]
/// when there are none.
pub fn list_frames(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| VolumeError::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .map(|e| e.eq_ignore_ascii_case("png"))
                    .unwrap_or(false)
                && !p
                    .file_name()
                    .map(|n| n.to_string_lossy().starts_with("._"))
                    .unwrap_or(true)
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(VolumeError::Empty {
            path: dir.to_path_buf(),
            expected: "PNG frames".into(),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_colours_are_background() {
        let cmap = ColorMap::endovis18();
        assert_eq!(cmap.class_of([1, 2, 3]), 0);
        assert_eq!(cmap.class_of([12, 255, 141]), 11);
        assert_eq!(cmap.num_classes(), 12);
    }

    #[test]
    fn png_roundtrip_all_classes() {
        let cmap = ColorMap::endovis18();
        let ids = Array2::from_shape_fn((7, 9), |(y, x)| ((y * 9 + x) % 12) as u8);
        let rgb = encode_label_frame(&ids, &cmap).unwrap();
        let p = std::env::temp_dir().join(format!("masam_frame_{}.png", std::process::id()));
        write_rgb_png(&p, &rgb).unwrap();
        assert_eq!(read_rgb_frame(&p).unwrap(), rgb);
        assert_eq!(read_label_frame(&p, &cmap).unwrap(), ids);
        std::fs::remove_file(&p).unwrap();
        assert!(encode_label_frame(&ndarray::array![[12u8]], &cmap).is_err());
    }
}
