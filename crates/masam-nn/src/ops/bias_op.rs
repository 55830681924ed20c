//! Fused bias addition over the last dimension (CPU, `f32`) with a one-pass bias gradient.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, ensure_cpu_f32};

/// Rows per rayon task in the column sums.
const ROW_BLOCK: usize = 256;

/// `x + bias` with `bias` broadcast over every dimension but the last (CPU `f32` only).
///
/// candle's `broadcast_add` records a broadcast whose backward reduces the gradient over the
/// leading dimensions with a generic strided reduction; on the CPU that reduction cost more
/// than the matrix products of a small linear layer. Here the bias gradient is one blocked,
/// vectorised column sum, and the input gradient is the output gradient itself.
///
/// # Shapes
/// - `x`: (…, C); `bias`: (C,); returns (…, C)
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu).unwrap();
/// let b = Tensor::new(&[10f32, 20.], &Device::Cpu).unwrap();
/// let y = masam_nn::ops::bias_add_fused(&x, &b).unwrap().to_vec2::<f32>().unwrap();
/// assert_eq!(y, vec![vec![11., 22.], vec![13., 24.]]);
/// ```
pub fn bias_add_fused(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    ensure_cpu_f32(x, "bias_add_fused")?;
    ensure_cpu_f32(bias, "bias_add_fused")?;
    let c = x.dims().last().copied().unwrap_or(0);
    if x.rank() == 0 || bias.dims() != [c] {
        candle_core::bail!(
            "bias_add_fused: bias {:?} does not match the last dimension of {:?}",
            bias.dims(),
            x.dims()
        );
    }
    x.contiguous()?.apply_op2(&bias.contiguous()?, BiasAdd)
}

/// Forward op: `(x, b) ↦ x + b`.
struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "masam-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s1, l1, self.name())?;
        let b = contiguous_f32(s2, l2, self.name())?;
        let c = b.len();
        let mut y = vec![0f32; x.len()];
        if c > 0 {
            let chunk = ROW_BLOCK * c;
            y.par_chunks_mut(chunk)
                .zip(x.par_chunks(chunk))
                .for_each(|(ys, xs)| {
                    for (yr, xr) in ys.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
                        for ((o, &v), &bv) in yr.iter_mut().zip(xr).zip(b) {
                            *o = v + bv;
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = grad_res.contiguous()?.apply_op1_no_bwd(&ColumnSum {
            cols: bias.elem_count(),
        })?;
        Ok((Some(grad_res.clone()), Some(db)))
    }
}

/// `g (…, C) ↦ Σ_rows g`, shape (C,).
pub(crate) struct ColumnSum {
    pub(crate) cols: usize,
}

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "masam-column-sum"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = contiguous_f32(storage, layout, self.name())?;
        let c = self.cols;
        Ok((CpuStorage::F32(super::column_sums(g, c)), Shape::from(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_broadcast_add_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        for rows in [1usize, 7, 300, 1000] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., (rows, 3, 13), &dev)?)?;
            let b = Var::from_tensor(&Tensor::randn(0f32, 1., 13, &dev)?)?;
            let g = Tensor::randn(0f32, 1., (rows, 3, 13), &dev)?;
            let ours = bias_add_fused(&x, &b)?;
            let theirs = x.broadcast_add(&b)?;
            let d = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(d, 0.0);
            let ga = (&ours * &g)?.sum_all()?.backward()?;
            let gb = (&theirs * &g)?.sum_all()?.backward()?;
            for v in [&x, &b] {
                let d = (ga.get(v).unwrap() - gb.get(v).unwrap())?
                    .abs()?
                    .max_all()?
                    .to_scalar::<f32>()?;
                assert!(d < 1e-3, "rows {rows}: gradient differs by {d}");
            }
        }
        Ok(())
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        assert!(bias_add_fused(&x, &b).is_err());
    }
}
