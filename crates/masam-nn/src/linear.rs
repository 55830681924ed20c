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

    /// True when neither the weight nor the bias takes part in a graph (plain tensors, e.g. a
    /// frozen encoder's): the layer then needs no parameter gradient.
    fn is_frozen(w: &Tensor, bias: Option<&Tensor>) -> bool {
        !w.track_op() && bias.is_none_or(|b| !b.track_op())
    }

    /// Applies the layer.
    ///
    /// Every input is multiplied as one (rows, in) matrix (a strided input is copied first):
    /// candle's own `Linear` broadcasts the weight for strided 3D/4D inputs, and the backward
    /// of that broadcast reduces a weight-sized gradient per batch element. The bias is added
    /// by [`add_bias`].
    ///
    /// When the weight and bias are plain tensors (frozen) and `x` takes part in a graph, the
    /// layer runs as a [`crate::FrozenLinear`]: the backward computes only `dL/dx`, where
    /// candle's matmul backward would also compute a gradient for the weight.
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
        let fused = std::iter::once(w).chain(self.bias());
        if crate::ops::fusable(&std::iter::once(x).chain(fused).collect::<Vec<_>>()) {
            // one GEMM into the bias; weight and bias gradients only for trainable ones
            return crate::ops::linear_fused(x, w, self.bias());
        }
        if Self::is_frozen(w, self.bias()) && x.track_op() {
            // candle's matmul backward would also compute (and zero-fill, then accumulate) a
            // gradient for the plain weight: one wasted GEMM per layer and step
            return crate::FrozenLinear::new(w.clone(), self.bias().cloned()).forward(x);
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// A frozen layer on a tracked input: the same output and input gradient as the plain
    /// matmul, and no gradient stored for the weight or bias; a trainable one still gets its.
    #[test]
    fn frozen_weights_get_no_gradient_and_the_input_the_same() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (6, 4), &dev)?;
        let b = Tensor::randn(0f32, 1., 6, &dev)?;
        let x = Var::randn(0f32, 1., (2, 3, 4), &dev)?;
        let g = Tensor::randn(0f32, 1., (2, 3, 6), &dev)?;

        let y = Linear::new(w.clone(), Some(b.clone())).forward(x.as_tensor())?;
        let expected = x
            .as_tensor()
            .reshape((6, 4))?
            .matmul(&w.t()?)?
            .broadcast_add(&b)?
            .reshape((2, 3, 6))?;
        let d = (&y - &expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "output differs by {d}");
        let grads = (&y * &g)?.sum_all()?.backward()?;
        let dx = grads.get(&x).expect("input gradient");
        let dx_ref = g.reshape((6, 6))?.matmul(&w)?.reshape((2, 3, 4))?;
        let d = (dx - dx_ref)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "input gradient differs by {d}");
        assert!(grads.get(&w).is_none() && grads.get(&b).is_none());

        let wv = Var::from_tensor(&w)?;
        let y = Linear::new(wv.as_tensor().clone(), Some(b.clone())).forward(x.as_tensor())?;
        let grads = (&y * &g)?.sum_all()?.backward()?;
        assert!(grads.get(wv.as_tensor()).is_some());
        Ok(())
    }
}
