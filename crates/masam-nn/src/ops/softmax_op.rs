//! Fused softmax over the last dimension (CPU, `f32`) with a one-pass backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, dot, ensure_cpu_f32, exp_nonpositive, rows_per_task, sum, LANES};

/// Max-subtracted softmax over the last dimension as one custom op (CPU `f32` only).
///
/// Non-contiguous inputs are made contiguous first. `exp` is a vectorisable polynomial
/// (≈ 1 ulp, see the source), so results match the composite to a few ulps. The backward pass is a second custom op
/// that computes `dx = y · (g − Σ_last g·y)` in a single pass over `(y, g)`.
/// [`crate::softmax_last_dim`] calls this on CPU `f32` tensors and the composite elsewhere.
///
/// # Shapes
/// - `x`: (…, C) with at least one dimension; returns (…, C)
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let x = Tensor::new(&[[1f32, 2., 3.], [0., 0., 0.]], &Device::Cpu).unwrap();
/// let p = masam_nn::ops::softmax_last_dim_fused(&x).unwrap().to_vec2::<f32>().unwrap();
/// assert!((p[1][0] - 1.0 / 3.0).abs() < 1e-7);
/// ```
pub fn softmax_last_dim_fused(x: &Tensor) -> Result<Tensor> {
    ensure_cpu_f32(x, "softmax_last_dim_fused")?;
    if x.rank() == 0 {
        candle_core::bail!("softmax_last_dim_fused: the input needs at least one dimension");
    }
    x.contiguous()?.apply_op1(SoftmaxLastDim)
}

/// Forward op: `x ↦ softmax(x)` over the last dimension.
struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "masam-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, self.name())?;
        let c = layout.dims().last().copied().unwrap_or(1);
        let mut y = vec![0f32; x.len()];
        if c > 0 {
            let chunk = rows_per_task(c) * c;
            y.par_chunks_mut(chunk)
                .zip(x.par_chunks(chunk))
                .for_each(|(ys, xs)| {
                    for (yr, xr) in ys.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
                        softmax_row(xr, yr);
                    }
                });
        }
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let g = res
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &SoftmaxLastDimBwd)?;
        Ok(Some(g))
    }
}

/// Backward op: `(y, g) ↦ y · (g − Σ_last g·y)`.
pub(crate) struct SoftmaxLastDimBwd;

impl CustomOp2 for SoftmaxLastDimBwd {
    fn name(&self) -> &'static str {
        "masam-softmax-last-dim-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(s1, l1, self.name())?;
        let g = contiguous_f32(s2, l2, self.name())?;
        if l1.dims() != l2.dims() {
            candle_core::bail!(
                "{}: output {:?} and gradient {:?} differ in shape",
                self.name(),
                l1.dims(),
                l2.dims()
            );
        }
        let c = l1.dims().last().copied().unwrap_or(1);
        let mut dx = vec![0f32; y.len()];
        if c > 0 {
            let chunk = rows_per_task(c) * c;
            dx.par_chunks_mut(chunk)
                .zip(y.par_chunks(chunk).zip(g.par_chunks(chunk)))
                .for_each(|(ds, (ys, gs))| {
                    for ((dr, yr), gr) in ds
                        .chunks_exact_mut(c)
                        .zip(ys.chunks_exact(c))
                        .zip(gs.chunks_exact(c))
                    {
                        let s = dot(gr, yr);
                        for ((d, &yv), &gv) in dr.iter_mut().zip(yr).zip(gr) {
                            *d = yv * (gv - s);
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

super::simd::multiversion! {
    portable = softmax_row_portable;
    /// `y = exp(x − max x) / Σ exp(x − max x)` for one row: the row kernel of every softmax here,
    /// for callers that compute their own logits (fused attention kernels).
    ///
    /// ```
    /// let mut y = [0f32; 3];
    /// masam_nn::ops::softmax_row(&[0.0, 0.0, f32::NEG_INFINITY], &mut y);
    /// assert_eq!(y, [0.5, 0.5, 0.0]);
    /// ```
    pub fn softmax_row(x: &[f32], y: &mut [f32]) {
        let mut m = [f32::NEG_INFINITY; LANES];
        let chunks = x.chunks_exact(LANES);
        let rest = chunks.remainder();
        for ch in chunks {
            for l in 0..LANES {
                m[l] = m[l].max(ch[l]);
            }
        }
        let mut max = m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for &v in rest {
            max = max.max(v);
        }
        for (o, &v) in y.iter_mut().zip(x) {
            *o = exp_nonpositive(v - max);
        }
        let inv = 1.0 / sum(y);
        for o in y.iter_mut() {
            *o *= inv;

    }
}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector builds compute the same bits as the portable one (this machine takes the
    /// widest build it has), on rows of every length around the lane count, with large and
    /// tiny logits.
    #[test]
    fn every_build_gives_the_portable_bits() {
        let mut state = 12345u32;
        let mut next = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 60.0 - 30.0
        };
        for len in [1usize, 7, 8, 9, 15, 16, 17, 33, 196, 1024] {
            let x: Vec<f32> = (0..len).map(|_| next()).collect();
            let (mut fast, mut portable) = (vec![0f32; len], vec![0f32; len]);
            softmax_row(&x, &mut fast);
            softmax_row_portable(&x, &mut portable);
            let same = fast
                .iter()
                .zip(&portable)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "row of {len}: builds differ");
        }
    }
    use crate::ops::EXP_LO;

    #[test]
    fn exp_is_accurate_on_the_softmax_range() {
        let mut worst = 0f64;
        let mut v = 0f32;
        while v > -90.0 {
            let got = exp_nonpositive(v) as f64;
            let want = (v as f64).exp();
            if v >= EXP_LO {
                worst = worst.max((got - want).abs() / want);
            } else {
                assert_eq!(got, 0.0);
            }
            v -= 0.000_731;
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn rows_with_infinities_behave_like_the_composite() {
        let mut y = [0f32; 3];
        softmax_row(&[0.0, f32::NEG_INFINITY, 0.0], &mut y);
        assert_eq!(y, [0.5, 0.0, 0.5]);
        softmax_row(&[1.0, f32::NAN, 0.0], &mut y);
        assert!(y.iter().all(|v| v.is_nan()));
    }
}
