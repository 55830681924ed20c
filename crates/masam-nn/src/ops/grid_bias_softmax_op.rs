//! Softmax over a 2D key grid with additive per-row and per-column biases (CPU, `f32`): SAM's
//! decomposed relative positions fused with the attention softmax.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::softmax_op::{softmax_row, SoftmaxLastDimBwd};
use super::{contiguous_f32, ensure_cpu_f32, rows_per_task};

/// `softmax_{k,l}(a[…, k·kw + l] + bh[…, k] + bw[…, l])` over the last dimension, which
/// indexes a `kh × kw` key grid (CPU `f32` only).
///
/// This is SAM's `add_decomposed_rel_pos` followed by the attention softmax. Composed from
/// candle ops it materialises two broadcast sums of the full attention matrix and, in the
/// backward, reduces them again with strided reductions; here the forward is one pass per row,
/// and the backward is the one-pass softmax backward plus one pass that yields both bias
/// gradients (row sums and column sums of the logits' gradient over the key grid).
///
/// # Shapes
/// - `a`: (…, kh·kw); `bh`: (…, kh); `bw`: (…, kw) (same leading dimensions); returns (…, kh·kw)
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let a = Tensor::zeros((1, 4), candle_core::DType::F32, &dev).unwrap();
/// let bh = Tensor::new(&[[0f32, 0.]], &dev).unwrap();
/// let bw = Tensor::new(&[[0f32, 2f32.ln()]], &dev).unwrap();
/// let p = masam_nn::ops::grid_bias_softmax_fused(&a, &bh, &bw).unwrap().to_vec2::<f32>().unwrap();
/// assert!((p[0][1] - 2.0 / 6.0).abs() < 1e-6 && (p[0][2] - 1.0 / 6.0).abs() < 1e-6);
/// ```
pub fn grid_bias_softmax_fused(a: &Tensor, bh: &Tensor, bw: &Tensor) -> Result<Tensor> {
    for t in [a, bh, bw] {
        ensure_cpu_f32(t, "grid_bias_softmax_fused")?;
    }
    let (ad, hd, wd) = (a.dims(), bh.dims(), bw.dims());
    let ok = !ad.is_empty()
        && hd.len() == ad.len()
        && wd.len() == ad.len()
        && ad[..ad.len() - 1] == hd[..hd.len() - 1]
        && ad[..ad.len() - 1] == wd[..wd.len() - 1]
        && ad[ad.len() - 1] == hd[hd.len() - 1] * wd[wd.len() - 1];
    if !ok {
        candle_core::bail!(
            "grid_bias_softmax_fused: logits {ad:?}, row bias {hd:?} and column bias {wd:?} \
             do not describe one (…, kh·kw) key grid"
        );
    }
    a.contiguous()?
        .apply_op3(&bh.contiguous()?, &bw.contiguous()?, GridBiasSoftmax)
}

/// Forward op `(a, bh, bw) ↦ p`.
struct GridBiasSoftmax;

impl CustomOp3 for GridBiasSoftmax {
    fn name(&self) -> &'static str {
        "masam-grid-bias-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = contiguous_f32(s1, l1, self.name())?;
        let bh = contiguous_f32(s2, l2, self.name())?;
        let bw = contiguous_f32(s3, l3, self.name())?;
        let kh = l2.dims().last().copied().unwrap_or(0);
        let kw = l3.dims().last().copied().unwrap_or(0);
        let k = kh * kw;
        let mut p = vec![0f32; a.len()];
        if k > 0 {
            let rows = rows_per_task(k);
            p.par_chunks_mut(rows * k)
                .zip(a.par_chunks(rows * k))
                .zip(bh.par_chunks(rows * kh).zip(bw.par_chunks(rows * kw)))
                .for_each(|((ps, as_), (hs, ws))| {
                    let mut logits = vec![0f32; k];
                    for (((pr, ar), hr), wr) in ps
                        .chunks_exact_mut(k)
                        .zip(as_.chunks_exact(k))
                        .zip(hs.chunks_exact(kh))
                        .zip(ws.chunks_exact(kw))
                    {
                        for (ki, &hv) in hr.iter().enumerate() {
                            let row = &ar[ki * kw..(ki + 1) * kw];
                            let out = &mut logits[ki * kw..(ki + 1) * kw];
                            for ((o, &av), &wv) in out.iter_mut().zip(row).zip(wr) {
                                *o = av + hv + wv;
                            }
                        }
                        softmax_row(&logits, pr);
                    }
                });
        }
        Ok((CpuStorage::F32(p), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _a: &Tensor,
        bh: &Tensor,
        bw: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let ds = res
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &SoftmaxLastDimBwd)?;
        let kh = bh.dims().last().copied().unwrap_or(0);
        let kw = bw.dims().last().copied().unwrap_or(0);
        let both = ds.apply_op1_no_bwd(&GridSums { kh, kw })?;
        let last = both.rank() - 1;
        let dh = both.narrow(last, 0, kh)?.contiguous()?;
        let dw = both.narrow(last, kh, kw)?.contiguous()?;
        Ok((Some(ds), Some(dh), Some(dw)))
    }
}

/// `d (…, kh·kw) ↦ [Σ_l d[k, l] for k] ++ [Σ_k d[k, l] for l]`, shape (…, kh + kw).
struct GridSums {
    kh: usize,
    kw: usize,
}

impl CustomOp1 for GridSums {
    fn name(&self) -> &'static str {
        "masam-grid-sums"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = contiguous_f32(storage, layout, self.name())?;
        let (kh, kw) = (self.kh, self.kw);
        let k = kh * kw;
        let mut dims = layout.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = kh + kw;
        }
        let mut out = vec![0f32; dims.iter().product()];
        if k > 0 {
            let rows = rows_per_task(k);
            out.par_chunks_mut(rows * (kh + kw))
                .zip(d.par_chunks(rows * k))
                .for_each(|(os, ds)| {
                    for (or, dr) in os.chunks_exact_mut(kh + kw).zip(ds.chunks_exact(k)) {
                        let (oh, ow) = or.split_at_mut(kh);
                        ow.fill(0.0);
                        for (ki, h) in oh.iter_mut().enumerate() {
                            let row = &dr[ki * kw..(ki + 1) * kw];
                            let mut s = 0f32;
                            for (w, &v) in ow.iter_mut().zip(row) {
                                s += v;
                                *w += v;
                            }
                            *h = s;
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The composition SAM's reference code performs.
    fn composite(a: &Tensor, bh: &Tensor, bw: &Tensor, kh: usize, kw: usize) -> Result<Tensor> {
        let (b, l, _) = a.dims3()?;
        let x = a
            .reshape((b, l, kh, kw))?
            .broadcast_add(&bh.unsqueeze(3)?)?
            .broadcast_add(&bw.unsqueeze(2)?)?
            .reshape((b, l, kh * kw))?;
        crate::ops::composite::softmax_last_dim(&x)
    }

    #[test]
    fn matches_the_composite_with_all_gradients() -> Result<()> {
        let dev = Device::Cpu;
        for (b, l, kh, kw) in [
            (2usize, 6usize, 2usize, 3usize),
            (3, 64, 8, 8),
            (1, 5, 1, 7),
        ] {
            let a = Var::from_tensor(&Tensor::randn(0f32, 2., (b, l, kh * kw), &dev)?)?;
            let bh = Var::from_tensor(&Tensor::randn(0f32, 1., (b, l, kh), &dev)?)?;
            let bw = Var::from_tensor(&Tensor::randn(0f32, 1., (b, l, kw), &dev)?)?;
            let g = Tensor::randn(0f32, 1., (b, l, kh * kw), &dev)?;
            let ours = grid_bias_softmax_fused(&a, &bh, &bw)?;
            let theirs = composite(&a, &bh, &bw, kh, kw)?;
            let d = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-6, "forward differs by {d}");
            let ga = (&ours * &g)?.sum_all()?.backward()?;
            let gb = (&theirs * &g)?.sum_all()?.backward()?;
            for v in [&a, &bh, &bw] {
                let d = (ga.get(v).unwrap() - gb.get(v).unwrap())?
                    .abs()?
                    .max_all()?
                    .to_scalar::<f32>()?;
                assert!(d < 1e-5, "({b},{l},{kh},{kw}): gradient differs by {d}");
            }
        }
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let dev = Device::Cpu;
        let z = |s: &[usize]| Tensor::zeros(s, candle_core::DType::F32, &dev).unwrap();
        assert!(grid_bias_softmax_fused(&z(&[2, 6]), &z(&[2, 2]), &z(&[2, 2])).is_err());
        assert!(grid_bias_softmax_fused(&z(&[2, 6]), &z(&[3, 2]), &z(&[2, 3])).is_err());
        assert!(grid_bias_softmax_fused(&z(&[2, 6]), &z(&[2, 2]), &z(&[2, 3])).is_ok());
    }
}
