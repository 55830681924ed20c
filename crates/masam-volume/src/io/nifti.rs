//! NIfTI reading (`.nii`, `.nii.gz`, NIfTI-1 and NIfTI-2): every integer/float datatype, either
//! byte order, `scl_slope`/`scl_inter`, the full geometry, bounded allocation and typed errors.
//!
//! NIfTI-1 headers are parsed by the `nifti` crate, NIfTI-2 headers here
//! ([`super::nifti_header`]); the voxel data is read here so that its size can be checked against
//! [`ReadLimits`] and against what the file can hold *before* anything is allocated, and so that
//! 4D files can be read one volume at a time.
//!
//! What is refused, each with a typed error naming the file: anything but a regular file (a FIFO
//! is refused without blocking), a header claiming more data than the limits or the file allow,
//! truncated or corrupt data (the gzip CRC-32 and length are checked), non-finite or
//! non-positive spacings, a non-finite `scl_slope`/`scl_inter`, a non-finite or singular affine,
//! and voxels that are not finite once scaled and converted to the target type.
//!
//! ```no_run
//! use masam_volume::io::nifti::NiftiReader;
//! let img = NiftiReader::new().read::<f32>("case.nii.gz")?;
//! println!("{:?} mm, affine {:?}", img.volume.spacing, img.volume.affine);
//! # Ok::<(), masam_volume::VolumeError>(())
//! ```

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use ndarray::Array3;
use rayon::prelude::*;

use super::element::{StoredType, Voxel};
use super::limits::ReadLimits;
pub use super::limits::DEFAULT_MAX_BYTES;
pub use super::nifti_header::NiftiVersion;
use super::nifti_header::{parse_header, sniff_version, RawHeader};
use crate::error::{Result, VolumeError};
use crate::volume::{Affine, Volume};

/// The geometry and storage fields of a NIfTI-1 or NIfTI-2 header (NIfTI-1's `i16`/`f32` fields
/// widened to NIfTI-2's `i64`/`f64`), kept so that outputs can be written on exactly the same
/// grid (see [`crate::io::writer`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiGeometry {
    /// The header version the geometry was read from (informational: the writer chooses the
    /// version of its output itself, see [`crate::io::writer::NiftiWriter::version`]).
    pub version: NiftiVersion,
    /// `dim[0..8]` as stored (dim\[0\] = number of dimensions).
    pub dim: [i64; 8],
    /// `pixdim[0..8]` as stored (pixdim\[0\] = qfac).
    pub pixdim: [f64; 8],
    /// `qform_code` (0 unknown, 1 scanner, 2 aligned, 3 Talairach, 4 MNI).
    pub qform_code: i16,
    /// `sform_code`.
    pub sform_code: i16,
    /// `quatern_b`, `quatern_c`, `quatern_d`.
    pub quatern: [f64; 3],
    /// `qoffset_x`, `qoffset_y`, `qoffset_z`.
    pub qoffset: [f64; 3],
    /// `srow_x`, `srow_y`, `srow_z`.
    pub srow: [[f64; 4]; 3],
    /// `xyzt_units`.
    pub xyzt_units: u8,
    /// Stored `datatype` code.
    pub datatype: i16,
    /// `scl_slope` as stored.
    pub scl_slope: f64,
    /// `scl_inter` as stored.
    pub scl_inter: f64,
    /// Whether the file was big-endian.
    pub big_endian: bool,
}

impl Default for NiftiGeometry {
    fn default() -> Self {
        Self {
            version: NiftiVersion::One,
            dim: [3, 1, 1, 1, 1, 1, 1, 1],
            pixdim: [1.0; 8],
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
            xyzt_units: 2,
            datatype: 16,
            scl_slope: 1.0,
            scl_inter: 0.0,
            big_endian: false,
        }
    }
}

impl NiftiGeometry {
    /// A scanner-space (codes 1/1) geometry for a volume of shape (Z, Y, X) with `affine`.
    ///
    /// The qform is the closest rigid representation of `affine` (exact when the affine has
    /// orthogonal columns, as NIfTI requires of a qform); the sform is `affine` itself.
    pub fn from_affine(shape_zyx: [usize; 3], affine: &Affine) -> Self {
        let mut g = Self {
            dim: [
                3,
                shape_zyx[2] as i64,
                shape_zyx[1] as i64,
                shape_zyx[0] as i64,
                1,
                1,
                1,
                1,
            ],
            qform_code: 1,
            sform_code: 1,
            ..Self::default()
        };
        g.set_affine(affine);
        g
    }

    /// Number of dimensions (`dim[0]`).
    pub fn ndim(&self) -> usize {
        self.dim[0].clamp(0, 7) as usize
    }

    /// Voxel size (x, y, z) in the file's units (absolute values of `pixdim[1..4]`).
    pub fn spacing(&self) -> [f64; 3] {
        [
            self.pixdim[1].abs(),
            self.pixdim[2].abs(),
            self.pixdim[3].abs(),
        ]
    }

    /// The sform affine (rows `srow_x/y/z`), whatever `sform_code` says.
    pub fn sform_affine(&self) -> Affine {
        let mut a = [[0.0; 4]; 4];
        for r in 0..3 {
            for c in 0..4 {
                a[r][c] = self.srow[r][c];
            }
        }
        a[3][3] = 1.0;
        a
    }

    /// The qform affine (quaternion, `pixdim`, qfac and offsets), whatever `qform_code` says.
    pub fn qform_affine(&self) -> Affine {
        // As nibabel: w² = 1 − |bcd|² in f64, w = 0 when |w²| < 3·eps(f32) (or negative), then
        // the normalising quat2mat.
        let [b, c, d] = self.quatern;
        let w2 = 1.0 - (b * b + c * c + d * d);
        let a = if w2.abs() < 3.0 * f32::EPSILON as f64 || w2 < 0.0 {
            0.0
        } else {
            w2.sqrt()
        };
        let nq = a * a + b * b + c * c + d * d;
        let r = if nq < f64::EPSILON {
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        } else {
            let s = 2.0 / nq;
            let (x2, y2, z2) = (b * s, c * s, d * s);
            let (wx, wy, wz) = (a * x2, a * y2, a * z2);
            let (xx, xy, xz) = (b * x2, b * y2, b * z2);
            let (yy, yz, zz) = (c * y2, c * z2, d * z2);
            [
                [1.0 - (yy + zz), xy - wz, xz + wy],
                [xy + wz, 1.0 - (xx + zz), yz - wx],
                [xz - wy, yz + wx, 1.0 - (xx + yy)],
            ]
        };
        let qfac = if self.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let zooms = [self.pixdim[1], self.pixdim[2], self.pixdim[3] * qfac];
        let mut out = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                out[i][j] = r[i][j] * zooms[j];
            }
            out[i][3] = self.qoffset[i];
        }
        out[3][3] = 1.0;
        out
    }

    /// nibabel's `get_best_affine`: the sform if `sform_code > 0`, else the qform if
    /// `qform_code > 0`, else the Analyze-style default (x flipped, origin at the grid centre).
    pub fn best_affine(&self) -> Affine {
        if self.sform_code > 0 {
            self.sform_affine()
        } else if self.qform_code > 0 {
            self.qform_affine()
        } else {
            let z = self.spacing();
            let zooms = [-z[0], z[1], z[2]];
            let mut a = [[0.0; 4]; 4];
            for i in 0..3 {
                let n = self.dim[i + 1].max(1) as f64;
                a[i][i] = zooms[i];
                a[i][3] = -((n - 1.0) / 2.0) * zooms[i];
            }
            a[3][3] = 1.0;
            a
        }
    }

    /// Sets both the sform (exactly) and the qform (rotation via the quaternion of the
    /// normalised columns, `pixdim` from the column norms) from `affine`.
    pub fn set_affine(&mut self, affine: &Affine) {
        for r in 0..3 {
            for c in 0..4 {
                self.srow[r][c] = affine[r][c];
            }
        }
        let mut cols = [[0.0f64; 3]; 3];
        let mut zooms = [0.0f64; 3];
        for j in 0..3 {
            let n = (0..3)
                .map(|i| affine[i][j] * affine[i][j])
                .sum::<f64>()
                .sqrt();
            zooms[j] = if n > 0.0 { n } else { 1.0 };
            for i in 0..3 {
                cols[j][i] = if n > 0.0 {
                    affine[i][j] / n
                } else {
                    (i == j) as u8 as f64
                };
            }
        }
        // Rotation matrix R[i][j] = cols[j][i]; a left-handed frame is made proper with qfac = -1.
        let mut r = [[0.0f64; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                r[i][j] = cols[j][i];
            }
        }
        let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
            - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
            + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
        let qfac = if det < 0.0 {
            for row in r.iter_mut() {
                row[2] = -row[2];
            }
            -1.0
        } else {
            1.0
        };
        let (a, b, c, d) = rotation_to_quaternion(&r);
        let (b, c, d) = if a < 0.0 { (-b, -c, -d) } else { (b, c, d) };
        self.quatern = [b, c, d];
        self.qoffset = [affine[0][3], affine[1][3], affine[2][3]];
        self.pixdim[0] = qfac;
        self.pixdim[1] = zooms[0];
        self.pixdim[2] = zooms[1];
        self.pixdim[3] = zooms[2];
    }
}

/// Quaternion (a, b, c, d) of a proper rotation matrix (Shepperd's method).
fn rotation_to_quaternion(r: &[[f64; 3]; 3]) -> (f64, f64, f64, f64) {
    let tr = r[0][0] + r[1][1] + r[2][2];
    if tr > 0.0 {
        let s = (tr + 1.0).sqrt() * 2.0;
        (
            0.25 * s,
            (r[2][1] - r[1][2]) / s,
            (r[0][2] - r[2][0]) / s,
            (r[1][0] - r[0][1]) / s,
        )
    } else if r[0][0] > r[1][1] && r[0][0] > r[2][2] {
        let s = (1.0 + r[0][0] - r[1][1] - r[2][2]).sqrt() * 2.0;
        (
            (r[2][1] - r[1][2]) / s,
            0.25 * s,
            (r[0][1] + r[1][0]) / s,
            (r[0][2] + r[2][0]) / s,
        )
    } else if r[1][1] > r[2][2] {
        let s = (1.0 + r[1][1] - r[0][0] - r[2][2]).sqrt() * 2.0;
        (
            (r[0][2] - r[2][0]) / s,
            (r[0][1] + r[1][0]) / s,
            0.25 * s,
            (r[1][2] + r[2][1]) / s,
        )
    } else {
        let s = (1.0 + r[2][2] - r[0][0] - r[1][1]).sqrt() * 2.0;
        (
            (r[1][0] - r[0][1]) / s,
            (r[0][2] + r[2][0]) / s,
            (r[1][2] + r[2][1]) / s,
            0.25 * s,
        )
    }
}

/// A volume read from NIfTI together with the header geometry it came with.
#[derive(Debug, Clone)]
pub struct NiftiImage<T> {
    /// Voxels (Z, Y, X) with spacing and the best affine (see [`NiftiGeometry::best_affine`]).
    pub volume: Volume<T>,
    /// The header's geometry fields, for writing outputs on the same grid.
    pub geometry: NiftiGeometry,
}

/// Options for reading NIfTI files (builder, then [`NiftiReader::read`]).
#[derive(Debug, Clone)]
pub struct NiftiReader {
    limits: ReadLimits,
    volume_index: Option<usize>,
    allow_non_finite: bool,
}

impl Default for NiftiReader {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the bytes come from: how much data they can hold is known before reading.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    /// Uncompressed, of this many bytes in all.
    Plain(u64),
    /// Gzip-compressed, of this many compressed bytes.
    Gzip(u64),
}

impl NiftiReader {
    /// Defaults: [`ReadLimits::default`], 3D files only, non-finite voxels rejected.
    pub fn new() -> Self {
        Self {
            limits: ReadLimits::default(),
            volume_index: None,
            allow_non_finite: false,
        }
    }

    /// The allocation limits (voxels, bytes, believed compression ratio) in force.
    pub fn limits(mut self, limits: ReadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Largest voxel payload (stored bytes, and decoded bytes of the target type) accepted; a
    /// shorthand for setting [`ReadLimits::max_bytes`].
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.limits.max_bytes = bytes;
        self
    }

    /// For 4D files: which 3D volume (index along `dim[4]`) to read. 3D files ignore it if 0.
    pub fn volume_index(mut self, index: usize) -> Self {
        self.volume_index = Some(index);
        self
    }

    /// Accept NaN/inf voxels instead of failing with [`VolumeError::NonFinite`].
    pub fn allow_non_finite(mut self, allow: bool) -> Self {
        self.allow_non_finite = allow;
        self
    }

    /// Reads only the header (and validates it) without touching the voxel data.
    pub fn read_header(&self, path: impl AsRef<Path>) -> Result<NiftiGeometry> {
        let path = path.as_ref();
        let (mut reader, _) = open_maybe_gz(path)?;
        let raw = read_header_from(path, &mut reader)?;
        Ok(raw.geometry)
    }

    /// Reads one 3D volume, converting (after `scl_slope`/`scl_inter`, in `f64`) to `T`.
    ///
    /// # Errors
    /// Every refusal of the module docs, as a [`VolumeError`] naming `path`.
    pub fn read<T: Voxel>(&self, path: impl AsRef<Path>) -> Result<NiftiImage<T>> {
        let path = path.as_ref();
        let (reader, source) = open_maybe_gz(path)?;
        self.read_from(path, reader, source)
    }

    /// As [`read`](Self::read), from the bytes of a `.nii` or `.nii.gz` file held in memory
    /// (gzip is recognised by its magic); `name` is the path that errors name.
    ///
    /// ```
    /// use masam_volume::io::nifti::NiftiReader;
    /// let e = NiftiReader::new().read_bytes::<f32>("x.nii".as_ref(), b"not a header").unwrap_err();
    /// assert!(e.to_string().starts_with("x.nii: "));
    /// ```
    pub fn read_bytes<T: Voxel>(&self, name: &Path, bytes: &[u8]) -> Result<NiftiImage<T>> {
        let len = bytes.len() as u64;
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let reader = Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(bytes)));
            self.read_from(name, reader, Source::Gzip(len))
        } else {
            self.read_from(name, Box::new(bytes), Source::Plain(len))
        }
    }

    fn read_from<T: Voxel>(
        &self,
        path: &Path,
        mut reader: Box<dyn Read + '_>,
        source: Source,
    ) -> Result<NiftiImage<T>> {
        let raw = read_header_from(path, &mut reader)?;
        let header = &raw.geometry;
        let stored = StoredType::from_code(header.datatype).ok_or_else(|| {
            VolumeError::UnsupportedDatatype {
                path: path.to_path_buf(),
                code: header.datatype,
            }
        })?;
        let ndim = header.ndim();
        let dims: Vec<u64> = header.dim[1..=ndim].iter().map(|&d| d as u64).collect();
        // Effective extra dimensions beyond 3 (trailing singleton dims don't count).
        let extra = dims.iter().skip(3).fold(1u64, |a, &d| a.saturating_mul(d));
        let spatial: Vec<u64> = (0..3).map(|i| dims.get(i).copied().unwrap_or(1)).collect();
        let n_vols = usize::try_from(extra).unwrap_or(usize::MAX);
        let index = match (n_vols, self.volume_index) {
            (1, None) | (1, Some(0)) => 0,
            (_, Some(i)) if i < n_vols => i,
            (_, Some(i)) => {
                return Err(VolumeError::VolumeIndex {
                    path: path.to_path_buf(),
                    index: i,
                    count: n_vols,
                })
            }
            (_, None) => {
                return Err(VolumeError::NotThreeD {
                    path: path.to_path_buf(),
                    ndim,
                    dims,
                })
            }
        };
        // Size checks BEFORE allocating anything: limits, then what the file can hold.
        let voxels = self
            .limits
            .check(path, &spatial, stored.size() as u64, T::SIZE as u64)?;
        let vol_bytes = voxels * stored.size() as u64;
        if raw.bitpix as usize != stored.size() * 8 {
            return Err(VolumeError::invalid_header(
                path,
                format!(
                    "bitpix {} does not match datatype {} ({} bits)",
                    raw.bitpix,
                    header.datatype,
                    stored.size() * 8
                ),
            ));
        }
        check_numbers(path, header)?;
        let header_size = header.version.header_size() as u64;
        let skip =
            (raw.vox_offset - header_size).saturating_add(vol_bytes.saturating_mul(index as u64));
        let end = raw
            .vox_offset
            .saturating_add(vol_bytes.saturating_mul(index as u64 + 1));
        match source {
            Source::Plain(len) => ReadLimits::check_claim(path, "voxel data", end, len)?,
            Source::Gzip(len) => ReadLimits::check_claim(
                path,
                "voxel data (decompressed)",
                end,
                self.limits.max_decoded_from(len),
            )?,
        }
        let skipped = std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())
            .map_err(|e| VolumeError::io(path, e))?;
        if skipped != skip {
            return Err(truncated(path, 0, vol_bytes));
        }
        // Uncompressed: the file is known to hold the data. Compressed: grow the buffer as the
        // data arrives instead of believing the header.
        let initial = match source {
            Source::Plain(_) => vol_bytes,
            Source::Gzip(_) => vol_bytes.min(16 << 20),
        };
        let mut raw_bytes = Vec::new();
        raw_bytes
            .try_reserve_exact(initial as usize)
            .map_err(|_| VolumeError::TooLarge {
                path: path.to_path_buf(),
                dims: dims.clone(),
                bytes_per_voxel: stored.size() as u64,
                bytes: vol_bytes,
                limit: self.limits.max_bytes,
            })?;
        let got = (&mut reader)
            .take(vol_bytes)
            .read_to_end(&mut raw_bytes)
            .map_err(|e| VolumeError::io(path, e))?;
        if got as u64 != vol_bytes {
            return Err(truncated(path, got as u64, vol_bytes));
        }
        if let Source::Gzip(_) = source {
            // the gzip trailer (CRC-32 and length of the whole stream) is only checked at its
            // end: read the rest, so that a corrupted file is an error and not silent garbage
            std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| {
                VolumeError::InvalidHeader {
                    path: path.to_path_buf(),
                    reason: format!(
                        "the gzip stream is corrupt (checksum or length mismatch): {e}"
                    ),
                    source: Some(e.into()),
                }
            })?;
        }
        let data = decode_voxels::<T>(path, stored, header, &raw_bytes, self.allow_non_finite)?;
        drop(raw_bytes);
        let shape = (
            spatial[2] as usize,
            spatial[1] as usize,
            spatial[0] as usize,
        );
        let data = Array3::from_shape_vec(shape, data).map_err(|e| VolumeError::InvalidHeader {
            path: path.to_path_buf(),
            reason: VolumeError::caused("voxel data", &e),
            source: Some(e.into()),
        })?;
        let volume = Volume {
            data,
            spacing: raw.geometry.spacing(),
            affine: raw.geometry.best_affine(),
        };
        Ok(NiftiImage {
            volume,
            geometry: raw.geometry,
        })
    }
}

/// Decodes, scales and converts the stored voxels, counting those that are not finite once
/// converted to `T` (a float64 `1e300` read as `f32`, `scl_slope` 1e38 × 100).
fn decode_voxels<T: Voxel>(
    path: &Path,
    stored: StoredType,
    header: &NiftiGeometry,
    raw: &[u8],
    allow_non_finite: bool,
) -> Result<Vec<T>> {
    let (slope, inter) = effective_scaling(header.scl_slope, header.scl_inter);
    let big = header.big_endian;
    let size = stored.size();
    let voxels = raw.len() / size;
    let mut data: Vec<T> = Vec::new();
    data.try_reserve_exact(voxels)
        .map_err(|_| VolumeError::TooLarge {
            path: path.to_path_buf(),
            dims: vec![voxels as u64],
            bytes_per_voxel: T::SIZE as u64,
            bytes: (voxels as u64).saturating_mul(T::SIZE as u64),
            limit: voxels as u64 * T::SIZE as u64,
        })?;
    data.resize(voxels, T::default());
    let chunk = 1 << 16;
    // (count, first index, first value) per chunk with non-finite voxels.
    let bad: Vec<(usize, usize, f64)> = data
        .par_chunks_mut(chunk)
        .zip(raw.par_chunks(chunk * size))
        .enumerate()
        .filter_map(|(ci, (out, bytes))| {
            let mut count = 0usize;
            let mut first = None;
            for (i, (o, b)) in out.iter_mut().zip(bytes.chunks_exact(size)).enumerate() {
                let mut v = stored.decode(b, big);
                if let Some((s, c)) = slope.zip(inter) {
                    v = v * s + c;
                }
                let t = T::from_f64(v);
                if !(v.is_finite() && t.to_f64().is_finite()) {
                    count += 1;
                    first.get_or_insert((ci * chunk + i, v));
                }
                *o = t;
            }
            first.map(|(i, v)| (count, i, v))
        })
        .collect();
    if let (false, Some(first)) = (allow_non_finite, bad.first()) {
        // chunks come back in order: the first entry holds the first index
        return Err(VolumeError::NonFinite {
            path: path.to_path_buf(),
            count: bad.iter().map(|b| b.0).sum(),
            first: first.1,
            value: first.2,
        });
    }
    Ok(data)
}

/// Spacings must be finite and > 0, the scaling finite, the affine finite and invertible.
fn check_numbers(path: &Path, g: &NiftiGeometry) -> Result<()> {
    let invalid = |field: String, value: f64, expected| VolumeError::InvalidValue {
        path: path.to_path_buf(),
        field,
        value,
        expected,
    };
    for i in 1..=g.ndim().min(3) {
        let p = g.pixdim[i];
        if !(p.is_finite() && p > 0.0) {
            return Err(invalid(
                format!("pixdim[{i}] (voxel size)"),
                p,
                "a voxel size must be finite and > 0",
            ));
        }
    }
    for (name, v) in [("scl_slope", g.scl_slope), ("scl_inter", g.scl_inter)] {
        if !v.is_finite() {
            return Err(invalid(name.into(), v, "the scaling must be finite"));
        }
    }
    let a = g.best_affine();
    if let Some(v) = a.iter().flatten().find(|v| !v.is_finite()) {
        let which = if g.sform_code > 0 {
            "srow_x/y/z (sform)"
        } else {
            "quatern_b/c/d, qoffset_x/y/z (qform)"
        };
        return Err(invalid(which.into(), *v, "the affine must be finite"));
    }
    let det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    if det == 0.0 || !det.is_finite() {
        return Err(invalid(
            "determinant of the affine".into(),
            det,
            "the affine must be invertible",
        ));
    }
    Ok(())
}

/// Reads a 3D NIfTI file as `f32` with default options (see [`NiftiReader`]).
pub fn read_nifti(path: impl AsRef<Path>) -> Result<Volume<f32>> {
    Ok(NiftiReader::new().read::<f32>(path)?.volume)
}

/// nibabel's rule: no scaling when the slope is 0, or when it is the identity (a non-finite
/// slope or intercept is refused before this).
fn effective_scaling(slope: f64, inter: f64) -> (Option<f64>, Option<f64>) {
    if slope == 0.0 || !slope.is_finite() {
        return (None, None);
    }
    let inter = if inter.is_finite() { inter } else { 0.0 };
    if slope == 1.0 && inter == 0.0 {
        return (None, None);
    }
    (Some(slope), Some(inter))
}

fn truncated(path: &Path, got: u64, expected: u64) -> VolumeError {
    VolumeError::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("voxel data truncated: got {got} of {expected} bytes"),
        ),
    )
}

/// Opens a regular file (FIFOs, devices and folders are refused without blocking),
/// transparently gunzipping when it starts with the gzip magic.
pub(crate) fn open_maybe_gz(path: &Path) -> Result<(Box<dyn Read>, Source)> {
    let file = masam_fs::open_regular_file(path)?;
    let len = file.metadata().map_err(|e| VolumeError::io(path, e))?.len();
    let mut buf = BufReader::with_capacity(1 << 20, file);
    let head = {
        use std::io::BufRead;
        buf.fill_buf().map_err(|e| VolumeError::io(path, e))?
    };
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok((
            Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::bufread::MultiGzDecoder::new(buf),
            )),
            Source::Gzip(len),
        ))
    } else {
        Ok((Box::new(buf), Source::Plain(len)))
    }
}

/// Reads up to `buf.len()` bytes; returns how many were read (fewer only at the end).
fn read_full(path: &Path, reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(VolumeError::io(path, e)),
        }
    }
    Ok(got)
}

fn read_header_from(path: &Path, reader: &mut dyn Read) -> Result<RawHeader> {
    let mut bytes = [0u8; 540];
    let invalid = |reason: String| VolumeError::invalid_header(path, reason);
    let got = read_full(path, reader, &mut bytes[..4])?;
    if got < 4 {
        return Err(invalid(format!(
            "file holds {got} bytes, shorter than a NIfTI header"
        )));
    }
    let (version, _) = sniff_version(path, [bytes[0], bytes[1], bytes[2], bytes[3]])?;
    let size = version.header_size();
    let got = 4 + read_full(path, reader, &mut bytes[4..size])?;
    if got < size {
        return Err(invalid(format!(
            "file holds {got} bytes, shorter than the {size}-byte header"
        )));
    }
    let mut raw = parse_header(path, version, &bytes[..size])?;
    let dim = &raw.geometry.dim;
    let nd = dim[0];
    if !(1..=7).contains(&nd) {
        return Err(invalid(format!("dim[0] = {nd} (must be 1..=7)")));
    }
    if let Some(i) = (1..=nd as usize).find(|&i| dim[i] <= 0) {
        let what = if dim[i] == 0 { "is 0" } else { "is negative" };
        return Err(invalid(format!("dim[{i}] = {} {what}", dim[i])));
    }
    // Spatial axes beyond dim[0] (a 2D file's z) are one voxel of 1 mm, whatever is stored.
    let g = &mut raw.geometry;
    for i in (nd as usize + 1)..=3 {
        g.dim[i] = 1;
        if !(g.pixdim[i].is_finite() && g.pixdim[i] > 0.0) {
            g.pixdim[i] = 1.0;
        }
    }
    Ok(raw)
}

/// Path helper: `true` for `.nii` and `.nii.gz` names.
pub fn is_nifti_path(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// Strips `.nii`/`.nii.gz` (or any extension) from a file name, for case ids.
pub fn stem_of(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in [".nii.gz", ".nii", ".png", ".dcm"] {
        if let Some(s) = name.strip_suffix(ext) {
            return s.to_string();
        }
    }
    PathBuf::from(&name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qform_roundtrip_through_set_affine() {
        let a: Affine = [
            [-0.8, 0.0, 0.0, 10.0],
            [0.0, 0.7, 0.1, -20.0],
            [0.0, -0.05, 2.5, 30.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        // Make columns orthogonal: rotate about x by a small angle.
        let t: f64 = 0.134f64.asin();
        let a2: Affine = [
            [-0.8, 0.0, 0.0, 10.0],
            [0.0, 0.7 * t.cos(), -2.5 * t.sin(), -20.0],
            [0.0, 0.7 * t.sin(), 2.5 * t.cos(), 30.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let _ = a;
        let mut g = NiftiGeometry::default();
        g.set_affine(&a2);
        let q = g.qform_affine();
        for r in 0..4 {
            for c in 0..4 {
                assert!((q[r][c] - a2[r][c]).abs() < 1e-5, "{q:?} vs {a2:?}");
            }
        }
    }

    #[test]
    fn scaling_rules() {
        assert_eq!(effective_scaling(0.0, 5.0), (None, None));
        assert_eq!(effective_scaling(1.0, 0.0), (None, None));
        assert_eq!(effective_scaling(2.0, f64::NAN), (Some(2.0), Some(0.0)));
    }
}
