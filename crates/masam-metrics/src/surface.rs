//! Surface voxels and directed surface distances with medpy's semantics.
//!
//! medpy (`medpy.metric.binary.__surface_distances`) defines the surface ("border") of a binary
//! mask as `mask XOR binary_erosion(mask, generate_binary_structure(3, 1))`: the foreground voxels
//! that have at least one face neighbour (6-connectivity) in the background, where voxels outside
//! the array count as background. The directed distances from mask `A` to mask `B` are, for every
//! border voxel of `A`, the Euclidean distance in mm to the nearest border voxel of `B`
//! (`distance_transform_edt(~border_B, sampling=spacing)[border_A]`).
//!
//! Both masks are cropped to the bounding box of their union first; this is exact (every border
//! voxel lies inside it, and voxels outside it are background either way) and makes the cost
//! proportional to the objects rather than the volume.
//!
//! All arrays are indexed (z, y, x) and spacing is (z, y, x) in mm.

use ndarray::{s, Array3, ArrayView3, Zip};

use crate::distance_transform::distance_transform_edt;
use crate::error::{check_inputs, Result};

/// Inclusive-exclusive bounding box `[lo, hi)` of the `true` voxels of one or more masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundingBox {
    /// First index on each axis (z, y, x).
    pub lo: [usize; 3],
    /// One past the last index on each axis (z, y, x).
    pub hi: [usize; 3],
}

impl BoundingBox {
    /// The bounding box of the `true` voxels of `masks` (their union); `None` when all are empty.
    ///
    /// All masks must have the same shape (callers check this).
    pub fn of_union(masks: &[ArrayView3<'_, bool>]) -> Option<Self> {
        let mut lo = [usize::MAX; 3];
        let mut hi = [0usize; 3];
        for m in masks {
            for ((z, y, x), &v) in m.indexed_iter() {
                if v {
                    for (a, i) in [z, y, x].into_iter().enumerate() {
                        lo[a] = lo[a].min(i);
                        hi[a] = hi[a].max(i + 1);
                    }
                }
            }
        }
        (lo[0] != usize::MAX).then_some(Self { lo, hi })
    }

    /// Extent (z, y, x) of the box.
    pub fn dim(&self) -> (usize, usize, usize) {
        (
            self.hi[0] - self.lo[0],
            self.hi[1] - self.lo[1],
            self.hi[2] - self.lo[2],
        )
    }

    /// A view of `a` restricted to the box.
    pub fn crop<'a, T>(&self, a: &'a ArrayView3<'_, T>) -> ArrayView3<'a, T> {
        a.slice(s![
            self.lo[0]..self.hi[0],
            self.lo[1]..self.hi[1],
            self.lo[2]..self.hi[2]
        ])
    }
}

/// medpy's surface: foreground voxels with a background face neighbour (6-connectivity), voxels
/// outside the array counting as background.
///
/// # Shapes
/// - `mask`: (z, y, x)
/// - returns: (z, y, x), `true` on border voxels
///
/// ```
/// use masam_metrics::surface::binary_border;
/// use ndarray::Array3;
/// let m = Array3::from_elem((3, 3, 3), true);
/// let b = binary_border(m.view());
/// assert_eq!(b.iter().filter(|&&v| v).count(), 26); // all but the centre
/// ```
pub fn binary_border(mask: ArrayView3<'_, bool>) -> Array3<bool> {
    let (nz, ny, nx) = mask.dim();
    let mut out = Array3::from_elem((nz, ny, nx), false);
    Zip::indexed(&mut out).par_for_each(|(z, y, x), o| {
        if !mask[[z, y, x]] {
            return;
        }
        let interior = z > 0
            && z + 1 < nz
            && y > 0
            && y + 1 < ny
            && x > 0
            && x + 1 < nx
            && mask[[z - 1, y, x]]
            && mask[[z + 1, y, x]]
            && mask[[z, y - 1, x]]
            && mask[[z, y + 1, x]]
            && mask[[z, y, x - 1]]
            && mask[[z, y, x + 1]];
        *o = !interior;
    });
    out
}

/// Directed surface distances (mm) from the border of `from` to the border of `to`, medpy's
/// `__surface_distances(from, to, voxelspacing=spacing, connectivity=1)`.
///
/// Returns one distance per border voxel of `from`, in C (z, y, x) order. Empty cases, where medpy
/// raises instead: an empty `from` gives an empty vector; an empty `to` gives `+∞` for every
/// border voxel of `from`.
///
/// # Errors
/// [`MetricsError::ShapeMismatch`](crate::MetricsError::ShapeMismatch) or
/// [`MetricsError::InvalidSpacing`](crate::MetricsError::InvalidSpacing).
pub fn directed_surface_distances(
    from: ArrayView3<'_, bool>,
    to: ArrayView3<'_, bool>,
    spacing: [f64; 3],
) -> Result<Vec<f64>> {
    Ok(surface_distances(from, to, spacing)?.0)
}

/// Both directed distance sets at once: `(from → to, to → from)`, sharing the crop and borders.
///
/// Equivalent to two calls of [`directed_surface_distances`] with swapped arguments.
///
/// # Errors
/// [`MetricsError::ShapeMismatch`](crate::MetricsError::ShapeMismatch) or
/// [`MetricsError::InvalidSpacing`](crate::MetricsError::InvalidSpacing).
pub fn surface_distances(
    from: ArrayView3<'_, bool>,
    to: ArrayView3<'_, bool>,
    spacing: [f64; 3],
) -> Result<(Vec<f64>, Vec<f64>)> {
    check_inputs(from.shape(), to.shape(), &spacing)?;
    let Some(bb) = BoundingBox::of_union(&[from.view(), to.view()]) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let border_from = binary_border(bb.crop(&from));
    let border_to = binary_border(bb.crop(&to));
    let forward = sample(&border_to, &border_from, spacing)?;
    let backward = sample(&border_from, &border_to, spacing)?;
    Ok((forward, backward))
}

/// Distances from each `at` voxel to the nearest `target` voxel (`+∞` when `target` is empty).
fn sample(target: &Array3<bool>, at: &Array3<bool>, spacing: [f64; 3]) -> Result<Vec<f64>> {
    let n = at.iter().filter(|&&b| b).count();
    if n == 0 {
        return Ok(Vec::new());
    }
    if !target.iter().any(|&b| b) {
        return Ok(vec![f64::INFINITY; n]);
    }
    let dt = distance_transform_edt(target.view(), spacing)?;
    let mut out = Vec::with_capacity(n);
    Zip::from(&dt).and(at).for_each(|&d, &b| {
        if b {
            out.push(d);
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn border_of_a_box_inside_a_volume() {
        let mut m = Array3::from_elem((5, 6, 7), false);
        m.slice_mut(s![1..4, 1..5, 1..6]).fill(true); // 3 x 4 x 5 box
        let b = binary_border(m.view());
        let interior = 2 * 3; // (3 - 2) * (4 - 2) * (5 - 2)
        assert_eq!(b.iter().filter(|&&v| v).count(), 3 * 4 * 5 - interior);
        assert!(!b[[2, 2, 2]] && b[[1, 2, 2]]);
    }

    #[test]
    fn directed_distances_and_empty_cases() {
        let mut a = Array3::from_elem((1, 1, 6), false);
        let mut b = a.clone();
        a[[0, 0, 0]] = true;
        b[[0, 0, 4]] = true;
        let d = directed_surface_distances(a.view(), b.view(), [1.0, 1.0, 0.5]).unwrap();
        assert_eq!(d, vec![2.0]);
        let empty = Array3::from_elem((1, 1, 6), false);
        let d = directed_surface_distances(a.view(), empty.view(), [1.0; 3]).unwrap();
        assert_eq!(d, vec![f64::INFINITY]);
        let d = directed_surface_distances(empty.view(), a.view(), [1.0; 3]).unwrap();
        assert!(d.is_empty());
        let wrong = Array3::from_elem((1, 2, 6), false);
        assert!(directed_surface_distances(a.view(), wrong.view(), [1.0; 3]).is_err());
    }
}
