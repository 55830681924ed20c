//! What a stride-1 Conv3D is, independent of how it runs: its [padding](Conv3dPadding), the
//! resolved [geometry](Conv3dGeometry) (sizes, front padding, output size) and the
//! [CPU kernel choice](Conv3dKernel). The layer, the custom ops and the kernels all build on
//! these types.

use candle_core::Shape;
use serde::{Deserialize, Serialize};

use crate::error::{Conv3dError, Result};

/// Zero padding of a stride-1 Conv3D.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conv3dPadding {
    /// PyTorch's `padding='same'`: the output has the input's size. A kernel `k` pads `k − 1` in
    /// total, `(k − 1) / 2` in front and the rest (one more for even `k`) at the end.
    #[default]
    Same,
    /// The same number of zeros on both sides of each spatial dim (D, H, W).
    Explicit([usize; 3]),
}

impl Conv3dPadding {
    /// (front, back) padding per spatial dim for a kernel (kd, kh, kw).
    ///
    /// ```
    /// use masam_conv3d::Conv3dPadding;
    /// assert_eq!(Conv3dPadding::Same.resolve([3, 4, 1]), [(1, 1), (1, 2), (0, 0)]);
    /// assert_eq!(Conv3dPadding::Explicit([2, 0, 1]).resolve([3, 3, 3]), [(2, 2), (0, 0), (1, 1)]);
    /// ```
    pub fn resolve(&self, kernel: [usize; 3]) -> [(usize, usize); 3] {
        match self {
            Self::Same => kernel.map(|k| {
                let total = k.saturating_sub(1);
                (total / 2, total - total / 2)
            }),
            Self::Explicit(p) => p.map(|p| (p, p)),
        }
    }
}

/// Which CPU kernel an op may use (resolved per product by [`cpu::select`](crate::cpu::select)).
///
/// Every variant computes the same convolution; they differ in speed and rounding. Forcing a
/// depth-only variant on a geometry that is not depth-only falls back to `General`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conv3dKernel {
    /// Winograd for depth-only kernels where it saves ≥ 15 % of the GEMMs with tiles of at most
    /// [`AUTO_MAX_POINTS`](crate::winograd::AUTO_MAX_POINTS) points and `N·H·W ≥ 256` (measured
    /// error below [`AUTO_ERROR_BOUND`](crate::winograd::AUTO_ERROR_BOUND) relative to the
    /// exact path), else the exact depth-only path, else vol2col + GEMM. See
    /// [`cpu::select`](crate::cpu::select).
    #[default]
    Auto,
    /// Always vol2col + GEMM (for testing the paths against each other).
    General,
    /// The exact depth-only shifted-GEMM path (one GEMM per tap) whenever the geometry allows.
    DepthGemm,
    /// The [Winograd](crate::winograd) depth-only path whenever the geometry allows, even where
    /// it saves nothing (tests).
    Winograd,
}

/// A fully resolved stride-1 convolution: sizes, per-dimension front padding and output size.
///
/// The front padding is signed so that the [transposed](Conv3dGeometry::transposed) geometry
/// (used for the input gradient) can express cropping when the padding exceeds `k − 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3dGeometry {
    /// N, the number of volumes.
    pub batch: usize,
    /// C, input channels.
    pub in_channels: usize,
    /// O, output channels.
    pub out_channels: usize,
    /// Input spatial size (D, H, W).
    pub input: [usize; 3],
    /// Kernel size (kd, kh, kw).
    pub kernel: [usize; 3],
    /// Zero padding before the first element of each spatial dim (negative: crop).
    pub pad_front: [isize; 3],
    /// Output spatial size (OD, OH, OW).
    pub output: [usize; 3],
}

fn dims5(what: &'static str, dims: &[usize]) -> Result<[usize; 5]> {
    <[usize; 5]>::try_from(dims).map_err(|_| Conv3dError::Rank {
        what,
        expected: 5,
        got: dims.to_vec(),
    })
}

impl Conv3dGeometry {
    /// Resolves the geometry of `x` (N, C, D, H, W) convolved with a weight (O, C, kd, kh, kw).
    ///
    /// ```
    /// use masam_conv3d::{Conv3dGeometry, Conv3dPadding};
    /// let g = Conv3dGeometry::new(&[1, 8, 5, 4, 4], &[8, 8, 4, 1, 1], Conv3dPadding::Same).unwrap();
    /// assert_eq!(g.pad_front, [1, 0, 0]); // PyTorch puts the extra padding at the end
    /// assert_eq!(g.output, [5, 4, 4]);
    /// ```
    pub fn new(x: &[usize], weight: &[usize], padding: Conv3dPadding) -> Result<Self> {
        let [n, c, d, h, w] = dims5("conv3d input", x)?;
        let [o, wc, kd, kh, kw] = dims5("conv3d weight", weight)?;
        if wc != c {
            return Err(Conv3dError::ChannelMismatch {
                input: c,
                weight: wc,
            });
        }
        let kernel = [kd, kh, kw];
        if o == 0 || c == 0 || kernel.contains(&0) {
            return Err(Conv3dError::ZeroSize {
                what: "weight",
                shape: weight.to_vec(),
            });
        }
        let input = [d, h, w];
        if n == 0 || input.contains(&0) {
            return Err(Conv3dError::ZeroSize {
                what: "input",
                shape: x.to_vec(),
            });
        }
        let pads = padding.resolve(kernel);
        let mut output = [0usize; 3];
        for i in 0..3 {
            let padded = input[i] + pads[i].0 + pads[i].1;
            if padded < kernel[i] {
                return Err(Conv3dError::EmptyOutput {
                    input,
                    kernel,
                    padding: pads,
                });
            }
            output[i] = padded - kernel[i] + 1;
        }
        Ok(Self {
            batch: n,
            in_channels: c,
            out_channels: o,
            input,
            kernel,
            pad_front: pads.map(|p| p.0 as isize),
            output,
        })
    }

    /// The geometry of the input gradient: a convolution of `grad_y` (N, O, OD, OH, OW) with the
    /// flipped, channel-swapped weight (C, O, kd, kh, kw), front padding `k − 1 − pad`, whose
    /// output has the input's size.
    pub fn transposed(&self) -> Self {
        let mut pad_front = [0isize; 3];
        for i in 0..3 {
            pad_front[i] = self.kernel[i] as isize - 1 - self.pad_front[i];
        }
        Self {
            batch: self.batch,
            in_channels: self.out_channels,
            out_channels: self.in_channels,
            input: self.output,
            kernel: self.kernel,
            pad_front,
            output: self.input,
        }
    }

    /// True for the MA-SAM case: a `(kd, 1, 1)` kernel with no padding in H and W, which is
    /// `kd` shifted GEMMs per volume.
    pub fn is_depth_only(&self) -> bool {
        self.kernel[1] == 1
            && self.kernel[2] == 1
            && self.pad_front[1] == 0
            && self.pad_front[2] == 0
            && self.output[1] == self.input[1]
            && self.output[2] == self.input[2]
    }

    /// Multiply-adds ×2 of one forward pass (each backward product costs the same).
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.out_channels * self.in_channels) as f64
            * self.kernel.iter().product::<usize>() as f64
            * self.output.iter().product::<usize>() as f64
    }

    pub(crate) fn x_shape(&self) -> [usize; 5] {
        let [d, h, w] = self.input;
        [self.batch, self.in_channels, d, h, w]
    }

    pub(crate) fn y_shape(&self) -> Shape {
        let [d, h, w] = self.output;
        Shape::from((self.batch, self.out_channels, d, h, w))
    }

    pub(crate) fn w_shape(&self) -> Shape {
        let [a, b, c] = self.kernel;
        Shape::from((self.out_channels, self.in_channels, a, b, c))
    }
}
