//! The tap matrices of a depth-only Conv3D weight, read in place as strided GEMM operands.

use masam_nn::gemm::Mat;

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
