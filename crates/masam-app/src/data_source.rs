//! Where a run's volumes come from, and loading them into memory.

use std::path::{Path, PathBuf};

use masam_adapter::data::LabelledVolume;
use masam_adapter::volume::dataset::amos::{self, Modality};
use masam_adapter::volume::dataset::{btcv, msd, prostate, split, CaseFiles, LabelMap};
use masam_adapter::volume::phantom::{Organ, Phantom, PhantomConfig};
use serde::{Deserialize, Serialize};

use crate::task::{
    prostate_site, prostate_site_letter, site_of_folder, Protocol, Task, AMOS_TO_BTCV12,
    BTCV_CLASSES, PROSTATE_SITES,
};
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
    /// Multi-site prostate MRI ([`Task::Prostate`]): a site folder or the folder of the six
    /// sites; labels > 1 become 1; the reference's per-site test lists.
    Prostate {
        /// The site folder, or the folder of the sites.
        root: PathBuf,
        /// The site (canonical name); `None`: the folder's own site, or all sites.
        #[serde(default)]
        site: Option<String>,
        /// Per-site or cross-site evaluation.
        #[serde(default)]
        protocol: Protocol,
    },
    /// AMOS 2022 ([`Task::Amos`]): `imagesTr`/`labelsTr` train, `imagesVa`/`labelsVa` test, of
    /// one modality.
    Amos {
        /// The AMOS folder.
        root: PathBuf,
        /// CT (ids below 500) or MRI.
        modality: Modality,
        /// Train on the first N training cases only (few-shot).
        #[serde(default)]
        shots: Option<usize>,
        /// Labels mapped to BTCV's 12 classes (transfer from a BTCV run).
        #[serde(default)]
        btcv_classes: bool,
    },
    /// Decathlon Task07_Pancreas ([`Task::MsdPancreas`]): the labelled cases of `dataset.json`,
    /// split 70/10/20 with a fixed seed (the reference's split file is not distributed); the
    /// validation part is not used.
    MsdPancreas {
        /// The Task07_Pancreas folder.
        root: PathBuf,
        /// Split seed.
        #[serde(default)]
        seed: u64,
    },
    /// EndoVis 2018 ([`Task::Endovis18`]): RGB video frames with colour-coded labels.
    Endovis18 {
        /// The folder holding `train/` and `test/`.
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
                    class_names: BTCV_CLASSES.iter().map(|s| s.to_string()).collect(),
                })
            }
            DataSource::Prostate {
                root,
                site,
                protocol,
            } => {
                let (train, test) = prostate_split(root, site.as_deref(), *protocol)?;
                loaded(
                    root,
                    train,
                    test,
                    &LabelMap::Binary,
                    Task::Prostate.class_names(),
                )
            }
            DataSource::Amos {
                root,
                modality,
                shots,
                btcv_classes,
            } => {
                let mut train = amos::cases(root, amos::Split::Train, *modality)?;
                train.retain(|c| c.label.is_some());
                if let Some(n) = shots {
                    train.truncate(*n);
                }
                let test = if root.join("labelsVa").is_dir() {
                    amos::cases(root, amos::Split::Validation, *modality)?
                        .into_iter()
                        .filter(|c| c.label.is_some())
                        .collect()
                } else {
                    vec![]
                };
                let (map, names) = if *btcv_classes {
                    (
                        LabelMap::Table(AMOS_TO_BTCV12.to_vec()),
                        BTCV_CLASSES.iter().map(|s| s.to_string()).collect(),
                    )
                } else {
                    (LabelMap::Identity, Task::Amos.class_names())
                };
                loaded(root, train, test, &map, names)
            }
            DataSource::MsdPancreas { root, seed } => {
                let (labelled, _unlabelled) = msd::cases(root)?;
                let (train, _val, test) = split::seeded_split(&labelled, 0.1, 0.2, *seed)?;
                loaded(
                    root,
                    train,
                    test,
                    &LabelMap::Identity,
                    Task::MsdPancreas.class_names(),
                )
            }
            DataSource::Endovis18 { root } => Err(AppError::Dataset {
                path: root.clone(),
                reason: "EndoVis18 is video, not volumes: read it with video::endovis_split (the \
                 fine-tuning run does)"
                    .into(),
            }),
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

/// Loads labelled cases with `map`; an empty training set is a [`AppError::Dataset`].
fn loaded(
    root: &Path,
    train: Vec<CaseFiles>,
    test: Vec<CaseFiles>,
    map: &LabelMap,
    class_names: Vec<String>,
) -> Result<LoadedData> {
    if train.is_empty() {
        return Err(AppError::Dataset {
            path: root.to_path_buf(),
            reason: "no labelled training cases".into(),
        });
    }
    let load = |files: Vec<CaseFiles>| -> Result<Vec<LabelledVolume>> {
        files
            .into_iter()
            .filter_map(|c| c.label.map(|l| (c.image, l)))
            .map(|(i, l)| load_pair_mapped(&i, &l, map))
            .collect()
    };
    Ok(LoadedData {
        train: load(train)?,
        test: load(test)?,
        class_names,
    })
}

/// A site's cases split by the reference's test list of its letter (a 20 % seeded split for a
/// folder that is not one of the six sites).
fn site_split(dir: &Path, site: Option<&str>) -> Result<(Vec<CaseFiles>, Vec<CaseFiles>)> {
    let cases = prostate::cases(dir)?;
    match site
        .and_then(prostate_site_letter)
        .and_then(split::prostate_test_ids)
    {
        Some(ids) => Ok(split::split_by_ids(&cases, ids)),
        None => {
            let (train, _, test) = split::seeded_split(&cases, 0.0, 0.2, 0)?;
            Ok((train, test))
        }
    }
}

/// The (train, test) cases of the prostate collection at `root` (a site folder or the folder of
/// the sites) for `site` and `protocol`.
///
/// # Errors
/// Unreadable folders, an unknown site, a missing site folder, cross-site without a site.
pub fn prostate_split(
    root: &Path,
    site: Option<&str>,
    protocol: Protocol,
) -> Result<(Vec<CaseFiles>, Vec<CaseFiles>)> {
    let site = match site {
        Some(s) => Some(prostate_site(s).ok_or_else(|| {
            AppError::Config(format!(
                "unknown prostate site `{s}` (sites: {} or A-F)",
                PROSTATE_SITES.join(", ")
            ))
        })?),
        None => None,
    };
    let parent_layout = PROSTATE_SITES.iter().any(|s| root.join(s).is_dir());
    if !parent_layout {
        // one site folder: the cross-site protocol needs the others
        if protocol == Protocol::CrossSite {
            return Err(AppError::Dataset {
                path: root.to_path_buf(),
                reason: "the cross-site protocol needs the folder of the six sites \
                 (RUNMC, BMC, I2CVB, UCL, BIDMC, HK), not one site"
                    .into(),
            });
        }
        return site_split(root, site.or_else(|| site_of_folder(root)));
    }
    let present: Vec<&str> = PROSTATE_SITES
        .iter()
        .copied()
        .filter(|s| root.join(s).is_dir())
        .collect();
    let site_dir = |s: &str| -> Result<PathBuf> {
        let d = root.join(s);
        if d.is_dir() {
            Ok(d)
        } else {
            Err(AppError::Dataset {
                path: d,
                reason: format!("site folder {s} missing"),
            })
        }
    };
    match (protocol, site) {
        (Protocol::PerSite, Some(s)) => site_split(&site_dir(s)?, Some(s)),
        (Protocol::PerSite, None) => {
            let (mut train, mut test) = (vec![], vec![]);
            for s in present {
                let (a, b) = site_split(&root.join(s), Some(s))?;
                train.extend(a);
                test.extend(b);
            }
            Ok((train, test))
        }
        (Protocol::CrossSite, Some(s)) => {
            let (train, _) = site_split(&site_dir(s)?, Some(s))?;
            let mut test = vec![];
            for o in present.into_iter().filter(|o| *o != s) {
                test.extend(site_split(&root.join(o), Some(o))?.1);
            }
            Ok((train, test))
        }
        (Protocol::CrossSite, None) => Err(AppError::Config(
            "the cross-site protocol trains on one site: give the site (RUNMC, BMC, I2CVB, \
             UCL, BIDMC or HK)"
                .into(),
        )),
    }
}
