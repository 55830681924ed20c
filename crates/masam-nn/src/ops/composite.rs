//! Reference implementations built from ordinary candle ops.
//!
//! These are the original compositions (each a handful of broadcast/reduce ops that all record a
//! backward). The layers fall back to them wherever the fused kernels do not apply (non-CPU
//! devices, dtypes other than `f32`, empty tensors), and the tests use them as the oracle the
//! fused kernels must match.

use candle_core::{Result, Tensor, D};

/// Max-subtracted softmax over the last dimension; the maximum is detached (it cancels out).
///
/// # Shapes
/// - `x`: (…, C); returns (…, C)
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

/// [`crate::ops::grid_bias_softmax_fused`] from candle ops: the two broadcast sums over the
/// `kh × kw` key grid, then [`softmax_last_dim`].
///
/// # Shapes
/// - `a`: (…, kh·kw); `bh`: (…, kh); `bw`: (…, kw); returns (…, kh·kw)
pub fn grid_bias_softmax(a: &Tensor, bh: &Tensor, bw: &Tensor) -> Result<Tensor> {
    let dims = a.dims().to_vec();
    let kh = bh.dims().last().copied().unwrap_or(0);
    let kw = bw.dims().last().copied().unwrap_or(0);
    let lead = &dims[..dims.len().saturating_sub(1)];
    let mut grid = lead.to_vec();
    grid.extend([kh, kw]);
    let x = a
        .reshape(grid)?
        .broadcast_add(&bh.unsqueeze(D::Minus1)?)?
        .broadcast_add(&bw.unsqueeze(bw.rank() - 1)?)?
        .reshape(dims)?;
    softmax_last_dim(&x)
}

/// LayerNorm over the last dimension, `w · (x − mean) / sqrt(var + eps) + b` with the biased
/// variance. The caller checks that `weight` and `bias` have C elements.
///
/// # Shapes
/// - `x`: (…, C); `weight`, `bias`: (C,); returns (…, C)
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let std = (var + eps)?.sqrt()?;
    xc.broadcast_div(&std)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)
}

/// SAM's `LayerNorm2d`: the same normalisation over dimension 1 of an NCHW tensor.
///
/// # Shapes
/// - `x`: (N, C, H, W); `weight`, `bias`: (C,); returns (N, C, H, W)
pub fn layer_norm_2d(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let u = x.mean_keepdim(1)?;
    let xc = x.broadcast_sub(&u)?;
    let s = xc.sqr()?.mean_keepdim(1)?;
    let y = xc.broadcast_div(&(s + eps)?.sqrt()?)?;
    let w = weight.reshape((1, c, 1, 1))?;
    let b = bias.reshape((1, c, 1, 1))?;
    y.broadcast_mul(&w)?.broadcast_add(&b)
}
