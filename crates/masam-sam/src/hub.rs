//! Fetching the official SAM checkpoints from the Hugging Face Hub (feature `hub`).
//!
//! Needs network access; the files are cached by hf-hub (`~/.cache/huggingface`). Tests never
//! use this module.

use std::path::PathBuf;

use crate::{Error, Result};

/// Where the official checkpoints are mirrored: `(repository, file)` per backbone. The files
/// are Meta's `torch.save` state dicts, byte for byte.
pub fn official_checkpoint(backbone: &str) -> Result<(&'static str, &'static str)> {
    let repo = "ybelkada/segment-anything";
    match backbone.to_ascii_lowercase().as_str() {
        "vit_b" | "b" => Ok((repo, "checkpoints/sam_vit_b_01ec64.pth")),
        "vit_l" | "l" => Ok((repo, "checkpoints/sam_vit_l_0b3195.pth")),
        "vit_h" | "h" => Ok((repo, "checkpoints/sam_vit_h_4b8939.pth")),
        other => Err(Error::Config(format!(
            "unknown SAM backbone `{other}` (expected vit_b, vit_l or vit_h)"
        ))),
    }
}

/// Downloads (or finds in the cache) the official SAM checkpoint of `backbone` and returns its
/// local path, to be read with [`crate::SamCheckpoint::load`].
///
/// ```no_run
/// let path = masam_sam::hub::fetch_official("vit_b").unwrap();
/// let sam = masam_sam::SamCheckpoint::load(path).unwrap();
/// ```
pub fn fetch_official(backbone: &str) -> Result<PathBuf> {
    let (repo, file) = official_checkpoint(backbone)?;
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_progress(true)
        .build()
        .map_err(|e| Error::Config(format!("hf-hub: {e}")))?;
    api.model(repo.to_string())
        .get(file)
        .map_err(|e| Error::Config(format!("downloading {repo}/{file}: {e}")))
}
