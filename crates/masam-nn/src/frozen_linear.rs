//! A linear layer with frozen weights whose backward pass computes only the input gradient.
//!
//! candle's matmul backward always computes the gradient of **both** operands and keeps them in
//! the `GradStore`, even when the weight is a plain (non-`Var`) tensor: one wasted GEMM per frozen
//! projection, plus a weight-sized gradient and an activation-sized gradient for the broadcast
//! bias. [`FrozenLinear`] avoids all of that:
//!
//! 1. the output `y = x·Wᵀ + b` is computed with ordinary tensor ops on **detached** operands
//!    (so it runs on any device and records no graph);
//! 2. a custom op with inputs `(x, y)` is attached on top. Its forward returns `y` unchanged (one
//!    copy), and its backward returns only `dL/dx = dL/dy · W`, and no gradient for `y`, `W` or
//!    `b`.
//!
//! The gradient that reaches `x` is the same as through a plain [`crate::Linear`]; the
//! `GradStore` holds no entry for the weight, its transpose or the bias.
//!
//! On CPU `f32` tensors both steps are one op, [`crate::ops::linear_fused`], whose backward
//! already skips the gradients of plain weights (no copy of the output).

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{CpuStorage, CustomOp2, Layout, Module, Result, Shape, Tensor};

/// `y = x · Wᵀ + b` over the last dimension with a frozen `W` and `b`: no gradient is ever
/// computed for them, and the input gradient `dL/dx = dL/dy · W` still flows back.
///
/// # Shapes
/// - `weight`: (out, in); `bias`: (out,)
/// - `x`: (…, in); returns (…, out)
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use masam_nn::FrozenLinear;
/// # fn main() -> candle_core::Result<()> {
/// let dev = Device::Cpu;
/// let w = Tensor::new(&[[1f32, 2.], [3., 4.], [5., 6.]], &dev)?; // (out 3, in 2)
/// let b = Tensor::new(&[0.5f32, 0., -0.5], &dev)?;
/// let lin = FrozenLinear::new(w.clone(), Some(b.clone()));
/// let x = Var::new(&[[1f32, -1.]], &dev)?;
/// let y = lin.forward(x.as_tensor())?;
/// assert_eq!(y.to_vec2::<f32>()?, vec![vec![-0.5f32, -1., -1.5]]);
/// let grads = y.sum_all()?.backward()?;
/// // dL/dx = 1ᵀ·W = column sums of W; nothing is stored for W or b.
/// assert_eq!(grads.get(&x).unwrap().to_vec2::<f32>()?, vec![vec![9f32, 12.]]);
/// assert!(grads.get(&w).is_none() && grads.get(&b).is_none());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FrozenLinear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl FrozenLinear {
    /// Wraps a weight of shape (out, in) and an optional bias (out,). Both are detached, so
    /// passing a `Var`'s tensor freezes a copy of its graph identity too.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight: weight.detach(),
            bias: bias.map(|b| b.detach()),
        }
    }

    /// The weight, shape (out, in).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, shape (out,), if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        self.weight.dims().get(1).copied().unwrap_or(0)
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.weight.dims().first().copied().unwrap_or(0)
    }

    /// `x · Wᵀ + b` computed without recording any graph (also usable for inference).
    ///
    /// # Shapes
    /// - `x`: (…, in); returns (…, out)
    pub fn forward_detached(&self, x: &Tensor) -> Result<Tensor> {
        let (out_dim, in_dim) = self.weight.dims2()?;
        let dims = x.dims();
        let Some((&last, lead)) = dims.split_last() else {
            candle_core::bail!("FrozenLinear: input must have at least one dimension")
        };
        if last != in_dim {
            candle_core::bail!(
                "FrozenLinear: input has {last} features, weight expects {in_dim} (shape {:?})",
                dims
            );
        }
        if self.fusable(x) {
            return crate::ops::linear_fused(&x.detach(), &self.weight, self.bias.as_ref());
        }
        let rows: usize = lead.iter().product();
        let x2 = x.detach().reshape((rows, in_dim))?;
        let dt = x.dtype();
        let mut y = x2.matmul(&self.weight.to_dtype(dt)?.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.to_dtype(dt)?)?;
        }
        let mut out_shape = lead.to_vec();
        out_shape.push(out_dim);
        y.reshape(out_shape)
    }

    /// Applies the layer. When `x` takes part in a graph, the result does too, with a backward
    /// that yields only `dL/dx`.
    ///
    /// # Shapes
    /// - `x`: (…, in); returns (…, out)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.fusable(x) {
            // CPU f32: the fused op's backward already computes dL/dx only for plain weights
            return crate::ops::linear_fused(x, &self.weight, self.bias.as_ref());
        }
        let y = self.forward_detached(x)?;
        if !x.track_op() {
            return Ok(y);
        }
        x.apply_op2(
            &y,
            InputGradOnly {
                weight: self.weight.clone(),
            },
        )
    }
}

impl FrozenLinear {
    /// Whether [`crate::ops::linear_fused`] applies (CPU, f32 input and weights).
    fn fusable(&self, x: &Tensor) -> bool {
        let mut ts = vec![x, &self.weight];
        ts.extend(self.bias.as_ref());
        crate::ops::fusable(&ts)
    }
}

impl Module for FrozenLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        FrozenLinear::forward(self, x)
    }
}

/// `(x, y) ↦ y` in the forward pass; `dL/dx = dL/dy · W` in the backward pass.
struct InputGradOnly {
    weight: Tensor,
}

fn copy_out<S>(s: &S, l: &Layout) -> Result<(S, Shape)>
where
    S: BackendStorage,
    S::Device: BackendDevice<Storage = S>,
{
    // SAFETY: every element of `dst` is written by `copy_strided_src` just below.
    let mut dst = unsafe { s.device().alloc_uninit(l.shape(), s.dtype())? };
    s.copy_strided_src(&mut dst, 0, l)?;
    Ok((dst, l.shape().clone()))
}

impl CustomOp2 for InputGradOnly {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        _x: &CpuStorage,
        _xl: &Layout,
        y: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        copy_out(y, yl)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _x: &candle_core::CudaStorage,
        _xl: &Layout,
        y: &candle_core::CudaStorage,
        yl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        copy_out(y, yl)
    }

    fn bwd(
        &self,
        x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (out_dim, _) = self.weight.dims2()?;
        let rows = grad.elem_count() / out_dim.max(1);
        let g = grad.reshape((rows, out_dim))?;
        let dx = g
            .matmul(&self.weight.to_dtype(g.dtype())?)?
            .reshape(x.shape())?;
        Ok((Some(dx), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use masam_testkit::{assert_close, rel_err};

    #[test]
    fn matches_plain_linear_and_stores_no_weight_grads() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (12, 8), &dev)?;
        let b = Tensor::randn(0f32, 1., 12, &dev)?;
        let x = Var::randn(0f32, 1., (2, 5, 8), &dev)?;
        let g_up = Tensor::randn(0f32, 1., (2, 5, 12), &dev)?;

        // candle's own composition (masam_nn::Linear itself runs frozen weights as FrozenLinear)
        let y_ref = x
            .as_tensor()
            .reshape((10, 8))?
            .matmul(&w.t()?)?
            .broadcast_add(&b)?
            .reshape((2, 5, 12))?;
        let grads_ref = (&y_ref * &g_up)?.sum_all()?.backward()?;

        let frozen = FrozenLinear::new(w.clone(), Some(b.clone()));
        let y = frozen.forward(x.as_tensor())?;
        let grads = (&y * &g_up)?.sum_all()?.backward()?;

        assert!(rel_err(&y, &y_ref) < 1e-6);
        let dx = grads.get(&x).expect("input gradient");
        let dx_ref = grads_ref.get(&x).expect("input gradient");
        assert_close("dx", dx, dx_ref, 1e-6);
        assert!(grads.get(&w).is_none());
        assert!(grads.get(&b).is_none());
        assert!(grads.get(frozen.weight()).is_none());
        // The plain linear keeps gradients for the transposed/broadcast weight and the broadcast
        // bias (candle computes both matmul operand gradients); the frozen one keeps only the
        // entries on the path to `x`.
        let n = grads.get_ids().count();
        let n_ref = grads_ref.get_ids().count();
        assert!(n + 2 <= n_ref, "frozen {n} entries, plain {n_ref}");
        Ok(())
    }

    #[test]
    fn untracked_input_gives_plain_tensor_and_bad_shape_errors() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::ones((3, 4), DType::F32, &dev)?;
        let lin = FrozenLinear::new(w, None);
        let x = Tensor::ones((2, 4), DType::F32, &dev)?;
        let y = lin.forward(&x)?;
        assert!(!y.track_op());
        assert_eq!(y.to_vec2::<f32>()?, vec![vec![4f32; 3]; 2]);
        assert!(lin
            .forward(&Tensor::ones((2, 5), DType::F32, &dev)?)
            .is_err());
        assert_eq!((lin.in_dim(), lin.out_dim()), (4, 3));
        Ok(())
    }
}
