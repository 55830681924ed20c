//! Surface elements ("surfels") and surface distances with the semantics of DeepMind's
//! `surface-distance` library (`compute_surface_distances`, Nikolov et al. 2018).
//!
//! The surface lives on the voxel *corners*: every corner gets the 8-bit code of the 2×2×2 voxels
//! around it (voxel `(i-1+a, j-1+b, k-1+c)` contributes bit `7 - (4a + 2b + c)`, voxels outside the
//! array are background). Corners whose code is neither 0 nor 255 are surfels. Each surfel carries
//! the area (mm²) of the marching-cubes triangles of its code, scaled by the voxel spacing, and
//! the distance (mm) to the nearest surfel of the other mask, both on the same corner grid.
//!
//! All arrays are indexed (z, y, x) and spacing is (z, y, x) in mm.

use ndarray::{Array3, ArrayView3, Zip};

use crate::distance_transform::distance_transform_edt;
use crate::error::{check_inputs, MetricsError, Result};
use crate::surface::BoundingBox;
use crate::surfel_table::NEIGHBOUR_CODE_NORMALS_EIGHTHS;

/// Surfel area (mm²) of every neighbour code for the given (z, y, x) spacing in mm.
///
/// A normal `n` (unit-cube triangle, length = area) becomes
/// `(n_z s_y s_x, n_y s_z s_x, n_x s_z s_y)` under anisotropic spacing; the code's area is the sum
/// of the lengths. Codes 0 and 255 (no surface) have area 0.
///
/// ```
/// use masam_metrics::surfel::surfel_area_table;
/// let t = surfel_area_table([1.0, 1.0, 1.0]);
/// assert!((t[1] - 3f64.sqrt() / 8.0).abs() < 1e-15); // one corner cut off
/// assert_eq!(t[0], 0.0);
/// assert_eq!(t[255], 0.0);
/// ```
pub fn surfel_area_table(spacing: [f64; 3]) -> [f64; 256] {
    let [sz, sy, sx] = spacing;
    let scale = [sy * sx, sz * sx, sz * sy];
    let mut table = [0.0; 256];
    for (code, area) in table.iter_mut().enumerate() {
        let entry = if code < 128 { code } else { 255 - code };
        let mut sum = 0.0;
        for n in NEIGHBOUR_CODE_NORMALS_EIGHTHS[entry] {
            let v = [0, 1, 2].map(|a| f64::from(n[a]) * 0.125 * scale[a]);
            sum += (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        }
        *area = sum;
    }
    table
}

/// Neighbour code of every corner of the (cropped) voxel grid.
///
/// # Shapes
/// - `mask`: (z, y, x)
/// - returns: (z + 1, y + 1, x + 1); corner `(i, j, k)` sees voxels `i-1..=i`, `j-1..=j`, `k-1..=k`
pub fn neighbour_codes(mask: ArrayView3<'_, bool>) -> Array3<u8> {
    let (nz, ny, nx) = mask.dim();
    let mut codes = Array3::<u8>::zeros((nz + 1, ny + 1, nx + 1));
    let at = |z: usize, y: usize, x: usize| -> bool {
        // (z, y, x) are corner coordinates of the voxel + 1; 0 means "before the array".
        z >= 1 && y >= 1 && x >= 1 && z <= nz && y <= ny && x <= nx && mask[[z - 1, y - 1, x - 1]]
    };
    Zip::indexed(&mut codes).par_for_each(|(i, j, k), c| {
        let mut code = 0u8;
        for a in 0..2 {
            for b in 0..2 {
                for d in 0..2 {
                    if at(i + a, j + b, k + d) {
                        code |= 1 << (7 - (4 * a + 2 * b + d));
                    }
                }
            }
        }
        *c = code;
    });
    codes
}

/// Surfel distances and areas of a prediction / ground-truth pair.
///
/// Field names follow DeepMind's `compute_surface_distances` dictionary. Distances are in mm,
/// areas in mm²; `surfel_areas_gt[i]` belongs to `distances_gt_to_pred[i]` (same for pred).
/// Surfels are listed in C order of the corner grid (DeepMind sorts them by distance; no metric
/// here depends on the order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SurfaceDistances {
    /// For each ground-truth surfel, the distance to the nearest predicted surfel (`+∞` if none).
    pub distances_gt_to_pred: Vec<f64>,
    /// For each predicted surfel, the distance to the nearest ground-truth surfel (`+∞` if none).
    pub distances_pred_to_gt: Vec<f64>,
    /// Area of each ground-truth surfel.
    pub surfel_areas_gt: Vec<f64>,
    /// Area of each predicted surfel.
    pub surfel_areas_pred: Vec<f64>,
}

impl SurfaceDistances {
    /// Normalised surface dice at `tolerance_mm` (DeepMind's
    /// `compute_surface_dice_at_tolerance`): the surfel area of both surfaces lying within the
    /// tolerance of the other surface, over the total surfel area.
    ///
    /// Both surfaces empty gives NaN (0 / 0); exactly one empty gives 0.
    ///
    /// # Errors
    /// [`MetricsError::InvalidTolerance`] when `tolerance_mm` is negative or not finite.
    pub fn surface_dice_at(&self, tolerance_mm: f64) -> Result<f64> {
        if !tolerance_mm.is_finite() || tolerance_mm < 0.0 {
            return Err(MetricsError::InvalidTolerance(tolerance_mm));
        }
        let within = |d: &[f64], a: &[f64]| -> f64 {
            d.iter()
                .zip(a)
                .filter(|(d, _)| **d <= tolerance_mm)
                .map(|(_, a)| *a)
                .sum()
        };
        let overlap_gt = within(&self.distances_gt_to_pred, &self.surfel_areas_gt);
        let overlap_pred = within(&self.distances_pred_to_gt, &self.surfel_areas_pred);
        let total: f64 =
            self.surfel_areas_gt.iter().sum::<f64>() + self.surfel_areas_pred.iter().sum::<f64>();
        Ok((overlap_gt + overlap_pred) / total)
    }
}

/// DeepMind's `compute_surface_distances(mask_gt, mask_pred, spacing_mm)`, arguments in this
/// crate's (prediction, ground truth) order.
///
/// # Shapes
/// - `pred`, `gt`: (z, y, x) binary masks of equal shape
/// - `spacing`: (z, y, x) in mm
///
/// # Errors
/// [`MetricsError::ShapeMismatch`] or [`MetricsError::InvalidSpacing`].
pub fn compute_surface_distances(
    pred: ArrayView3<'_, bool>,
    gt: ArrayView3<'_, bool>,
    spacing: [f64; 3],
) -> Result<SurfaceDistances> {
    check_inputs(pred.shape(), gt.shape(), &spacing)?;
    let Some(bb) = BoundingBox::of_union(&[pred.view(), gt.view()]) else {
        return Ok(SurfaceDistances::default());
    };
    let areas = surfel_area_table(spacing);
    let codes_gt = neighbour_codes(bb.crop(&gt));
    let codes_pred = neighbour_codes(bb.crop(&pred));
    let is_surfel = |c: &u8| *c != 0 && *c != 255;
    let borders_gt = codes_gt.map(is_surfel);
    let borders_pred = codes_pred.map(is_surfel);
    let (distances_gt_to_pred, surfel_areas_gt) =
        collect(&borders_pred, &codes_gt, &areas, spacing)?;
    let (distances_pred_to_gt, surfel_areas_pred) =
        collect(&borders_gt, &codes_pred, &areas, spacing)?;
    Ok(SurfaceDistances {
        distances_gt_to_pred,
        distances_pred_to_gt,
        surfel_areas_gt,
        surfel_areas_pred,
    })
}

/// For the surfels of `codes`, the distance to the nearest `target` surfel and the surfel area.
fn collect(
    target: &Array3<bool>,
    codes: &Array3<u8>,
    areas: &[f64; 256],
    spacing: [f64; 3],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut dist = Vec::new();
    let mut area = Vec::new();
    if codes.iter().all(|&c| c == 0 || c == 255) {
        return Ok((dist, area));
    }
    let dt = if target.iter().any(|&b| b) {
        distance_transform_edt(target.view(), spacing)?
    } else {
        Array3::from_elem(target.dim(), f64::INFINITY)
    };
    Zip::from(&dt).and(codes).for_each(|&d, &c| {
        if c != 0 && c != 255 {
            dist.push(d);
            area.push(areas[c as usize]);
        }
    });
    Ok((dist, area))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_table_is_complement_symmetric_and_scales() {
        let iso = surfel_area_table([1.0; 3]);
        let doubled = surfel_area_table([2.0; 3]);
        for c in 0..256 {
            assert_eq!(iso[c], iso[255 - c]);
            assert!((doubled[c] - 4.0 * iso[c]).abs() < 1e-12);
            assert_eq!(iso[c] == 0.0, c == 0 || c == 255, "code {c}");
        }
        // Two voxels side by side along x: a flat quad of 1 x sqrt(1/2) in the unit cube.
        assert!((iso[3] - 0.5f64.sqrt()).abs() < 1e-15);
        // Four voxels of one face: a unit square.
        assert!((iso[15] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn single_voxel_surface_area() {
        // A lone voxel: 8 corners each cutting one corner triangle off (code with one bit).
        let mut m = Array3::from_elem((3, 3, 3), false);
        m[[1, 1, 1]] = true;
        let s = [0.8, 0.7, 2.5];
        let sd = compute_surface_distances(m.view(), m.view(), s).unwrap();
        assert_eq!(sd.surfel_areas_gt.len(), 8);
        let t = surfel_area_table(s);
        let want = 8.0 * t[1];
        assert!((sd.surfel_areas_gt.iter().sum::<f64>() - want).abs() < 1e-12);
        assert!(sd.distances_gt_to_pred.iter().all(|&d| d == 0.0));
        assert_eq!(sd.surface_dice_at(0.0).unwrap(), 1.0);
    }

    #[test]
    fn empty_conventions() {
        let e = Array3::from_elem((2, 2, 2), false);
        let mut m = e.clone();
        m[[0, 0, 0]] = true;
        let both = compute_surface_distances(e.view(), e.view(), [1.0; 3]).unwrap();
        assert!(both.surface_dice_at(1.0).unwrap().is_nan());
        let one = compute_surface_distances(e.view(), m.view(), [1.0; 3]).unwrap();
        assert!(one.distances_gt_to_pred.iter().all(|d| d.is_infinite()));
        assert_eq!(one.surface_dice_at(1.0).unwrap(), 0.0);
        assert!(matches!(
            one.surface_dice_at(-1.0),
            Err(MetricsError::InvalidTolerance(_))
        ));
    }
}
