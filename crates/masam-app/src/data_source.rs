//! Where a run's volumes come from, and loading them into memory.

use std::path::{Path, PathBuf};

use masam_adapter::data::LabelledVolume;
use masam_adapter::volume::dataset::{btcv, split, LabelMap};
use masam_adapter::volume::phantom::{Organ, Phantom, PhantomConfig};
use serde::{Deserialize, Serialize};

use crate::{AppError, Result};

/// Where the training and held-out volumes come from.
///
/// ```
/// use masam_app::DataSource;
/// let src: DataSource = toml::from_str("kind = \"btcv\"\nroot = \"/data/BTCV\"").unwrap();
/// assert_eq!(src, DataSource::Btcv { root: "/data/BTCV".into() });
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSource {
    /// The synthetic abdomen phantom of masam-volume (12 organs, BTCV label order). SYNTHETIC.
    Phantom {
        /// Phantom geometry.
        phantom: PhantomConfig,
        /// Training volumes (seeds 0..n).
        train_cases: usize,
        /// Held-out volumes (seeds 10 000..).
        test_cases: usize,
    },
    /// A BTCV folder (`img/imgXXXX.nii.gz`, `label/labelXXXX.nii.gz`), the reference split
    /// (held out: 0035–0040), label 13 merged into 12.
    Btcv {
        /// The folder.
        root: PathBuf,
    },
    /// Explicit (image, label) NIfTI or DICOM pairs; labels are class ids 0..=num_classes.
    Files {
        /// Training pairs.
        train: Vec<(PathBuf, PathBuf)>,
        /// Held-out pairs.
        test: Vec<(PathBuf, PathBuf)>,
    },
}

/// The volumes of a run: training and held-out cases, and the names of the foreground classes
/// (empty when the source does not name them).
#[derive(Debug, Clone)]
pub struct LoadedData {
    /// Training volumes.
    pub train: Vec<LabelledVolume>,
    /// Held-out volumes.
    pub test: Vec<LabelledVolume>,
    /// Foreground class names (label 1 first).
    pub class_names: Vec<String>,
}

impl DataSource {
    /// The embedded default data: 12 training and 3 held-out synthetic phantom volumes
    /// (128 × 128 × 48).
    pub fn phantom_default() -> Self {
        DataSource::Phantom {
            phantom: PhantomConfig::default(),
            train_cases: 12,
            test_cases: 3,
        }
    }

    /// True for the synthetic phantom.
    pub fn is_phantom(&self) -> bool {
        matches!(self, DataSource::Phantom { .. })
    }

    /// Reads (or generates) every volume.
    ///
    /// # Errors
    /// Unreadable files, image/label grids that differ, a folder without labelled cases.
    pub fn load(&self) -> Result<LoadedData> {
        match self {
            DataSource::Phantom {
                phantom,
                train_cases,
                test_cases,
            } => {
                let p = Phantom::new(phantom.clone())?;
                let case = |s: u64| {
                    let (image, label) = p.case(s);
                    LabelledVolume { image, label }
                };
                let class_names = (1..=12u8)
                    .map(|l| Organ::from_label(l).map(|o| o.name().to_string()))
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_default();
                Ok(LoadedData {
                    train: (0..*train_cases as u64).map(case).collect(),
                    test: (0..*test_cases as u64).map(|i| case(10_000 + i)).collect(),
                    class_names,
                })
            }
            DataSource::Btcv { root } => {
                let (train_files, test_files) = split::btcv_reference_split(&btcv::cases(root)?);
                if train_files.is_empty() {
                    return Err(AppError::Dataset {
                        path: root.clone(),
                        reason: "no labelled BTCV training cases (img/imgXXXX.nii.gz with \
                                 label/labelXXXX.nii.gz)"
                            .into(),
                    });
                }
                let load = |files: Vec<_>| -> Result<Vec<LabelledVolume>> {
                    files
                        .into_iter()
                        .filter_map(|c: masam_adapter::volume::dataset::CaseFiles| {
                            c.label.map(|l| (c.image, l))
                        })
                        .map(|(i, l)| load_pair_mapped(&i, &l, &LabelMap::Btcv13To12))
                        .collect()
                };
                Ok(LoadedData {
                    train: load(train_files)?,
                    test: load(test_files)?,
                    class_names: vec![],
                })
            }
            DataSource::Files { train, test } => {
                let load = |pairs: &[(PathBuf, PathBuf)]| -> Result<Vec<LabelledVolume>> {
                    pairs.iter().map(|(i, l)| load_pair(i, l)).collect()
                };
                let train_v = load(train)?;
                if train_v.is_empty() {
                    return Err(AppError::Config("no training pairs".into()));
                }
                Ok(LoadedData {
                    train: train_v,
                    test: load(test)?,
                    class_names: vec![],
                })
            }
        }
    }
}

/// Reads an image and its label map (NIfTI file or DICOM series folder each) and checks that
/// they share the grid. Label values are rounded to class ids.
///
/// # Errors
/// Unreadable files; [`AppError::GridMismatch`] when the shapes differ.
pub fn load_pair(image: &Path, label: &Path) -> Result<LabelledVolume> {
    load_pair_mapped(image, label, &LabelMap::Identity)
}

/// [`load_pair`], with the stored label values mapped to classes by `map`.
pub fn load_pair_mapped(image: &Path, label: &Path, map: &LabelMap) -> Result<LabelledVolume> {
    let img = masam_adapter::volume::io::read_volume(image)?;
    let lab = masam_adapter::volume::io::read_volume(label)?
        .map(|v: &f32| map.apply(v.round().clamp(0.0, 255.0) as u8));
    if img.data.shape() != lab.data.shape() {
        return Err(AppError::GridMismatch {
            image: image.to_path_buf(),
            image_shape: img.data.shape().to_vec(),
            label: label.to_path_buf(),
            label_shape: lab.data.shape().to_vec(),
        });
    }
    Ok(LabelledVolume {
        image: img,
        label: lab,
    })
}
