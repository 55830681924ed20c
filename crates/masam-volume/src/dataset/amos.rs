//! AMOS 2022: `images{Tr,Va,Ts}/amos_XXXX.nii.gz` with `labels{Tr,Va}/amos_XXXX.nii.gz`.
//! The dataset's convention: case ids below 500 are CT, ids from 500 on are MRI.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{numeric_id, CaseFiles};
use crate::error::{Result, VolumeError};

/// AMOS modality filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Modality {
    /// Ids below 500.
    #[default]
    Ct,
    /// Ids 500 and above.
    Mri,
    /// Both.
    Any,
}

/// AMOS split folder suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Split {
    /// `imagesTr` / `labelsTr`.
    Train,
    /// `imagesVa` / `labelsVa`.
    Validation,
    /// `imagesTs` (no labels).
    Test,
}

/// Cases of one split and modality; labels are attached when the label file exists.
pub fn cases(root: impl AsRef<Path>, split: Split, modality: Modality) -> Result<Vec<CaseFiles>> {
    let root = root.as_ref();
    let suffix = match split {
        Split::Train => "Tr",
        Split::Validation => "Va",
        Split::Test => "Ts",
    };
    let img_dir = root.join(format!("images{suffix}"));
    let lbl_dir = root.join(format!("labels{suffix}"));
    let files = super::list_files(&img_dir, "AMOS images amos_*.nii.gz", |n| {
        n.starts_with("amos_") && (n.ends_with(".nii.gz") || n.ends_with(".nii"))
    })?;
    let out: Vec<CaseFiles> = files
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            let id = numeric_id(&name)?;
            let n: u32 = id.parse().ok()?;
            let keep = match modality {
                Modality::Ct => n < 500,
                Modality::Mri => n >= 500,
                Modality::Any => true,
            };
            keep.then(|| {
                let label = lbl_dir.join(&name);
                CaseFiles {
                    id,
                    image: p,
                    label: label.is_file().then_some(label),
                }
            })
        })
        .collect();
    if out.is_empty() {
        return Err(VolumeError::Empty {
            path: img_dir,
            expected: format!("{modality:?} cases"),
        });
    }
    Ok(out)
}
