//! Decomposed relative positions of SAM's attention, and the 1D/2D linear resizing used both at
//! run time (`get_rel_pos`) and when converting checkpoints to another input size.
//!
//! Every resize here is PyTorch's `F.interpolate(mode="linear" | "bilinear",
//! align_corners=False)`: for output index `i`, `src = max(scale·(i + 0.5) − 0.5, 0)` with
//! `scale = in / out`, all in f32; `i0 = floor(src)`, `i1 = min(i0 + 1, in − 1)`,
//! `l1 = src − i0`, `l0 = 1 − l1`. It is applied as a matmul with a fixed interpolation matrix,
//! so it is differentiable (candle's `upsample_bilinear2d` has no backward).

use candle_core::{Device, Result, Tensor};

/// The `(out_len, in_len)` matrix `A` such that `A · x` resizes `x` (rows) linearly from `in_len`
/// to `out_len` rows, with PyTorch's `align_corners=False` f32 index math.
///
/// ```
/// # use candle_core::Device;
/// let a = masam_sam::rel_pos::linear_resize_matrix(4, 2, &Device::Cpu).unwrap();
/// // Halving the length averages pairs.
/// assert_eq!(a.to_vec2::<f32>().unwrap(), vec![vec![0.5, 0.5, 0.0, 0.0], vec![0.0, 0.0, 0.5, 0.5]]);
/// ```
pub fn linear_resize_matrix(in_len: usize, out_len: usize, device: &Device) -> Result<Tensor> {
    if in_len == 0 || out_len == 0 {
        candle_core::bail!(
            "linear resize from {in_len} to {out_len} rows: lengths must be positive"
        );
    }
    let mut m = vec![0f32; out_len * in_len];
    let scale = in_len as f32 / out_len as f32;
    for i in 0..out_len {
        let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(in_len - 1);
        let i1 = (i0 + 1).min(in_len - 1);
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        let l0 = 1.0 - l1;
        m[i * in_len + i0] += l0;
        m[i * in_len + i1] += l1;
    }
    Tensor::from_vec(m, (out_len, in_len), device)
}

/// Resizes a relative-position table `(L, hd)` to `(new_len, hd)` along its rows, linearly
/// (`align_corners=False`). Differentiable; returns the input itself when `L == new_len`.
pub fn resize_rel_pos(table: &Tensor, new_len: usize) -> Result<Tensor> {
    let (len, _) = table.dims2()?;
    if len == new_len {
        return Ok(table.clone());
    }
    let a = linear_resize_matrix(len, new_len, table.device())?.to_dtype(table.dtype())?;
    a.matmul(table)
}

/// Resizes a channels-last grid `(B, H, W, C)` to `(B, out_h, out_w, C)` bilinearly
/// (`align_corners=False`), as `F.interpolate(x.permute(0,3,1,2), mode="bilinear")` does.
/// Differentiable; returns the input itself when the size is unchanged.
pub fn resize_bilinear_bhwc(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    if (h, w) == (out_h, out_w) {
        return Ok(x.clone());
    }
    let dev = x.device();
    let ah = linear_resize_matrix(h, out_h, dev)?.to_dtype(x.dtype())?;
    let aw = linear_resize_matrix(w, out_w, dev)?.to_dtype(x.dtype())?;
    // Along H: (out_h, H) @ (B, H, W·C).
    let y = ah
        .unsqueeze(0)?
        .broadcast_as((b, out_h, h))?
        .contiguous()?
        .matmul(&x.reshape((b, h, w * c))?)?;
    // Along W: (out_w, W) @ (B·out_h, W, C).
    let y = aw
        .unsqueeze(0)?
        .broadcast_as((b * out_h, out_w, w))?
        .contiguous()?
        .matmul(&y.reshape((b * out_h, w, c))?)?;
    y.reshape((b, out_h, out_w, c))
}

/// The relative-position embeddings between query and key positions along one axis:
/// `R[i, j] = table[i·max(k/q,1) − j·max(q/k,1) + (k−1)·max(q/k,1)]`, shape `(q_size, k_size, hd)`
/// (for `q_size == k_size`: `table[i − j + q_size − 1]`).
///
/// When the table length is not `2·max(q_size, k_size) − 1`, the table is first resized linearly
/// (as SAM's `get_rel_pos` does with `F.interpolate(mode="linear")`).
pub fn get_rel_pos(q_size: usize, k_size: usize, table: &Tensor) -> Result<Tensor> {
    if q_size == 0 || k_size == 0 {
        candle_core::bail!("get_rel_pos: empty axis (q {q_size}, k {k_size})");
    }
    let max_rel_dist = 2 * q_size.max(k_size) - 1;
    let (_, hd) = table.dims2()?;
    let table = resize_rel_pos(table, max_rel_dist)?;
    let q_ratio = (k_size as f32 / q_size as f32).max(1.0);
    let k_ratio = (q_size as f32 / k_size as f32).max(1.0);
    let offset = (k_size - 1) as f32 * k_ratio;
    let mut idx = Vec::with_capacity(q_size * k_size);
    for i in 0..q_size {
        for j in 0..k_size {
            let r = (i as f32 * q_ratio - j as f32 * k_ratio) + offset;
            idx.push((r as u32).min(max_rel_dist as u32 - 1));
        }
    }
    let idx = Tensor::from_vec(idx, q_size * k_size, table.device())?;
    table.index_select(&idx, 0)?.reshape((q_size, k_size, hd))
}

/// The two terms of SAM's decomposed relative positions, per query and key row / column:
/// `rel_h[b, (i,j), k] = Σ_c q[b,i,j,c]·Rh[i,k,c]` and `rel_w[b, (i,j), l] = Σ_c
/// q[b,i,j,c]·Rw[j,l,c]`, with `Rh = get_rel_pos(q_h, k_h, rel_pos_h)` and `Rw =
/// get_rel_pos(q_w, k_w, rel_pos_w)`. `q` is the **unscaled** query. Computed with batched
/// matmuls; the attention adds them with [`masam_nn::softmax_with_grid_bias`].
///
/// # Shapes
/// - `q`: (B, q_h·q_w, hd); `rel_pos_h`: (L_h, hd), `rel_pos_w`: (L_w, hd)
/// - returns `rel_h` (B, q_h·q_w, k_h) and `rel_w` (B, q_h·q_w, k_w), contiguous
pub fn decomposed_rel_pos_terms(
    q: &Tensor,
    rel_pos_h: &Tensor,
    rel_pos_w: &Tensor,
    q_size: (usize, usize),
    k_size: (usize, usize),
) -> Result<(Tensor, Tensor)> {
    let (qh, qw) = q_size;
    let (kh, kw) = k_size;
    // in q's dtype (mixed precision: f32 tables are converted at use)
    let rh = get_rel_pos(qh, kh, &rel_pos_h.to_dtype(q.dtype())?)?; // (qh, kh, hd)
    let rw = get_rel_pos(qw, kw, &rel_pos_w.to_dtype(q.dtype())?)?; // (qw, kw, hd)
    rel_pos_terms(q, &rh, &rw)
}

/// The two terms of [`decomposed_rel_pos_terms`] from embeddings already gathered by
/// [`get_rel_pos`] (or rows of them): `rel_h[b, (i,j), k] = Σ_c q[b,i,j,c]·rh[i,k,c]` and
/// `rel_w[b, (i,j), l] = Σ_c q[b,i,j,c]·rw[j,l,c]`.
///
/// The windowed attention uses it for the queries of a partly padded window: they are the
/// first `q_h × q_w` positions of a `k_h × k_w` window, so their embeddings are the first rows
/// of the full window's.
///
/// # Shapes
/// - `q`: (B, q_h·q_w, hd); `rh`: (q_h, k_h, hd), `rw`: (q_w, k_w, hd)
/// - returns `rel_h` (B, q_h·q_w, k_h) and `rel_w` (B, q_h·q_w, k_w), contiguous
pub fn rel_pos_terms(q: &Tensor, rh: &Tensor, rw: &Tensor) -> Result<(Tensor, Tensor)> {
    let (qh, kh, hd) = rh.dims3()?;
    let (qw, kw, hd_w) = rw.dims3()?;
    let (b, l, hd_q) = q.dims3()?;
    if hd != hd_w || hd != hd_q || l != qh * qw {
        candle_core::bail!(
            "rel_pos_terms: queries {:?} do not fit embeddings {:?} and {:?}",
            q.dims(),
            rh.dims(),
            rw.dims()
        );
    }
    let r_q = q.reshape((b, qh, qw, hd))?;
    // Batch over i: (qh, b·qw, hd) @ (qh, hd, kh).
    let rel_h = r_q
        .permute([1, 0, 2, 3])?
        .contiguous()?
        .reshape((qh, b * qw, hd))?
        .matmul(&rh.transpose(1, 2)?)? // (qh, b·qw, kh)
        .reshape((qh, b, qw, kh))?
        .permute([1, 0, 2, 3])? // (b, qh, qw, kh)
        .contiguous()?
        .reshape((b, qh * qw, kh))?;
    // Batch over j: (qw, b·qh, hd) @ (qw, hd, kw).
    let rel_w = r_q
        .permute([2, 0, 1, 3])?
        .contiguous()?
        .reshape((qw, b * qh, hd))?
        .matmul(&rw.transpose(1, 2)?)? // (qw, b·qh, kw)
        .reshape((qw, b, qh, kw))?
        .permute([1, 2, 0, 3])? // (b, qh, qw, kw)
        .contiguous()?
        .reshape((b, qh * qw, kw))?;
    Ok((rel_h, rel_w))
}

/// Adds SAM's decomposed relative positions to attention logits (the reference's
/// `add_decomposed_rel_pos`): `attn[b, (i,j), (k,l)] + rel_h[b, (i,j), k] + rel_w[b, (i,j), l]`
/// with the terms of [`decomposed_rel_pos_terms`]. The attention itself fuses this sum into
/// its softmax instead.
///
/// # Shapes
/// - `attn`: (B, q_h·q_w, k_h·k_w); `q`: (B, q_h·q_w, hd)
/// - `rel_pos_h`: (L_h, hd), `rel_pos_w`: (L_w, hd)
/// - returns: (B, q_h·q_w, k_h·k_w)
pub fn add_decomposed_rel_pos(
    attn: &Tensor,
    q: &Tensor,
    rel_pos_h: &Tensor,
    rel_pos_w: &Tensor,
    q_size: (usize, usize),
    k_size: (usize, usize),
) -> Result<Tensor> {
    let (qh, qw) = q_size;
    let (kh, kw) = k_size;
    let (b, _, _) = q.dims3()?;
    let (rel_h, rel_w) = decomposed_rel_pos_terms(q, rel_pos_h, rel_pos_w, q_size, k_size)?;
    attn.reshape((b, qh, qw, kh, kw))?
        .broadcast_add(&rel_h.reshape((b, qh, qw, kh, 1))?)?
        .broadcast_add(&rel_w.reshape((b, qh, qw, 1, kw))?)?
        .reshape((b, qh * qw, kh * kw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn arange_f32(n: usize, device: &Device) -> Result<Tensor> {
        Tensor::arange(0u32, n as u32, device)?.to_dtype(DType::F32)
    }

    /// PyTorch `F.interpolate(linear, align_corners=False)` of 127 → 63 rows, row by row.
    fn reference_linear(x: &[f32], out: usize) -> Vec<f32> {
        let n = x.len();
        let scale = n as f32 / out as f32;
        (0..out)
            .map(|i| {
                let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
                let i0 = src.floor() as usize;
                let i1 = (i0 + 1).min(n - 1);
                let l1 = src - i0 as f32;
                (1.0 - l1) * x[i0] + l1 * x[i1]
            })
            .collect()
    }

    #[test]
    fn resize_matches_formula() -> Result<()> {
        let dev = Device::Cpu;
        let x: Vec<f32> = (0..127).map(|i| ((i * 37 % 101) as f32).sin()).collect();
        let t = Tensor::from_vec(x.clone(), (127, 1), &dev)?;
        let y: Vec<f32> = resize_rel_pos(&t, 63)?.flatten_all()?.to_vec1()?;
        let r = reference_linear(&x, 63);
        for (a, b) in y.iter().zip(&r) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
        // Upsampling clamps at both ends.
        let up: Vec<f32> = resize_rel_pos(&Tensor::new(&[[0f32], [1.]], &dev)?, 4)?
            .flatten_all()?
            .to_vec1()?;
        assert_eq!(up, vec![0.0, 0.25, 0.75, 1.0]);
        Ok(())
    }

    #[test]
    fn get_rel_pos_indexes_q_minus_k() -> Result<()> {
        let dev = Device::Cpu;
        let table = arange_f32(5, &dev)?.reshape((5, 1))?;
        let r: Vec<Vec<f32>> = get_rel_pos(3, 3, &table)?.squeeze(2)?.to_vec2()?;
        assert_eq!(
            r,
            vec![vec![2., 1., 0.], vec![3., 2., 1.], vec![4., 3., 2.]]
        );
        Ok(())
    }

    #[test]
    fn decomposed_matches_naive() -> Result<()> {
        let dev = Device::Cpu;
        let (b, qh, qw, hd) = (2, 3, 2, 4);
        let q = Tensor::randn(0f32, 1., (b, qh * qw, hd), &dev)?;
        let attn = Tensor::randn(0f32, 1., (b, qh * qw, qh * qw), &dev)?;
        let th = Tensor::randn(0f32, 1., (2 * qh - 1, hd), &dev)?;
        let tw = Tensor::randn(0f32, 1., (2 * qw - 1, hd), &dev)?;
        let out = add_decomposed_rel_pos(&attn, &q, &th, &tw, (qh, qw), (qh, qw))?;
        let out: Vec<Vec<Vec<f32>>> = out.to_vec3()?;
        let qv: Vec<Vec<Vec<f32>>> = q.to_vec3()?;
        let av: Vec<Vec<Vec<f32>>> = attn.to_vec3()?;
        let thv: Vec<Vec<f32>> = th.to_vec2()?;
        let twv: Vec<Vec<f32>> = tw.to_vec2()?;
        for bb in 0..b {
            for i in 0..qh {
                for j in 0..qw {
                    for k in 0..qh {
                        for l in 0..qw {
                            let qi = &qv[bb][i * qw + j];
                            let rh = &thv[i + qh - 1 - k];
                            let rw = &twv[j + qw - 1 - l];
                            let e = av[bb][i * qw + j][k * qw + l]
                                + (0..hd).map(|c| qi[c] * rh[c]).sum::<f32>()
                                + (0..hd).map(|c| qi[c] * rw[c]).sum::<f32>();
                            let g = out[bb][i * qw + j][k * qw + l];
                            assert!((e - g).abs() < 1e-5, "{e} vs {g}");
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
