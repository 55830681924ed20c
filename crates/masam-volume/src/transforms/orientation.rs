//! The slice orientation the authors' checkpoints expect.
//!
//! The reference takes nibabel's `(X, Y)` slice `s` and feeds `s.T[::-1, ::-1]` to the model:
//! `out[r, c] = s[X−1−c, Y−1−r]`. Our slices are stored `(Y, X)` (`data[[k, y, x]]`), so this is
//! `out[r, c] = slice[Y−1−r, X−1−c]`: a 180° rotation, which is its own inverse
//! (`test.py` undoes it with `rot90(flip(a, 1), k=−1)`).
//!
//! ```
//! use masam_volume::transforms::{from_model_orientation, to_model_orientation};
//! let s = ndarray::array![[1, 2, 3], [4, 5, 6]];
//! let m = to_model_orientation(&s.view());
//! assert_eq!(m, ndarray::array![[6, 5, 4], [3, 2, 1]]);
//! assert_eq!(from_model_orientation(&m.view()), s);
//! ```

use ndarray::{s, Array2, ArrayView2};

/// Voxel-grid slice (Y, X) → model orientation (H = Y, W = X).
pub fn to_model_orientation<T: Clone>(slice: &ArrayView2<T>) -> Array2<T> {
    slice.slice(s![..;-1, ..;-1]).to_owned()
}

/// Model orientation (H, W) → voxel-grid slice (Y, X); the exact inverse of
/// [`to_model_orientation`].
pub fn from_model_orientation<T: Clone>(slice: &ArrayView2<T>) -> Array2<T> {
    slice.slice(s![..;-1, ..;-1]).to_owned()
}

/// Maps a voxel column/row `(x, y)` of a `(Y, X)` slice to model `(col, row)`.
pub fn voxel_to_model_xy(x: usize, y: usize, shape_yx: (usize, usize)) -> (usize, usize) {
    (shape_yx.1 - 1 - x, shape_yx.0 - 1 - y)
}
