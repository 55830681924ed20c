//! Softmax over the last dimension that records a backward.

use candle_core::{Result, Tensor};

use crate::ops;

/// Max-subtracted softmax over the last dimension, differentiable.
///
/// On CPU `f32` tensors this runs the fused kernel [`crate::ops::softmax_last_dim_fused`] (one
/// pass forward, one pass backward); on other devices and dtypes it runs the composite
/// [`crate::ops::composite::softmax_last_dim`], whose maximum is detached (it cancels out of the
/// result, so it needs no gradient). Use this instead of `candle_nn::ops::softmax_last_dim`,
/// which records no backward. A bf16 or f16 input is computed in f32 and the result rounded
/// back to the input's dtype.
///
/// # Shapes
/// - `x`: (…, C); returns (…, C)
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[1f32, 2., 3.]], &Device::Cpu).unwrap();
/// let p: Vec<f32> = masam_nn::softmax_last_dim(&x).unwrap().get(0).unwrap().to_vec1().unwrap();
/// assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
/// ```
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let xs = x.to_dtype(ops::stat_dtype(x.dtype()))?;
    let y = if ops::fusable(&[&xs]) {
        ops::softmax_last_dim_fused(&xs)?
    } else {
        ops::composite::softmax_last_dim(&xs)?
    };
    y.to_dtype(x.dtype())
}

/// Softmax over a `kh × kw` key grid with additive row (`bh`) and column (`bw`) biases,
/// differentiable in all three inputs: SAM's decomposed relative positions plus the attention
/// softmax. Fused ([`crate::ops::grid_bias_softmax_fused`]) on CPU `f32` tensors, composed
/// ([`crate::ops::composite::grid_bias_softmax`]) elsewhere. Half-precision inputs are computed
/// in f32 and the result has `a`'s dtype.
///
/// # Shapes
/// - `a`: (…, kh·kw); `bh`: (…, kh); `bw`: (…, kw); returns (…, kh·kw)
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let a = Tensor::randn(0f32, 1., (3, 6), &dev).unwrap();
/// let (bh, bw) = (Tensor::zeros((3, 2), candle_core::DType::F32, &dev).unwrap(),
///                 Tensor::zeros((3, 3), candle_core::DType::F32, &dev).unwrap());
/// let p = masam_nn::softmax_with_grid_bias(&a, &bh, &bw).unwrap();
/// let q = masam_nn::softmax_last_dim(&a).unwrap();
/// assert!((p - q).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-6);
/// ```
pub fn softmax_with_grid_bias(a: &Tensor, bh: &Tensor, bw: &Tensor) -> Result<Tensor> {
    let dt = ops::stat_dtype(a.dtype());
    let (xa, xh, xw) = (a.to_dtype(dt)?, bh.to_dtype(dt)?, bw.to_dtype(dt)?);
    let y = if ops::fusable(&[&xa, &xh, &xw]) {
        ops::grid_bias_softmax_fused(&xa, &xh, &xw)?
    } else {
        ops::composite::grid_bias_softmax(&xa, &xh, &xw)?
    };
    y.to_dtype(a.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn gradient_matches_analytic() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::new(&[[0.5f32, -1.0, 2.0]], &dev)?;
        let y = softmax_last_dim(x.as_tensor())?;
        let g_up = Tensor::new(&[[1f32, 2., 3.]], &dev)?;
        let loss = (y.clone() * &g_up)?.sum_all()?;
        let grads = loss.backward()?;
        let gx: Vec<f32> = grads.get(x.as_tensor()).unwrap().get(0)?.to_vec1()?;
        let yv: Vec<f32> = y.get(0)?.to_vec1()?;
        let dot: f32 = yv.iter().zip([1f32, 2., 3.]).map(|(a, b)| a * b).sum();
        for i in 0..3 {
            let expect = yv[i] * ([1f32, 2., 3.][i] - dot);
            assert!((gx[i] - expect).abs() < 1e-6);
        }
        Ok(())
    }

    #[test]
    fn f64_uses_the_composite_and_agrees() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[0.5f32, -1.0, 2.0, 7.0]], &dev)?;
        let y32 = softmax_last_dim(&x)?;
        let y64 = softmax_last_dim(&x.to_dtype(DType::F64)?)?;
        assert_eq!(y64.dtype(), DType::F64);
        let d: f32 = (y32 - y64.to_dtype(DType::F32)?)?
            .abs()?
            .max_all()?
            .to_scalar()?;
        assert!(d < 1e-7, "{d}");
        Ok(())
    }
}
