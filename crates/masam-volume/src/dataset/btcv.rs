//! BTCV (Synapse multi-organ CT): `img/imgXXXX.nii.gz` with `label/labelXXXX.nii.gz`.
//! 13 organs; with 12 classes the reference merges 13 → 12 ([`super::LabelMap::Btcv13To12`]).
//!
//! The Synapse download (`RawData.zip`) unpacks to `RawData/Training/{img,label}` and
//! `RawData/Testing/img`; [`cases`] accepts that folder, its `Training/` folder, or a folder
//! holding `img/` and `label/` directly.

use std::path::{Path, PathBuf};

use super::{list_files, CaseFiles};
use crate::error::Result;

/// Every `img/img*.nii[.gz]` with its `label/label*.nii[.gz]` when that file exists.
pub fn cases(root: impl AsRef<Path>) -> Result<Vec<CaseFiles>> {
    let root = training_dir(root.as_ref());
    let root = root.as_path();
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

/// The folder holding `img/` and `label/`: `root` itself, `root/Training` or
/// `root/RawData/Training` (the unpacked Synapse download), whichever has `img/` first.
pub fn training_dir(root: &Path) -> PathBuf {
    [
        root.to_path_buf(),
        root.join("Training"),
        root.join("RawData").join("Training"),
    ]
    .into_iter()
    .find(|d| d.join("img").is_dir())
    .unwrap_or_else(|| root.to_path_buf())
}

/// True when `root` is a BTCV folder in one of the layouts [`cases`] reads.
pub fn is_layout(root: &Path) -> bool {
    training_dir(root).join("img").is_dir()
}
