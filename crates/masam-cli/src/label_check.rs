//! Label maps as `masam evaluate` accepts them: non-negative whole numbers up to a declared
//! largest label. Anything else (a fraction, a negative value, a label beyond the classes) is
//! an error naming the values found and how many voxels hold each, never silently rounded or
//! clamped, and a huge label never makes work proportional to its value.

use std::fmt;
use std::path::Path;

use masam_volume::io::nifti::NiftiReader;
use masam_volume::Volume;

use crate::error::{CliError, Result};

/// Most distinct offending values an error lists (the others are counted together).
pub const LISTED_VALUES: usize = 8;

/// Largest label `masam evaluate` reads when it infers the class count from the ground truth
/// (without `--classes`); also the largest `--classes` it accepts.
pub const MAX_CLASSES: usize = 1024;

/// Offending values of one label map: the first [`LISTED_VALUES`] distinct ones with their voxel
/// counts (ascending), and the voxels holding any other offending value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BadLabels {
    /// (value, voxels), ascending by value.
    pub values: Vec<(f32, u64)>,
    /// Voxels holding an offending value not in `values`.
    pub other_voxels: u64,
}

impl BadLabels {
    fn record(&mut self, v: f32) {
        if let Some(e) = self
            .values
            .iter_mut()
            .find(|(x, _)| x.to_bits() == v.to_bits())
        {
            e.1 += 1;
        } else if self.values.len() < LISTED_VALUES {
            self.values.push((v, 1));
        } else {
            self.other_voxels += 1;
        }
    }

    /// True when no voxel was out of bounds.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Display for BadLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (v, n)) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v} ({n} voxel{})", if *n == 1 { "" } else { "s" })?;
        }
        if self.other_voxels > 0 {
            write!(
                f,
                " and {} more voxel(s) of other values",
                self.other_voxels
            )?;
        }
        Ok(())
    }
}

/// Checks that every value of `values` is a whole number in `0..=max_label`; returns them as
/// labels.
///
/// ```
/// use masam_cli::label_check::labels_within;
/// use masam_volume::ndarray::Array3;
/// use masam_volume::Volume;
/// let ok = Volume::with_spacing(Array3::from_elem((1, 1, 2), 2f32), [1.0; 3]);
/// assert_eq!(labels_within(&ok, 3).unwrap().data[[0, 0, 1]], 2u16);
/// let bad = Volume::with_spacing(Array3::from_elem((1, 1, 2), -1f32), [1.0; 3]);
/// assert_eq!(labels_within(&bad, 3).unwrap_err().values, vec![(-1.0, 2)]);
/// ```
///
/// # Errors
/// The offending values ([`BadLabels`]).
pub fn labels_within(values: &Volume<f32>, max_label: u16) -> Result<Volume<u16>, BadLabels> {
    let mut bad = BadLabels::default();
    let top = f32::from(max_label);
    let data = values.data.mapv(|v| {
        // NaN fails `v >= 0.0`
        if v >= 0.0 && v <= top && v.fract() == 0.0 {
            v as u16
        } else {
            bad.record(v);
            0
        }
    });
    if !bad.is_empty() {
        bad.values.sort_by(|a, b| a.0.total_cmp(&b.0));
        return Err(bad);
    }
    Ok(Volume {
        data,
        spacing: values.spacing,
        affine: values.affine,
    })
}

/// Reads a NIfTI label map whose labels must lie in `0..=max_label`.
///
/// # Errors
/// Unreadable files; [`CliError::InvalidLabels`] naming the file and the values found.
pub fn read_labels(path: &Path, what: &'static str, max_label: u16) -> Result<Volume<u16>> {
    let values = NiftiReader::new().read::<f32>(path)?.volume;
    labels_within(&values, max_label).map_err(|found| CliError::InvalidLabels {
        file: path.to_path_buf(),
        what,
        max_label,
        found,
    })
}

/// The largest label of a ground-truth file, for inferring the class count.
///
/// # Errors
/// Unreadable files; [`CliError::InvalidLabels`] when it holds values that are not labels up to
/// [`MAX_CLASSES`].
pub fn largest_label(path: &Path) -> Result<u16> {
    let v = read_labels(path, "ground truth", MAX_CLASSES as u16)?;
    Ok(v.data.iter().copied().max().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use masam_volume::ndarray::Array3;

    fn vol(values: &[f32]) -> Volume<f32> {
        let a = Array3::from_shape_vec((1, 1, values.len()), values.to_vec()).unwrap();
        Volume::with_spacing(a, [1.0; 3])
    }

    #[test]
    fn whole_labels_in_range_pass() {
        let v = labels_within(&vol(&[0.0, 1.0, 3.0, 3.0]), 3).unwrap();
        assert_eq!(v.data.iter().copied().collect::<Vec<_>>(), [0, 1, 3, 3]);
    }

    #[test]
    fn fractions_negatives_and_large_values_are_listed_with_counts() {
        let bad =
            labels_within(&vol(&[0.5, -1.0, 60000.0, -1.0, 4.0, f32::NAN, 2.0]), 3).unwrap_err();
        assert_eq!(bad.values.len(), 5);
        assert_eq!(bad.values[0], (-1.0, 2));
        assert_eq!(bad.values[1], (0.5, 1));
        assert_eq!(bad.values[2], (4.0, 1));
        assert_eq!(bad.values[3], (60000.0, 1));
        assert!(bad.values[4].0.is_nan());
        let text = bad.to_string();
        assert!(
            text.contains("-1 (2 voxels)") && text.contains("60000 (1 voxel)"),
            "{text}"
        );
    }

    #[test]
    fn the_list_is_bounded() {
        let values: Vec<f32> = (0..100).map(|i| 10.0 + i as f32).collect();
        let bad = labels_within(&vol(&values), 3).unwrap_err();
        assert_eq!(bad.values.len(), LISTED_VALUES);
        assert_eq!(bad.other_voxels, (100 - LISTED_VALUES) as u64);
        assert!(bad.to_string().contains("92 more voxel(s)"));
    }
}
