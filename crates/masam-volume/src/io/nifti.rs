//! NIfTI-1 reading (`.nii`, `.nii.gz`): every integer/float datatype, either byte order,
//! `scl_slope`/`scl_inter`, the full geometry, bounded allocation and typed errors.
//!
//! The header is parsed by the `nifti` crate; the voxel data is read here so that the size can be
//! checked against a limit *before* anything is allocated, and so that 4D files can be read one
//! volume at a time.
//!
//! ```no_run
//! use masam_volume::io::nifti::NiftiReader;
//! let img = NiftiReader::new().read::<f32>("case.nii.gz")?;
//! println!("{:?} mm, affine {:?}", img.volume.spacing, img.volume.affine);
//! # Ok::<(), masam_volume::VolumeError>(())
//! ```

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use ndarray::Array3;
use rayon::prelude::*;

use super::element::{StoredType, Voxel};
use crate::error::{Result, VolumeError};
use crate::volume::{Affine, Volume};

/// Default limit on the bytes of voxel data a file may declare (4 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

/// The geometry and storage fields of a NIfTI-1 header, kept so that outputs can be written on
/// exactly the same grid (see [`crate::io::writer`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiGeometry {
    /// `dim[0..8]` as stored (dim\[0\] = number of dimensions).
    pub dim: [u16; 8],
    /// `pixdim[0..8]` as stored (pixdim\[0\] = qfac).
    pub pixdim: [f32; 8],
    /// `qform_code` (0 unknown, 1 scanner, 2 aligned, 3 Talairach, 4 MNI).
    pub qform_code: i16,
    /// `sform_code`.
    pub sform_code: i16,
    /// `quatern_b`, `quatern_c`, `quatern_d`.
    pub quatern: [f32; 3],
    /// `qoffset_x`, `qoffset_y`, `qoffset_z`.
    pub qoffset: [f32; 3],
    /// `srow_x`, `srow_y`, `srow_z`.
    pub srow: [[f32; 4]; 3],
    /// `xyzt_units`.
    pub xyzt_units: u8,
    /// Stored `datatype` code.
    pub datatype: i16,
    /// `scl_slope` as stored.
    pub scl_slope: f32,
    /// `scl_inter` as stored.
    pub scl_inter: f32,
    /// Whether the file was big-endian.
    pub big_endian: bool,
}

impl Default for NiftiGeometry {
    fn default() -> Self {
        Self {
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
    /// Builds the geometry fields from a parsed `nifti` header.
    pub fn from_header(h: &nifti::NiftiHeader) -> Self {
        Self {
            dim: h.dim,
            pixdim: h.pixdim,
            qform_code: h.qform_code,
            sform_code: h.sform_code,
            quatern: [h.quatern_b, h.quatern_c, h.quatern_d],
            qoffset: [h.quatern_x, h.quatern_y, h.quatern_z],
            srow: [h.srow_x, h.srow_y, h.srow_z],
            xyzt_units: h.xyzt_units,
            datatype: h.datatype,
            scl_slope: h.scl_slope,
            scl_inter: h.scl_inter,
            big_endian: h.endianness == nifti::Endianness::Big,
        }
    }

    /// A scanner-space (codes 1/1) geometry for a volume of shape (Z, Y, X) with `affine`.
    ///
    /// The qform is the closest rigid representation of `affine` (exact when the affine has
    /// orthogonal columns, as NIfTI requires of a qform); the sform is `affine` itself.
    pub fn from_affine(shape_zyx: [usize; 3], affine: &Affine) -> Self {
        let mut g = Self {
            dim: [
                3,
                shape_zyx[2] as u16,
                shape_zyx[1] as u16,
                shape_zyx[0] as u16,
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
        self.dim[0] as usize
    }

    /// Voxel size (x, y, z) in the file's units (absolute values of `pixdim[1..4]`).
    pub fn spacing(&self) -> [f64; 3] {
        [
            (self.pixdim[1] as f64).abs(),
            (self.pixdim[2] as f64).abs(),
            (self.pixdim[3] as f64).abs(),
        ]
    }

    /// The sform affine (rows `srow_x/y/z`), whatever `sform_code` says.
    pub fn sform_affine(&self) -> Affine {
        let mut a = [[0.0; 4]; 4];
        for r in 0..3 {
            for c in 0..4 {
                a[r][c] = self.srow[r][c] as f64;
            }
        }
        a[3][3] = 1.0;
        a
    }

    /// The qform affine (quaternion, `pixdim`, qfac and offsets), whatever `qform_code` says.
    pub fn qform_affine(&self) -> Affine {
        // As nibabel: w² = 1 − |bcd|² in f64, w = 0 when |w²| < 3·eps(f32) (or negative), then
        // the normalising quat2mat.
        let [b, c, d] = self.quatern.map(|v| v as f64);
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
        let zooms = [
            self.pixdim[1] as f64,
            self.pixdim[2] as f64,
            self.pixdim[3] as f64 * qfac,
        ];
        let mut out = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                out[i][j] = r[i][j] * zooms[j];
            }
            out[i][3] = self.qoffset[i] as f64;
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
                self.srow[r][c] = affine[r][c] as f32;
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
        self.quatern = [b as f32, c as f32, d as f32];
        self.qoffset = [
            affine[0][3] as f32,
            affine[1][3] as f32,
            affine[2][3] as f32,
        ];
        self.pixdim[0] = qfac as f32;
        self.pixdim[1] = zooms[0] as f32;
        self.pixdim[2] = zooms[1] as f32;
        self.pixdim[3] = zooms[2] as f32;
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
    max_bytes: u64,
    volume_index: Option<usize>,
    allow_non_finite: bool,
}

impl Default for NiftiReader {
    fn default() -> Self {
        Self::new()
    }
}

/// Size of the NIfTI-1 header.
const HEADER_SIZE: usize = 348;

impl NiftiReader {
    /// Defaults: 4 GiB data limit, 3D files only, non-finite voxels rejected.
    pub fn new() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            volume_index: None,
            allow_non_finite: false,
        }
    }

    /// Largest voxel payload (stored bytes, and decoded bytes of the target type) accepted.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
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
        let mut reader = open_maybe_gz(path)?;
        let (_, geometry) = read_header_from(path, &mut reader)?;
        Ok(geometry)
    }

    /// Reads one 3D volume, converting (after `scl_slope`/`scl_inter`, in `f64`) to `T`.
    pub fn read<T: Voxel>(&self, path: impl AsRef<Path>) -> Result<NiftiImage<T>> {
        let path = path.as_ref();
        let mut reader = open_maybe_gz(path)?;
        let (header, geometry) = read_header_from(path, &mut reader)?;
        let stored = StoredType::from_code(header.datatype).ok_or_else(|| {
            VolumeError::UnsupportedDatatype {
                path: path.to_path_buf(),
                code: header.datatype,
            }
        })?;
        let ndim = (header.dim[0] as usize).clamp(1, 7);
        let dims: Vec<u64> = header.dim[1..=ndim].iter().map(|&d| d as u64).collect();
        // Effective extra dimensions beyond 3 (trailing singleton dims don't count).
        let extra: u64 = dims.iter().skip(3).product();
        let spatial: Vec<u64> = (0..3).map(|i| dims.get(i).copied().unwrap_or(1)).collect();
        let n_vols = extra as usize;
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
        // Size check BEFORE allocating anything.
        let voxels = spatial.iter().fold(1u64, |a, &d| a.saturating_mul(d));
        let vol_bytes = voxels.saturating_mul(stored.size() as u64);
        let out_bytes = voxels.saturating_mul(T::SIZE as u64);
        let all_bytes = vol_bytes.saturating_mul(extra);
        if vol_bytes > self.max_bytes || out_bytes > self.max_bytes {
            return Err(VolumeError::TooLarge {
                path: path.to_path_buf(),
                dims: dims.clone(),
                bytes_per_voxel: stored.size() as u64,
                bytes: vol_bytes.max(out_bytes),
                limit: self.max_bytes,
            });
        }
        let _ = all_bytes;
        if header.bitpix as usize != stored.size() * 8 {
            return Err(VolumeError::invalid_header(
                path,
                format!(
                    "bitpix {} does not match datatype {} ({} bits)",
                    header.bitpix,
                    header.datatype,
                    stored.size() * 8
                ),
            ));
        }
        // Skip to the data: vox_offset (from the file start), plus earlier 4D volumes.
        let vox_offset = header.vox_offset;
        if !(vox_offset.is_finite() && vox_offset >= HEADER_SIZE as f32) {
            return Err(VolumeError::invalid_header(
                path,
                format!("vox_offset {vox_offset} is before the end of the header"),
            ));
        }
        let skip = (vox_offset as u64 - HEADER_SIZE as u64) + vol_bytes * index as u64;
        let skipped = std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())
            .map_err(|e| VolumeError::io(path, e))?;
        if skipped != skip {
            return Err(truncated(path, 0, vol_bytes));
        }
        let mut raw = Vec::new();
        raw.try_reserve_exact(vol_bytes as usize)
            .map_err(|_| VolumeError::TooLarge {
                path: path.to_path_buf(),
                dims: dims.clone(),
                bytes_per_voxel: stored.size() as u64,
                bytes: vol_bytes,
                limit: self.max_bytes,
            })?;
        let got = (&mut reader)
            .take(vol_bytes)
            .read_to_end(&mut raw)
            .map_err(|e| VolumeError::io(path, e))?;
        if got as u64 != vol_bytes {
            return Err(truncated(path, got as u64, vol_bytes));
        }
        if is_gzip(path)? {
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
        let (slope, inter) = effective_scaling(header.scl_slope, header.scl_inter);
        let big = header.endianness == nifti::Endianness::Big;
        let size = stored.size();
        let mut data: Vec<T> = vec![T::default(); voxels as usize];
        let chunk = 1 << 16;
        let bad: Vec<(usize, usize)> = data
            .par_chunks_mut(chunk)
            .zip(raw.par_chunks(chunk * size))
            .enumerate()
            .filter_map(|(ci, (out, bytes))| {
                let mut count = 0usize;
                let mut first = usize::MAX;
                for (i, (o, b)) in out.iter_mut().zip(bytes.chunks_exact(size)).enumerate() {
                    let mut v = stored.decode(b, big);
                    if let Some((s, c)) = slope.zip(inter) {
                        v = v * s + c;
                    }
                    if !v.is_finite() {
                        count += 1;
                        first = first.min(ci * chunk + i);
                    }
                    *o = T::from_f64(v);
                }
                (count > 0).then_some((count, first))
            })
            .collect();
        if !bad.is_empty() && !self.allow_non_finite {
            return Err(VolumeError::NonFinite {
                path: path.to_path_buf(),
                count: bad.iter().map(|b| b.0).sum(),
                first: bad.iter().map(|b| b.1).min().unwrap_or(0),
            });
        }
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
            spacing: geometry.spacing(),
            affine: geometry.best_affine(),
        };
        Ok(NiftiImage { volume, geometry })
    }
}

/// Reads a 3D NIfTI file as `f32` with default options (see [`NiftiReader`]).
pub fn read_nifti(path: impl AsRef<Path>) -> Result<Volume<f32>> {
    Ok(NiftiReader::new().read::<f32>(path)?.volume)
}

/// nibabel's rule: no scaling when the slope is 0 or non-finite, or when it is the identity.
fn effective_scaling(slope: f32, inter: f32) -> (Option<f64>, Option<f64>) {
    if slope == 0.0 || !slope.is_finite() {
        return (None, None);
    }
    let inter = if inter.is_finite() { inter } else { 0.0 };
    if slope == 1.0 && inter == 0.0 {
        return (None, None);
    }
    (Some(slope as f64), Some(inter as f64))
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

/// Opens a file, transparently gunzipping when it starts with the gzip magic.
/// True when the file starts with the gzip magic bytes.
fn is_gzip(path: &Path) -> Result<bool> {
    let mut head = [0u8; 2];
    let mut f = File::open(path).map_err(|e| VolumeError::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| VolumeError::io(path, e))?;
    Ok(n == 2 && head == [0x1f, 0x8b])
}

pub(crate) fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).map_err(|e| VolumeError::io(path, e))?;
    let mut buf = BufReader::with_capacity(1 << 20, file);
    let head = {
        use std::io::BufRead;
        buf.fill_buf().map_err(|e| VolumeError::io(path, e))?
    };
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::bufread::MultiGzDecoder::new(buf),
        )))
    } else {
        Ok(Box::new(buf))
    }
}

fn read_header_from(
    path: &Path,
    reader: &mut dyn Read,
) -> Result<(nifti::NiftiHeader, NiftiGeometry)> {
    let mut bytes = [0u8; HEADER_SIZE];
    let mut got = 0;
    while got < HEADER_SIZE {
        match reader.read(&mut bytes[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(VolumeError::io(path, e)),
        }
    }
    let invalid = |reason: String| VolumeError::invalid_header(path, reason);
    if got < HEADER_SIZE {
        return Err(invalid(format!(
            "file holds {got} bytes, shorter than the {HEADER_SIZE}-byte header"
        )));
    }
    let size_le = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let size_be = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if size_le != 348 && size_be != 348 {
        return Err(invalid(format!(
            "sizeof_hdr is {size_le} (expected 348; NIfTI-2 and non-NIfTI files are not supported)"
        )));
    }
    let header =
        nifti::NiftiHeader::from_reader(&bytes[..]).map_err(|e| VolumeError::InvalidHeader {
            path: path.to_path_buf(),
            reason: VolumeError::caused("", &e),
            source: Some(e.into()),
        })?;
    if &header.magic == b"ni1\0" {
        return Err(invalid(
            "magic 'ni1' (separate .hdr/.img pair) is not supported; convert to .nii".into(),
        ));
    }
    let nd = header.dim[0];
    if nd == 0 || nd > 7 {
        return Err(invalid(format!("dim[0] = {nd} (must be 1..=7)")));
    }
    if let Some(i) = header.dim[1..=nd as usize].iter().position(|&d| d == 0) {
        return Err(invalid(format!("dim[{}] is 0", i + 1)));
    }
    // Negative dims are stored as i16; the nifti crate reads them as u16 > 32767.
    if let Some(i) = header.dim[1..=nd as usize]
        .iter()
        .position(|&d| d > i16::MAX as u16)
    {
        return Err(invalid(format!(
            "dim[{}] = {} is negative",
            i + 1,
            header.dim[i + 1] as i16
        )));
    }
    let geometry = NiftiGeometry::from_header(&header);
    Ok((header, geometry))
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
        assert_eq!(effective_scaling(2.0, f32::NAN), (Some(2.0), Some(0.0)));
    }
}
