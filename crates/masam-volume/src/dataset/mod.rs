//! Dataset layouts (BTCV, prostate multi-site, EndoVis18, MSD, AMOS, generic folder pairs),
//! the reference splits, and a lazily loading, memory-bounded, thread-safe index of
//! (case, slice) stacks.
//!
//! ```no_run
//! use masam_volume::dataset::{btcv, split, StackDataset, DatasetConfig};
//! let cases = btcv::cases("/data/BTCV")?;
//! let (train, _test) = split::btcv_reference_split(&cases);
//! let ds = StackDataset::new(train, DatasetConfig::default())?;
//! let sample = ds.get(0)?; // image (5, 512, 512) in [0, 1], labels (5, 512, 512)
//! # Ok::<(), masam_volume::VolumeError>(())
//! ```

pub mod amos;
pub mod btcv;
pub mod cache;
pub mod endovis;
pub mod folder_pair;
pub mod index;
pub mod msd;
pub mod prostate;
pub mod split;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use cache::VolumeCache;
pub use index::{DatasetConfig, Sample, StackDataset};

use crate::error::{Result, VolumeError};

/// One image volume and (optionally) its label map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseFiles {
    /// Case id as used by the reference splits (e.g. `"0035"` for BTCV `img0035`).
    pub id: String,
    /// Image file (NIfTI) or DICOM folder.
    pub image: PathBuf,
    /// Label file, when the layout provides one.
    pub label: Option<PathBuf>,
}

/// How stored label values become training classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LabelMap {
    /// Keep values.
    #[default]
    Identity,
    /// BTCV with `num_classes == 12`: 13 → 12 (left and right adrenal glands merged).
    Btcv13To12,
    /// Every non-zero value → 1 (prostate: labels > 1 → 1).
    Binary,
    /// `table[v]` for each stored value `v` (values past the end become 0).
    Table(Vec<u8>),
}

impl LabelMap {
    /// Maps one stored value.
    #[inline]
    pub fn apply(&self, v: u8) -> u8 {
        match self {
            Self::Identity => v,
            Self::Btcv13To12 => {
                if v == 13 {
                    12
                } else {
                    v
                }
            }
            Self::Binary => (v > 0) as u8,
            Self::Table(t) => t.get(v as usize).copied().unwrap_or(0),
        }
    }
}

/// Sorted regular files of `dir` whose names satisfy `keep`, without the `._*` resource-fork
/// files that macOS archives leave beside every file; [`VolumeError::Empty`] if none.
pub(crate) fn list_files(
    dir: &Path,
    expected: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| VolumeError::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .map(|n| {
                        let n = n.to_string_lossy();
                        !n.starts_with("._") && keep(&n)
                    })
                    .unwrap_or(false)
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(VolumeError::Empty {
            path: dir.to_path_buf(),
            expected: expected.into(),
        });
    }
    Ok(out)
}

/// Digits of `s` as a zero-padded 4-digit id (`"Case03"` → `"0003"`); `None` without digits.
pub fn numeric_id(s: &str) -> Option<String> {
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().ok()?;
    Some(format!("{n:04}"))
}
