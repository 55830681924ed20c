//! A generic image folder and label folder whose files pair up by name (`.nii`, `.nii.gz`).

use std::path::Path;

use super::{list_files, CaseFiles};
use crate::error::{Result, VolumeError};
use crate::io::nifti::{is_nifti_path, stem_of};

/// Every NIfTI file of `image_dir` with the same-named file of `label_dir` (required).
pub fn cases(image_dir: impl AsRef<Path>, label_dir: impl AsRef<Path>) -> Result<Vec<CaseFiles>> {
    let (image_dir, label_dir) = (image_dir.as_ref(), label_dir.as_ref());
    let imgs = list_files(image_dir, "NIfTI images", |n| is_nifti_path(Path::new(n)))?;
    imgs.into_iter()
        .map(|p| {
            let name = p.file_name().unwrap();
            let label = label_dir.join(name);
            if !label.is_file() {
                return Err(VolumeError::Missing {
                    path: label,
                    context: format!("label for {}", p.display()),
                });
            }
            Ok(CaseFiles {
                id: stem_of(&p),
                image: p,
                label: Some(label),
            })
        })
        .collect()
}
