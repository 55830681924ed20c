//! Exact (erf) GELU with a cheap backward.

use candle_core::{Result, Tensor};

use crate::ops;

/// Exact GELU, `x · Φ(x)` (PyTorch's `nn.GELU()` default), differentiable.
///
/// On CPU `f32` tensors this runs the fused kernel [`crate::ops::gelu_erf_fused`] (one pass
/// forward, one pass backward); elsewhere it is candle's `Tensor::gelu_erf`, whose backward is
/// a chain of about ten full-size ops. Do not use `Tensor::gelu`: that is the tanh
/// approximation. A bf16 or f16 input on the CPU goes through the f32 kernel (the result is
/// rounded back to the input's dtype); on other devices it runs in its own dtype.
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
    } else if ops::is_half(x.dtype()) && x.device().is_cpu() {
        // no fast half-precision CPU kernel: compute in f32 and round the result
        ops::gelu_erf_fused(&x.to_dtype(candle_core::DType::F32)?)?.to_dtype(x.dtype())
    } else {
        x.gelu_erf()
    }
}
