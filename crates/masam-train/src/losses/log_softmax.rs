//! Numerically stable log-softmax that records a backward.

use candle_core::{Result, Tensor, D};

/// `x − max − log(Σ exp(x − max))` over dimension `dim`, differentiable.
///
/// The maximum is detached: it cancels out of the result, so its gradient is exactly zero and
/// need not be computed. Unlike `candle_nn::ops::log_softmax`/`softmax_last_dim` (fused ops in
/// places that record no backward), every op here has a backward in candle 0.11.
///
/// # Shapes
/// - `x`: any shape; `dim` indexes into it
/// - returns: the shape of `x`
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[1000f32, 1001., 1002.]], &Device::Cpu).unwrap();
/// let l: Vec<f32> = masam_train::losses::log_softmax(&x, 1).unwrap().get(0).unwrap().to_vec1().unwrap();
/// let s: f32 = l.iter().map(|v| v.exp()).sum();
/// assert!((s - 1.0).abs() < 1e-6 && l.iter().all(|v| v.is_finite()));
/// ```
pub fn log_softmax<T: candle_core::shape::Dim + Copy>(x: &Tensor, dim: T) -> Result<Tensor> {
    let max = x.max_keepdim(dim)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(dim)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// [`log_softmax`] over the last dimension.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    log_softmax(x, D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn gradient_is_identity_minus_softmax() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::new(&[[0.5f32, -1.0, 2.0, 0.0]], &dev)?;
        let l = log_softmax(x.as_tensor(), 1)?;
        let up = Tensor::new(&[[1f32, -2., 0.5, 3.]], &dev)?;
        let grads = (l * &up)?.sum_all()?.backward()?;
        let g: Vec<f32> = grads.get(x.as_tensor()).unwrap().get(0)?.to_vec1()?;
        let xv = [0.5f64, -1.0, 2.0, 0.0];
        let upv = [1f64, -2., 0.5, 3.];
        let z: f64 = xv.iter().map(|v| v.exp()).sum();
        let su: f64 = upv.iter().sum();
        for i in 0..4 {
            let expect = upv[i] - xv[i].exp() / z * su;
            assert!(
                (g[i] as f64 - expect).abs() < 1e-5,
                "{i}: {} vs {expect}",
                g[i]
            );
        }
        Ok(())
    }

    #[test]
    fn last_dim_matches_explicit_dim() -> Result<()> {
        let x = Tensor::new(&[[3f32, -7., 0.25]], &Device::Cpu)?;
        let a: Vec<f32> = log_softmax_last_dim(&x)?.flatten_all()?.to_vec1()?;
        let b: Vec<f32> = log_softmax(&x, 1)?.flatten_all()?.to_vec1()?;
        assert_eq!(a, b);
        Ok(())
    }
}
