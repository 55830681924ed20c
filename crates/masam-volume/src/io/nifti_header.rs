//! The on-disk NIfTI headers: NIfTI-1 (348 bytes, `i16` dims, `f32` geometry) and NIfTI-2
//! (540 bytes, `i64` dims, `f64` geometry), parsed into one form and encoded back.
//!
//! NIfTI-2 keeps NIfTI-1's fields, widened and reordered: `sizeof_hdr` = 540, the magic
//! `"n+2\0\r\n\x1a\n"` at byte 4, datatype and bitpix at 12 and 14, `dim[8]` (`i64`) at 16,
//! `pixdim[8]` (`f64`) at 104, `vox_offset` (`i64`) at 168, `scl_slope`/`scl_inter` at 176/184,
//! `qform_code`/`sform_code` (`i32`) at 344/348, the quaternion and offsets (`f64`) at 352–399,
//! `srow_x/y/z` (`f64`) at 400–495 and `xyzt_units` (`i32`) at 500. Both versions may be stored
//! in either byte order (told apart by `sizeof_hdr`).

use std::path::Path;

use crate::error::{Result, VolumeError};

use super::nifti::NiftiGeometry;

/// Which NIfTI format a header is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NiftiVersion {
    /// NIfTI-1: 348-byte header, dims up to 32767, `f32` geometry.
    #[default]
    One,
    /// NIfTI-2: 540-byte header, `i64` dims, `f64` geometry.
    Two,
}

impl NiftiVersion {
    /// Size of the header in bytes (348 or 540), without the 4-byte extension flag.
    pub fn header_size(self) -> usize {
        match self {
            Self::One => 348,
            Self::Two => 540,
        }
    }

    /// `vox_offset` of the files this crate writes: the header plus the extension flag.
    pub fn data_offset(self) -> usize {
        self.header_size() + 4
    }

    /// The largest dimension this version can store.
    pub fn max_dim(self) -> u64 {
        match self {
            Self::One => i16::MAX as u64,
            Self::Two => i64::MAX as u64,
        }
    }
}

/// NIfTI-2 single-file magic.
const MAGIC2: &[u8; 8] = b"n+2\0\r\n\x1a\n";

/// The fields of either header version that reading needs besides the geometry.
#[derive(Debug, Clone)]
pub(crate) struct RawHeader {
    /// Geometry, datatype, scaling and byte order.
    pub geometry: NiftiGeometry,
    /// `bitpix`.
    pub bitpix: i16,
    /// `vox_offset` in bytes (validated: finite, ≥ the header size, integral for NIfTI-2).
    pub vox_offset: u64,
}

/// Which version the first four bytes (`sizeof_hdr`) announce, and its byte order.
pub(crate) fn sniff_version(path: &Path, first4: [u8; 4]) -> Result<(NiftiVersion, bool)> {
    let le = i32::from_le_bytes(first4);
    let be = i32::from_be_bytes(first4);
    Ok(match (le, be) {
        (348, _) => (NiftiVersion::One, false),
        (_, 348) => (NiftiVersion::One, true),
        (540, _) => (NiftiVersion::Two, false),
        (_, 540) => (NiftiVersion::Two, true),
        _ => {
            return Err(VolumeError::invalid_header(
                path,
                format!("sizeof_hdr is {le} (expected 348 for NIfTI-1 or 540 for NIfTI-2)"),
            ))
        }
    })
}

/// Parses a whole header (`bytes.len()` = the version's header size).
pub(crate) fn parse_header(path: &Path, version: NiftiVersion, bytes: &[u8]) -> Result<RawHeader> {
    match version {
        NiftiVersion::One => parse_v1(path, bytes),
        NiftiVersion::Two => parse_v2(path, bytes),
    }
}

fn parse_v1(path: &Path, bytes: &[u8]) -> Result<RawHeader> {
    let h = nifti::NiftiHeader::from_reader(bytes).map_err(|e| VolumeError::InvalidHeader {
        path: path.to_path_buf(),
        reason: VolumeError::caused("", &e),
        source: Some(e.into()),
    })?;
    if &h.magic == b"ni1\0" {
        return Err(VolumeError::invalid_header(
            path,
            "magic 'ni1' (separate .hdr/.img pair) is not supported; convert to .nii",
        ));
    }
    // The nifti crate reads dims as u16; they are i16 on disk.
    let mut dim = [0i64; 8];
    for (d, &v) in dim.iter_mut().zip(h.dim.iter()) {
        *d = v as i16 as i64;
    }
    let vox_offset = h.vox_offset;
    if !(vox_offset.is_finite() && vox_offset >= 348.0) {
        return Err(VolumeError::invalid_header(
            path,
            format!("vox_offset {vox_offset} is before the end of the header"),
        ));
    }
    let geometry = NiftiGeometry {
        version: NiftiVersion::One,
        dim,
        pixdim: h.pixdim.map(f64::from),
        qform_code: h.qform_code,
        sform_code: h.sform_code,
        quatern: [h.quatern_b, h.quatern_c, h.quatern_d].map(f64::from),
        qoffset: [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from),
        srow: [h.srow_x, h.srow_y, h.srow_z].map(|r| r.map(f64::from)),
        xyzt_units: h.xyzt_units,
        datatype: h.datatype,
        scl_slope: h.scl_slope as f64,
        scl_inter: h.scl_inter as f64,
        big_endian: h.endianness == nifti::Endianness::Big,
    };
    Ok(RawHeader {
        geometry,
        bitpix: h.bitpix,
        vox_offset: vox_offset as u64,
    })
}

/// Little- or big-endian field reads at fixed offsets of a header.
struct Fields<'a> {
    b: &'a [u8],
    big: bool,
}

impl Fields<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        if self.big {
            a.reverse();
        }
        a
    }
    fn i16(&self, off: usize) -> i16 {
        i16::from_le_bytes(self.arr(off))
    }
    fn i32(&self, off: usize) -> i32 {
        i32::from_le_bytes(self.arr(off))
    }
    fn i64(&self, off: usize) -> i64 {
        i64::from_le_bytes(self.arr(off))
    }
    fn f64(&self, off: usize) -> f64 {
        f64::from_le_bytes(self.arr(off))
    }
}

fn parse_v2(path: &Path, bytes: &[u8]) -> Result<RawHeader> {
    let invalid = |reason: String| VolumeError::invalid_header(path, reason);
    if bytes.len() < 540 {
        return Err(invalid(format!(
            "NIfTI-2 header holds {} of 540 bytes",
            bytes.len()
        )));
    }
    let big = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) != 540;
    let f = Fields { b: bytes, big };
    let magic = &bytes[4..12];
    if &magic[..4] == b"ni2\0" {
        return Err(invalid(
            "magic 'ni2' (separate .hdr/.img pair) is not supported; convert to .nii".into(),
        ));
    }
    if magic != MAGIC2 {
        return Err(invalid(format!(
            "NIfTI-2 magic is {magic:?} (expected {MAGIC2:?})"
        )));
    }
    let mut dim = [0i64; 8];
    let mut pixdim = [0f64; 8];
    for i in 0..8 {
        dim[i] = f.i64(16 + 8 * i);
        pixdim[i] = f.f64(104 + 8 * i);
    }
    let vox_offset = f.i64(168);
    if vox_offset < 540 {
        return Err(invalid(format!(
            "vox_offset {vox_offset} is before the end of the header"
        )));
    }
    let code = |off: usize, name: &str| -> Result<i16> {
        let c = f.i32(off);
        if (0..=i16::MAX as i32).contains(&c) {
            Ok(c as i16)
        } else {
            Err(invalid(format!("{name} = {c} is out of range")))
        }
    };
    let units = f.i32(500);
    let geometry = NiftiGeometry {
        version: NiftiVersion::Two,
        dim,
        pixdim,
        qform_code: code(344, "qform_code")?,
        sform_code: code(348, "sform_code")?,
        quatern: [f.f64(352), f.f64(360), f.f64(368)],
        qoffset: [f.f64(376), f.f64(384), f.f64(392)],
        srow: [0, 1, 2].map(|r| [0, 1, 2, 3].map(|c| f.f64(400 + 32 * r + 8 * c))),
        xyzt_units: u8::try_from(units).map_err(|_| invalid(format!("xyzt_units = {units}")))?,
        datatype: f.i16(12),
        scl_slope: f.f64(176),
        scl_inter: f.f64(184),
        big_endian: big,
    };
    Ok(RawHeader {
        geometry,
        bitpix: f.i16(14),
        vox_offset: vox_offset as u64,
    })
}

/// Appends the header of `g` in `version` (little-endian), followed by an empty 4-byte
/// extension flag, so that the data starts at [`NiftiVersion::data_offset`].
///
/// The caller checks that `g.dim` fits the version.
pub(crate) fn encode_header(
    g: &NiftiGeometry,
    version: NiftiVersion,
    elem_size: usize,
    descrip: &str,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.resize(start + version.data_offset(), 0);
    let h = &mut out[start..];
    let put = |h: &mut [u8], off: usize, b: &[u8]| h[off..off + b.len()].copy_from_slice(b);
    let mut pixdim = g.pixdim;
    if pixdim[0] != -1.0 {
        pixdim[0] = 1.0;
    }
    let d = descrip.as_bytes();
    let n = d.len().min(79);
    match version {
        NiftiVersion::One => {
            put(h, 0, &348i32.to_le_bytes());
            h[38] = b'r';
            for (i, &v) in g.dim.iter().enumerate() {
                put(h, 40 + 2 * i, &(v as i16).to_le_bytes());
            }
            put(h, 70, &g.datatype.to_le_bytes());
            put(h, 72, &((elem_size * 8) as i16).to_le_bytes());
            for (i, &p) in pixdim.iter().enumerate() {
                put(h, 76 + 4 * i, &(p as f32).to_le_bytes());
            }
            put(h, 108, &352f32.to_le_bytes());
            put(h, 112, &(g.scl_slope as f32).to_le_bytes());
            put(h, 116, &(g.scl_inter as f32).to_le_bytes());
            h[123] = g.xyzt_units;
            h[148..148 + n].copy_from_slice(&d[..n]);
            put(h, 252, &g.qform_code.to_le_bytes());
            put(h, 254, &g.sform_code.to_le_bytes());
            for i in 0..3 {
                put(h, 256 + 4 * i, &(g.quatern[i] as f32).to_le_bytes());
                put(h, 268 + 4 * i, &(g.qoffset[i] as f32).to_le_bytes());
            }
            for r in 0..3 {
                for c in 0..4 {
                    put(
                        h,
                        280 + 16 * r + 4 * c,
                        &(g.srow[r][c] as f32).to_le_bytes(),
                    );
                }
            }
            put(h, 344, b"n+1\0");
        }
        NiftiVersion::Two => {
            put(h, 0, &540i32.to_le_bytes());
            put(h, 4, MAGIC2);
            put(h, 12, &g.datatype.to_le_bytes());
            put(h, 14, &((elem_size * 8) as i16).to_le_bytes());
            for i in 0..8 {
                put(h, 16 + 8 * i, &g.dim[i].to_le_bytes());
                put(h, 104 + 8 * i, &pixdim[i].to_le_bytes());
            }
            put(h, 168, &544i64.to_le_bytes());
            put(h, 176, &g.scl_slope.to_le_bytes());
            put(h, 184, &g.scl_inter.to_le_bytes());
            h[240..240 + n].copy_from_slice(&d[..n]);
            put(h, 344, &(g.qform_code as i32).to_le_bytes());
            put(h, 348, &(g.sform_code as i32).to_le_bytes());
            for i in 0..3 {
                put(h, 352 + 8 * i, &g.quatern[i].to_le_bytes());
                put(h, 376 + 8 * i, &g.qoffset[i].to_le_bytes());
            }
            for r in 0..3 {
                for c in 0..4 {
                    put(h, 400 + 32 * r + 8 * c, &g.srow[r][c].to_le_bytes());
                }
            }
            put(h, 500, &(g.xyzt_units as i32).to_le_bytes());
        }
    }
    // The 4 bytes after the header: empty extension flag (all zero).
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_round_trip_through_encode_and_parse() {
        let p = Path::new("x.nii");
        let mut g = NiftiGeometry::from_affine(
            [2, 3, 4],
            &[
                [-0.5, 0.0, 0.0, 1.25],
                [0.0, 0.5, 0.0, 2.0],
                [0.0, 0.0, 2.0, -3.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        );
        g.datatype = 4;
        for version in [NiftiVersion::One, NiftiVersion::Two] {
            let mut b = Vec::new();
            encode_header(&g, version, 2, "d", &mut b);
            assert_eq!(b.len(), version.data_offset());
            let first4 = [b[0], b[1], b[2], b[3]];
            assert_eq!(sniff_version(p, first4).unwrap(), (version, false));
            let raw = parse_header(p, version, &b[..version.header_size()]).unwrap();
            assert_eq!(raw.bitpix, 16);
            assert_eq!(raw.vox_offset, version.data_offset() as u64);
            let mut want = g.clone();
            want.version = version;
            assert_eq!(raw.geometry, want, "{version:?}");
        }
    }

    #[test]
    fn nifti1_bytes_parse_with_the_nifti_crate_too() {
        let g = NiftiGeometry::from_affine(
            [2, 3, 4],
            &crate::volume::Volume::<u8>::with_spacing(
                ndarray::Array3::zeros((1, 1, 1)),
                [0.5, 0.5, 2.0],
            )
            .affine,
        );
        let mut b = Vec::new();
        encode_header(&g, NiftiVersion::One, 4, "x", &mut b);
        let h = nifti::NiftiHeader::from_reader(&b[..348]).unwrap();
        assert_eq!(h.dim[..4], [3, 4, 3, 2]);
        assert_eq!(h.srow_z, [0.0, 0.0, 2.0, 0.0]);
        assert_eq!(&h.magic, b"n+1\0");
    }

    #[test]
    fn unknown_sizes_and_magics_are_refused() {
        let p = Path::new("x.nii");
        assert!(sniff_version(p, 349i32.to_le_bytes()).is_err());
        assert_eq!(
            sniff_version(p, 540i32.to_be_bytes()).unwrap(),
            (NiftiVersion::Two, true)
        );
        let mut b = Vec::new();
        encode_header(&NiftiGeometry::default(), NiftiVersion::Two, 4, "", &mut b);
        b[4..8].copy_from_slice(b"ni2\0");
        let e = parse_header(p, NiftiVersion::Two, &b[..540]).unwrap_err();
        assert!(e.to_string().contains("ni2"), "{e}");
        b[4..8].copy_from_slice(b"n+1\0");
        assert!(parse_header(p, NiftiVersion::Two, &b[..540]).is_err());
    }
}
