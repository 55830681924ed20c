//! Prostate MRI, multi-site: `CaseNN.nii.gz` with `CaseNN_segmentation.nii.gz` (or
//! `_Segmentation`) in one folder per site. Labels > 1 become 1 ([`super::LabelMap::Binary`]).

use std::path::Path;

use super::{list_files, numeric_id, CaseFiles};
use crate::error::{Result, VolumeError};

/// The cases of one site folder; every image must have its segmentation.
pub fn cases(site_dir: impl AsRef<Path>) -> Result<Vec<CaseFiles>> {
    let dir = site_dir.as_ref();
    let imgs = list_files(dir, "prostate images Case*.nii.gz", |n| {
        let l = n.to_ascii_lowercase();
        l.starts_with("case")
            && (l.ends_with(".nii.gz") || l.ends_with(".nii"))
            && !l.contains("segmentation")
    })?;
    imgs.into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let (stem, ext) = match name.strip_suffix(".nii.gz") {
                Some(s) => (s.to_string(), ".nii.gz"),
                None => (name.trim_end_matches(".nii").to_string(), ".nii"),
            };
            let label = ["_segmentation", "_Segmentation"]
                .iter()
                .map(|suf| dir.join(format!("{stem}{suf}{ext}")))
                .find(|p| p.is_file())
                .ok_or_else(|| VolumeError::Missing {
                    path: dir.join(format!("{stem}_segmentation{ext}")),
                    context: format!("segmentation of {}", p.display()),
                })?;
            Ok(CaseFiles {
                id: numeric_id(&stem).unwrap_or(stem),
                image: p,
                label: Some(label),
            })
        })
        .collect()
}
