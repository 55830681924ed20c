//! Reading and writing volumes: NIfTI-1 and NIfTI-2 ([`nifti`], [`nifti_header`], [`writer`]),
//! DICOM series and enhanced multi-frame files ([`dicom`]) and video frame folders ([`frames`]).
//! Every reader checks a file's claims against [`ReadLimits`] before allocating.

pub mod dicom;
mod dicom_deflate;
mod dicom_scan;
pub mod element;
pub mod frames;
pub mod limits;
pub mod nifti;
pub mod nifti_header;
pub mod writer;

use std::path::Path;

pub use element::Voxel;
pub use limits::ReadLimits;
pub use nifti::{read_nifti, NiftiGeometry, NiftiImage, NiftiReader};
pub use nifti_header::NiftiVersion;
pub use writer::{write_nifti, NiftiWriter};

use crate::error::{Result, VolumeError};
use crate::volume::Volume;

/// Reads a volume as `f32`: a folder is read as a DICOM series, a `.nii`/`.nii.gz` file as NIfTI,
/// a `.dcm` file as a single DICOM slice.
pub fn read_volume(path: impl AsRef<Path>) -> Result<Volume<f32>> {
    let path = path.as_ref();
    if path.is_dir() {
        return dicom::read_dicom_series(path);
    }
    if nifti::is_nifti_path(path) {
        return read_nifti(path);
    }
    let is_dcm = path
        .extension()
        .map(|e| e.eq_ignore_ascii_case("dcm"))
        .unwrap_or(false);
    if is_dcm {
        let dir = path.parent().unwrap_or(Path::new("."));
        return dicom::read_dicom_files(dir, &[path.to_path_buf()]);
    }
    Err(VolumeError::InvalidArgument(format!(
        "{}: unknown volume format (expected .nii, .nii.gz, .dcm or a DICOM folder)",
        path.display()
    )))
}
