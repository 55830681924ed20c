//! The paper's tasks ([`Task`]): for each, the dataset layout it reads, its classes, label
//! mapping, intensity chain and split, turned into a [`DataSource`] and a run configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use masam_adapter::sam::ImageEncoderConfig;
use masam_adapter::volume::dataset::amos::Modality;
use masam_adapter::volume::dataset::LabelMap;
use masam_adapter::volume::transforms::IntensityConfig;
use masam_adapter::volume::Volume;
use masam_adapter::{Finetune, MaSamConfig};
use serde::{Deserialize, Serialize};

use crate::{AppError, DataSource, FinetuneConfig, Result};

/// BTCV's 12 classes after merging the two adrenal glands (label order).
pub const BTCV_CLASSES: [&str; 12] = [
    "spleen",
    "right kidney",
    "left kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "inferior vena cava",
    "portal and splenic veins",
    "pancreas",
    "adrenal glands",
];

/// AMOS 2022's 15 classes (label order of its `dataset.json`).
pub const AMOS_CLASSES: [&str; 15] = [
    "spleen",
    "right kidney",
    "left kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "inferior vena cava",
    "pancreas",
    "right adrenal gland",
    "left adrenal gland",
    "duodenum",
    "bladder",
    "prostate/uterus",
];

/// AMOS label → BTCV 12-class label (0 for the organs BTCV does not have: duodenum, bladder,
/// prostate/uterus). BTCV's portal and splenic veins (10) have no AMOS counterpart.
pub const AMOS_TO_BTCV12: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 12, 0, 0, 0];

/// The BTCV classes (1-based, 12-class numbering) AMOS also labels.
pub const BTCV12_SHARED_WITH_AMOS: [usize; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12];

/// The prostate sites of the multi-site MRI collection, in the order of the paper's sites A–F.
pub const PROSTATE_SITES: [&str; 6] = ["RUNMC", "BMC", "I2CVB", "UCL", "BIDMC", "HK"];

/// EndoVis 2018's 11 foreground classes, in the order of the reference colour palette
/// ([`masam_adapter::volume::io::frames::ColorMap::endovis18`]); background tissue is 0.
pub const ENDOVIS18_CLASSES: [&str; 11] = [
    "instrument shaft",
    "instrument clasper",
    "instrument wrist",
    "kidney parenchyma",
    "covered kidney",
    "thread",
    "clamps",
    "suturing needle",
    "suction instrument",
    "small intestine",
    "ultrasound probe",
];

/// One of the paper's datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// BTCV multi-organ CT (12 classes).
    Btcv,
    /// Multi-site prostate MRI (1 class).
    Prostate,
    /// EndoVis 2018 robotic scene segmentation (11 classes, RGB video).
    Endovis18,
    /// AMOS 2022 multi-organ CT/MRI (15 classes).
    Amos,
    /// Medical Segmentation Decathlon Task07 pancreas and tumour (2 classes).
    MsdPancreas,
}

impl Task {
    /// Every task, in the order of `--task`'s help.
    pub const ALL: [Task; 5] = [
        Task::Btcv,
        Task::Prostate,
        Task::Endovis18,
        Task::Amos,
        Task::MsdPancreas,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Task::Btcv => "btcv",
            Task::Prostate => "prostate",
            Task::Endovis18 => "endovis18",
            Task::Amos => "amos",
            Task::MsdPancreas => "msd-pancreas",
        }
    }

    /// The folder layout the task reads, as said in error messages.
    pub fn layout(self) -> &'static str {
        match self {
            Task::Btcv => {
                "the unpacked Synapse download: RawData/Training/img/imgXXXX.nii.gz with \
                 RawData/Training/label/labelXXXX.nii.gz (or a folder holding img/ and label/)"
            }
            Task::Prostate => {
                "a site folder (CaseNN.nii.gz with CaseNN_segmentation.nii.gz) or the folder \
                 of the six sites RUNMC, BMC, I2CVB, UCL, BIDMC, HK"
            }
            Task::Endovis18 => {
                "the EndoVis 2018 folder with train/ and test/ holding seq_N/left_frames/*.png \
                 and seq_N/labels/*.png"
            }
            Task::Amos => {
                "the AMOS 2022 folder: dataset.json, imagesTr/ + labelsTr/ (amos_XXXX.nii.gz) \
                 and imagesVa/ + labelsVa/"
            }
            Task::MsdPancreas => {
                "the Decathlon Task07_Pancreas folder: dataset.json, imagesTr/, labelsTr/, \
                 imagesTs/"
            }
        }
    }

    /// Foreground classes (label 1 first) for `modality` (AMOS only).
    pub fn class_names(self) -> Vec<String> {
        let v: &[&str] = match self {
            Task::Btcv => &BTCV_CLASSES,
            Task::Prostate => &["prostate"],
            Task::Endovis18 => &ENDOVIS18_CLASSES,
            Task::Amos => &AMOS_CLASSES,
            Task::MsdPancreas => &["pancreas", "tumour"],
        };
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Number of foreground classes.
    pub fn num_classes(self) -> usize {
        self.class_names().len()
    }

    /// The reference's intensity chain: the abdomen CT window for BTCV and AMOS CT, the
    /// pancreas window for MSD, the 99th-percentile MRI normalisation for prostate and AMOS MRI,
    /// a per-stack min-max of the raw 0..255 values for video.
    pub fn intensity(self, modality: Modality) -> IntensityConfig {
        match (self, modality) {
            (Task::Btcv, _) => IntensityConfig::ct_abdomen(),
            (Task::Amos, Modality::Mri) => IntensityConfig::mri(),
            (Task::Amos, _) => IntensityConfig::ct_abdomen(),
            (Task::MsdPancreas, _) => IntensityConfig::pancreas(),
            (Task::Prostate, _) => IntensityConfig::mri(),
            (Task::Endovis18, _) => IntensityConfig::video(),
        }
    }

    /// How a stored ground-truth label map of this task becomes the model's classes (BTCV: 13
    /// merged into 12; prostate: every label > 0 is prostate; AMOS with `btcv_classes`: the
    /// BTCV numbering of the shared organs).
    pub fn label_map(self, btcv_classes: bool) -> LabelMap {
        match self {
            Task::Btcv => LabelMap::Btcv13To12,
            Task::Prostate => LabelMap::Binary,
            Task::Amos if btcv_classes => LabelMap::Table(AMOS_TO_BTCV12.to_vec()),
            _ => LabelMap::Identity,
        }
    }

    /// The data source of `root` with `opts`, checking that the folder has the task's layout.
    ///
    /// # Errors
    /// [`AppError::Dataset`] naming the expected layout when `root` does not have it; a
    /// prostate site that is not one of [`PROSTATE_SITES`].
    pub fn data_source(self, root: &Path, opts: &TaskOptions) -> Result<DataSource> {
        let bad = |reason: String| AppError::Dataset {
            path: root.to_path_buf(),
            reason: format!("{reason}; --task {} expects {}", self.name(), self.layout()),
        };
        if !root.is_dir() {
            return Err(bad("not a folder".into()));
        }
        let root = root.to_path_buf();
        match self {
            Task::Btcv => {
                if !masam_adapter::volume::dataset::btcv::is_layout(&root) {
                    return Err(bad("no img/ folder".into()));
                }
                Ok(DataSource::Btcv { root })
            }
            Task::Prostate => {
                let site = match &opts.site {
                    Some(s) => Some(prostate_site(s).ok_or_else(|| {
                        bad(format!(
                            "unknown site `{s}` (sites: {} or A-F)",
                            PROSTATE_SITES.join(", ")
                        ))
                    })?),
                    None => None,
                };
                let is_site = site_of_folder(&root).is_some() || has_cases(&root);
                let has_sites = PROSTATE_SITES.iter().any(|s| root.join(s).is_dir());
                if !is_site && !has_sites {
                    return Err(bad(
                        "neither a site folder nor the folder of the sites".into()
                    ));
                }
                if opts.protocol == Protocol::CrossSite && site.is_none() && !is_site {
                    return Err(AppError::Config(
                        "--protocol cross-site trains on one site: pass --site NAME \
                         (RUNMC, BMC, I2CVB, UCL, BIDMC or HK)"
                            .into(),
                    ));
                }
                Ok(DataSource::Prostate {
                    root,
                    site: site.map(str::to_string),
                    protocol: opts.protocol,
                })
            }
            Task::Amos => {
                if !root.join("imagesTr").is_dir() {
                    return Err(bad("no imagesTr/ folder".into()));
                }
                Ok(DataSource::Amos {
                    root,
                    modality: opts.modality,
                    shots: opts.shots,
                    btcv_classes: opts.btcv_classes,
                })
            }
            Task::MsdPancreas => {
                if !root.join("dataset.json").is_file() {
                    return Err(bad("no dataset.json".into()));
                }
                Ok(DataSource::MsdPancreas { root, seed: 0 })
            }
            Task::Endovis18 => {
                if !(root.join("train").is_dir() || root.join("test").is_dir()) {
                    return Err(bad("no train/ or test/ folder".into()));
                }
                Ok(DataSource::Endovis18 { root })
            }
        }
    }

    /// The run configuration of this task on `data`: the paper's recipe on `backbone`, or, for
    /// `backbone == "tiny"`, a smoke test (the small random-init ViT at 64 px trained end to
    /// end, no augmentation) that checks a dataset on a CPU in seconds.
    ///
    /// # Errors
    /// An unknown backbone preset.
    pub fn config(
        self,
        data: DataSource,
        backbone: &str,
        steps: u64,
        out_dir: PathBuf,
    ) -> Result<FinetuneConfig> {
        let k = match &data {
            DataSource::Amos {
                btcv_classes: true, ..
            } => BTCV_CLASSES.len(),
            _ => self.num_classes(),
        };
        let modality = match &data {
            DataSource::Amos { modality, .. } => *modality,
            _ => Modality::Ct,
        };
        let enc = ImageEncoderConfig::preset(backbone)?;
        let mut cfg = FinetuneConfig::paper(data, enc.clone(), k, steps, out_dir);
        cfg.intensity = self.intensity(modality);
        if backbone.eq_ignore_ascii_case("tiny") {
            cfg.model = MaSamConfig::from_backbone(enc, 64, k);
            cfg.model.finetune = Finetune::Full;
            cfg.augment = false;
            cfg.trainer.batch = 2;
            cfg.trainer.accumulation = 1;
            cfg.checkpoint_every = 0;
            cfg.eval_batch = 8;
        }
        Ok(cfg)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = AppError;
    fn from_str(s: &str) -> Result<Self> {
        Task::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s) || (s == "endovis" && *t == Task::Endovis18))
            .ok_or_else(|| {
                AppError::Config(format!(
                    "unknown task `{s}` (tasks: {})",
                    Task::ALL.map(|t| t.name()).join(", ")
                ))
            })
    }
}

/// How the prostate sites are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Train and test within a site (the reference's per-site test lists); without a site, all
    /// sites' training cases together, tested on all their test cases.
    #[default]
    PerSite,
    /// Train on one site's training cases, test on the test cases of the other five.
    CrossSite,
}

impl FromStr for Protocol {
    type Err = AppError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "per-site" | "per_site" => Ok(Protocol::PerSite),
            "cross-site" | "cross_site" => Ok(Protocol::CrossSite),
            _ => Err(AppError::Config(format!(
                "unknown protocol `{s}` (per-site or cross-site)"
            ))),
        }
    }
}

/// The task settings besides the folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOptions {
    /// Prostate: the site (name or letter A–F).
    pub site: Option<String>,
    /// Prostate: the protocol.
    pub protocol: Protocol,
    /// AMOS: CT or MRI cases.
    pub modality: AmosModality,
    /// AMOS few-shot: train on the first N training cases (`None`: all).
    pub shots: Option<usize>,
    /// AMOS: map the labels to BTCV's 12 classes (zero- and few-shot transfer from BTCV).
    pub btcv_classes: bool,
}

/// AMOS modality as an option (CT by default).
pub type AmosModality = Modality;

/// The canonical site name of `s` (a site name in any case, or the paper's letter A–F).
pub fn prostate_site(s: &str) -> Option<&'static str> {
    if s.len() == 1 {
        let i = (s.as_bytes()[0].to_ascii_uppercase()).wrapping_sub(b'A') as usize;
        return PROSTATE_SITES.get(i).copied();
    }
    PROSTATE_SITES
        .iter()
        .find(|n| n.eq_ignore_ascii_case(s))
        .copied()
}

/// The paper's letter (A–F) of a site name.
pub fn prostate_site_letter(site: &str) -> Option<char> {
    PROSTATE_SITES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(site))
        .map(|i| (b'A' + i as u8) as char)
}

/// The site a folder is named after.
pub fn site_of_folder(dir: &Path) -> Option<&'static str> {
    dir.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.len() > 1)
        .and_then(prostate_site)
}

fn has_cases(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()).any(|e| {
                let n = e.file_name().to_string_lossy().to_ascii_lowercase();
                n.starts_with("case") && n.contains(".nii")
            })
        })
        .unwrap_or(false)
}

/// The volume-level step of `intensity` (the MRI percentile normalisation; nothing for CT) on
/// an image, as training and prediction both apply it before cutting stacks.
pub fn prepare_image(intensity: &IntensityConfig, image: &mut Volume<f32>) {
    if intensity.mri_percentile.is_none() {
        return;
    }
    match image.data.as_slice_memory_order_mut() {
        Some(s) => intensity.prepare_volume(s),
        None => {
            let mut v: Vec<f32> = image.data.iter().copied().collect();
            intensity.prepare_volume(&mut v);
            image.data.iter_mut().zip(v).for_each(|(d, s)| *d = s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sites_resolve() {
        for t in Task::ALL {
            assert_eq!(t.name().parse::<Task>().unwrap(), t);
        }
        assert!("lits".parse::<Task>().is_err());
        assert_eq!(prostate_site("d"), Some("UCL"));
        assert_eq!(prostate_site("hk"), Some("HK"));
        assert_eq!(prostate_site("G"), None);
        assert_eq!(prostate_site_letter("BIDMC"), Some('E'));
        assert_eq!(Task::MsdPancreas.num_classes(), 2);
        assert_eq!(AMOS_TO_BTCV12[11], 12);
        assert_eq!(AMOS_TO_BTCV12[10], 11);
    }
}
