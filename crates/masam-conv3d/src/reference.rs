//! Plain-ops oracle: Conv3D as a sum of candle `conv2d` calls over the depth taps.
//!
//! Every op used here records its own backward, so candle's autograd differentiates it without
//! any code of ours. It is slow (kd conv2d calls plus copies) and serves as the reference the
//! custom op is tested and benchmarked against.

use candle_core::Tensor;

use crate::error::Result;
use crate::geometry::{Conv3dGeometry, Conv3dPadding};

/// Conv3D (stride 1) from padded copies and `conv2d` over depth taps:
/// `y[:, :, z] = b + Σ_t conv2d(x_pad[:, :, z + t], w[:, :, t])`.
///
/// # Shapes
/// - `x`: (N, C, D, H, W); `weight`: (O, C, kd, kh, kw); `bias`: (O,)
/// - returns (N, O, OD, OH, OW)
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use masam_conv3d::{conv3d_op, reference::conv3d_reference, Conv3dPadding};
/// # fn main() -> masam_conv3d::Result<()> {
/// let x = Tensor::randn(0f32, 1., (1, 2, 4, 3, 3), &Device::Cpu)?;
/// let w = Tensor::randn(0f32, 1., (2, 2, 2, 1, 3), &Device::Cpu)?;
/// let a = conv3d_reference(&x, &w, None, Conv3dPadding::Same)?;
/// let b = conv3d_op(&x, &w, None, Conv3dPadding::Same)?;
/// let err: f32 = (a - b)?.abs()?.max_all()?.to_scalar()?;
/// assert!(err < 1e-4);
/// # Ok(()) }
/// ```
pub fn conv3d_reference(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: Conv3dPadding,
) -> Result<Tensor> {
    let g = Conv3dGeometry::new(x.dims(), weight.dims(), padding)?;
    let pads = padding.resolve(g.kernel);
    let mut xp = x.clone();
    for (i, (lo, hi)) in pads.iter().enumerate() {
        if lo + hi > 0 {
            xp = xp.pad_with_zeros(2 + i, *lo, *hi)?;
        }
    }
    let [od, oh, ow] = g.output;
    let [_, hp, wp] = [xp.dim(2)?, xp.dim(3)?, xp.dim(4)?];
    let mut acc: Option<Tensor> = None;
    for t in 0..g.kernel[0] {
        let slab = xp.narrow(2, t, od)?.permute((0, 2, 1, 3, 4))?.reshape((
            g.batch * od,
            g.in_channels,
            hp,
            wp,
        ))?;
        let wt = weight.narrow(2, t, 1)?.squeeze(2)?.contiguous()?;
        let y = slab.conv2d(&wt, 0, 1, 1, 1)?;
        acc = Some(match acc {
            Some(a) => (a + y)?,
            None => y,
        });
    }
    let y = acc.expect("kernel depth >= 1 was validated");
    let mut y = y
        .reshape((g.batch, od, g.out_channels, oh, ow))?
        .permute((0, 2, 1, 3, 4))?
        .contiguous()?;
    if let Some(b) = bias {
        y = y.broadcast_add(&b.reshape((1, g.out_channels, 1, 1, 1))?)?;
    }
    Ok(y)
}
