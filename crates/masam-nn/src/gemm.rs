//! Strided, bounds-checked `f32` GEMM on the `gemm` crate (candle's own CPU matmul backend),
//! multi-threaded on rayon's global pool: the safe core of the fused CPU kernels here
//! ([`crate::ops::linear_fused`]) and of the Conv3D kernels of `masam-conv3d`.
//!
//! Matrices are views into slices with a row stride `rs` and a column stride `cs`, so that a
//! transposed operand is read in place.
//!
//! ```
//! use masam_nn::gemm::{gemm_into, Mat, MatMut};
//! // (2 × 3) · (3 × 2), the right operand read as the transpose of a row-major (2 × 3)
//! let a = [1f32, 2., 3., 4., 5., 6.];
//! let b_t = [1f32, 0., 1., 0., 1., 0.];
//! let mut c = [0f32; 4];
//! gemm_into(
//!     2, 2, 3,
//!     MatMut::rows(&mut c, 0, 2),
//!     Mat { data: &a, off: 0, rs: 3, cs: 1 },
//!     Mat { data: &b_t, off: 0, rs: 1, cs: 3 },
//!     false,
//! );
//! assert_eq!(c, [4., 2., 10., 5.]);
//! ```

use gemm::Parallelism;

fn parallelism() -> Parallelism {
    let n = rayon::current_num_threads();
    if n > 1 {
        Parallelism::Rayon(n)
    } else {
        Parallelism::None
    }
}

/// A strided read-only matrix view into a slice, bounds-checked before use.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    /// The elements the view reads.
    pub data: &'a [f32],
    /// Index of element (0, 0) in `data`.
    pub off: usize,
    /// Distance in `data` between consecutive rows.
    pub rs: usize,
    /// Distance in `data` between consecutive columns.
    pub cs: usize,
}

/// A strided mutable matrix view into a slice (the destination of a GEMM), bounds-checked
/// before use.
pub struct MatMut<'a> {
    /// The elements the view writes.
    pub data: &'a mut [f32],
    /// Index of element (0, 0) in `data`.
    pub off: usize,
    /// Distance in `data` between consecutive rows.
    pub rs: usize,
    /// Distance in `data` between consecutive columns.
    pub cs: usize,
}

impl<'a> MatMut<'a> {
    /// Contiguous rows starting at `off`, `rs` apart.
    pub fn rows(data: &'a mut [f32], off: usize, rs: usize) -> Self {
        Self {
            data,
            off,
            rs,
            cs: 1,
        }
    }
}

fn check_bounds(len: usize, off: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    let last = off + (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last < len,
        "masam_nn::gemm: strided view out of bounds ({last} >= {len})"
    );
}

/// `dst (m×n) += lhs (m×k) · rhs (k×n)` for strided views, through `gemm`.
pub fn gemm_acc(m: usize, n: usize, k: usize, dst: MatMut, lhs: Mat, rhs: Mat) {
    gemm_into(m, n, k, dst, lhs, rhs, true)
}

/// `dst (m×n) (+)= lhs (m×k) · rhs (k×n)` for strided views, through `gemm`; `accumulate =
/// false` overwrites `dst` (zero when `k == 0`).
pub fn gemm_into(m: usize, n: usize, k: usize, dst: MatMut, lhs: Mat, rhs: Mat, accumulate: bool) {
    gemm_with(m, n, k, dst, lhs, rhs, accumulate, 1.0, true)
}

/// [`gemm_into`] with the product scaled, `dst (+)= scale · lhs · rhs`, on rayon's pool
/// (`parallel`) or on the calling thread only (for small products inside a parallel loop).
///
/// ```
/// use masam_nn::gemm::{gemm_with, Mat, MatMut};
/// let a = [1f32, 2.];
/// let b = [3f32, 4.];
/// let mut c = [10f32];
/// // (1 × 2) · (2 × 1), accumulated into c with the product halved
/// gemm_with(1, 1, 2, MatMut::rows(&mut c, 0, 1), Mat { data: &a, off: 0, rs: 2, cs: 1 },
///     Mat { data: &b, off: 0, rs: 1, cs: 1 }, true, 0.5, false);
/// assert_eq!(c, [15.5]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(
    m: usize,
    n: usize,
    k: usize,
    dst: MatMut,
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    scale: f32,
    parallel: bool,
) {
    let MatMut {
        data: dst,
        off: dst_off,
        rs: dst_rs,
        cs: dst_cs,
    } = dst;
    if m == 0 || n == 0 {
        return;
    }
    check_bounds(dst.len(), dst_off, m, n, dst_rs, dst_cs);
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    dst[dst_off + r * dst_rs + c * dst_cs] = 0.0;
                }
            }
        }
        return;
    }
    check_bounds(lhs.data.len(), lhs.off, m, k, lhs.rs, lhs.cs);
    check_bounds(rhs.data.len(), rhs.off, k, n, rhs.rs, rhs.cs);
    // SAFETY: every pointer/stride combination was bounds-checked above, `dst` is borrowed
    // mutably and does not alias `lhs`/`rhs` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(dst_off),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr().add(lhs.off),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.off),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0f32,
            scale,
            false,
            false,
            false,
            if parallel {
                parallelism()
            } else {
                Parallelism::None
            },
        )
    }
}
