//! BTCV (Synapse multi-organ CT): `img/imgXXXX.nii.gz` with `label/labelXXXX.nii.gz`.
//! 13 organs; with 12 classes the reference merges 13 → 12 ([`super::LabelMap::Btcv13To12`]).

use std::path::Path;

use super::{list_files, CaseFiles};
use crate::error::Result;

/// Every `img/img*.nii[.gz]` with its `label/label*.nii[.gz]` when that file exists.
pub fn cases(root: impl AsRef<Path>) -> Result<Vec<CaseFiles>> {
    let root = root.as_ref();
    let imgs = list_files(&root.join("img"), "BTCV images img*.nii.gz", |n| {
        n.starts_with("img") && (n.ends_with(".nii.gz") || n.ends_with(".nii"))
    })?;
    Ok(imgs
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let rest = &name[3..];
            let id = rest
                .trim_end_matches(".gz")
                .trim_end_matches(".nii")
                .to_string();
            let label = root.join("label").join(format!("label{rest}"));
            CaseFiles {
                id,
                image: p,
                label: label.is_file().then_some(label),
            }
        })
        .collect())
}
