//! Label maps and binary masks.
//!
//! Metrics take **label maps**: integer arrays indexed (z, y, x) whose value is the class id of
//! the voxel (0 = background). The multi-class wrappers loop over the class ids they are
//! configured with and score the binary masks `labels == id`. Negative labels (e.g. an
//! "ignore" value of -100) never equal a class id.

use ndarray::{Array3, ArrayView3, Zip};

/// A binary mask (z, y, x): the input of the pure metric functions and of
/// [`Metric::score_binary`](crate::Metric::score_binary).
pub type Mask<'a> = ArrayView3<'a, bool>;

/// An integer type usable as a label-map voxel (`u8`, `u16`, `u32`, `u64`, `usize`, `i8`..`i64`).
pub trait Label: Copy + Send + Sync {
    /// The class id of this label, `None` for negative values.
    fn class_id(self) -> Option<u64>;
}

macro_rules! unsigned_label {
    ($($t:ty),*) => {$(
        impl Label for $t {
            #[inline]
            fn class_id(self) -> Option<u64> {
                Some(self as u64)
            }
        }
    )*};
}
macro_rules! signed_label {
    ($($t:ty),*) => {$(
        impl Label for $t {
            #[inline]
            fn class_id(self) -> Option<u64> {
                u64::try_from(self).ok()
            }
        }
    )*};
}
unsigned_label!(u8, u16, u32, u64, usize);
signed_label!(i8, i16, i32, i64);

impl Label for bool {
    #[inline]
    fn class_id(self) -> Option<u64> {
        Some(u64::from(self))
    }
}

/// The binary mask `labels == class`.
///
/// ```
/// use masam_metrics::label::class_mask;
/// use ndarray::Array3;
/// let l = Array3::from_shape_vec((1, 1, 4), vec![0u8, 2, 1, 2]).unwrap();
/// assert_eq!(class_mask(l.view(), 2).as_slice().unwrap(), &[false, true, false, true]);
/// ```
pub fn class_mask<L: Label>(labels: ArrayView3<'_, L>, class: u64) -> Array3<bool> {
    let mut out = Array3::from_elem(labels.dim(), false);
    Zip::from(&mut out)
        .and(&labels)
        .par_for_each(|o, &l| *o = l.class_id() == Some(class));
    out
}

/// The binary mask `labels != 0` (numpy's `astype(bool)`, as medpy applies to its inputs).
pub fn foreground_mask<L: Label>(labels: ArrayView3<'_, L>) -> Array3<bool> {
    let mut out = Array3::from_elem(labels.dim(), false);
    Zip::from(&mut out)
        .and(&labels)
        .par_for_each(|o, &l| *o = l.class_id() != Some(0));
    out
}
