//! CPU kernels (f32): a shifted-GEMM fast path for depth-only kernels `(kd, 1, 1)` and a general
//! path (chunked vol2col + GEMM). GEMMs run on the `gemm` crate (candle's own CPU matmul
//! backend), multi-threaded on rayon's global pool.
//!
//! All buffers are contiguous and row-major: input (N, C, D, H, W), weight (O, C, kd, kh, kw),
//! output (N, O, OD, OH, OW). The gradient with respect to the input is the forward of the
//! [transposed geometry](crate::Conv3dGeometry::transposed) with the flipped, channel-swapped
//! weight, so it reuses these kernels.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::op::Conv3dGeometry;

/// Upper bound on the floats held by one vol2col chunk (16 MiB of f32), so that realistic
/// shapes never materialise a column matrix of the whole volume.
const COL_BUDGET: usize = 1 << 22;

fn parallelism() -> Parallelism {
    let n = rayon::current_num_threads();
    if n > 1 {
        Parallelism::Rayon(n)
    } else {
        Parallelism::None
    }
}

/// A strided read-only matrix view into a slice, bounds-checked on construction.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    off: usize,
    rs: usize,
    cs: usize,
}

fn check_bounds(len: usize, off: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    let last = off + (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last < len,
        "conv3d internal: strided view out of bounds ({last} >= {len})"
    );
}

/// `dst (m×n) += lhs (m×k) · rhs (k×n)` for strided views, through `gemm`.
fn gemm_acc(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_off: usize,
    dst_rs: usize,
    dst_cs: usize,
    lhs: Mat,
    rhs: Mat,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    check_bounds(dst.len(), dst_off, m, n, dst_rs, dst_cs);
    check_bounds(lhs.data.len(), lhs.off, m, k, lhs.rs, lhs.cs);
    check_bounds(rhs.data.len(), rhs.off, k, n, rhs.rs, rhs.cs);
    // SAFETY: every pointer/stride combination was bounds-checked above, `dst` is borrowed
    // mutably and does not alias `lhs`/`rhs` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(dst_off),
            dst_cs as isize,
            dst_rs as isize,
            true,
            lhs.data.as_ptr().add(lhs.off),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.off),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism(),
        )
    }
}

/// The output depth range `[z0, z1)` whose source slice `z + shift` lies in `[0, d)`.
fn valid_range(out: usize, inp: usize, shift: isize) -> Option<(usize, usize)> {
    let z0 = (-shift).max(0);
    let z1 = (out as isize).min(inp as isize - shift);
    (z1 > z0).then_some((z0 as usize, z1 as usize))
}

/// Forward convolution: `y = conv3d(x, w) + b`.
///
/// # Shapes
/// - `x`: (N, C, D, H, W), `w`: (O, C, kd, kh, kw), `b`: (O,)
/// - returns (N, O, OD, OH, OW) as a flat vector
///
/// `fast` selects the depth-only GEMM path; it is used only when the geometry
/// [is depth-only](Conv3dGeometry::is_depth_only).
pub fn conv3d_forward(
    g: &Conv3dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    fast: bool,
) -> Vec<f32> {
    let plane: usize = g.output.iter().product();
    let mut y = vec![0f32; g.batch * g.out_channels * plane];
    if let Some(b) = b {
        let o = g.out_channels;
        y.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, ch)| ch.fill(b[i % o]));
    }
    if fast && g.is_depth_only() {
        depth_only_forward(g, x, w, &mut y);
    } else {
        general_forward(g, x, w, &mut y);
    }
    y
}

/// Gradient with respect to the weight: `gw[o, c, t] = Σ_{n, z} gy[n, o, z] · x[n, c, z + t − pad]`.
///
/// # Shapes
/// - `x`: (N, C, D, H, W), `gy`: (N, O, OD, OH, OW)
/// - returns (O, C, kd, kh, kw) as a flat vector
///
/// `fast` as in [`conv3d_forward`].
pub fn conv3d_weight_grad(g: &Conv3dGeometry, x: &[f32], gy: &[f32], fast: bool) -> Vec<f32> {
    if fast && g.is_depth_only() {
        depth_only_weight_grad(g, x, gy)
    } else {
        general_weight_grad(g, x, gy)
    }
}

// ---- depth-only kernels (kd, 1, 1): kd shifted GEMMs per volume --------------------------------

fn depth_only_forward(g: &Conv3dGeometry, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (c, o, kd) = (g.in_channels, g.out_channels, g.kernel[0]);
    let (d, od) = (g.input[0], g.output[0]);
    let hw = g.input[1] * g.input[2];
    for n in 0..g.batch {
        let xn = &x[n * c * d * hw..(n + 1) * c * d * hw];
        let yn = &mut y[n * o * od * hw..(n + 1) * o * od * hw];
        for t in 0..kd {
            let shift = t as isize - g.pad_front[0];
            let Some((z0, z1)) = valid_range(od, d, shift) else {
                continue;
            };
            let s0 = (z0 as isize + shift) as usize;
            let lhs = Mat {
                data: w,
                off: t,
                rs: c * kd,
                cs: kd,
            };
            let rhs = Mat {
                data: xn,
                off: s0 * hw,
                rs: d * hw,
                cs: 1,
            };
            gemm_acc(o, (z1 - z0) * hw, c, yn, z0 * hw, od * hw, 1, lhs, rhs);
        }
    }
}

fn depth_only_weight_grad(g: &Conv3dGeometry, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (c, o, kd) = (g.in_channels, g.out_channels, g.kernel[0]);
    let (d, od) = (g.input[0], g.output[0]);
    let hw = g.input[1] * g.input[2];
    let mut gw = vec![0f32; o * c * kd];
    let mut tap = vec![0f32; o * c];
    for t in 0..kd {
        let shift = t as isize - g.pad_front[0];
        let Some((z0, z1)) = valid_range(od, d, shift) else {
            continue;
        };
        let s0 = (z0 as isize + shift) as usize;
        tap.fill(0.0);
        for n in 0..g.batch {
            let gn = &gy[n * o * od * hw..(n + 1) * o * od * hw];
            let xn = &x[n * c * d * hw..(n + 1) * c * d * hw];
            // (O × L) · (L × C), L = the valid depth range × H·W
            let lhs = Mat {
                data: gn,
                off: z0 * hw,
                rs: od * hw,
                cs: 1,
            };
            let rhs = Mat {
                data: xn,
                off: s0 * hw,
                rs: 1,
                cs: d * hw,
            };
            gemm_acc(o, c, (z1 - z0) * hw, &mut tap, 0, c, 1, lhs, rhs);
        }
        for (i, v) in tap.iter().enumerate() {
            gw[i * kd + t] = *v;
        }
    }
    gw
}

// ---- general kernels: chunked vol2col + GEMM ---------------------------------------------------

/// Output depth slices per vol2col chunk.
fn chunk_depth(g: &Conv3dGeometry) -> usize {
    let rows = g.in_channels * g.kernel.iter().product::<usize>();
    let plane = g.output[1] * g.output[2];
    (COL_BUDGET / (rows * plane).max(1)).clamp(1, g.output[0])
}

/// Fills `col` (rows = C·kd·kh·kw, cols = (z1 − z0)·OH·OW) with the input patches of output
/// depth slices `z0..z1` of one volume `xn` (C, D, H, W); out-of-range taps read zero.
fn vol2col(g: &Conv3dGeometry, xn: &[f32], z0: usize, z1: usize, col: &mut [f32]) {
    let [d, h, w] = g.input;
    let [kd, kh, kw] = g.kernel;
    let [pd, ph, pw] = g.pad_front;
    let (oh, ow) = (g.output[1], g.output[2]);
    let plane = oh * ow;
    let cols = (z1 - z0) * plane;
    col.par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
        let tw = r % kw;
        let th = (r / kw) % kh;
        let td = (r / (kw * kh)) % kd;
        let ci = r / (kw * kh * kd);
        let src_c = &xn[ci * d * h * w..(ci + 1) * d * h * w];
        let (x0, x1) = valid_range(ow, w, tw as isize - pw).unwrap_or_default();
        for (zl, zrow) in row.chunks_mut(plane).enumerate() {
            let sd = (z0 + zl) as isize + td as isize - pd;
            if sd < 0 || sd >= d as isize {
                zrow.fill(0.0);
                continue;
            }
            let src_d = &src_c[sd as usize * h * w..(sd as usize + 1) * h * w];
            for (yo, seg) in zrow.chunks_mut(ow).enumerate() {
                let sh = yo as isize + th as isize - ph;
                if sh < 0 || sh >= h as isize || x1 <= x0 {
                    seg.fill(0.0);
                    continue;
                }
                let src = &src_d[sh as usize * w..(sh as usize + 1) * w];
                seg[..x0].fill(0.0);
                let sx0 = (x0 as isize + tw as isize - pw) as usize;
                seg[x0..x1].copy_from_slice(&src[sx0..sx0 + (x1 - x0)]);
                seg[x1..].fill(0.0);
            }
        }
    });
}

fn general_forward(g: &Conv3dGeometry, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (c, o) = (g.in_channels, g.out_channels);
    let rows = c * g.kernel.iter().product::<usize>();
    let in_vol = c * g.input.iter().product::<usize>();
    let od = g.output[0];
    let plane = g.output[1] * g.output[2];
    let zc = chunk_depth(g);
    let mut col = vec![0f32; rows * zc * plane];
    for n in 0..g.batch {
        let xn = &x[n * in_vol..(n + 1) * in_vol];
        let yn = &mut y[n * o * od * plane..(n + 1) * o * od * plane];
        for z0 in (0..od).step_by(zc) {
            let z1 = (z0 + zc).min(od);
            let cols = (z1 - z0) * plane;
            let col = &mut col[..rows * cols];
            vol2col(g, xn, z0, z1, col);
            let lhs = Mat {
                data: w,
                off: 0,
                rs: rows,
                cs: 1,
            };
            let rhs = Mat {
                data: col,
                off: 0,
                rs: cols,
                cs: 1,
            };
            gemm_acc(o, cols, rows, yn, z0 * plane, od * plane, 1, lhs, rhs);
        }
    }
}

fn general_weight_grad(g: &Conv3dGeometry, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (c, o) = (g.in_channels, g.out_channels);
    let rows = c * g.kernel.iter().product::<usize>();
    let in_vol = c * g.input.iter().product::<usize>();
    let od = g.output[0];
    let plane = g.output[1] * g.output[2];
    let zc = chunk_depth(g);
    let mut col = vec![0f32; rows * zc * plane];
    let mut gw = vec![0f32; o * rows];
    for n in 0..g.batch {
        let xn = &x[n * in_vol..(n + 1) * in_vol];
        let gn = &gy[n * o * od * plane..(n + 1) * o * od * plane];
        for z0 in (0..od).step_by(zc) {
            let z1 = (z0 + zc).min(od);
            let cols = (z1 - z0) * plane;
            let col = &mut col[..rows * cols];
            vol2col(g, xn, z0, z1, col);
            // (O × P) · (P × C·k): the column matrix read transposed
            let lhs = Mat {
                data: gn,
                off: z0 * plane,
                rs: od * plane,
                cs: 1,
            };
            let rhs = Mat {
                data: col,
                off: 0,
                rs: 1,
                cs: cols,
            };
            gemm_acc(o, rows, cols, &mut gw, 0, rows, 1, lhs, rhs);
        }
    }
    gw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Conv3dPadding;

    /// Direct 7-loop convolution, the simplest possible oracle.
    fn naive(g: &Conv3dGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let [d, h, wd] = g.input;
        let [kd, kh, kw] = g.kernel;
        let [od, oh, ow] = g.output;
        let (c, o) = (g.in_channels, g.out_channels);
        let mut y = vec![0f32; g.batch * o * od * oh * ow];
        for n in 0..g.batch {
            for oc in 0..o {
                for z in 0..od {
                    for yy in 0..oh {
                        for xx in 0..ow {
                            let mut acc = 0f64;
                            for ci in 0..c {
                                for a in 0..kd {
                                    for b in 0..kh {
                                        for e in 0..kw {
                                            let sd = z as isize + a as isize - g.pad_front[0];
                                            let sh = yy as isize + b as isize - g.pad_front[1];
                                            let sw = xx as isize + e as isize - g.pad_front[2];
                                            if sd < 0 || sh < 0 || sw < 0 {
                                                continue;
                                            }
                                            let (sd, sh, sw) =
                                                (sd as usize, sh as usize, sw as usize);
                                            if sd >= d || sh >= h || sw >= wd {
                                                continue;
                                            }
                                            let xi = (((n * c + ci) * d + sd) * h + sh) * wd + sw;
                                            let wi = (((oc * c + ci) * kd + a) * kh + b) * kw + e;
                                            acc += (x[xi] * w[wi]) as f64;
                                        }
                                    }
                                }
                            }
                            y[(((n * o + oc) * od + z) * oh + yy) * ow + xx] = acc as f32;
                        }
                    }
                }
            }
        }
        y
    }

    #[test]
    fn both_paths_match_naive_loops() {
        for (kernel, pad) in [
            ([3, 1, 1], Conv3dPadding::Same),
            ([2, 1, 1], Conv3dPadding::Same),
            ([3, 1, 1], Conv3dPadding::Explicit([4, 0, 0])),
            ([2, 3, 2], Conv3dPadding::Same),
            ([3, 2, 3], Conv3dPadding::Explicit([1, 2, 0])),
        ] {
            let (n, c, o, sp) = (2, 3, 4, [4, 5, 3]);
            let g = Conv3dGeometry::new(
                &[n, c, sp[0], sp[1], sp[2]],
                &[o, c, kernel[0], kernel[1], kernel[2]],
                pad,
            )
            .unwrap();
            let x: Vec<f32> = (0..n * c * sp.iter().product::<usize>())
                .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
                .collect();
            let w: Vec<f32> = (0..o * c * kernel.iter().product::<usize>())
                .map(|i| ((i * 11 % 7) as f32 - 3.0) / 5.0)
                .collect();
            let want = naive(&g, &x, &w);
            let mut got = vec![0f32; want.len()];
            general_forward(&g, &x, &w, &mut got);
            let err = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-5, "general path {kernel:?} {pad:?}: {err}");
            if g.is_depth_only() {
                let got = conv3d_forward(&g, &x, &w, None, true);
                let err = want
                    .iter()
                    .zip(&got)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(err < 1e-5, "depth-only path {kernel:?} {pad:?}: {err}");
            }
        }
    }
}
