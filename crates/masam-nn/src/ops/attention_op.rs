//! Fused multi-head scaled dot-product attention (CPU, `f32`) with its backward pass.
//!
//! `softmax(Q·Kᵀ / √d)·V` per batch element and head, where the heads are consecutive column
//! blocks of the (B, N, H·d) inputs, as after a transformer's q/k/v projections. The candle
//! composition (split the heads with a transposed copy, two products, a softmax, merge the heads
//! with another copy) records about ten graph nodes; this op records one. Each (batch, head)
//! pair reads its Q, K and V columns in place through strides, keeps its logits in cache, and
//! writes its output columns; the backward pass recomputes the probabilities and computes
//! `dV = Pᵀ·dO`, `dS = P ⊙ (dO·Vᵀ − rowsum)`, `dQ = dS·K / √d`, `dK = dSᵀ·Q / √d`.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, ensure_cpu_f32, softmax_row};
use crate::gemm::{gemm_with, Mat, MatMut};

/// Multi-head attention `softmax(Q·Kᵀ/√d)·V` (CPU, `f32`), differentiable in `q`, `k` and `v`.
///
/// # Shapes
/// - `q`: (B, Nq, H·d); `k`, `v`: (B, Nk, H·d); returns (B, Nq, H·d)
///
/// ```
/// use candle_core::{Device, Tensor};
/// # fn main() -> candle_core::Result<()> {
/// let dev = Device::Cpu;
/// let (q, k, v) = (
///     Tensor::randn(0f32, 1., (2, 5, 8), &dev)?,
///     Tensor::randn(0f32, 1., (2, 3, 8), &dev)?,
///     Tensor::randn(0f32, 1., (2, 3, 8), &dev)?,
/// );
/// let y = masam_nn::ops::attention_fused(&q, &k, &v, 2)?; // 2 heads of 4
/// // the same as splitting the heads by hand
/// let split = |t: &Tensor| t.reshape((2, t.dim(1)?, 2, 4))?.transpose(1, 2)?.contiguous();
/// let (qh, kh, vh) = (split(&q)?, split(&k)?, split(&v)?);
/// let p = masam_nn::softmax_last_dim(&(qh.matmul(&kh.t()?)? / 2.0)?)?;
/// let reference = p.matmul(&vh)?.transpose(1, 2)?.reshape((2, 5, 8))?;
/// let diff: f32 = (y - reference)?.abs()?.max_all()?.to_scalar()?;
/// assert!(diff < 1e-5);
/// # Ok(()) }
/// ```
///
/// # Errors
/// Tensors that are not CPU `f32`, or shapes that do not fit `heads`.
pub fn attention_fused(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Result<Tensor> {
    const OP: &str = "attention_fused";
    for t in [q, k, v] {
        ensure_cpu_f32(t, OP)?;
    }
    let (b, nq, c) = q.dims3()?;
    let (bk, nk, ck) = k.dims3()?;
    if k.dims() != v.dims() || bk != b || ck != c || heads == 0 || c % heads != 0 {
        candle_core::bail!(
            "{OP}: q {:?}, k {:?}, v {:?} do not fit {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let op = AttentionOp {
        b,
        nq,
        nk,
        heads,
        hd: c / heads,
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// The op over contiguous (B, N, H·d) buffers.
#[derive(Debug, Clone, Copy)]
struct AttentionOp {
    b: usize,
    nq: usize,
    nk: usize,
    heads: usize,
    hd: usize,
}

impl AttentionOp {
    fn width(&self) -> usize {
        self.heads * self.hd
    }

    /// Head `h` of batch element `bi` of a (B, n, H·d) buffer as an (n × d) view.
    fn head<'a>(&self, data: &'a [f32], n: usize, bi: usize, h: usize) -> Mat<'a> {
        let c = self.width();
        Mat {
            data,
            off: bi * n * c + h * self.hd,
            rs: c,
            cs: 1,
        }
    }

    /// `P = softmax(Q·Kᵀ/√d)` (nq × nk) of one batch element and head.
    fn probabilities(&self, q: &[f32], k: &[f32], bi: usize, h: usize) -> Vec<f32> {
        let (nq, nk, hd) = (self.nq, self.nk, self.hd);
        let mut s = vec![0f32; nq * nk];
        let kh = self.head(k, nk, bi, h);
        gemm_with(
            nq,
            nk,
            hd,
            MatMut::rows(&mut s, 0, nk),
            self.head(q, nq, bi, h),
            // Kᵀ (d × nk) in place
            Mat {
                rs: kh.cs,
                cs: kh.rs,
                ..kh
            },
            false,
            1.0,
            false,
        );
        let div = (hd as f32).sqrt();
        let mut row = vec![0f32; nk];
        for sr in s.chunks_exact_mut(nk.max(1)) {
            for (o, &v) in row.iter_mut().zip(sr.iter()) {
                *o = v / div;
            }
            softmax_row(&row, sr);
        }
        s
    }

    fn forward(&self, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let (nq, hd, c) = (self.nq, self.hd, self.width());
        let pairs: Vec<(usize, usize)> = (0..self.b)
            .flat_map(|bi| (0..self.heads).map(move |h| (bi, h)))
            .collect();
        let outs: Vec<Vec<f32>> = pairs
            .par_iter()
            .map(|&(bi, h)| {
                let p = self.probabilities(q, k, bi, h);
                let mut o = vec![0f32; nq * hd];
                gemm_with(
                    nq,
                    hd,
                    self.nk,
                    MatMut::rows(&mut o, 0, hd),
                    Mat {
                        data: &p,
                        off: 0,
                        rs: self.nk,
                        cs: 1,
                    },
                    self.head(v, self.nk, bi, h),
                    false,
                    1.0,
                    false,
                );
                o
            })
            .collect();
        let mut y = vec![0f32; self.b * nq * c];
        for (&(bi, h), o) in pairs.iter().zip(&outs) {
            for (r, src) in o.chunks_exact(hd.max(1)).enumerate() {
                let dst = (bi * nq + r) * c + h * hd;
                y[dst..dst + hd].copy_from_slice(src);
            }
        }
        y
    }

    /// `(dq, dk, dv)` for the output gradient `g` (B, Nq, H·d).
    fn backward(&self, q: &[f32], k: &[f32], v: &[f32], g: &[f32]) -> [Vec<f32>; 3] {
        let (nq, nk, hd, c) = (self.nq, self.nk, self.hd, self.width());
        let pairs: Vec<(usize, usize)> = (0..self.b)
            .flat_map(|bi| (0..self.heads).map(move |h| (bi, h)))
            .collect();
        let parts: Vec<[Vec<f32>; 3]> = pairs
            .par_iter()
            .map(|&(bi, h)| {
                let p = self.probabilities(q, k, bi, h);
                let go = self.head(g, nq, bi, h);
                let (mut dq, mut dk, mut dv) = (
                    vec![0f32; nq * hd],
                    vec![0f32; nk * hd],
                    vec![0f32; nk * hd],
                );
                // dV = Pᵀ·dO
                gemm_with(
                    nk,
                    hd,
                    nq,
                    MatMut::rows(&mut dv, 0, hd),
                    Mat {
                        data: &p,
                        off: 0,
                        rs: 1,
                        cs: nk,
                    },
                    go,
                    false,
                    1.0,
                    false,
                );
                // dS = P ⊙ (dO·Vᵀ − Σ_k P·(dO·Vᵀ))
                let vh = self.head(v, nk, bi, h);
                let mut ds = vec![0f32; nq * nk];
                gemm_with(
                    nq,
                    nk,
                    hd,
                    MatMut::rows(&mut ds, 0, nk),
                    go,
                    Mat {
                        rs: vh.cs,
                        cs: vh.rs,
                        ..vh
                    },
                    false,
                    1.0,
                    false,
                );
                let div = (hd as f32).sqrt();
                for (dr, pr) in ds
                    .chunks_exact_mut(nk.max(1))
                    .zip(p.chunks_exact(nk.max(1)))
                {
                    let dot = super::dot(dr, pr);
                    for (d, &pv) in dr.iter_mut().zip(pr) {
                        *d = pv * (*d - dot) / div;
                    }
                }
                // dQ = dS·K, dK = dSᵀ·Q (dS already divided by √d)
                gemm_with(
                    nq,
                    hd,
                    nk,
                    MatMut::rows(&mut dq, 0, hd),
                    Mat {
                        data: &ds,
                        off: 0,
                        rs: nk,
                        cs: 1,
                    },
                    self.head(k, nk, bi, h),
                    false,
                    1.0,
                    false,
                );
                gemm_with(
                    nk,
                    hd,
                    nq,
                    MatMut::rows(&mut dk, 0, hd),
                    Mat {
                        data: &ds,
                        off: 0,
                        rs: 1,
                        cs: nk,
                    },
                    self.head(q, nq, bi, h),
                    false,
                    1.0,
                    false,
                );
                [dq, dk, dv]
            })
            .collect();
        let mut out = [
            vec![0f32; self.b * nq * c],
            vec![0f32; self.b * nk * c],
            vec![0f32; self.b * nk * c],
        ];
        for (&(bi, h), part) in pairs.iter().zip(&parts) {
            for ((dst, src), n) in out.iter_mut().zip(part).zip([nq, nk, nk]) {
                for (r, s) in src.chunks_exact(hd.max(1)).enumerate() {
                    let at = (bi * n + r) * c + h * hd;
                    dst[at..at + hd].copy_from_slice(s);
                }
            }
        }
        out
    }
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "masam-attention"
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
        let name = self.name();
        let (q, k, v) = (
            contiguous_f32(s1, l1, name)?,
            contiguous_f32(s2, l2, name)?,
            contiguous_f32(s3, l3, name)?,
        );
        let y = self.forward(q, k, v);
        Ok((
            CpuStorage::F32(y),
            Shape::from((self.b, self.nq, self.width())),
        ))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let vals = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let [dq, dk, dv] = self.backward(&vals(q)?, &vals(k)?, &vals(v)?, &vals(grad)?);
        let wrap = |d: Vec<f32>, t: &Tensor| -> Result<Option<Tensor>> {
            if t.track_op() {
                Ok(Some(Tensor::from_vec(d, t.shape(), t.device())?))
            } else {
                Ok(None)
            }
        };
        Ok((wrap(dq, q)?, wrap(dk, k)?, wrap(dv, v)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Forward and the three gradients against the candle composition, for one and several
    /// heads, fewer and more keys than queries.
    #[test]
    fn matches_the_composition_with_gradients() -> Result<()> {
        let dev = Device::Cpu;
        for (b, nq, nk, heads, hd) in [
            (1usize, 1usize, 1usize, 1usize, 4usize),
            (2, 7, 3, 2, 8),
            (3, 5, 17, 4, 16),
        ] {
            let c = heads * hd;
            let q = Var::randn(0f32, 1., (b, nq, c), &dev)?;
            let k = Var::randn(0f32, 1., (b, nk, c), &dev)?;
            let v = Var::randn(0f32, 1., (b, nk, c), &dev)?;
            let ours = attention_fused(&q, &k, &v, heads)?;
            let split = |t: &Tensor, n: usize| -> Result<Tensor> {
                t.reshape((b, n, heads, hd))?.transpose(1, 2)?.contiguous()
            };
            let (qh, kh, vh) = (split(&q, nq)?, split(&k, nk)?, split(&v, nk)?);
            let p = crate::ops::composite::softmax_last_dim(
                &(qh.matmul(&kh.t()?)? / (hd as f64).sqrt())?,
            )?;
            let theirs = p.matmul(&vh)?.transpose(1, 2)?.reshape((b, nq, c))?;
            let rel = |a: &Tensor, e: &Tensor| -> Result<f32> {
                let d = (a - e)?.abs()?.max_all()?.to_scalar::<f32>()?;
                Ok(d / e.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-12))
            };
            assert!(
                rel(&ours, &theirs)? < 1e-5,
                "({b},{nq},{nk},{heads}): forward"
            );
            let g = Tensor::randn(0f32, 1., (b, nq, c), &dev)?;
            let ga = (&ours * &g)?.sum_all()?.backward()?;
            let gb = (&theirs * &g)?.sum_all()?.backward()?;
            for (name, t) in [("q", &q), ("k", &k), ("v", &v)] {
                let e = rel(ga.get(t).expect("grad"), gb.get(t).expect("grad"))?;
                assert!(e < 1e-4, "({b},{nq},{nk},{heads}): d{name} differs by {e}");
            }
        }
        Ok(())
    }
}
