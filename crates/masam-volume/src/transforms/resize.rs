//! In-plane resizing with `scipy.ndimage.zoom` semantics (`grid_mode=False`): output pixel `o`
//! samples input coordinate `o · (n_in − 1) / (n_out − 1)`, so corners map to corners.
//!
//! * [`Interpolation::CubicSpline`] is scipy's `order=3`: a cubic B-spline, prefiltered in f64 with
//!   the mirror boundary (pole √3 − 2), evaluated with mirror-reflected coefficients (scipy's
//!   `mode='constant'` inside the grid). It is computed separably (rows, then columns), which
//!   agrees with scipy's tensor-product sum up to f64 rounding.
//! * [`Interpolation::Nearest`] is `order=0`: index `floor(x + 0.5)` (labels).
//!
//! ```
//! use masam_volume::transforms::{resize_2d, Interpolation};
//! let a = ndarray::Array2::from_shape_fn((4, 4), |(y, x)| (y * 4 + x) as f32);
//! let up = resize_2d(&a.view(), 7, 7, Interpolation::CubicSpline);
//! assert_eq!(up.dim(), (7, 7));
//! assert!((up[[0, 0]] - 0.0).abs() < 1e-5 && (up[[6, 6]] - 15.0).abs() < 1e-5); // corners kept
//! let lab = resize_2d(&a.view(), 2, 2, Interpolation::Nearest);
//! assert_eq!(lab, ndarray::array![[0.0, 3.0], [12.0, 15.0]]);
//! ```

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Interpolation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interpolation {
    /// scipy `zoom(order=0)`.
    Nearest,
    /// scipy `zoom(order=3)`.
    CubicSpline,
}

/// Target size and interpolation for 2D slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resize {
    /// Output height (rows).
    pub height: usize,
    /// Output width (columns).
    pub width: usize,
    /// Interpolation order.
    pub mode: Interpolation,
}

impl Resize {
    /// Resizes one (H, W) slice.
    pub fn apply<T: Copy + Into<f64> + FromF64>(&self, x: &ArrayView2<T>) -> Array2<T> {
        resize_2d(x, self.height, self.width, self.mode)
    }
}

/// Conversion back from the f64 interpolation result.
pub trait FromF64: Copy {
    /// Converts (rounding for integers, as scipy does for integer outputs).
    fn from_f64(v: f64) -> Self;
}
impl FromF64 for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl FromF64 for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}
impl FromF64 for u8 {
    fn from_f64(v: f64) -> Self {
        v.round() as u8
    }
}
impl FromF64 for i16 {
    fn from_f64(v: f64) -> Self {
        v.round() as i16
    }
}

/// Mirror index ("d c b | a b c d | c b a"), scipy's `mirror`.
#[inline]
fn mirror(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let p = 2 * (n as isize - 1);
    let mut i = i.rem_euclid(p);
    if i >= n as isize {
        i = p - i;
    }
    i as usize
}

/// In-place cubic B-spline prefilter of one line (mirror boundary, as scipy's spline_filter1d).
pub fn spline_prefilter_line(c: &mut [f64]) {
    let n = c.len();
    if n < 2 {
        return;
    }
    let z: f64 = 3f64.sqrt() - 2.0;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    c.iter_mut().for_each(|v| *v *= gain);
    // causal init (mirror)
    let z_n_1 = z.powi(n as i32 - 1);
    let mut zi = z;
    let mut c0 = c[0] + z_n_1 * c[n - 1];
    for i in 1..n - 1 {
        c0 += zi * (c[i] + z_n_1 * c[n - 1 - i]);
        zi *= z;
    }
    c[0] = c0 / (1.0 - z_n_1 * z_n_1);
    for i in 1..n {
        c[i] += z * c[i - 1];
    }
    // anticausal init (mirror)
    c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1.0);
    for i in (0..n - 1).rev() {
        c[i] = z * (c[i + 1] - c[i]);
    }
}

/// Taps (4 mirrored indices) and weights of the cubic B-spline at coordinate `x`.
#[inline]
fn cubic_taps(x: f64, n: usize) -> ([usize; 4], [f64; 4]) {
    let f = x.floor();
    let t = x - f;
    let s = f as isize - 1;
    let t2 = t * t;
    let t3 = t2 * t;
    let w = [
        (1.0 - t) * (1.0 - t) * (1.0 - t) / 6.0,
        (4.0 - 6.0 * t2 + 3.0 * t3) / 6.0,
        (1.0 + 3.0 * t + 3.0 * t2 - 3.0 * t3) / 6.0,
        t3 / 6.0,
    ];
    (
        [
            mirror(s, n),
            mirror(s + 1, n),
            mirror(s + 2, n),
            mirror(s + 3, n),
        ],
        w,
    )
}

/// Input coordinate of output index `o` (scipy `zoom`, `grid_mode=False`).
#[inline]
fn coord(o: usize, n_in: usize, n_out: usize) -> f64 {
    if n_out <= 1 {
        0.0
    } else {
        o as f64 * ((n_in as f64 - 1.0) / (n_out as f64 - 1.0))
    }
}

/// Resizes an (H, W) slice to (`out_h`, `out_w`).
pub fn resize_2d<T: Copy + Into<f64> + FromF64>(
    x: &ArrayView2<T>,
    out_h: usize,
    out_w: usize,
    mode: Interpolation,
) -> Array2<T> {
    let (h, w) = x.dim();
    if h == 0 || w == 0 || out_h == 0 || out_w == 0 {
        return Array2::from_shape_fn((out_h, out_w), |_| T::from_f64(0.0));
    }
    match mode {
        Interpolation::Nearest => {
            let ys: Vec<usize> = (0..out_h)
                .map(|o| ((coord(o, h, out_h) + 0.5).floor() as usize).min(h - 1))
                .collect();
            let xs: Vec<usize> = (0..out_w)
                .map(|o| ((coord(o, w, out_w) + 0.5).floor() as usize).min(w - 1))
                .collect();
            Array2::from_shape_fn((out_h, out_w), |(r, c)| x[[ys[r], xs[c]]])
        }
        Interpolation::CubicSpline => {
            if (h, w) == (out_h, out_w) {
                return x.to_owned();
            }
            // Prefilter along rows (x) and columns (y) in f64.
            let mut coef: Vec<f64> = x.iter().map(|&v| v.into()).collect();
            for row in coef.chunks_mut(w) {
                spline_prefilter_line(row);
            }
            let mut col = vec![0.0f64; h];
            for c in 0..w {
                for r in 0..h {
                    col[r] = coef[r * w + c];
                }
                spline_prefilter_line(&mut col);
                for r in 0..h {
                    coef[r * w + c] = col[r];
                }
            }
            // Interpolate along x: (h, out_w).
            let xt: Vec<([usize; 4], [f64; 4])> = (0..out_w)
                .map(|o| cubic_taps(coord(o, w, out_w), w))
                .collect();
            let mut tmp = vec![0.0f64; h * out_w];
            for r in 0..h {
                let src = &coef[r * w..(r + 1) * w];
                let dst = &mut tmp[r * out_w..(r + 1) * out_w];
                for (d, (idx, wt)) in dst.iter_mut().zip(&xt) {
                    *d = wt[0] * src[idx[0]]
                        + wt[1] * src[idx[1]]
                        + wt[2] * src[idx[2]]
                        + wt[3] * src[idx[3]];
                }
            }
            // Interpolate along y.
            let mut out = Array2::from_shape_fn((out_h, out_w), |_| T::from_f64(0.0));
            for (r, mut orow) in out.outer_iter_mut().enumerate() {
                let (idx, wt) = cubic_taps(coord(r, h, out_h), h);
                let rows = [
                    &tmp[idx[0] * out_w..(idx[0] + 1) * out_w],
                    &tmp[idx[1] * out_w..(idx[1] + 1) * out_w],
                    &tmp[idx[2] * out_w..(idx[2] + 1) * out_w],
                    &tmp[idx[3] * out_w..(idx[3] + 1) * out_w],
                ];
                for (c, o) in orow.iter_mut().enumerate() {
                    *o = T::from_f64(
                        wt[0] * rows[0][c]
                            + wt[1] * rows[1][c]
                            + wt[2] * rows[2][c]
                            + wt[3] * rows[3][c],
                    );
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scipy_input() -> Array2<f64> {
        Array2::from_shape_fn((5, 6), |(y, x)| {
            ((y * 7 + x * 3) % 5) as f64 + 0.25 * (y * x) as f64
        })
    }

    #[test]
    fn cubic_matches_scipy_zoom_order3() {
        // scipy 1.17.1: ndimage.zoom(a, (7/5, 4/6), order=3)
        let want = [
            [
                1.05904690e-16,
                1.54297360e+00,
                3.96207691e+00,
                1.42434670e-15,
            ],
            [
                9.81481481e-01,
                2.44962012e+00,
                2.98295964e+00,
                1.66931217e+00,
            ],
            [
                3.12962963e+00,
                1.99672348e+00,
                2.95114142e+00,
                4.86243386e+00,
            ],
            [
                4.00000000e+00,
                8.84901648e-01,
                4.11004785e+00,
                6.50000000e+00,
            ],
            [
                1.72222222e+00,
                3.22836037e+00,
                3.71665415e+00,
                4.98941799e+00,
            ],
            [
                1.46296296e+00,
                4.92988644e+00,
                3.60548491e+00,
                5.77513228e+00,
            ],
            [
                3.00000000e+00,
                4.70139996e+00,
                4.09321283e+00,
                8.00000000e+00,
            ],
        ];
        let b = resize_2d(&scipy_input().view(), 7, 4, Interpolation::CubicSpline);
        for r in 0..7 {
            for c in 0..4 {
                assert!(
                    (b[[r, c]] - want[r][c]).abs() < 1e-8,
                    "{r} {c}: {} vs {}",
                    b[[r, c]],
                    want[r][c]
                );
            }
        }
        let k = Array2::from_elem((5, 5), 7.0f32);
        assert!(resize_2d(&k.view(), 3, 8, Interpolation::CubicSpline)
            .iter()
            .all(|v| (v - 7.0).abs() < 1e-5));
    }

    #[test]
    fn nearest_matches_scipy_zoom_order0() {
        // scipy 1.17.1: ndimage.zoom(a, (3/5, 9/6), order=0)
        let want = [
            [0.0, 3.0, 3.0, 1.0, 4.0, 4.0, 2.0, 2.0, 0.0],
            [4.0, 2.5, 2.5, 1.0, 4.5, 4.5, 3.0, 3.0, 6.5],
            [3.0, 2.0, 2.0, 6.0, 5.0, 5.0, 4.0, 4.0, 8.0],
        ];
        let b = resize_2d(&scipy_input().view(), 3, 9, Interpolation::Nearest);
        for r in 0..3 {
            for c in 0..9 {
                assert_eq!(b[[r, c]], want[r][c], "{r} {c}");
            }
        }
    }

    #[test]
    fn cubic_interpolates_the_samples() {
        // Upsampling by (n-1)k+1 hits every input sample exactly.
        let a = Array2::from_shape_fn((5, 4), |(y, x)| ((y * 7 + x * 3) % 5) as f64);
        let b = resize_2d(&a.view(), 9, 7, Interpolation::CubicSpline);
        for y in 0..5 {
            for x in 0..4 {
                assert!((b[[2 * y, 2 * x]] - a[[y, x]]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn mirror_indices() {
        assert_eq!(mirror(-1, 4), 1);
        assert_eq!(mirror(4, 4), 2);
        assert_eq!(mirror(5, 4), 1);
        assert_eq!(mirror(0, 1), 0);
    }
}
