//! Fused linear layer (CPU, `f32`): `y = x·Wᵀ + b` as one GEMM whose destination starts as the
//! bias, with a backward pass that computes only the gradients that are needed.
//!
//! candle's own composition (`matmul` then a bias addition) zero-fills the product, writes it,
//! then reads it again to add the bias into a third buffer; a frozen projection in training also
//! paid a copy for its input-gradient-only wrapper ([`crate::FrozenLinear`]). Here the output
//! buffer is filled with the bias rows (in parallel) and the GEMM accumulates into it: one
//! pass over the output besides the GEMM itself. The backward pass returns `dL/dx = g·W` when
//! `x` takes part in a graph, `dL/dW = gᵀ·x` only when the weight does (a trainable layer), and
//! `dL/db = Σ_rows g` only when the bias does: a frozen layer stores no weight gradient.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::bias_op::ColumnSum;
use super::{contiguous_f32, ensure_cpu_f32};
use crate::gemm::{gemm_into, Mat, MatMut};

/// `x·Wᵀ + b` over the last dimension of `x` (CPU, `f32`), with a backward pass.
///
/// # Shapes
/// - `x`: (…, k); `weight`: (n, k); `bias`: (n); returns (…, n)
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// # fn main() -> candle_core::Result<()> {
/// let dev = Device::Cpu;
/// let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 3, 4), &dev)?)?;
/// let w = Tensor::randn(0f32, 1., (5, 4), &dev)?; // frozen: no gradient is computed for it
/// let b = Var::from_tensor(&Tensor::randn(0f32, 1., 5, &dev)?)?;
/// let y = masam_nn::ops::linear_fused(&x, &w, Some(&b))?;
/// let reference = x.broadcast_matmul(&w.t()?)?.broadcast_add(&b)?;
/// let diff: f32 = (&y - &reference)?.abs()?.max_all()?.to_scalar()?;
/// assert!(diff < 1e-5);
/// let grads = y.sqr()?.sum_all()?.backward()?;
/// assert!(grads.get(&x).is_some() && grads.get(&b).is_some() && grads.get(&w).is_none());
/// # Ok(()) }
/// ```
///
/// # Errors
/// A tensor that is not a CPU `f32` tensor, or shapes that do not fit.
pub fn linear_fused(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    const OP: &str = "linear_fused";
    ensure_cpu_f32(x, OP)?;
    ensure_cpu_f32(weight, OP)?;
    let (n, k) = weight.dims2()?;
    let dims = x.dims();
    let Some(&kx) = dims.last() else {
        candle_core::bail!("{OP}: the input needs at least one dimension");
    };
    if kx != k {
        candle_core::bail!("{OP}: input {dims:?} does not fit weight (out {n}, in {k})");
    }
    // the op reads (…, k) as rows of k and writes (…, n): no reshape nodes around it, whose
    // gradients the backward pass would zero-fill and accumulate like any other node's
    let x = x.contiguous()?;
    let w = weight.contiguous()?;
    match bias {
        Some(b) => {
            ensure_cpu_f32(b, OP)?;
            if b.dims() != [n] {
                candle_core::bail!("{OP}: bias {:?} does not fit weight (out {n})", b.dims());
            }
            x.apply_op3(&w, &b.contiguous()?, LinearOp)
        }
        None => x.apply_op2(&w, LinearOp),
    }
}

/// The op; the bias is the optional third input.
struct LinearOp;

impl LinearOp {
    fn forward(
        &self,
        (x, xl): (&CpuStorage, &Layout),
        (w, wl): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let name = "linear_fused";
        let (n, k) = wl.shape().dims2()?;
        let dims = xl.shape().dims();
        if dims.last() != Some(&k) {
            candle_core::bail!("{name}: input {dims:?} does not fit weight ({n}, {k})");
        }
        let rows = xl.shape().elem_count() / k.max(1);
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = n;
        }
        let xs = contiguous_f32(x, xl, name)?;
        let ws = contiguous_f32(w, wl, name)?;
        let fill: Option<&[f32]> = match bias {
            Some((b, bl)) => Some(contiguous_f32(b, bl, name)?),
            None => None,
        };
        let mut y = match fill {
            Some(b) => super::fill_rows_f32(rows * n, b),
            _ => vec![0f32; rows * n],
        };
        if rows > 0 && n > 0 {
            gemm_into(
                rows,
                n,
                k,
                MatMut::rows(&mut y, 0, n),
                Mat {
                    data: xs,
                    off: 0,
                    rs: k,
                    cs: 1,
                },
                // Wᵀ read in place: element (kk, j) is w[j·k + kk]
                Mat {
                    data: ws,
                    off: 0,
                    rs: 1,
                    cs: k,
                },
                fill.is_some(),
            );
        }
        Ok((CpuStorage::F32(y), Shape::from(out_dims)))
    }

    /// `(dx, dW)` for the output gradient `g` (…, n), each only when its input tracks. The
    /// reshapes act on tensors outside the graph: they are views, not nodes.
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, k) = w.dims2()?;
        let rows = g.elem_count() / n.max(1);
        let g = g.detach().contiguous()?.reshape((rows, n))?;
        let dx = if x.track_op() {
            Some(g.matmul(&w.detach())?.reshape(x.shape())?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(g.t()?.matmul(&x.detach().reshape((rows, k))?)?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "masam-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward((x, xl), (w, wl), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.backward(x, w, grad)
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "masam-linear-bias"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward((x, xl), (w, wl), Some((b, bl)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = self.backward(x, w, grad)?;
        let db = if b.track_op() {
            Some(grad.contiguous()?.apply_op1_no_bwd(&ColumnSum {
                cols: b.elem_count(),
            })?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use masam_testkit::rel_err;

    /// Forward and every gradient against candle's matmul + broadcast add, for trainable and
    /// frozen weights, with and without bias, including empty and single-row inputs.
    #[test]
    fn matches_candle_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        for (rows, k, n) in [
            (1usize, 1usize, 1usize),
            (7, 13, 5),
            (300, 64, 96),
            (0, 8, 4),
        ] {
            for with_bias in [true, false] {
                for trainable in [true, false] {
                    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (rows, k), &dev)?)?;
                    let w0 = Tensor::randn(0f32, 1., (n, k), &dev)?;
                    let wv = Var::from_tensor(&w0)?;
                    let w = if trainable {
                        wv.as_tensor().clone()
                    } else {
                        w0
                    };
                    let bv = Var::from_tensor(&Tensor::randn(0f32, 1., n, &dev)?)?;
                    let b = with_bias.then(|| bv.as_tensor().clone());
                    let g = Tensor::randn(0f32, 1., (rows, n), &dev)?;

                    let ours = linear_fused(&x, &w, b.as_ref())?;
                    let mut reference = x.matmul(&w.t()?)?;
                    if let Some(b) = &b {
                        reference = reference.broadcast_add(b)?;
                    }
                    if rows == 0 {
                        assert_eq!(ours.dims(), &[0, n]);
                        continue;
                    }
                    assert!(rel_err(&ours, &reference) < 1e-6);
                    let go = (&ours * &g)?.sum_all()?.backward()?;
                    let gr = (&reference * &g)?.sum_all()?.backward()?;
                    let dx = go.get(&x).expect("dx");
                    assert!(rel_err(dx, gr.get(&x).expect("dx")) < 1e-6);
                    if trainable {
                        let dw = go.get(&w).expect("dW of a trainable weight");
                        assert!(rel_err(dw, gr.get(&w).expect("dW")) < 1e-6);
                    } else {
                        assert!(go.get(&w).is_none(), "a frozen weight got a gradient");
                    }
                    if let Some(b) = &b {
                        let db = go.get(b).expect("db");
                        assert!(rel_err(db, gr.get(b).expect("db")) < 1e-6);
                    }
                }
            }
        }
        Ok(())
    }

    /// A (…, k) input is read in place: same values and gradients as the 2-D case, and the
    /// graph holds the op alone between the input and the output (no reshape nodes, whose
    /// gradients the backward pass would zero-fill and accumulate).
    #[test]
    fn many_dimensional_input_needs_no_reshape_nodes() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 3, 4, 6), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1., (5, 6), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1., 5, &dev)?)?;
        let g = Tensor::randn(0f32, 1., (2, 3, 4, 5), &dev)?;
        let y = linear_fused(&x, &w, Some(&b))?;
        assert_eq!(y.dims(), &[2, 3, 4, 5]);
        // y, x, w, b: nothing else
        assert_eq!(y.sorted_nodes().len(), 4);
        let reference = x.broadcast_matmul(&w.t()?)?.broadcast_add(&b)?;
        assert!(rel_err(&y, &reference) < 1e-6);
        let go = (&y * &g)?.sum_all()?.backward()?;
        let gr = (&reference * &g)?.sum_all()?.backward()?;
        for t in [x.as_tensor(), w.as_tensor(), b.as_tensor()] {
            let (a, r) = (go.get(t).expect("ours"), gr.get(t).expect("reference"));
            assert_eq!(a.dims(), t.dims());
            assert!(rel_err(a, r) < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn refuses_shapes_that_do_not_fit() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &dev)?;
        let w = Tensor::zeros((4, 5), candle_core::DType::F32, &dev)?;
        assert!(linear_fused(&x, &w, None).is_err());
        let w = Tensor::zeros((4, 3), candle_core::DType::F32, &dev)?;
        let b = Tensor::zeros(5, candle_core::DType::F32, &dev)?;
        assert!(linear_fused(&x, &w, Some(&b)).is_err());
        let x64 = Tensor::zeros((2, 3), candle_core::DType::F64, &dev)?;
        assert!(linear_fused(&x64, &w, None).is_err());
        Ok(())
    }
}
