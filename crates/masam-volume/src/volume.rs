//! A 3D medical volume: voxel data plus the geometry that places it in scanner space.

use ndarray::Array3;

/// A row-major 4×4 voxel → world (RAS+, mm) transform.
pub type Affine = [[f64; 4]; 4];

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
    pub affine: Affine,
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

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the volume holds no voxels.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Applies `f` to every voxel, keeping the geometry.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Volume<U> {
        Volume {
            data: self.data.map(f),
            spacing: self.spacing,
            affine: self.affine,
        }
    }

    /// Largest absolute difference between this volume's affine and `other`.
    pub fn affine_max_abs_diff(&self, other: &Affine) -> f64 {
        let mut m = 0.0f64;
        for r in 0..4 {
            for c in 0..4 {
                m = m.max((self.affine[r][c] - other[r][c]).abs());
            }
        }
        m
    }

    /// Approximate heap size of the voxel data in bytes.
    pub fn nbytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<T>()
    }
}
