//! Fully connected layer with PyTorch's default initialisation.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// `y = x · Wᵀ + b` on the last dimension, for inputs of any rank.
///
/// Built from [`candle_nn::Linear`] (whose matmul records a backward) but initialised like
/// PyTorch's `nn.Linear`: weight and bias uniform in `±1/√in`.
///
/// The product runs in the input's dtype: weight and bias are converted to it at every call
/// (a no-op when they already have it), so f32 master weights serve a bf16 or f16 forward
/// pass and still receive their gradient (in f32) through the differentiable conversion.
///
/// # Shapes
/// - `x`: (…, in); returns (…, out)
#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
}

impl Linear {
    /// Builds a linear layer from a weight of shape (out, in) and an optional bias (out,).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            inner: candle_nn::Linear::new(weight, bias),
        }
    }

    /// The weight, shape (out, in).
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    /// The bias, shape (out,), if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.inner.bias()
    }

    /// Applies the layer.
    ///
    /// Every input is multiplied as one (rows, in) matrix (a strided input is copied first):
    /// candle's own `Linear` broadcasts the weight for strided 3D/4D inputs, and the backward
    /// of that broadcast reduces a weight-sized gradient per batch element. The bias is added
    /// by [`add_bias`].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight();
        let dims = x.dims();
        let Some((&k, lead)) = dims.split_last() else {
            candle_core::bail!("Linear: the input needs at least one dimension");
        };
        let (out, win) = w.dims2()?;
        if k != win {
            candle_core::bail!("Linear: input {dims:?} does not fit weight (out {out}, in {win})");
        }
        let rows: usize = lead.iter().product();
        // the input's dtype is the compute dtype (f32 master weights are cast at use)
        let w = w.to_dtype(x.dtype())?;
        let y = x.contiguous()?.reshape((rows, k))?.matmul(&w.t()?)?;
        let y = match self.bias() {
            Some(b) => add_bias(&y, b)?,
            None => y,
        };
        let mut out_dims = lead.to_vec();
        out_dims.push(out);
        y.reshape(out_dims)
    }
}

/// `x + bias` over the last dimension, differentiable: the fused
/// [`crate::ops::bias_add_fused`] on CPU `f32` tensors, `broadcast_add` elsewhere. The bias is
/// converted to `x`'s dtype first.
///
/// # Shapes
/// - `x`: (…, C); `bias`: (C,); returns (…, C)
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[1f32, 2.]], &Device::Cpu).unwrap();
/// let b = Tensor::new(&[0.5f32, -1.], &Device::Cpu).unwrap();
/// let y = masam_nn::add_bias(&x, &b).unwrap().to_vec2::<f32>().unwrap();
/// assert_eq!(y, vec![vec![1.5, 1.]]);
/// ```
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let bias = bias.to_dtype(x.dtype())?;
    if crate::ops::fusable(&[x, &bias]) {
        crate::ops::bias_add_fused(x, &bias)
    } else {
        x.broadcast_add(&bias)
    }
}

impl candle_core::Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Linear::forward(self, x)
    }
}

fn bound(fan_in: usize) -> Init {
    let b = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

/// A linear layer `in → out` with bias, named `weight` / `bias` under `vb`.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((out_dim, in_dim), "weight", bound(in_dim))?;
    let b = vb.get_with_hints(out_dim, "bias", bound(in_dim))?;
    Ok(Linear::new(w, Some(b)))
}

/// A linear layer `in → out` without bias.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((out_dim, in_dim), "weight", bound(in_dim))?;
    Ok(Linear::new(w, None))
}
