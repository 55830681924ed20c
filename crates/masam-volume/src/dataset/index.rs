//! A dataset index over (case, slice) that loads volumes lazily and keeps decoded volumes in a
//! byte-bounded LRU cache, so a training set of full CTs does not have to fit in RAM. It is
//! `Send + Sync`: background loader threads share one `Arc<StackDataset>`.

use std::path::Path;
use std::sync::Arc;

use ndarray::Array3;
use serde::{Deserialize, Serialize};

use super::cache::VolumeCache;
use super::{CaseFiles, LabelMap};
use crate::error::{Result, VolumeError};
use crate::io::nifti::{is_nifti_path, NiftiReader, DEFAULT_MAX_BYTES};
use crate::transforms::{SliceStack, StackConfig};
use crate::volume::Volume;

/// Settings of a [`StackDataset`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetConfig {
    /// Stack building (depth, intensity chain, model size, orientation).
    pub stack: StackConfig,
    /// Stored label value → class.
    pub label_map: LabelMap,
    /// Byte bound of the decoded-volume cache (default 2 GiB).
    pub cache_bytes: usize,
    /// Largest allowed |image affine − label affine| element (default 1e-3 mm).
    pub affine_tolerance: f64,
    /// Per-file voxel-data limit passed to the NIfTI reader.
    pub max_file_bytes: u64,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            stack: StackConfig::default(),
            label_map: LabelMap::Identity,
            cache_bytes: 2 << 30,
            affine_tolerance: 1e-3,
            max_file_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// A decoded case: the (intensity-prepared) image and its mapped label map.
#[derive(Debug, Clone)]
pub struct LoadedCase {
    /// Image in f32 (after [`crate::transforms::IntensityConfig::prepare_volume`]).
    pub image: Volume<f32>,
    /// Label map after [`LabelMap::apply`].
    pub label: Option<Volume<u8>>,
}

/// One training/inference sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Normalised image stack (D, H, W) in [0, 1].
    pub image: Array3<f32>,
    /// Labels of all D slices (D, H, W), when the case has a label map.
    pub label: Option<Array3<u8>>,
    /// Case index into [`StackDataset::cases`].
    pub case: usize,
    /// Centre slice index within the case.
    pub slice: usize,
}

/// Stacks of all slices of all cases, loaded on demand.
#[derive(Debug)]
pub struct StackDataset {
    cases: Vec<CaseFiles>,
    entries: Vec<(u32, u32)>,
    slices: Vec<usize>,
    stack: SliceStack,
    cfg: DatasetConfig,
    cache: VolumeCache<LoadedCase>,
}

impl StackDataset {
    /// Indexes `cases`: NIfTI headers are read for slice counts (no voxel data); DICOM folders
    /// are loaded once (through the cache).
    pub fn new(cases: Vec<CaseFiles>, cfg: DatasetConfig) -> Result<Self> {
        let stack = SliceStack::new(cfg.stack)?;
        if cases.is_empty() {
            return Err(VolumeError::InvalidArgument("no cases to index".into()));
        }
        let mut ds = Self {
            cache: VolumeCache::new(cfg.cache_bytes),
            cases,
            entries: Vec::new(),
            slices: Vec::new(),
            stack,
            cfg,
        };
        for ci in 0..ds.cases.len() {
            let img = &ds.cases[ci].image;
            let nz = if is_nifti_path(img) {
                let g = NiftiReader::new()
                    .max_bytes(ds.cfg.max_file_bytes)
                    .read_header(img)?;
                // dims beyond dim[0] are not validated: a 2D file has one slice
                if g.ndim() >= 3 {
                    g.dim[3] as usize
                } else {
                    1
                }
            } else {
                ds.case(ci)?.image.shape_zyx()[0]
            };
            ds.slices.push(nz);
            ds.entries.extend((0..nz).map(|k| (ci as u32, k as u32)));
        }
        Ok(ds)
    }

    /// Number of (case, slice) stacks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no stacks.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The indexed cases.
    pub fn cases(&self) -> &[CaseFiles] {
        &self.cases
    }

    /// Slices per case.
    pub fn slices_per_case(&self) -> &[usize] {
        &self.slices
    }

    /// (case, slice) of stack `i`.
    pub fn entry(&self, i: usize) -> Option<(usize, usize)> {
        self.entries.get(i).map(|&(c, s)| (c as usize, s as usize))
    }

    /// The decoded-volume cache (for statistics).
    pub fn cache(&self) -> &VolumeCache<LoadedCase> {
        &self.cache
    }

    /// The stack builder.
    pub fn stacker(&self) -> &SliceStack {
        &self.stack
    }

    /// Loads (or fetches from the cache) case `ci`, checking that image and label share the grid.
    pub fn case(&self, ci: usize) -> Result<Arc<LoadedCase>> {
        let files = self.cases.get(ci).ok_or_else(|| {
            VolumeError::InvalidArgument(format!("case {ci} out of range ({})", self.cases.len()))
        })?;
        let key = files.image.to_string_lossy().into_owned();
        self.cache.get_or_load(&key, || {
            let case = load_case(files, &self.cfg)?;
            let bytes = case.image.nbytes() + case.label.as_ref().map_or(0, |l| l.nbytes());
            Ok((case, bytes))
        })
    }

    /// Stack `i` (see [`StackDataset::entry`]).
    pub fn get(&self, i: usize) -> Result<Sample> {
        let (ci, k) = self.entry(i).ok_or_else(|| {
            VolumeError::InvalidArgument(format!("sample {i} out of range ({})", self.len()))
        })?;
        let case = self.case(ci)?;
        let image = self.stack.image_stack(&case.image, k)?;
        let label = case
            .label
            .as_ref()
            .map(|l| self.stack.label_stack(l, k))
            .transpose()?;
        Ok(Sample {
            image,
            label,
            case: ci,
            slice: k,
        })
    }
}

fn read_image(path: &Path, cfg: &DatasetConfig) -> Result<Volume<f32>> {
    if is_nifti_path(path) {
        Ok(NiftiReader::new()
            .max_bytes(cfg.max_file_bytes)
            .read::<f32>(path)?
            .volume)
    } else {
        crate::io::read_volume(path)
    }
}

/// Reads one case: image (f32, prepared), label (u8, mapped), with grid checks.
pub fn load_case(files: &CaseFiles, cfg: &DatasetConfig) -> Result<LoadedCase> {
    let mut image = read_image(&files.image, cfg)?;
    let label = match &files.label {
        None => None,
        Some(lp) => {
            let lab = NiftiReader::new()
                .max_bytes(cfg.max_file_bytes)
                .read::<u8>(lp)?
                .volume;
            if lab.shape_zyx() != image.shape_zyx() {
                return Err(VolumeError::ShapeMismatch {
                    image: files.image.clone(),
                    label: lp.clone(),
                    image_shape: image.shape_zyx(),
                    label_shape: lab.shape_zyx(),
                });
            }
            let diff = image.affine_max_abs_diff(&lab.affine);
            if diff > cfg.affine_tolerance {
                return Err(VolumeError::AffineMismatch {
                    image: files.image.clone(),
                    label: lp.clone(),
                    max_abs_diff: diff,
                    tolerance: cfg.affine_tolerance,
                });
            }
            let map = &cfg.label_map;
            Some(if *map == LabelMap::Identity {
                lab
            } else {
                lab.map(|&v| map.apply(v))
            })
        }
    };
    if let Some(slice) = image.data.as_slice_mut() {
        cfg.stack.intensity.prepare_volume(slice);
    }
    Ok(LoadedCase { image, label })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<StackDataset>();
        check::<Arc<StackDataset>>();
    }
}
