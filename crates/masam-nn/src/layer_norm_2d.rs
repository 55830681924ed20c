//! SAM's `LayerNorm2d`: LayerNorm over the channel dimension of an NCHW tensor.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::ops;

/// LayerNorm over the channels of an NCHW tensor, as SAM's `LayerNorm2d`:
/// `u = mean_c(x)`, `s = mean_c((x − u)²)`, `y = w · (x − u) / sqrt(s + eps) + b`.
///
/// Records a backward for its input, weight and bias. On CPU `f32` tensors it runs the fused
/// kernel [`crate::ops::layer_norm_2d_fused`], which works on NCHW memory directly; elsewhere
/// the composite [`crate::ops::composite::layer_norm_2d`]. A bf16 or f16 input is normalised
/// in f32 and the result converted back to the input's dtype.
///
/// # Shapes
/// - `x`: (N, C, H, W); returns (N, C, H, W)
#[derive(Debug, Clone)]
pub struct LayerNorm2d {
    /// Scale, shape (C,).
    pub weight: Tensor,
    /// Shift, shape (C,).
    pub bias: Tensor,
    /// Added to the variance (SAM: 1e-6).
    pub eps: f64,
}

impl LayerNorm2d {
    /// Builds a LayerNorm2d from its tensors.
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self { weight, bias, eps }
    }

    /// Normalises `x` over dimension 1.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, _, _) = x.dims4()?;
        if c != self.weight.dim(0)? {
            candle_core::bail!(
                "LayerNorm2d: input has {c} channels, weight has {}",
                self.weight.dim(0)?
            );
        }
        // half-precision input: statistics in f32, result in the input's dtype
        let dt = ops::stat_dtype(x.dtype());
        let (xs, w, b) = (
            x.to_dtype(dt)?,
            self.weight.to_dtype(dt)?,
            self.bias.to_dtype(dt)?,
        );
        let y = if ops::fusable(&[&xs, &w, &b]) {
            ops::layer_norm_2d_fused(&xs, &w, &b, self.eps)?
        } else {
            ops::composite::layer_norm_2d(&xs, &w, &b, self.eps)?
        };
        y.to_dtype(x.dtype())
    }
}

impl LayerNorm2d {
    /// The same normalisation on a channels-last map (…, C): a LayerNorm over the last
    /// dimension with this layer's weight, bias and eps (fused on CPU `f32`).
    ///
    /// ```
    /// # use candle_core::{Device, Tensor, DType};
    /// # use masam_nn::LayerNorm2d;
    /// let dev = Device::Cpu;
    /// let ln = LayerNorm2d::new(Tensor::ones(3, DType::F32, &dev).unwrap(),
    ///                           Tensor::zeros(3, DType::F32, &dev).unwrap(), 1e-6);
    /// let x = Tensor::randn(0f32, 1., (2, 3, 4, 5), &dev).unwrap();
    /// let a = ln.forward(&x).unwrap();
    /// let b = ln.forward_channels_last(&x.permute((0, 2, 3, 1)).unwrap()).unwrap();
    /// let d = (a - b.permute((0, 3, 1, 2)).unwrap()).unwrap().abs().unwrap();
    /// assert!(d.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-5);
    /// ```
    pub fn forward_channels_last(&self, x: &Tensor) -> Result<Tensor> {
        crate::LayerNorm::new(self.weight.clone(), self.bias.clone(), self.eps).forward(x)
    }
}

impl candle_core::Module for LayerNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        LayerNorm2d::forward(self, x)
    }
}

/// Builds a [`LayerNorm2d`] with `channels` channels from `vb` (weight 1, bias 0).
pub fn layer_norm_2d(channels: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm2d> {
    let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
    let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
    Ok(LayerNorm2d::new(weight, bias, eps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn equals_layer_norm_on_channels_last() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 5, 3, 4), &dev)?;
        let w = Tensor::randn(0f32, 1., 5, &dev)?;
        let b = Tensor::randn(0f32, 1., 5, &dev)?;
        let y2d = LayerNorm2d::new(w.clone(), b.clone(), 1e-6).forward(&x)?;
        let ln = crate::LayerNorm::new(w, b, 1e-6);
        let y = ln
            .forward(&x.permute((0, 2, 3, 1))?)?
            .permute((0, 3, 1, 2))?;
        let d: f32 = (y2d - y)?
            .abs()?
            .max_all()?
            .to_dtype(DType::F32)?
            .to_scalar()?;
        assert!(d < 1e-5, "{d}");
        Ok(())
    }
}
