//! `y` with `d` added into a block of its last dimension's columns (CPU, `f32`), with backward:
//! how an increment joins one slice of a fused projection (FacT's q and v of a fused qkv).
//!
//! The composition it replaces, `cat([y[.., :c], y[.., c..c+w] + d, y[.., c+w..]])`, recorded
//! three `narrow`s, an addition and a `cat`; candle's backward pass of each `narrow` builds a
//! zero tensor of the full width and concatenates the gradient into it. Here the forward pass
//! is one copy of `y` with `d` added in place, and the backward pass hands the output gradient
//! to `y` as it is and gathers `d`'s columns from it.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, ensure_cpu_f32, rows_per_task, with_f32};

const OP: &str = "add_columns";

/// `y[…, col..col + w] + d` in place of those columns, the other columns of `y` unchanged.
///
/// # Shapes
/// - `y`: (…, n); `d`: (…, w) with the same leading dimensions, `col + w ≤ n`; returns (…, n)
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// # fn main() -> candle_core::Result<()> {
/// let dev = Device::Cpu;
/// let y = Var::new(&[[1f32, 2., 3., 4.]], &dev)?;
/// let d = Var::new(&[[10f32, 20.]], &dev)?;
/// let out = masam_nn::ops::add_columns(&y, &d, 1)?;
/// assert_eq!(out.to_vec2::<f32>()?, vec![vec![1., 12., 23., 4.]]);
/// let grads = (out * Tensor::new(&[[1f32, 2., 3., 4.]], &dev)?)?.sum_all()?.backward()?;
/// assert_eq!(grads.get(&d).unwrap().to_vec2::<f32>()?, vec![vec![2., 3.]]);
/// assert_eq!(grads.get(&y).unwrap().to_vec2::<f32>()?, vec![vec![1., 2., 3., 4.]]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// Tensors that are not CPU `f32` tensors, or shapes that do not fit.
pub fn add_columns(y: &Tensor, d: &Tensor, col: usize) -> Result<Tensor> {
    ensure_cpu_f32(y, OP)?;
    ensure_cpu_f32(d, OP)?;
    let (yd, dd) = (y.dims(), d.dims());
    let fits = match (yd.split_last(), dd.split_last()) {
        (Some((&n, ylead)), Some((&w, dlead))) => ylead == dlead && col + w <= n,
        _ => false,
    };
    if !fits {
        candle_core::bail!("{OP}: {dd:?} does not fit columns {col}.. of {yd:?}");
    }
    y.contiguous()?
        .apply_op2(&d.contiguous()?, AddColumns { col })
}

/// The op: inputs `(y, d)`.
struct AddColumns {
    col: usize,
}

impl CustomOp2 for AddColumns {
    fn name(&self) -> &'static str {
        "masam-add-columns"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(ys, yl, OP)?;
        let d = contiguous_f32(ds, dl, OP)?;
        let n = yl.shape().dims().last().copied().unwrap_or(0);
        let w = dl.shape().dims().last().copied().unwrap_or(0);
        let mut out = y.to_vec();
        if n > 0 && w > 0 {
            let rows = rows_per_task(n);
            out.par_chunks_mut(rows * n)
                .zip(d.par_chunks(rows * w))
                .for_each(|(o, d)| {
                    for (orow, drow) in o.chunks_exact_mut(n).zip(d.chunks_exact(w)) {
                        for (a, &b) in orow[self.col..self.col + w].iter_mut().zip(drow) {
                            *a += b;
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(out), yl.shape().clone()))
    }

    fn bwd(
        &self,
        y: &Tensor,
        d: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = y.track_op().then(|| grad.clone());
        let dd = if d.track_op() {
            let n = grad.dims().last().copied().unwrap_or(0);
            let w = d.dims().last().copied().unwrap_or(0);
            let v = with_f32(grad, OP, |g| {
                let mut v = Vec::with_capacity(d.elem_count());
                if w > 0 {
                    for row in g.chunks_exact(n) {
                        v.extend_from_slice(&row[self.col..self.col + w]);
                    }
                }
                v
            })?;
            Some(Tensor::from_vec(v, d.shape(), d.device())?)
        } else {
            None
        };
        Ok((dy, dd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use masam_testkit::rel_err;

    /// Values and both gradients against the narrow/add/cat composition, for a block at the
    /// start, in the middle and at the end of the columns; bad shapes are errors.
    #[test]
    fn matches_the_narrow_cat_composition() -> Result<()> {
        let dev = Device::Cpu;
        for (col, w) in [(0usize, 4usize), (3, 2), (6, 4), (0, 10)] {
            let y = Var::from_tensor(&Tensor::randn(0f32, 1., (3, 7, 10), &dev)?)?;
            let d = Var::from_tensor(&Tensor::randn(0f32, 1., (3, 7, w), &dev)?)?;
            let g = Tensor::randn(0f32, 1., (3, 7, 10), &dev)?;
            let ours = add_columns(&y, &d, col)?;
            let mut pieces = vec![];
            if col > 0 {
                pieces.push(y.narrow(2, 0, col)?);
            }
            pieces.push((y.narrow(2, col, w)? + d.as_tensor())?);
            if col + w < 10 {
                pieces.push(y.narrow(2, col + w, 10 - col - w)?);
            }
            let reference = Tensor::cat(&pieces, 2)?;
            assert_eq!(rel_err(&ours, &reference), 0.0);
            let go = (&ours * &g)?.sum_all()?.backward()?;
            let gr = (&reference * &g)?.sum_all()?.backward()?;
            for t in [y.as_tensor(), d.as_tensor()] {
                assert_eq!(
                    rel_err(go.get(t).expect("ours"), gr.get(t).expect("ref")),
                    0.0
                );
            }
        }
        let y = Tensor::zeros((2, 5), candle_core::DType::F32, &dev)?;
        let d = Tensor::zeros((2, 3), candle_core::DType::F32, &dev)?;
        assert!(add_columns(&y, &d, 3).is_err());
        assert!(add_columns(&y, &d.reshape((3, 2))?, 0).is_err());
        Ok(())
    }
}
