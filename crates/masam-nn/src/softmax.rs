//! Softmax over the last dimension that records a backward.

use candle_core::{Result, Tensor, D};

/// Max-subtracted softmax over the last dimension, differentiable.
///
/// The maximum is detached: it cancels out of the result, so it needs no gradient, and skipping it
/// saves a reduction in the backward pass. Use this instead of `candle_nn::ops::softmax_last_dim`,
/// which records no backward.
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[1f32, 2., 3.]], &Device::Cpu).unwrap();
/// let p: Vec<f32> = masam_nn::softmax_last_dim(&x).unwrap().get(0).unwrap().to_vec1().unwrap();
/// assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
/// ```
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

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
}
