//! Medical Segmentation Decathlon tasks (e.g. Task07_Pancreas): `dataset.json` listing
//! `imagesTr`/`labelsTr` pairs and `imagesTs` images.

use std::path::Path;

use serde::Deserialize;

use super::{numeric_id, CaseFiles};
use crate::error::{Result, VolumeError};

#[derive(Deserialize)]
struct Pair {
    image: String,
    label: String,
}

#[derive(Deserialize)]
struct DatasetJson {
    #[serde(default)]
    training: Vec<Pair>,
    #[serde(default)]
    test: Vec<String>,
}

/// Training cases (with labels) and test cases (without) from `root/dataset.json`.
pub fn cases(root: impl AsRef<Path>) -> Result<(Vec<CaseFiles>, Vec<CaseFiles>)> {
    let root = root.as_ref();
    let json = root.join("dataset.json");
    let text = std::fs::read_to_string(&json).map_err(|e| VolumeError::io(&json, e))?;
    let ds: DatasetJson = serde_json::from_str(&text).map_err(|e| VolumeError::Dataset {
        path: json.clone(),
        reason: VolumeError::caused("", &e),
        source: Some(e.into()),
    })?;
    if ds.training.is_empty() && ds.test.is_empty() {
        return Err(VolumeError::Empty {
            path: json,
            expected: "training or test entries".into(),
        });
    }
    let resolve = |rel: &str| root.join(rel.trim_start_matches("./"));
    let id_of = |p: &Path| {
        let s = crate::io::nifti::stem_of(p);
        numeric_id(&s).unwrap_or(s)
    };
    let mut train = Vec::with_capacity(ds.training.len());
    for pair in &ds.training {
        let image = resolve(&pair.image);
        let label = resolve(&pair.label);
        for p in [&image, &label] {
            if !p.is_file() {
                return Err(VolumeError::Missing {
                    path: p.clone(),
                    context: format!("listed in {}", json.display()),
                });
            }
        }
        train.push(CaseFiles {
            id: id_of(&image),
            image,
            label: Some(label),
        });
    }
    let test = ds
        .test
        .iter()
        .map(|t| {
            let image = resolve(t);
            CaseFiles {
                id: id_of(&image),
                image,
                label: None,
            }
        })
        .collect();
    Ok((train, test))
}
