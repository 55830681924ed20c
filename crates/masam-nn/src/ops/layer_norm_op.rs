//! Fused LayerNorm (over the last dimension or over dimension 1) for CPU `f32`, with an analytic
//! backward that produces the input, weight and bias gradients in one pass.
//!
//! The input is viewed as (outer, C, inner) and normalised over C:
//! - inner = 1 (LayerNorm over the last dim): each row of C contiguous values is one unit of
//!   work, grouped into rayon tasks of several rows;
//! - inner > 1 (LayerNorm2d over the channels of NCHW, inner = H·W): each task takes one sample
//!   and a block of spatial positions, and keeps per-position statistics in small buffers while it
//!   walks the channels, so every inner loop runs over contiguous memory.
//!
//! Backward, with `x̂ = (x − μ)·r`, `r = 1/sqrt(var + eps)`, `g = dy·w` and means over C:
//! `dx = r · (g − mean(g) − x̂ · mean(g·x̂))`, `dw = Σ dy·x̂`, `db = Σ dy` (sums over every
//! position but C). The statistics are recomputed from `x` (cheaper than storing them); partial
//! `dw`/`db` sums are kept per rayon task and added up at the end.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, dot, ensure_cpu_f32, rows_per_task, sum, LANES};

/// LayerNorm over the last dimension as one custom op (CPU `f32` only):
/// `y = w · (x − mean) / sqrt(var + eps) + b`, biased variance, as PyTorch's `nn.LayerNorm`.
///
/// Records a backward for `x`, `weight` and `bias` (a weight or bias that takes part in no
/// graph gets no gradient entry). [`crate::LayerNorm`] calls this on CPU `f32` tensors and the
/// composite elsewhere.
///
/// # Shapes
/// - `x`: (…, C); `weight`, `bias`: (C,); returns (…, C)
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let x = Tensor::new(&[[1f32, 3.]], &dev).unwrap();
/// let (w, b) = (Tensor::new(&[1f32, 2.], &dev).unwrap(), Tensor::new(&[0f32, 1.], &dev).unwrap());
/// let y = masam_nn::ops::layer_norm_fused(&x, &w, &b, 0.0).unwrap().to_vec2::<f32>().unwrap();
/// assert_eq!(y, vec![vec![-1f32, 3.]]);
/// ```
pub fn layer_norm_fused(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if x.rank() == 0 {
        candle_core::bail!("layer_norm_fused: the input needs at least one dimension");
    }
    apply(x, weight, bias, eps, x.rank() - 1, "layer_norm_fused")
}

/// LayerNorm over dimension 1 of an (N, C, …) tensor as one custom op (CPU `f32` only), as
/// SAM's `LayerNorm2d`. Works directly on NCHW memory, without permutes.
///
/// # Shapes
/// - `x`: (N, C, …) (typically (N, C, H, W)); `weight`, `bias`: (C,); returns the shape of `x`
///
/// ```
/// # use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let x = Tensor::new(&[1f32, 3.], &dev).unwrap().reshape((1, 2, 1, 1)).unwrap();
/// let (w, b) = (Tensor::new(&[1f32, 1.], &dev).unwrap(), Tensor::new(&[0f32, 0.], &dev).unwrap());
/// let y = masam_nn::ops::layer_norm_2d_fused(&x, &w, &b, 0.0).unwrap();
/// assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![-1f32, 1.]);
/// ```
pub fn layer_norm_2d_fused(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if x.rank() < 2 {
        candle_core::bail!(
            "layer_norm_2d_fused: the input needs at least two dimensions, got {:?}",
            x.dims()
        );
    }
    apply(x, weight, bias, eps, 1, "layer_norm_2d_fused")
}

/// Checks the operands and applies [`LayerNormOp`] over `axis`.
fn apply(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    axis: usize,
    what: &str,
) -> Result<Tensor> {
    for t in [x, weight, bias] {
        ensure_cpu_f32(t, what)?;
    }
    let c = x.dim(axis)?;
    if weight.dims() != [c] || bias.dims() != [c] {
        candle_core::bail!(
            "{what}: input {:?} has {c} channels in dim {axis}, weight is {:?}, bias is {:?}",
            x.dims(),
            weight.dims(),
            bias.dims()
        );
    }
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNormOp {
            eps: eps as f32,
            axis,
        },
    )
}

/// (outer, C, inner) for normalising `dims` over `axis`.
fn split_dims(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = dims[..axis].iter().product();
    let inner = dims[axis + 1..].iter().product();
    (outer, dims[axis], inner)
}

/// Forward op on `(x, weight, bias)`.
struct LayerNormOp {
    eps: f32,
    axis: usize,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "masam-layer-norm"
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
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let b = contiguous_f32(s3, l3, self.name())?;
        let (outer, c, inner) = split_dims(l1.dims(), self.axis);
        if w.len() != c || b.len() != c {
            candle_core::bail!("{}: weight/bias must have {c} elements", self.name());
        }
        let mut y = vec![0f32; x.len()];
        if !y.is_empty() {
            if inner == 1 {
                rows_fwd(x, w, b, self.eps, &mut y);
            } else {
                channels_fwd(x, w, b, self.eps, outer, inner, &mut y);
            }
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = x.elem_count();
        let c = weight.elem_count();
        let packed = x.contiguous()?.apply_op3_no_bwd(
            &weight.contiguous()?,
            &grad_res.contiguous()?,
            &LayerNormBwdOp {
                eps: self.eps,
                axis: self.axis,
            },
        )?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = weight
            .track_op()
            .then(|| packed.narrow(0, n, c))
            .transpose()?;
        let db = bias
            .track_op()
            .then(|| packed.narrow(0, n + c, c))
            .transpose()?;
        Ok((Some(dx), dw, db))
    }
}

/// Backward op on `(x, weight, dy)`: returns `[dx (flattened) | dweight | dbias]` as one vector.
struct LayerNormBwdOp {
    eps: f32,
    axis: usize,
}

impl CustomOp3 for LayerNormBwdOp {
    fn name(&self) -> &'static str {
        "masam-layer-norm-bwd"
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
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let dy = contiguous_f32(s3, l3, self.name())?;
        if l1.dims() != l3.dims() {
            candle_core::bail!(
                "{}: input {:?} and gradient {:?} differ in shape",
                self.name(),
                l1.dims(),
                l3.dims()
            );
        }
        let (outer, c, inner) = split_dims(l1.dims(), self.axis);
        if w.len() != c {
            candle_core::bail!("{}: weight must have {c} elements", self.name());
        }
        let n = x.len();
        let mut packed = vec![0f32; n + 2 * c];
        if n > 0 {
            let (dx, dwb) = packed.split_at_mut(n);
            let acc = if inner == 1 {
                rows_bwd(x, w, dy, self.eps, dx)
            } else {
                channels_bwd(x, w, dy, self.eps, outer, inner, dx)
            };
            dwb.copy_from_slice(&acc);
        }
        Ok((CpuStorage::F32(packed), Shape::from(n + 2 * c)))
    }
}

/// Row statistics: the mean is `hi + lo` (`hi` the rounded mean, `lo` a small correction), and
/// `rstd = 1 / sqrt(var + eps)`. Normalise with `((x − hi) − lo) · rstd`.
#[derive(Clone, Copy)]
struct Stats {
    hi: f32,
    lo: f32,
    rstd: f32,
}

/// Finishes [`Stats`] from `hi` and the shifted sums `s1 = Σ (x − hi)`, `s2 = Σ (x − hi)²`.
#[inline(always)]
fn finish_stats(hi: f32, s1: f32, s2: f32, c: usize, eps: f32) -> Stats {
    let inv_c = 1.0 / c as f32;
    let lo = s1 * inv_c;
    let var = (s2 * inv_c - lo * lo).max(0.0);
    Stats {
        hi,
        lo,
        rstd: 1.0 / (var + eps).sqrt(),
    }
}

/// [`Stats`] of one contiguous row.
#[inline(always)]
fn row_stats(x: &[f32], eps: f32) -> Stats {
    let c = x.len();
    let hi = sum(x) / c as f32;
    let mut a1 = [0f32; LANES];
    let mut a2 = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for ch in chunks {
        for l in 0..LANES {
            let d = ch[l] - hi;
            a1[l] += d;
            a2[l] += d * d;
        }
    }
    let (mut s1, mut s2) = (a1.iter().sum::<f32>(), a2.iter().sum::<f32>());
    for &v in rest {
        let d = v - hi;
        s1 += d;
        s2 += d * d;
    }
    finish_stats(hi, s1, s2, c, eps)
}

/// Forward over rows of C = `w.len()` contiguous values.
fn rows_fwd(x: &[f32], w: &[f32], b: &[f32], eps: f32, y: &mut [f32]) {
    let c = w.len();
    let chunk = rows_per_task(c) * c;
    y.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(ys, xs)| rows_fwd_chunk(ys, xs, w, b, eps));
}

super::simd::multiversion! {
    /// [`rows_fwd`] on one chunk of whole rows.
    fn rows_fwd_chunk(ys: &mut [f32], xs: &[f32], w: &[f32], b: &[f32], eps: f32) {
        let c = w.len();
        for (yr, xr) in ys.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
            let st = row_stats(xr, eps);
            for (((o, &v), &wv), &bv) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                *o = ((v - st.hi) - st.lo) * st.rstd * wv + bv;
            }
        }
    }
}

/// Backward over rows: writes `dx`, returns `[dw | db]`.
fn rows_bwd(x: &[f32], w: &[f32], dy: &[f32], eps: f32, dx: &mut [f32]) -> Vec<f32> {
    let c = w.len();
    let chunk = rows_per_task(c) * c;
    dx.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk).zip(dy.par_chunks(chunk)))
        .map(|(ds, (xs, gs))| rows_bwd_chunk(ds, xs, gs, w, eps))
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![0f32; 2 * c], add_into)
}

super::simd::multiversion! {
    /// [`rows_bwd`] on one chunk of whole rows: writes `ds`, returns this chunk's `[dw | db]`.
    fn rows_bwd_chunk(ds: &mut [f32], xs: &[f32], gs: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
        let c = w.len();
        let mut acc = vec![0f32; 2 * c];
        let mut xh = vec![0f32; c];
        let mut g = vec![0f32; c];
        for ((dr, xr), dyr) in ds
            .chunks_exact_mut(c)
            .zip(xs.chunks_exact(c))
            .zip(gs.chunks_exact(c))
        {
            let st = row_stats(xr, eps);
            for (((h, gv), &v), (&d, &wv)) in xh
                .iter_mut()
                .zip(g.iter_mut())
                .zip(xr)
                .zip(dyr.iter().zip(w))
            {
                *h = ((v - st.hi) - st.lo) * st.rstd;
                *gv = d * wv;
            }
            let inv_c = 1.0 / c as f32;
            let mg = sum(&g) * inv_c;
            let mgx = dot(&g, &xh) * inv_c;
            for ((o, &gv), &h) in dr.iter_mut().zip(&g).zip(&xh) {
                *o = (gv - mg - h * mgx) * st.rstd;
            }
            let (dw, db) = acc.split_at_mut(c);
            for (((a, bacc), &d), &h) in dw.iter_mut().zip(db.iter_mut()).zip(dyr).zip(&xh) {
                *a += d * h;
                *bacc += d;
            }
        }
        acc
    }
}

/// `a += b` element-wise; returns `a`.
fn add_into(mut a: Vec<f32>, b: Vec<f32>) -> Vec<f32> {
    for (x, y) in a.iter_mut().zip(&b) {
        *x += y;
    }
    a
}

/// Spatial positions per task for the channel kernels: about 32K values (128 KiB, well inside
/// L2) per task, a multiple of [`LANES`], at most 1024 and at most `inner`. Measured on
/// (20, 16, 128, 128) and (8, 256, 64, 64); the speed is flat within ±15% from 8K to 128K.
fn block_len(c: usize, inner: usize) -> usize {
    let b = ((32768 / c.max(1)) / LANES * LANES).clamp(LANES, 1024);
    b.min(inner)
}

/// Splits `out` (outer, C, inner) into tasks: task `n · nblk + k` holds, for each channel, the
/// slice of positions `[k·blk, (k+1)·blk)` of sample `n`.
fn channel_tasks(out: &mut [f32], c: usize, inner: usize, blk: usize) -> Vec<Vec<&mut [f32]>> {
    let nblk = inner.div_ceil(blk);
    let outer = out.len() / (c * inner);
    let mut tasks: Vec<Vec<&mut [f32]>> =
        (0..outer * nblk).map(|_| Vec::with_capacity(c)).collect();
    for (r, row) in out.chunks_exact_mut(inner).enumerate() {
        let n = r / c;
        for (k, seg) in row.chunks_mut(blk).enumerate() {
            tasks[n * nblk + k].push(seg);
        }
    }
    tasks
}

/// Per-position statistics for one (sample, block) of the channel kernels.
struct BlockStats {
    hi: Vec<f32>,
    lo: Vec<f32>,
    rstd: Vec<f32>,
}

/// Statistics over C of positions `[p0, p0 + len)` of sample `xs` (C·inner values).
fn block_stats(xs: &[f32], c: usize, inner: usize, p0: usize, len: usize, eps: f32) -> BlockStats {
    let mut hi = vec![0f32; len];
    for ci in 0..c {
        let xr = &xs[ci * inner + p0..][..len];
        for (h, &v) in hi.iter_mut().zip(xr) {
            *h += v;
        }
    }
    let inv_c = 1.0 / c as f32;
    for h in hi.iter_mut() {
        *h *= inv_c;
    }
    let mut s1 = vec![0f32; len];
    let mut s2 = vec![0f32; len];
    for ci in 0..c {
        let xr = &xs[ci * inner + p0..][..len];
        for (((a, q), &v), &h) in s1.iter_mut().zip(s2.iter_mut()).zip(xr).zip(&hi) {
            let d = v - h;
            *a += d;
            *q += d * d;
        }
    }
    let mut lo = s1;
    let mut rstd = s2;
    for ((h, l), r) in hi.iter().zip(lo.iter_mut()).zip(rstd.iter_mut()) {
        let st = finish_stats(*h, *l, *r, c, eps);
        *l = st.lo;
        *r = st.rstd;
    }
    BlockStats { hi, lo, rstd }
}

/// Forward over dimension 1 of (outer, C, inner).
fn channels_fwd(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    eps: f32,
    outer: usize,
    inner: usize,
    y: &mut [f32],
) {
    let c = w.len();
    let blk = block_len(c, inner);
    let nblk = inner.div_ceil(blk);
    debug_assert_eq!(x.len(), outer * c * inner);
    channel_tasks(y, c, inner, blk)
        .into_par_iter()
        .enumerate()
        .for_each(|(t, rows)| {
            let (n, p0) = (t / nblk, (t % nblk) * blk);
            let xs = &x[n * c * inner..][..c * inner];
            let len = rows[0].len();
            let st = block_stats(xs, c, inner, p0, len, eps);
            for (ci, yr) in rows.into_iter().enumerate() {
                let xr = &xs[ci * inner + p0..][..len];
                let (wv, bv) = (w[ci], b[ci]);
                for ((((o, &v), &h), &l), &r) in
                    yr.iter_mut().zip(xr).zip(&st.hi).zip(&st.lo).zip(&st.rstd)
                {
                    *o = ((v - h) - l) * r * wv + bv;
                }
            }
        });
}

/// Backward over dimension 1 of (outer, C, inner): writes `dx`, returns `[dw | db]`.
fn channels_bwd(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    eps: f32,
    outer: usize,
    inner: usize,
    dx: &mut [f32],
) -> Vec<f32> {
    let c = w.len();
    let blk = block_len(c, inner);
    let nblk = inner.div_ceil(blk);
    debug_assert_eq!(x.len(), outer * c * inner);
    channel_tasks(dx, c, inner, blk)
        .into_par_iter()
        .enumerate()
        .map(|(t, rows)| {
            let (n, p0) = (t / nblk, (t % nblk) * blk);
            let xs = &x[n * c * inner..][..c * inner];
            let gs = &dy[n * c * inner..][..c * inner];
            let len = rows[0].len();
            let st = block_stats(xs, c, inner, p0, len, eps);
            let mut acc = vec![0f32; 2 * c];
            let mut sg = vec![0f32; len];
            let mut sgx = vec![0f32; len];
            let mut xh = vec![0f32; len];
            for ci in 0..c {
                let xr = &xs[ci * inner + p0..][..len];
                let dr = &gs[ci * inner + p0..][..len];
                for ((((o, &v), &h), &l), &r) in
                    xh.iter_mut().zip(xr).zip(&st.hi).zip(&st.lo).zip(&st.rstd)
                {
                    *o = ((v - h) - l) * r;
                }
                let wv = w[ci];
                for (((a, q), &d), &h) in sg.iter_mut().zip(sgx.iter_mut()).zip(dr).zip(&xh) {
                    let g = d * wv;
                    *a += g;
                    *q += g * h;
                }
                acc[ci] += dot(dr, &xh);
                acc[c + ci] += sum(dr);
            }
            let inv_c = 1.0 / c as f32;
            for (a, q) in sg.iter_mut().zip(sgx.iter_mut()) {
                *a *= inv_c;
                *q *= inv_c;
            }
            for (ci, out) in rows.into_iter().enumerate() {
                let xr = &xs[ci * inner + p0..][..len];
                let dr = &gs[ci * inner + p0..][..len];
                let wv = w[ci];
                for (((((o, &v), &d), (&h, &l)), &r), (&mg, &mgx)) in out
                    .iter_mut()
                    .zip(xr)
                    .zip(dr)
                    .zip(st.hi.iter().zip(&st.lo))
                    .zip(&st.rstd)
                    .zip(sg.iter().zip(&sgx))
                {
                    let xhat = ((v - h) - l) * r;
                    *o = (d * wv - mg - xhat * mgx) * r;
                }
            }
            acc
        })
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![0f32; 2 * c], add_into)
}
