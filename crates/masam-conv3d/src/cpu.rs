//! CPU kernels (f32): for depth-only kernels `(kd, 1, 1)` a shifted-GEMM path (exact) and a
//! [Winograd](crate::winograd) path (fewer GEMMs), and a general path (chunked vol2col + GEMM).
//! GEMMs run on the `gemm` crate (candle's own CPU matmul backend), multi-threaded on rayon's
//! global pool.
//!
//! All buffers are contiguous and row-major: input (N, C, D, H, W), weight (O, C, kd, kh, kw),
//! output (N, O, OD, OH, OW). The gradient with respect to the input is the forward of the
//! [transposed geometry](crate::Conv3dGeometry::transposed) with the flipped, channel-swapped
//! weight; the depth-only paths read that weight through strides instead of copying it.

use rayon::prelude::*;

use crate::geometry::{Conv3dGeometry, Conv3dKernel};
use crate::taps::Taps;
use crate::winograd;
use masam_nn::gemm::{gemm_acc, Mat, MatMut};

/// Upper bound on the floats held by one vol2col chunk (16 MiB of f32), so that realistic
/// shapes never materialise a column matrix of the whole volume.
const COL_BUDGET: usize = 1 << 22;

/// The output depth range `[z0, z1)` whose source slice `z + shift` lies in `[0, d)`.
fn valid_range(out: usize, inp: usize, shift: isize) -> Option<(usize, usize)> {
    let z0 = (-shift).max(0);
    let z1 = (out as isize).min(inp as isize - shift);
    (z1 > z0).then_some((z0 as usize, z1 as usize))
}

/// `Auto` runs Winograd only when `N·H·W` is at least this: its GEMMs have `N·H·W` columns
/// (forward, grad input) or that inner length (grad weight), against the exact path's
/// `≈ OD·N·H·W`, and its transforms cost about as much per column. Measured (C = O = 384,
/// D = 16, kd = 3): at H·W = 64 Winograd was 1.03× the exact time, at 256 0.77×.
pub const AUTO_MIN_COLUMNS: usize = 256;

/// The CPU kernel one product runs on, resolved from a [`Conv3dKernel`] and a geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPath {
    /// Chunked vol2col + GEMM (any geometry).
    General,
    /// Depth-only, exact: one shifted GEMM per tap over the valid depth range.
    DepthGemm,
    /// Depth-only, [Winograd](crate::winograd) tiles of at most `max_points` points.
    Winograd {
        /// Largest tile (`m + kd − 1` points).
        max_points: usize,
    },
}

/// Which path `kernel` runs on for the convolution `g` (for the input gradient, pass the
/// [transposed](Conv3dGeometry::transposed) geometry).
///
/// - `Auto`: Winograd when `g` is depth-only, tiles of at most
///   [`AUTO_MAX_POINTS`](winograd::AUTO_MAX_POINTS) points need at most 85 % of the exact path's
///   GEMMs (so never for kd = 1 or D ≤ 2) and `N·H·W ≥` [`AUTO_MIN_COLUMNS`] (tiny shapes gain
///   nothing); else the exact depth-only path when `g` is depth-only; else the general path.
///   Its Winograd error stays below [`AUTO_ERROR_BOUND`](winograd::AUTO_ERROR_BOUND) relative
///   to the exact path (measured).
/// - `DepthGemm`: the exact depth-only path when `g` is depth-only, else general.
/// - `Winograd`: Winograd whenever `g` is depth-only and kd ≤ [`winograd::MAX_POINTS`], even
///   without a gain (tests), else as `DepthGemm`.
/// - `General`: always the general path.
///
/// ```
/// use masam_conv3d::cpu::{select, CpuPath};
/// use masam_conv3d::{Conv3dGeometry, Conv3dKernel, Conv3dPadding};
/// let g = Conv3dGeometry::new(&[1, 384, 5, 32, 32], &[384, 384, 3, 1, 1], Conv3dPadding::Same).unwrap();
/// // tiles of 3 and 2 output slices: 5 + 4 = 9 GEMMs instead of 13
/// assert_eq!(select(Conv3dKernel::Auto, &g), CpuPath::Winograd { max_points: 6 });
/// let g = Conv3dGeometry::new(&[1, 8, 5, 4, 4], &[8, 8, 1, 1, 1], Conv3dPadding::Same).unwrap();
/// assert_eq!(select(Conv3dKernel::Auto, &g), CpuPath::DepthGemm);
/// ```
pub fn select(kernel: Conv3dKernel, g: &Conv3dGeometry) -> CpuPath {
    let depth = g.is_depth_only();
    match kernel {
        Conv3dKernel::General => CpuPath::General,
        _ if !depth => CpuPath::General,
        Conv3dKernel::DepthGemm => CpuPath::DepthGemm,
        Conv3dKernel::Winograd if g.kernel[0] <= winograd::MAX_POINTS => CpuPath::Winograd {
            max_points: winograd::AUTO_MAX_POINTS.max(g.kernel[0]),
        },
        Conv3dKernel::Winograd => CpuPath::DepthGemm,
        Conv3dKernel::Auto => {
            let max_points = winograd::AUTO_MAX_POINTS;
            let direct = winograd::direct_gemms(g);
            let wino = winograd::winograd_gemms(g, max_points);
            let columns = g.batch * g.input[1] * g.input[2];
            if g.kernel[0] > 1 && 100 * wino <= 85 * direct && columns >= AUTO_MIN_COLUMNS {
                CpuPath::Winograd { max_points }
            } else {
                CpuPath::DepthGemm
            }
        }
    }
}

/// `path` if `g` supports it, else the general path (or the exact one for oversized tiles).
fn checked(path: CpuPath, g: &Conv3dGeometry) -> CpuPath {
    match path {
        _ if !g.is_depth_only() => CpuPath::General,
        CpuPath::Winograd { max_points } => {
            let max_points = max_points.max(g.kernel[0]);
            if max_points <= winograd::MAX_POINTS {
                CpuPath::Winograd { max_points }
            } else {
                CpuPath::DepthGemm
            }
        }
        p => p,
    }
}

fn filled_output(g: &Conv3dGeometry, b: Option<&[f32]>) -> Vec<f32> {
    let plane: usize = g.output.iter().product();
    let mut y = vec![0f32; g.batch * g.out_channels * plane];
    if let Some(b) = b {
        let o = g.out_channels;
        y.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, ch)| ch.fill(b[i % o]));
    }
    y
}

/// Forward convolution: `y = conv3d(x, w) + b`, on the path [`select`]ed for `kernel`.
///
/// # Shapes
/// - `x`: (N, C, D, H, W), `w`: (O, C, kd, kh, kw), `b`: (O,)
/// - returns (N, O, OD, OH, OW) as a flat vector
pub fn conv3d_forward(
    g: &Conv3dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    kernel: Conv3dKernel,
) -> Vec<f32> {
    conv3d_forward_on(g, x, w, b, select(kernel, g))
}

/// [`conv3d_forward`] on an explicit path (the depth-only paths need
/// [`Conv3dGeometry::is_depth_only`], else the general path runs).
pub fn conv3d_forward_on(
    g: &Conv3dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    path: CpuPath,
) -> Vec<f32> {
    let mut y = filled_output(g, b);
    let taps = || Taps::forward(w, g.in_channels, g.kernel[0]);
    match checked(path, g) {
        CpuPath::General => general_forward(g, x, w, &mut y),
        CpuPath::DepthGemm => depth_only_forward(g, x, &taps(), &mut y),
        CpuPath::Winograd { max_points } => winograd::forward(g, x, &taps(), &mut y, max_points),
    }
    y
}

/// Gradient with respect to the input: the forward convolution of `gy` with the flipped,
/// channel-swapped weight on the [transposed](Conv3dGeometry::transposed) geometry. The
/// depth-only paths read the weight in place; the general path copies it flipped.
///
/// # Shapes
/// - `g`: the forward geometry; `gy`: (N, O, OD, OH, OW), `w`: (O, C, kd, kh, kw)
/// - returns (N, C, D, H, W) as a flat vector
pub fn conv3d_input_grad(
    g: &Conv3dGeometry,
    gy: &[f32],
    w: &[f32],
    kernel: Conv3dKernel,
) -> Vec<f32> {
    conv3d_input_grad_on(g, gy, w, select(kernel, &g.transposed()))
}

/// [`conv3d_input_grad`] on an explicit path.
pub fn conv3d_input_grad_on(g: &Conv3dGeometry, gy: &[f32], w: &[f32], path: CpuPath) -> Vec<f32> {
    let gt = g.transposed();
    let mut gx = filled_output(&gt, None);
    // taps of the transposed conv: (C × O) matrices, reading w (O, C, kd) flipped
    let taps = || Taps::transposed_flipped(w, g.in_channels, g.kernel[0]);
    match checked(path, &gt) {
        CpuPath::General => {
            let wt = flip_transpose(g, w);
            general_forward(&gt, gy, &wt, &mut gx)
        }
        CpuPath::DepthGemm => depth_only_forward(&gt, gy, &taps(), &mut gx),
        CpuPath::Winograd { max_points } => {
            winograd::forward(&gt, gy, &taps(), &mut gx, max_points)
        }
    }
    gx
}

/// `w'[c, o, a, b, e] = w[o, c, kd − 1 − a, kh − 1 − b, kw − 1 − e]`.
fn flip_transpose(g: &Conv3dGeometry, w: &[f32]) -> Vec<f32> {
    let (o, c) = (g.out_channels, g.in_channels);
    let [kd, kh, kw] = g.kernel;
    let k = kd * kh * kw;
    let mut out = vec![0f32; c * o * k];
    out.par_chunks_mut(k).enumerate().for_each(|(row, dst)| {
        let (ci, oi) = (row / o, row % o);
        let src = &w[(oi * c + ci) * k..(oi * c + ci + 1) * k];
        for (i, v) in dst.iter_mut().enumerate() {
            *v = src[k - 1 - i];
        }
    });
    out
}

/// Gradient with respect to the weight: `gw[o, c, t] = Σ_{n, z} gy[n, o, z] · x[n, c, z + t − pad]`.
///
/// # Shapes
/// - `x`: (N, C, D, H, W), `gy`: (N, O, OD, OH, OW)
/// - returns (O, C, kd, kh, kw) as a flat vector
pub fn conv3d_weight_grad(
    g: &Conv3dGeometry,
    x: &[f32],
    gy: &[f32],
    kernel: Conv3dKernel,
) -> Vec<f32> {
    conv3d_weight_grad_on(g, x, gy, select(kernel, g))
}

/// [`conv3d_weight_grad`] on an explicit path.
pub fn conv3d_weight_grad_on(g: &Conv3dGeometry, x: &[f32], gy: &[f32], path: CpuPath) -> Vec<f32> {
    match checked(path, g) {
        CpuPath::General => general_weight_grad(g, x, gy),
        CpuPath::DepthGemm => depth_only_weight_grad(g, x, gy),
        CpuPath::Winograd { max_points } => winograd::weight_grad(g, x, gy, max_points),
    }
}

/// Gradient with respect to the bias: `gb[o] = Σ_{n, z, y, x} gy[n, o, z, y, x]`, one pass,
/// summed in f64.
///
/// # Shapes
/// - `gy`: (N, O, OD, OH, OW); returns (O,)
pub fn conv3d_bias_grad(g: &Conv3dGeometry, gy: &[f32]) -> Vec<f32> {
    let o = g.out_channels;
    let plane: usize = g.output.iter().product();
    (0..o)
        .into_par_iter()
        .map(|oi| {
            let mut s = 0f64;
            for n in 0..g.batch {
                let row = &gy[(n * o + oi) * plane..(n * o + oi + 1) * plane];
                // 8 lanes of f32 partial sums per block, then f64
                for ch in row.chunks(1024) {
                    let mut lanes = [0f32; 8];
                    let mut it = ch.chunks_exact(8);
                    for v in &mut it {
                        for (l, x) in lanes.iter_mut().zip(v) {
                            *l += x;
                        }
                    }
                    s += it.remainder().iter().map(|v| f64::from(*v)).sum::<f64>();
                    s += lanes.iter().map(|v| f64::from(*v)).sum::<f64>();
                }
            }
            s as f32
        })
        .collect()
}

// ---- depth-only kernels (kd, 1, 1): kd shifted GEMMs per volume --------------------------------

fn depth_only_forward(g: &Conv3dGeometry, x: &[f32], taps: &Taps, y: &mut [f32]) {
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
            let rhs = Mat {
                data: xn,
                off: s0 * hw,
                rs: d * hw,
                cs: 1,
            };
            gemm_acc(
                o,
                (z1 - z0) * hw,
                c,
                MatMut::rows(yn, z0 * hw, od * hw),
                taps.mat(t),
                rhs,
            );
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
            gemm_acc(o, c, (z1 - z0) * hw, MatMut::rows(&mut tap, 0, c), lhs, rhs);
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
            gemm_acc(
                o,
                cols,
                rows,
                MatMut::rows(yn, z0 * plane, od * plane),
                lhs,
                rhs,
            );
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
            gemm_acc(o, rows, cols, MatMut::rows(&mut gw, 0, rows), lhs, rhs);
        }
    }
    gw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Conv3dPadding;

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
                for k in [Conv3dKernel::DepthGemm, Conv3dKernel::Winograd] {
                    let got = conv3d_forward(&g, &x, &w, None, k);
                    let err = want
                        .iter()
                        .zip(&got)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(err < 1e-5, "{k:?} path {kernel:?} {pad:?}: {err}");
                }
            }
        }
    }

    #[test]
    fn winograd_column_chunks_match_the_exact_path() {
        // H·W = 150, split into pieces of 50 columns when a batch holds at most 64
        let (n, c, o, d, kd) = (2, 5, 3, 6, 3);
        let g = Conv3dGeometry::new(&[n, c, d, 10, 15], &[o, c, kd, 1, 1], Conv3dPadding::Same)
            .unwrap();
        assert_eq!(winograd::column_chunk_within(&g, 5, 5 * 8 * 64), 64);
        let x: Vec<f32> = (0..n * c * d * 150)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let w: Vec<f32> = (0..o * c * kd)
            .map(|i| ((i * 11 % 13) as f32 - 6.0) / 9.0)
            .collect();
        let gy: Vec<f32> = (0..n * o * d * 150)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 11.0)
            .collect();
        let want_y = conv3d_forward_on(&g, &x, &w, None, CpuPath::DepthGemm);
        let want_gw = conv3d_weight_grad_on(&g, &x, &gy, CpuPath::DepthGemm);
        // 64 columns: one 50-column piece per batch; 400: pieces of several tiles and both
        // volumes share a batch
        for (max_points, cap) in [(3, 64), (4, 64), (6, 64), (3, 400), (4, 400), (6, 400)] {
            let alpha = max_points.max(kd);
            let budget = alpha * (c + o) * cap;
            let mut y = vec![0f32; want_y.len()];
            winograd::forward_within(
                &g,
                &x,
                &Taps::forward(&w, c, kd),
                &mut y,
                max_points,
                budget,
            );
            let gw = winograd::weight_grad_within(&g, &x, &gy, max_points, budget);
            for (got, want) in [(&y, &want_y), (&gw, &want_gw)] {
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let err = got
                    .iter()
                    .zip(want.iter())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    err <= 2e-6 * scale,
                    "{max_points} points: {err} (scale {scale})"
                );
            }
        }
    }

    #[test]
    fn winograd_weight_grad_covers_planes_of_any_size() {
        // O × C = 70 × 70 = 4900: not a multiple of the 4096-float output-transform chunk
        let (n, c, o, d, kd) = (1, 70, 70, 5, 3);
        let g =
            Conv3dGeometry::new(&[n, c, d, 2, 4], &[o, c, kd, 1, 1], Conv3dPadding::Same).unwrap();
        let x: Vec<f32> = (0..n * c * d * 8)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let gy: Vec<f32> = (0..n * o * d * 8)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 11.0)
            .collect();
        let want = conv3d_weight_grad_on(&g, &x, &gy, CpuPath::DepthGemm);
        let got = winograd::weight_grad(&g, &x, &gy, 6);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err <= 2e-6 * scale, "{err} (scale {scale})");
    }
}
