//! Strided GEMM on the `gemm` crate (candle's own CPU matmul backend), multi-threaded on
//! rayon's global pool, and the tap matrices of a depth-only weight read in place. Shared by
//! the exact CPU paths ([`crate::cpu`]) and the [Winograd](crate::winograd) path.

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
pub(crate) struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) off: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

/// A strided mutable matrix view into a slice (the destination of a GEMM), bounds-checked
/// before use.
pub(crate) struct MatMut<'a> {
    pub(crate) data: &'a mut [f32],
    pub(crate) off: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a> MatMut<'a> {
    /// Contiguous rows starting at `off`, `rs` apart.
    pub(crate) fn rows(data: &'a mut [f32], off: usize, rs: usize) -> Self {
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
        "conv3d internal: strided view out of bounds ({last} >= {len})"
    );
}

/// `dst (m×n) += lhs (m×k) · rhs (k×n)` for strided views, through `gemm`.
pub(crate) fn gemm_acc(m: usize, n: usize, k: usize, dst: MatMut, lhs: Mat, rhs: Mat) {
    gemm_into(m, n, k, dst, lhs, rhs, true)
}

/// `dst (m×n) (+)= lhs (m×k) · rhs (k×n)` for strided views, through `gemm`; `accumulate =
/// false` overwrites `dst` (zero when `k == 0`).
pub(crate) fn gemm_into(
    m: usize,
    n: usize,
    k: usize,
    dst: MatMut,
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
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
            1.0f32,
            false,
            false,
            false,
            parallelism(),
        )
    }
}

/// The kd tap matrices (rows × cols) of a depth-only weight, read in place: either the weight
/// itself (O × C per tap) or, for the input gradient, its channel-swapped and depth-flipped
/// version (C × O per tap), without a copy.
pub(crate) struct Taps<'a> {
    data: &'a [f32],
    kd: usize,
    rs: usize,
    cs: usize,
    flip: bool,
}

impl<'a> Taps<'a> {
    /// Taps of a weight (O, C, kd) as (O × C) matrices.
    pub(crate) fn forward(w: &'a [f32], c: usize, kd: usize) -> Self {
        Self {
            data: w,
            kd,
            rs: c * kd,
            cs: kd,
            flip: false,
        }
    }

    /// Taps of the input-gradient weight `w'[c, o, t] = w[o, c, kd − 1 − t]` as (C × O).
    pub(crate) fn transposed_flipped(w: &'a [f32], c: usize, kd: usize) -> Self {
        Self {
            data: w,
            kd,
            rs: kd,
            cs: c * kd,
            flip: true,
        }
    }

    /// The number of taps.
    pub(crate) fn kd(&self) -> usize {
        self.kd
    }

    /// Tap `t` as a strided matrix view.
    pub(crate) fn mat(&self, t: usize) -> Mat<'a> {
        Mat {
            data: self.data,
            off: if self.flip { self.kd - 1 - t } else { t },
            rs: self.rs,
            cs: self.cs,
        }
    }
}
