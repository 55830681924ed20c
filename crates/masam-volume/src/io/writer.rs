//! Atomic NIfTI writing: images, label maps and probability maps on the grid of a reference
//! volume. Files are NIfTI-1 unless a dimension exceeds NIfTI-1's 32767 or NIfTI-2 is asked
//! for ([`NiftiWriter::version`]). Files are written with [`masam_fs::atomic_write`] (temporary file in the destination
//! folder, `fsync`, rename), so a reader never sees a half-written file.
//!
//! ```
//! use masam_volume::io::writer::NiftiWriter;
//! use masam_volume::Volume;
//! let dir = std::env::temp_dir().join("masam_writer_doc");
//! std::fs::create_dir_all(&dir).unwrap();
//! let labels = Volume::with_spacing(ndarray::Array3::<u8>::zeros((2, 3, 4)), [0.5, 0.75, 2.5]);
//! NiftiWriter::new().write(dir.join("pred.nii.gz"), &labels)?;
//! let back = masam_volume::io::nifti::NiftiReader::new().read::<u8>(dir.join("pred.nii.gz"))?;
//! assert_eq!(back.volume.affine, labels.affine);
//! # Ok::<(), masam_volume::VolumeError>(())
//! ```

use std::io::Write;
use std::path::Path;

use ndarray::Array3;

use super::element::Voxel;
use super::nifti::NiftiGeometry;
use super::nifti_header::{encode_header, NiftiVersion};
use crate::error::{Result, VolumeError};
use crate::volume::Volume;

/// Options for writing NIfTI files (builder, then [`NiftiWriter::write`]).
#[derive(Debug, Clone)]
pub struct NiftiWriter<'a> {
    reference: Option<&'a NiftiGeometry>,
    compression: Option<u32>,
    description: String,
    version: Option<NiftiVersion>,
}

impl Default for NiftiWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> NiftiWriter<'a> {
    /// Defaults: geometry from the volume's own affine (codes 1/1), gzip level 1 for `.gz` names.
    pub fn new() -> Self {
        Self {
            reference: None,
            compression: Some(1),
            description: "masam".into(),
            version: None,
        }
    }

    /// Writes this NIfTI version. Without it, NIfTI-1 unless a dimension (or the channel count)
    /// exceeds 32767, then NIfTI-2. Asking for NIfTI-1 for such a volume is an error.
    pub fn version(mut self, version: NiftiVersion) -> Self {
        self.version = Some(version);
        self
    }

    /// Copies pixdim, qform/sform (values and codes) and units from a reference header; the
    /// reference's spatial dims must equal the written volume's.
    pub fn reference(mut self, geometry: &'a NiftiGeometry) -> Self {
        self.reference = Some(geometry);
        self
    }

    /// Gzip level (0–9) used when the file name ends in `.gz`.
    pub fn compression_level(mut self, level: u32) -> Self {
        self.compression = Some(level.min(9));
        self
    }

    /// The 80-byte `descrip` field (truncated).
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Writes one 3D volume (image, label map or a single probability map).
    pub fn write<T: Voxel>(&self, path: impl AsRef<Path>, volume: &Volume<T>) -> Result<()> {
        self.write_channels(path.as_ref(), std::slice::from_ref(&volume.data), volume)
    }

    /// Writes K volumes of one grid as a 4D file (dim\[4\] = K), e.g. per-class probabilities.
    /// `geometry_of` supplies spacing/affine when no reference header is set.
    pub fn write_channels<T: Voxel, G>(
        &self,
        path: impl AsRef<Path>,
        channels: &[Array3<T>],
        geometry_of: &Volume<G>,
    ) -> Result<()> {
        let path = path.as_ref();
        let first = channels.first().ok_or_else(|| {
            VolumeError::InvalidArgument(format!("{}: no channels to write", path.display()))
        })?;
        let s = first.shape();
        let shape = [s[0], s[1], s[2]];
        if let Some(c) = channels.iter().find(|c| c.shape() != first.shape()) {
            return Err(VolumeError::InvalidArgument(format!(
                "{}: channel shapes differ: {:?} vs {:?}",
                path.display(),
                c.shape(),
                first.shape()
            )));
        }
        let largest = shape.iter().copied().max().unwrap_or(0).max(channels.len()) as u64;
        let version = match self.version {
            Some(v) => v,
            None if largest > NiftiVersion::One.max_dim() => NiftiVersion::Two,
            None => NiftiVersion::One,
        };
        if shape.contains(&0) || largest > version.max_dim() {
            return Err(VolumeError::InvalidArgument(format!(
                "{}: shape {shape:?} × {} cannot be stored in {version:?} (dims 1..={})",
                path.display(),
                channels.len(),
                version.max_dim()
            )));
        }
        let mut g = match self.reference {
            Some(r) => {
                let rs = [r.dim[3] as usize, r.dim[2] as usize, r.dim[1] as usize];
                if rs != shape {
                    return Err(VolumeError::InvalidArgument(format!(
                        "{}: volume shape {shape:?} (Z,Y,X) differs from the reference grid {rs:?}",
                        path.display()
                    )));
                }
                r.clone()
            }
            None => NiftiGeometry::from_affine(shape, &geometry_of.affine),
        };
        let k = channels.len();
        g.dim = [
            if k > 1 { 4 } else { 3 },
            shape[2] as i64,
            shape[1] as i64,
            shape[0] as i64,
            k as i64,
            1,
            1,
            1,
        ];
        if k == 1 {
            g.pixdim[4] = 1.0;
        }
        g.datatype = T::NIFTI_DATATYPE;
        g.scl_slope = 1.0;
        g.scl_inter = 0.0;
        g.big_endian = false;
        g.version = version;

        let mut bytes = Vec::with_capacity(version.data_offset() + first.len() * T::SIZE * k);
        encode_header(&g, version, T::SIZE, &self.description, &mut bytes);
        for c in channels {
            match c.as_slice() {
                Some(sl) => sl.iter().for_each(|v| v.put_le(&mut bytes)),
                None => c.iter().for_each(|v| v.put_le(&mut bytes)),
            }
        }
        let gz = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase().ends_with(".gz"))
            .unwrap_or(false);
        masam_fs::atomic_write(path, |w| {
            if gz {
                let level = flate2::Compression::new(self.compression.unwrap_or(1));
                let mut enc = flate2::write::GzEncoder::new(w, level);
                enc.write_all(&bytes)?;
                enc.finish().map(drop)
            } else {
                w.write_all(&bytes)
            }
        })?;
        Ok(())
    }
}

/// Writes `volume` on the grid of `reference` (convenience for [`NiftiWriter`]).
pub fn write_nifti<T: Voxel>(
    path: impl AsRef<Path>,
    volume: &Volume<T>,
    reference: Option<&NiftiGeometry>,
) -> Result<()> {
    let w = NiftiWriter::new();
    match reference {
        Some(r) => w.reference(r).write(path, volume),
        None => w.write(path, volume),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::nifti::NiftiReader;

    #[test]
    fn roundtrip_f32_and_channels() {
        let dir = std::env::temp_dir().join(format!("masam_w_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data =
            Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z * 100 + y * 10 + x) as f32 - 7.5);
        let vol = Volume::with_spacing(data, [0.5, 0.6, 3.0]);
        let p = dir.join("a.nii");
        NiftiWriter::new().write(&p, &vol).unwrap();
        let back = NiftiReader::new().read::<f32>(&p).unwrap();
        assert_eq!(back.volume.data, vol.data);
        assert!(back.volume.affine_max_abs_diff(&vol.affine) < 1e-6);
        let p4 = dir.join("p.nii.gz");
        NiftiWriter::new()
            .write_channels(&p4, &[vol.data.clone(), vol.data.map(|v| v * 2.0)], &vol)
            .unwrap();
        let c1 = NiftiReader::new().volume_index(1).read::<f32>(&p4).unwrap();
        assert_eq!(c1.volume.data, vol.data.map(|v| v * 2.0));
        assert!(matches!(
            NiftiReader::new().read::<f32>(&p4),
            Err(VolumeError::NotThreeD { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
