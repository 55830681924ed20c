//! A 3D medical volume: voxel data plus the geometry that places it in scanner space.

use ndarray::Array3;

/// A 3D volume with its geometry, as read from NIfTI or DICOM.
///
/// `data` is slice-major: `data[[k, j, i]]` is voxel `(i, j, k)` of the file (i = x fastest on disk,
/// k = slice). `affine` maps voxel indices `(i, j, k, 1)` to RAS+ world millimetres, exactly like the
/// NIfTI s/qform (for DICOM it is converted from LPS). `spacing` is `(x, y, z)` in mm.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T = f32> {
    /// Voxels, shape (Z, Y, X).
    pub data: Array3<T>,
    /// Voxel size (x, y, z) in millimetres.
    pub spacing: [f64; 3],
    /// Voxel (i, j, k, 1) → RAS+ world (mm), row-major 4×4.
    pub affine: [[f64; 4]; 4],
}

impl<T> Volume<T> {
    /// A volume with an axis-aligned affine built from `spacing` (origin at 0).
    pub fn with_spacing(data: Array3<T>, spacing: [f64; 3]) -> Self {
        let mut affine = [[0.0; 4]; 4];
        for a in 0..3 {
            affine[a][a] = spacing[a];
        }
        affine[3][3] = 1.0;
        Self {
            data,
            spacing,
            affine,
        }
    }

    /// Shape as (Z, Y, X).
    pub fn shape_zyx(&self) -> [usize; 3] {
        let s = self.data.shape();
        [s[0], s[1], s[2]]
    }
}
