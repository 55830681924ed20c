//! Exact (erf) GELU with a cheap backward.

use candle_core::{Result, Tensor};

use crate::ops;

/// Exact GELU, `x · Φ(x)` (PyTorch's `nn.GELU()` default), differentiable.
///
/// On CPU `f32` tensors this runs the fused kernel [`crate::ops::gelu_erf_fused`] (one pass
/// forward, one pass backward); elsewhere it is candle's `Tensor::gelu_erf`, whose backward is
/// a chain of about ten full-size ops. Do not use `Tensor::gelu`: that is the tanh
/// approximation.
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[0f32, 1.], &Device::Cpu).unwrap();
/// let y = masam_nn::gelu_erf(&x).unwrap().to_vec1::<f32>().unwrap();
/// assert!(y[0] == 0.0 && (y[1] - 0.841_344_7).abs() < 1e-6);
/// ```
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if ops::fusable(&[x]) {
        ops::gelu_erf_fused(x)
    } else {
        x.gelu_erf()
    }
}
