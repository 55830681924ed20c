//! Winograd / Toom-Cook minimal filtering along depth for depth-only `(kd, 1, 1)` kernels.
//!
//! A depth-only convolution is a 1D correlation along depth whose "scalars" are matrices: the
//! taps are (O × C) matrices `W_t` and the samples are (C × H·W) slabs `x_z`. Minimal filtering
//! `F(m, r)` computes `m` outputs of an `r`-tap correlation from `α = m + r − 1` products instead
//! of `m·r`:
//!
//! `y = Aᵀ [(G g) ⊙ (Bᵀ d)]`, `Aᵀ` (m × α), `G` (α × r), `Bᵀ` (α × α),
//!
//! where each `⊙` is one GEMM. The matrices come from evaluating the two factors of a linear
//! convolution at `α − 1` finite points and at ∞, and interpolating back (Toom-Cook); see
//! [`Transform::new`].
//!
//! * forward / grad input: tiles of `m` output slices, `F(m, kd)`, one GEMM
//!   `(O × C) · (C × H·W)` per transformed point, weight transform in f64;
//! * grad weight: `gw_t = Σ_n Σ_z gy_z · x_{z+t−p}ᵀ` is a correlation whose "filter" is `gy`
//!   along depth, so tiles of `m` slices of `gy` use `F(kd, m)`, one GEMM
//!   `(O × H·W) · (H·W × C)` per point, accumulated over the batch, output transform in f64.
//!
//! All data transforms accumulate in f64 and round once. Buffers hold one tile of one volume,
//! `α·(C + O)` rows of at most [`column_chunk`] columns, never a batch-sized copy.

use rayon::prelude::*;

use crate::geometry::Conv3dGeometry;
use crate::taps::Taps;
use masam_nn::gemm::{gemm_into, Mat, MatMut};

/// The largest number of points (`α = m + r − 1`) the [`Conv3dKernel::Auto`] selection uses.
///
/// Measured with `examples/winograd_accuracy.rs` (error relative to the exact path, random
/// data at PyTorch's init scale, N = 2): over kd 1–5, D 1–16 at C = O = 96, H·W = 64 (3 seeds)
/// tiles of at most 6 points stay within 2.0e-6 on all three products (what Auto runs: within
/// 1.6e-6; 7 points: 3.9e-6, 9 points: 2e-5); on the adapter shape (C = O = 384, H·W = 1024,
/// D = 5, kd = 3) within 1.8e-6 (7 points: 5.1e-6, and no 7-point set found below 3.5e-6).
/// The exact path itself is 0.3–1.2e-6 from an f64 loop. With 6 points the adapter runs as
/// tiles of 3 and 2 output slices (5 + 4 = 9 GEMMs instead of 13), not as one 7-point tile.
///
/// [`Conv3dKernel::Auto`]: crate::Conv3dKernel::Auto
pub const AUTO_MAX_POINTS: usize = 6;

/// The relative error (`max|a − b| / max|b|`, against the exact shifted-GEMM path) measured
/// for [`AUTO_MAX_POINTS`] (an empirical figure for random data, not a proof; it grows
/// slowly with the channel count, like the exact path's own error).
pub const AUTO_ERROR_BOUND: f64 = 2e-6;

/// The most points any transform supports (the length of the finite point list plus ∞).
pub const MAX_POINTS: usize = 16;

/// Float budget of the per-tile buffers (`α·(C + O)·columns`), 32 MiB of f32.
const BUDGET: usize = 1 << 23;

/// Finite interpolation points, in the order they are taken: `α` points use the first `α − 1`
/// of them plus ∞. Small integers and their reciprocals (powers of two first) keep the
/// transform coefficients small and, for powers of two, exact.
const POINTS: [f64; MAX_POINTS - 1] = [
    0.0,
    1.0,
    -1.0,
    0.5,
    -2.0,
    -0.5,
    2.0,
    0.25,
    -4.0,
    -0.25,
    4.0,
    1.0 / 3.0,
    -3.0,
    -1.0 / 3.0,
    3.0,
];

/// Finite points for 5-point transforms (`F(3, 3)`, the adapter's larger tile): without 0 the
/// f32 error is half that of `0, 1, −1, ½` (numpy search over 330 sets at C = 384: 1.5e-6
/// against 3.0e-6 for the forward; confirmed on all three products by
/// `examples/winograd_accuracy.rs`).
const POINTS_5: [f64; 4] = [1.0, 0.5, -0.5, -1.5];

/// The finite points used by a transform with `alpha` points (the last point is ∞).
///
/// ```
/// assert_eq!(masam_conv3d::winograd::points(4), &[0.0, 1.0, -1.0]);
/// assert_eq!(masam_conv3d::winograd::points(5), &[1.0, 0.5, -0.5, -1.5]);
/// ```
pub fn points(alpha: usize) -> &'static [f64] {
    if alpha == 5 {
        return &POINTS_5;
    }
    &POINTS[..alpha.clamp(1, MAX_POINTS) - 1]
}

/// Where the interpolation scale `1 / Π_{j≠i}(a_i − a_j)` of each point goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Into `G` (the filter transform): used when the filter is a weight, transformed in f64.
    Filter,
    /// Into `Aᵀ` (the output transform): used for the weight gradient, whose outputs are small
    /// (O × C) matrices transformed in f64.
    Output,
}

/// The three matrices of `F(m, r)` for a point set, row-major, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    /// Outputs per tile.
    pub m: usize,
    /// Filter taps.
    pub r: usize,
    /// Points (products) per tile, `m + r − 1`.
    pub alpha: usize,
    /// `Aᵀ`, (m × α).
    pub at: Vec<f64>,
    /// `G`, (α × r).
    pub g: Vec<f64>,
    /// `Bᵀ`, (α × α).
    pub bt: Vec<f64>,
}

/// Coefficients (lowest degree first) of `Π (X − a)` over `roots`.
fn poly_from_roots(roots: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut p = vec![1.0];
    for a in roots {
        let mut q = vec![0.0; p.len() + 1];
        for (k, c) in p.iter().enumerate() {
            q[k + 1] += c;
            q[k] -= a * c;
        }
        p = q;
    }
    p
}

impl Transform {
    /// `F(m, r)` on the default [`points`]: the correlation `y_k = Σ_t g_t d_{k+t}`,
    /// `k < m`, `t < r`, is `Aᵀ [(G g) ⊙ (Bᵀ d)]`.
    ///
    /// Returns `None` when `m` or `r` is zero or `m + r − 1 > MAX_POINTS`.
    ///
    /// ```
    /// use masam_conv3d::winograd::{Scale, Transform};
    /// let t = Transform::new(2, 3, Scale::Filter).unwrap();
    /// let (g, d) = ([1.0, 2.0, 3.0], [1.0, -1.0, 4.0, 2.0]);
    /// let u: Vec<f64> = (0..4).map(|i| (0..3).map(|j| t.g[i * 3 + j] * g[j]).sum()).collect();
    /// let v: Vec<f64> = (0..4).map(|i| (0..4).map(|j| t.bt[i * 4 + j] * d[j]).sum()).collect();
    /// let y: Vec<f64> = (0..2).map(|k| (0..4).map(|i| t.at[k * 4 + i] * u[i] * v[i]).sum()).collect();
    /// assert_eq!(y, vec![11.0, 13.0]); // 1·1 − 2·1 + 3·4, 1·(−1) + 2·4 + 3·2
    /// ```
    pub fn new(m: usize, r: usize, scale: Scale) -> Option<Self> {
        if m == 0 || r == 0 || m + r - 1 > MAX_POINTS {
            return None;
        }
        Some(Self::with_points(m, r, points(m + r - 1), scale))
    }

    /// `F(m, r)` on explicit finite points (`m + r − 2` distinct values; ∞ is implied).
    ///
    /// # Panics
    /// If the number of points is not `m + r − 2` (a programming error, not data).
    pub fn with_points(m: usize, r: usize, pts: &[f64], scale: Scale) -> Self {
        let alpha = m + r - 1;
        assert_eq!(
            pts.len(),
            alpha - 1,
            "F({m}, {r}) needs {} points",
            alpha - 1
        );
        let inf = alpha - 1;
        let mut at = vec![0.0; m * alpha];
        let mut g = vec![0.0; alpha * r];
        let mut bt = vec![0.0; alpha * alpha];
        for (i, &a) in pts.iter().enumerate() {
            let den: f64 = pts
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &b)| a - b)
                .product();
            let num = poly_from_roots(
                pts.iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &b)| b),
            );
            bt[i * alpha..i * alpha + num.len()].copy_from_slice(&num);
            let (sg, sa) = match scale {
                Scale::Filter => (1.0 / den, 1.0),
                Scale::Output => (1.0, 1.0 / den),
            };
            for t in 0..r {
                g[i * r + t] = a.powi(t as i32) * sg;
            }
            for k in 0..m {
                at[k * alpha + i] = a.powi(k as i32) * sa;
            }
        }
        let full = poly_from_roots(pts.iter().copied());
        bt[inf * alpha..(inf + 1) * alpha].copy_from_slice(&full);
        g[inf * r + r - 1] = 1.0;
        at[(m - 1) * alpha + inf] = 1.0;
        Self {
            m,
            r,
            alpha,
            at,
            g,
            bt,
        }
    }

    /// The non-zero entries of row `i` of `Bᵀ` as (column, value).
    fn bt_row(&self, i: usize) -> Vec<(usize, f64)> {
        nonzero(&self.bt[i * self.alpha..(i + 1) * self.alpha])
    }
}

fn nonzero(row: &[f64]) -> Vec<(usize, f64)> {
    row.iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(j, v)| (j, *v))
        .collect()
}

/// Splits `len` slices into tiles `(start, size)` of at most `max_points − taps + 1` slices
/// each (at least one), as balanced as possible (smaller tiles are more accurate).
///
/// ```
/// use masam_conv3d::winograd::tiles;
/// assert_eq!(tiles(5, 3, 7), vec![(0, 5)]);
/// assert_eq!(tiles(16, 3, 7), vec![(0, 4), (4, 4), (8, 4), (12, 4)]);
/// assert_eq!(tiles(3, 5, 4), vec![(0, 1), (1, 1), (2, 1)]);
/// ```
pub fn tiles(len: usize, taps: usize, max_points: usize) -> Vec<(usize, usize)> {
    let m_max = (max_points + 1).saturating_sub(taps).max(1);
    let count = len.div_ceil(m_max);
    let mut out = Vec::with_capacity(count);
    let mut start = 0;
    for i in 0..count {
        let size = len / count + usize::from(i < len % count);
        out.push((start, size));
        start += size;
    }
    out
}

/// GEMMs of the exact shifted path: the (output slice, tap) pairs that read a real input slice.
pub fn direct_gemms(g: &Conv3dGeometry) -> usize {
    let (d, od) = (g.input[0] as isize, g.output[0] as isize);
    (0..g.kernel[0] as isize)
        .map(|t| {
            let shift = t - g.pad_front[0];
            let z0 = (-shift).max(0);
            let z1 = od.min(d - shift);
            (z1 - z0).max(0) as usize
        })
        .sum()
}

/// GEMMs of the Winograd path with tiles of at most `max_points` points (forward, grad input
/// and grad weight all use the same count: `Σ_tiles (m + kd − 1)` over the output depth).
pub fn winograd_gemms(g: &Conv3dGeometry, max_points: usize) -> usize {
    let kd = g.kernel[0];
    tiles(g.output[0], kd, max_points)
        .iter()
        .map(|&(_, m)| m + kd - 1)
        .sum()
}

/// Columns per GEMM batch (pieces of H·W slabs of several tiles and volumes side by side), so
/// that the buffers of one batch, `α·(C + O)` rows, stay within 32 MiB.
pub fn column_chunk(g: &Conv3dGeometry, alpha: usize) -> usize {
    column_chunk_within(g, alpha, BUDGET)
}

pub(crate) fn column_chunk_within(g: &Conv3dGeometry, alpha: usize, budget: usize) -> usize {
    let rows = alpha * (g.in_channels + g.out_channels);
    (budget / rows.max(1)).max(64)
}

/// Source depth slice of padded index `j` (a slice of the zero-padded input), if it is real.
fn source(g: &Conv3dGeometry, j: usize) -> Option<usize> {
    let padded_len = g.output[0] + g.kernel[0] - 1;
    let s = j as isize - g.pad_front[0];
    (j < padded_len && s >= 0 && (s as usize) < g.input[0]).then_some(s as usize)
}

/// Scratch buffers kept between calls: a fresh 10–30 MiB buffer per call costs milliseconds of
/// page faults (the kernel zeroes every page on first touch), as much as the transforms.
/// At most [`POOL_KEEP`] buffers of at most [`BUDGET`] floats each are kept.
static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());
const POOL_KEEP: usize = 8;

/// A buffer of `len` floats (contents unspecified) from the pool, returned on drop.
struct Scratch(Vec<f32>);

impl Scratch {
    fn new(len: usize) -> Self {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let pick = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let mut buf = match pick {
            Some(i) => pool.swap_remove(i),
            None => Vec::new(),
        };
        drop(pool);
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        buf.truncate(len);
        Self(buf)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if buf.capacity() > BUDGET {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        pool.push(buf);
        if pool.len() > POOL_KEEP {
            // drop the smallest
            let i = (0..pool.len())
                .min_by_key(|&i| pool[i].capacity())
                .unwrap_or(0);
            pool.swap_remove(i);
        }
    }
}

const BLOCK: usize = 64;
/// Accumulators per inner step of a transform (two AVX-512 registers of f64).
const LANES: usize = 16;

/// `dsts[i] (+)= Σ_j coefs[i][j] · srcs[j]` for all rows `i` at once: each source block is
/// converted to f64 once and reused by every output (f64 sums, one rounding per output).
#[inline(always)]
fn transform_body(
    coefs: &[Vec<(usize, f64)>],
    srcs: &[Option<&[f32]>],
    dsts: &mut [&mut [f32]],
    accumulate: bool,
) {
    let Some(len) = dsts.first().map(|d| d.len()) else {
        return;
    };
    // the coefficients of real (non-zero) sources only
    let rows: Vec<Vec<(usize, f64)>> = coefs
        .iter()
        .map(|r| {
            r.iter()
                .copied()
                .filter(|&(j, _)| srcs[j].is_some())
                .collect()
        })
        .collect();
    let mut buf = [[0f64; BLOCK]; MAX_POINTS];
    for b0 in (0..len).step_by(BLOCK) {
        let bl = BLOCK.min(len - b0);
        for (src, dst) in srcs.iter().zip(buf.iter_mut()) {
            if let Some(src) = src {
                for (d, v) in dst[..bl].iter_mut().zip(&src[b0..b0 + bl]) {
                    *d = f64::from(*v);
                }
            }
        }
        for (row, dst) in rows.iter().zip(dsts.iter_mut()) {
            let dst = &mut dst[b0..b0 + bl];
            // LANES accumulators stay in registers across all terms of the row
            let mut k0 = 0;
            while k0 < bl {
                let n = LANES.min(bl - k0);
                let mut acc = [0f64; LANES];
                if accumulate {
                    for (a, d) in acc.iter_mut().zip(&dst[k0..k0 + n]) {
                        *a = f64::from(*d);
                    }
                }
                for &(j, c) in row {
                    let src = &buf[j][k0..k0 + n];
                    if n == LANES {
                        for (a, v) in acc.iter_mut().zip(src) {
                            *a += c * v;
                        }
                    } else {
                        for (a, v) in acc[..n].iter_mut().zip(src) {
                            *a += c * v;
                        }
                    }
                }
                for (d, a) in dst[k0..k0 + n].iter_mut().zip(&acc) {
                    *d = *a as f32;
                }
                k0 += n;
            }
        }
    }
}

/// [`transform_body`] compiled for AVX-512.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn transform_avx512(
    coefs: &[Vec<(usize, f64)>],
    srcs: &[Option<&[f32]>],
    dsts: &mut [&mut [f32]],
    accumulate: bool,
) {
    transform_body(coefs, srcs, dsts, accumulate)
}

/// [`transform_body`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_avx2(
    coefs: &[Vec<(usize, f64)>],
    srcs: &[Option<&[f32]>],
    dsts: &mut [&mut [f32]],
    accumulate: bool,
) {
    transform_body(coefs, srcs, dsts, accumulate)
}

/// One data transform: output row `i` (of `dsts`) is `Σ_j coefs[i][j] · srcs[j]` (a `None`
/// source is zero), plus its old value with `accumulate`.
fn transform(
    coefs: &[Vec<(usize, f64)>],
    srcs: &[Option<&[f32]>],
    dsts: &mut [&mut [f32]],
    accumulate: bool,
) {
    debug_assert!(srcs.len() <= MAX_POINTS && coefs.len() == dsts.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        // SAFETY: AVX-512F/VL are available (checked just above).
        return unsafe { transform_avx512(coefs, srcs, dsts, accumulate) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA are available (checked just above).
        return unsafe { transform_avx2(coefs, srcs, dsts, accumulate) };
    }
    transform_body(coefs, srcs, dsts, accumulate)
}

/// The `w`-column windows starting at `off` of the consecutive `stride`-long rows of `buf`.
fn windows(buf: &mut [f32], stride: usize, off: usize, w: usize) -> Vec<&mut [f32]> {
    buf.chunks_mut(stride)
        .map(|row| &mut row[off..off + w])
        .collect()
}

/// The input transform of one batch of segments: for every input channel, the α transformed
/// depth points (rows of `bt`) of each segment's columns, written to `v` (C × α × `k_cols`),
/// segment s at column `off_s` of each point. Missing (padding) slices count as zeros.
fn input_transform(
    g: &Conv3dGeometry,
    x: &[f32],
    bt: &[Vec<(usize, f64)>],
    batch: &[Segment],
    v: &mut [f32],
    k_cols: usize,
) {
    let (c, d) = (g.in_channels, g.input[0]);
    let hw = g.input[1] * g.input[2];
    let alpha = bt.len();
    v.par_chunks_mut(alpha * k_cols)
        .enumerate()
        .for_each(|(ci, out)| {
            for s in batch {
                let xn = &x[s.n * c * d * hw..(s.n + 1) * c * d * hw];
                let srcs: Vec<Option<&[f32]>> = (0..alpha)
                    .map(|j| {
                        source(g, s.z0 + j).map(|sd| {
                            let at = (ci * d + sd) * hw + s.c0;
                            &xn[at..at + s.w]
                        })
                    })
                    .collect();
                transform(bt, &srcs, &mut windows(out, k_cols, s.off, s.w), false);
            }
        });
}

/// Forward (also the input gradient, on the transposed geometry with flipped taps):
/// `y[:, z] += Σ_t W_t · x[:, z + t − p]` with tiles of at most `max_points` points.
///
/// # Shapes
/// - `x`: (N, C, D, H·W), `taps`: kd matrices (O × C), `y`: (N, O, OD, H·W), pre-filled (bias)
pub(crate) fn forward(
    g: &Conv3dGeometry,
    x: &[f32],
    taps: &Taps,
    y: &mut [f32],
    max_points: usize,
) {
    forward_within(g, x, taps, y, max_points, BUDGET)
}

pub(crate) fn forward_within(
    g: &Conv3dGeometry,
    x: &[f32],
    taps: &Taps,
    y: &mut [f32],
    max_points: usize,
    budget: usize,
) {
    let (c, o, kd) = (g.in_channels, g.out_channels, g.kernel[0]);
    let od = g.output[0];
    let hw = g.input[1] * g.input[2];
    let groups = tile_groups(g, max_points);
    let Some(alpha_max) = groups.iter().map(|(m, _)| m + kd - 1).max() else {
        return;
    };
    let cap = column_chunk_within(g, alpha_max, budget);
    let mut v = Scratch::new(c * alpha_max * cap);
    let mut mbuf = Scratch::new(o * alpha_max * cap);
    let planes = tap_planes(taps, o, c);
    for (m, starts) in &groups {
        let m = *m;
        let alpha = m + kd - 1;
        let tf = Transform::new(m, kd, Scale::Filter).expect("tile within MAX_POINTS");
        let u = weight_transform(&tf, &planes.0, o * c);
        let u = &u.0[..];
        let bt: Vec<Vec<(usize, f64)>> = (0..alpha).map(|i| tf.bt_row(i)).collect();
        let at: Vec<Vec<(usize, f64)>> = (0..m)
            .map(|k| nonzero(&tf.at[k * alpha..(k + 1) * alpha]))
            .collect();
        for batch in segments(g.batch, starts, hw, cap) {
            let k_cols: usize = batch.iter().map(|s| s.w).sum();
            // input transform: V (C × α × K), segment s in columns off_s.. of each point
            let v = &mut v.0[..c * alpha * k_cols];
            input_transform(g, x, &bt, &batch, v, k_cols);
            // one GEMM per point: M_i (O × K) = U_i (O × C) · V_i (C × K); M is (α × O × K)
            let mb = &mut mbuf.0[..o * alpha * k_cols];
            for i in 0..alpha {
                let lhs = Mat {
                    data: u,
                    off: i * o * c,
                    rs: c,
                    cs: 1,
                };
                let rhs = Mat {
                    data: v,
                    off: i * k_cols,
                    rs: alpha * k_cols,
                    cs: 1,
                };
                gemm_into(
                    o,
                    k_cols,
                    c,
                    MatMut::rows(mb, i * o * k_cols, k_cols),
                    lhs,
                    rhs,
                    false,
                );
            }
            // output transform: y[n, :, z0 + k] += Σ_i Aᵀ[k, i] M_i
            let mb = &mbuf.0[..o * alpha * k_cols];
            y.par_chunks_mut(od * hw)
                .enumerate()
                .for_each(|(row, yrow)| {
                    let (n, oi) = (row / o, row % o);
                    for s in batch.iter().filter(|s| s.n == n) {
                        let srcs: Vec<Option<&[f32]>> = (0..alpha)
                            .map(|i| {
                                let at = (i * o + oi) * k_cols + s.off;
                                Some(&mb[at..at + s.w])
                            })
                            .collect();
                        let rows = &mut yrow[s.z0 * hw..(s.z0 + m) * hw];
                        transform(&at, &srcs, &mut windows(rows, hw, s.c0, s.w), true);
                    }
                });
        }
    }
}

/// The tiles of the output depth grouped by size `m` (tiles of one size share their
/// transforms), as (m, tile starts); tiles that read only zero padding are left out.
fn tile_groups(g: &Conv3dGeometry, max_points: usize) -> Vec<(usize, Vec<usize>)> {
    let kd = g.kernel[0];
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (z0, m) in tiles(g.output[0], kd, max_points) {
        if (0..m + kd - 1).all(|j| source(g, z0 + j).is_none()) {
            continue;
        }
        match groups.iter_mut().find(|e| e.0 == m) {
            Some(e) => e.1.push(z0),
            None => groups.push((m, vec![z0])),
        }
    }
    groups
}

/// A piece of one tile: volume `n`, tile start `z0`, columns `c0..c0 + w` of H·W, placed at
/// column `off` of a batch.
#[derive(Debug, Clone, Copy)]
struct Segment {
    n: usize,
    z0: usize,
    c0: usize,
    w: usize,
    off: usize,
}

/// Packs every (volume, tile, column piece) into batches of at most `cap` columns, so that
/// tiles of one size and several volumes share each GEMM (larger GEMMs, fewer calls).
fn segments(batch: usize, starts: &[usize], hw: usize, cap: usize) -> Vec<Vec<Segment>> {
    let pieces = hw.div_ceil(cap);
    let piece = hw.div_ceil(pieces);
    let mut out: Vec<Vec<Segment>> = Vec::new();
    let mut cur: Vec<Segment> = Vec::new();
    let mut used = 0;
    for n in 0..batch {
        for &z0 in starts {
            for c0 in (0..hw).step_by(piece) {
                let w = piece.min(hw - c0);
                if used + w > cap {
                    out.push(std::mem::take(&mut cur));
                    used = 0;
                }
                cur.push(Segment {
                    n,
                    z0,
                    c0,
                    w,
                    off: used,
                });
                used += w;
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The kd tap matrices copied into contiguous planes (kd × rows × cols), so that the weight
/// transform runs on whole rows.
fn tap_planes(taps: &Taps, rows: usize, cols: usize) -> Scratch {
    let mut planes = Scratch::new(taps.kd() * rows * cols);
    planes
        .0
        .par_chunks_mut(cols)
        .enumerate()
        .for_each(|(idx, dst)| {
            let m = taps.mat(idx / rows);
            let start = m.off + (idx % rows) * m.rs;
            for (k, v) in dst.iter_mut().enumerate() {
                *v = m.data[start + k * m.cs];
            }
        });
    planes
}

/// `U_i = Σ_t G[i, t] W_t` for all points, (α × O × C), in f64 rounded once; `planes` holds
/// the taps as (kd × plane).
fn weight_transform(tf: &Transform, planes: &[f32], plane: usize) -> Scratch {
    let mut u = Scratch::new(tf.alpha * plane);
    let coefs: Vec<Vec<(usize, f64)>> = (0..tf.alpha)
        .map(|i| nonzero(&tf.g[i * tf.r..(i + 1) * tf.r]))
        .collect();
    let chunk = 4096.min(plane);
    // one task per column chunk computes all α outputs from the r planes at once
    let mut rows: Vec<&mut [f32]> = u.0.chunks_mut(plane).collect();
    let mut pieces: Vec<Vec<&mut [f32]>> = (0..plane.div_ceil(chunk)).map(|_| Vec::new()).collect();
    for row in rows.iter_mut() {
        for (p, piece) in row.chunks_mut(chunk).enumerate() {
            pieces[p].push(piece);
        }
    }
    pieces.par_iter_mut().enumerate().for_each(|(p, dsts)| {
        let at = p * chunk;
        let len = dsts[0].len();
        let srcs: Vec<Option<&[f32]>> = (0..tf.r)
            .map(|t| Some(&planes[t * plane + at..t * plane + at + len]))
            .collect();
        transform(&coefs, &srcs, dsts, false);
    });
    drop(pieces);
    drop(rows);
    u
}

/// Weight gradient `gw[o, c, t] = Σ_n Σ_z gy[n, o, z] · x[n, c, z + t − p]`, tiles of at most
/// `max_points` points over the output depth.
///
/// # Shapes
/// - `x`: (N, C, D, H·W), `gy`: (N, O, OD, H·W); returns (O, C, kd)
pub(crate) fn weight_grad(
    g: &Conv3dGeometry,
    x: &[f32],
    gy: &[f32],
    max_points: usize,
) -> Vec<f32> {
    weight_grad_within(g, x, gy, max_points, BUDGET)
}

pub(crate) fn weight_grad_within(
    g: &Conv3dGeometry,
    x: &[f32],
    gy: &[f32],
    max_points: usize,
    budget: usize,
) -> Vec<f32> {
    let (c, o, kd) = (g.in_channels, g.out_channels, g.kernel[0]);
    let od = g.output[0];
    let hw = g.input[1] * g.input[2];
    let plane = o * c;
    // the result as kd planes (O × C) in f64, interleaved into (O, C, kd) at the end
    let mut gwp = vec![0f64; kd * plane];
    let groups = tile_groups(g, max_points);
    let Some(alpha_max) = groups.iter().map(|(m, _)| m + kd - 1).max() else {
        return vec![0f32; o * c * kd];
    };
    let cap = column_chunk_within(g, alpha_max, budget);
    let mut v = Scratch::new(c * alpha_max * cap);
    let mut gv = Scratch::new(o * alpha_max * cap);
    let mut acc = Scratch::new(alpha_max * o * c);
    for (m, starts) in &groups {
        let m = *m;
        let alpha = m + kd - 1;
        // F(kd, m): outputs = the kd taps, filter = the m slices of gy
        let tf = Transform::new(kd, m, Scale::Output).expect("tile within MAX_POINTS");
        let bt: Vec<Vec<(usize, f64)>> = (0..alpha).map(|i| tf.bt_row(i)).collect();
        let gt: Vec<Vec<(usize, f64)>> = (0..alpha)
            .map(|i| nonzero(&tf.g[i * m..(i + 1) * m]))
            .collect();
        // one tile per batch (volumes and column pieces of that tile only): summing the
        // amplified products of several tiles in f32 before the output transform cost up to
        // 4× accuracy; each batch is output-transformed into the f64 result on its own
        let batches = starts
            .iter()
            .flat_map(|&z0| segments(g.batch, &[z0], hw, cap));
        for batch in batches {
            let acc = &mut acc.0[..alpha * o * c];
            let k_cols: usize = batch.iter().map(|s| s.w).sum();
            let v = &mut v.0[..c * alpha * k_cols];
            input_transform(g, x, &bt, &batch, v, k_cols);
            let gv = &mut gv.0[..o * alpha * k_cols];
            gv.par_chunks_mut(alpha * k_cols)
                .enumerate()
                .for_each(|(oi, out)| {
                    for s in &batch {
                        let gn = &gy[s.n * o * od * hw..(s.n + 1) * o * od * hw];
                        let srcs: Vec<Option<&[f32]>> = (0..m)
                            .map(|z| {
                                let at = (oi * od + s.z0 + z) * hw + s.c0;
                                Some(&gn[at..at + s.w])
                            })
                            .collect();
                        transform(&gt, &srcs, &mut windows(out, k_cols, s.off, s.w), false);
                    }
                });
            // acc_i (O × C) = Gy_i (O × K) · V_iᵀ (K × C)
            for i in 0..alpha {
                let lhs = Mat {
                    data: gv,
                    off: i * k_cols,
                    rs: alpha * k_cols,
                    cs: 1,
                };
                let rhs = Mat {
                    data: v,
                    off: i * k_cols,
                    rs: 1,
                    cs: alpha * k_cols,
                };
                gemm_into(
                    o,
                    c,
                    k_cols,
                    MatMut::rows(acc, i * o * c, c),
                    lhs,
                    rhs,
                    false,
                );
            }
            // output transform (f64): gw[:, :, t] += Σ_i Aᵀ[t, i] acc_i
            let acc = &acc[..];
            let chunk = 4096.min(plane);
            gwp.par_chunks_mut(plane).enumerate().for_each(|(t, pl)| {
                pl.par_chunks_mut(chunk).enumerate().for_each(|(p, dst)| {
                    let at = p * chunk;
                    for i in 0..alpha {
                        let a = tf.at[t * alpha + i];
                        if a != 0.0 {
                            let src = &acc[i * plane + at..i * plane + at + dst.len()];
                            for (dv, sv) in dst.iter_mut().zip(src) {
                                *dv += a * f64::from(*sv);
                            }
                        }
                    }
                });
            });
        }
    }
    let mut gw = vec![0f32; kd * plane];
    gw.par_chunks_mut(kd).enumerate().for_each(|(oc, dst)| {
        for (t, dv) in dst.iter_mut().enumerate() {
            *dv = gwp[t * plane + oc] as f32;
        }
    });
    gw
}

#[cfg(test)]
mod tests {
    use super::*;

    fn correlate(g: &[f64], d: &[f64], m: usize) -> Vec<f64> {
        (0..m)
            .map(|k| g.iter().enumerate().map(|(t, gv)| gv * d[k + t]).sum())
            .collect()
    }

    #[test]
    fn transforms_compute_the_correlation_for_every_size() {
        for alpha in 2..=MAX_POINTS {
            for r in 1..alpha {
                let m = alpha + 1 - r;
                for scale in [Scale::Filter, Scale::Output] {
                    let tf = Transform::new(m, r, scale).unwrap();
                    let g: Vec<f64> = (0..r).map(|i| ((i * 7 % 5) as f64 - 2.0) / 3.0).collect();
                    let d: Vec<f64> = (0..alpha)
                        .map(|i| ((i * 5 % 7) as f64 - 3.0) / 2.0)
                        .collect();
                    let u: Vec<f64> = (0..alpha)
                        .map(|i| (0..r).map(|t| tf.g[i * r + t] * g[t]).sum())
                        .collect();
                    let v: Vec<f64> = (0..alpha)
                        .map(|i| (0..alpha).map(|j| tf.bt[i * alpha + j] * d[j]).sum())
                        .collect();
                    let y: Vec<f64> = (0..m)
                        .map(|k| (0..alpha).map(|i| tf.at[k * alpha + i] * u[i] * v[i]).sum())
                        .collect();
                    let want = correlate(&g, &d, m);
                    let scale_ref = want.iter().fold(1.0f64, |a, b| a.max(b.abs()));
                    for (a, b) in y.iter().zip(&want) {
                        assert!(
                            (a - b).abs() <= 1e-9 * scale_ref,
                            "F({m}, {r}) {scale:?}: {y:?} vs {want:?}"
                        );
                    }
                }
            }
        }
        assert!(Transform::new(10, 8, Scale::Filter).is_none());
        assert!(Transform::new(0, 3, Scale::Filter).is_none());
    }

    #[test]
    fn weight_transform_covers_planes_of_any_size() {
        // 70 × 70 = 4900 floats per plane: not a multiple of the 4096-float work chunk
        let (rows, cols, kd) = (70, 70, 3);
        let w: Vec<f32> = (0..rows * cols * kd)
            .map(|i| ((i * 31 % 19) as f32 - 9.0) / 7.0)
            .collect();
        let taps = Taps::forward(&w, cols, kd);
        let planes = tap_planes(&taps, rows, cols);
        let tf = Transform::new(4, kd, Scale::Filter).unwrap();
        let u = weight_transform(&tf, &planes.0, rows * cols);
        for i in 0..tf.alpha {
            for r in 0..rows {
                for c in 0..cols {
                    let want: f64 = (0..kd)
                        .map(|t| tf.g[i * kd + t] * f64::from(w[(r * cols + c) * kd + t]))
                        .sum();
                    let got = f64::from(u.0[(i * rows + r) * cols + c]);
                    assert!(
                        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                        "{i} {r} {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn tiles_cover_the_range_and_respect_the_point_limit() {
        for len in 1..=20 {
            for taps in 1..=6 {
                for max_points in 2..=MAX_POINTS {
                    let t = tiles(len, taps, max_points);
                    let mut next = 0;
                    for &(s, m) in &t {
                        assert_eq!(s, next);
                        assert!(m >= 1);
                        assert!(m + taps - 1 <= max_points.max(taps));
                        next += m;
                    }
                    assert_eq!(next, len);
                }
            }
        }
    }
}
