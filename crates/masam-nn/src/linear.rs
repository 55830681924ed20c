//! Fully connected layer with PyTorch's default initialisation.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// `y = x · Wᵀ + b` on the last dimension, for inputs of any rank.
///
/// Built from [`candle_nn::Linear`] (whose matmul records a backward) but initialised like
/// PyTorch's `nn.Linear`: weight and bias uniform in `±1/√in`.
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
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_core::Module::forward(&self.inner, x)
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
