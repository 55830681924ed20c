//! EndoVis18 surgical video: `seq_N/left_frames/*.png` (RGB) and `seq_N/labels/*.png`
//! (colour-coded, see [`crate::io::frames::ColorMap::endovis18`]).

use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3};

use crate::error::{Result, VolumeError};
use crate::io::frames::{list_frames, read_label_frame, read_rgb_frame, ColorMap};

/// One video sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoCase {
    /// Case id as in the reference (`seq_k` → `"00kk"`).
    pub id: String,
    /// Sorted RGB frame files.
    pub frames: Vec<PathBuf>,
    /// Label files, one per frame (same names), when the sequence has labels.
    pub labels: Option<Vec<PathBuf>>,
}

impl VideoCase {
    /// Decodes all frames, (T) × (H, W, 3).
    pub fn read_frames(&self) -> Result<Vec<Array3<u8>>> {
        self.frames.iter().map(read_rgb_frame).collect()
    }

    /// Decodes all label frames to class ids, (T) × (H, W).
    pub fn read_labels(&self, cmap: &ColorMap) -> Result<Option<Vec<Array2<u8>>>> {
        self.labels
            .as_ref()
            .map(|ls| ls.iter().map(|p| read_label_frame(p, cmap)).collect())
            .transpose()
    }
}

/// Every `seq_*` folder of `root` that has `left_frames/`.
pub fn sequences(root: impl AsRef<Path>) -> Result<Vec<VideoCase>> {
    let root = root.as_ref();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| VolumeError::io(root, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("left_frames").is_dir())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(VolumeError::Empty {
            path: root.to_path_buf(),
            expected: "sequence folders with left_frames/".into(),
        });
    }
    dirs.iter().map(sequence).collect()
}

/// One sequence folder.
pub fn sequence(dir: impl AsRef<Path>) -> Result<VideoCase> {
    let dir = dir.as_ref();
    let frames = list_frames(dir.join("left_frames"))?;
    let label_dir = dir.join("labels");
    let labels = if label_dir.is_dir() {
        let labels: Vec<PathBuf> = frames
            .iter()
            .map(|f| label_dir.join(f.file_name().unwrap()))
            .collect();
        if let Some(m) = labels.iter().find(|p| !p.is_file()) {
            return Err(VolumeError::Missing {
                path: m.clone(),
                context: "label frame for a left frame of the same name".into(),
            });
        }
        Some(labels)
    } else {
        None
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(VideoCase {
        id: super::numeric_id(&name).unwrap_or(name),
        frames,
        labels,
    })
}
