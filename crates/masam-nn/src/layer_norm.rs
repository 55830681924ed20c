//! LayerNorm over the last dimension, with a backward (fused on the CPU).

use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::ops;

/// LayerNorm over the last dimension: `y = w · (x − mean) / sqrt(var + eps) + b`, with the
/// biased variance (divide by N), exactly as PyTorch's `nn.LayerNorm`.
///
/// Unlike `candle_nn::LayerNorm`, it records a backward for its input, weight and bias. On CPU
/// `f32` tensors it runs the fused kernel [`crate::ops::layer_norm_fused`] (one pass forward,
/// one fused pass for all three gradients); elsewhere the composite
/// [`crate::ops::composite::layer_norm`]. A bf16 or f16 input is normalised in f32 (with its
/// weight and bias converted to f32) and the result converted back to the input's dtype.
///
/// # Shapes
/// - `x`: (…, C); returns (…, C)
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// Scale, shape (C,).
    pub weight: Tensor,
    /// Shift, shape (C,).
    pub bias: Tensor,
    /// Added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// Builds a LayerNorm from its tensors.
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self { weight, bias, eps }
    }

    /// Normalises `x` over its last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = x.dim(D::Minus1)?;
        if c != self.weight.dim(0)? {
            candle_core::bail!(
                "LayerNorm: input has {c} channels in its last dim, weight has {}",
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
            ops::layer_norm_fused(&xs, &w, &b, self.eps)?
        } else {
            ops::composite::layer_norm(&xs, &w, &b, self.eps)?
        };
        y.to_dtype(x.dtype())
    }
}

impl candle_core::Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        LayerNorm::forward(self, x)
    }
}

/// Builds a [`LayerNorm`] of width `dim` from `vb` (`weight` initialised to 1, `bias` to 0).
pub fn layer_norm(dim: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get_with_hints(dim, "weight", Init::Const(1.0))?;
    let bias = vb.get_with_hints(dim, "bias", Init::Const(0.0))?;
    Ok(LayerNorm::new(weight, bias, eps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_formula_and_has_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::new(&[[1f32, 2., 4.], [0., -1., 3.]], &dev)?;
        let w = Var::new(&[2f32, 1., 0.5], &dev)?;
        let b = Var::new(&[0.1f32, 0.2, 0.3], &dev)?;
        let ln = LayerNorm::new(w.as_tensor().clone(), b.as_tensor().clone(), 1e-6);
        let y = ln.forward(x.as_tensor())?;
        let row: Vec<f32> = y.get(0)?.to_vec1()?;
        let (m, v) = (
            7f32 / 3.,
            ((1f32 - 7. / 3.).powi(2) + (2f32 - 7. / 3.).powi(2) + (4f32 - 7. / 3.).powi(2)) / 3.,
        );
        let expect = [
            2. * (1. - m) / (v + 1e-6).sqrt() + 0.1,
            (2. - m) / (v + 1e-6).sqrt() + 0.2,
            0.5 * (4. - m) / (v + 1e-6).sqrt() + 0.3,
        ];
        for (a, e) in row.iter().zip(expect) {
            assert!((a - e).abs() < 1e-5, "{a} vs {e}");
        }
        let loss = y.sqr()?.sum_all()?;
        let g = loss.backward()?;
        for v in [&x, &w, &b] {
            let gv = g.get(v.as_tensor()).expect("gradient missing");
            let n: f32 = gv.abs()?.sum_all()?.to_scalar()?;
            assert!(n > 0.0);
        }
        Ok(())
    }
}
