//! Resampling machinery shared by the geometric transforms: an output→input pixel map computed once
//! per draw and applied to every slice and channel (and, with nearest neighbour, to the label).

use ndarray::{Array3, Array4, ArrayView3};
use serde::{Deserialize, Serialize};

/// How an image (never a label) is resampled by a free-angle transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Interp {
    /// Nearest neighbour (the reference's `ndimage.rotate(order=0)`).
    #[default]
    Nearest,
    /// Bilinear, zero outside the image.
    Bilinear,
}

/// Index value meaning "outside the input: use the fill value".
const OUTSIDE: u32 = u32::MAX;

/// Nearest-neighbour map: for every output pixel, the flat input index (or [`OUTSIDE`]).
pub(crate) struct NearestMap {
    out_h: usize,
    out_w: usize,
    src: Vec<u32>,
}

impl NearestMap {
    /// Builds the map from `f(row, col) -> Some((row_in, col_in))` over an `out_h × out_w` grid.
    pub(crate) fn from_fn(
        out_h: usize,
        out_w: usize,
        in_w: usize,
        f: impl Fn(usize, usize) -> Option<(usize, usize)>,
    ) -> Self {
        let mut src = Vec::with_capacity(out_h * out_w);
        for r in 0..out_h {
            for c in 0..out_w {
                src.push(match f(r, c) {
                    Some((ri, ci)) => (ri * in_w + ci) as u32,
                    None => OUTSIDE,
                });
            }
        }
        Self { out_h, out_w, src }
    }

    /// Applies the map to every plane of an (N, H, W) array.
    pub(crate) fn apply3<T: Copy>(&self, planes: ArrayView3<'_, T>, fill: T) -> Array3<T> {
        let n = planes.shape()[0];
        let std = planes.as_standard_layout();
        let flat = std.as_slice().expect("standard layout");
        let plane_len = std.shape()[1] * std.shape()[2];
        let mut out = Vec::with_capacity(n * self.src.len());
        for p in 0..n {
            let plane = &flat[p * plane_len..(p + 1) * plane_len];
            out.extend(self.src.iter().map(|&i| {
                if i == OUTSIDE {
                    fill
                } else {
                    plane[i as usize]
                }
            }));
        }
        Array3::from_shape_vec((n, self.out_h, self.out_w), out).expect("shape")
    }

    /// Applies the map to an image stack (D, C, H, W).
    pub(crate) fn apply4<T: Copy>(&self, image: &Array4<T>, fill: T) -> Array4<T> {
        let s = image.shape();
        let (d, c) = (s[0], s[1]);
        let std = image.as_standard_layout();
        let planes = std
            .view()
            .into_shape_with_order((d * c, s[2], s[3]))
            .expect("standard layout");
        let out = self.apply3(planes, fill);
        out.into_shape_with_order((d, c, self.out_h, self.out_w))
            .expect("shape")
    }
}

/// One bilinear tap: four flat input indices (or [`OUTSIDE`] = 0) and the fractional offsets.
#[derive(Clone, Copy)]
struct Tap {
    idx: [u32; 4],
    dx: f64,
    dy: f64,
}

/// Bilinear map: for every output pixel, a [`Tap`] or `None` (fill).
pub(crate) struct BilinearMap {
    out_h: usize,
    out_w: usize,
    taps: Vec<Option<Tap>>,
}

impl BilinearMap {
    /// Pillow's `bilinear_filter8` for an input position `(x, y)` in edge coordinates given by
    /// `f(row, col)`: positions outside `[0, W) × [0, H)` are filled; inside, the four neighbours of
    /// `(x − 0.5, y − 0.5)` are clamped to the image (a missing lower row repeats the upper one).
    pub(crate) fn pillow(
        out_h: usize,
        out_w: usize,
        in_h: usize,
        in_w: usize,
        f: impl Fn(usize, usize) -> (f64, f64),
    ) -> Self {
        let mut taps = Vec::with_capacity(out_h * out_w);
        let (wf, hf) = (in_w as f64, in_h as f64);
        for r in 0..out_h {
            for c in 0..out_w {
                let (xin, yin) = f(r, c);
                if !(xin >= 0.0 && xin < wf && yin >= 0.0 && yin < hf) {
                    taps.push(None);
                    continue;
                }
                let (xs, ys) = (xin - 0.5, yin - 0.5);
                let (xf, yf) = (xs.floor(), ys.floor());
                let (x, y) = (xf as i64, yf as i64);
                let clip_x = |v: i64| v.clamp(0, in_w as i64 - 1) as usize;
                let clip_y = |v: i64| v.clamp(0, in_h as i64 - 1) as usize;
                let (x0, x1) = (clip_x(x), clip_x(x + 1));
                let y0 = clip_y(y);
                let y1 = if y + 1 >= 0 && y + 1 < in_h as i64 {
                    (y + 1) as usize
                } else {
                    y0
                };
                let at = |ry: usize, cx: usize| (ry * in_w + cx) as u32;
                taps.push(Some(Tap {
                    idx: [at(y0, x0), at(y0, x1), at(y1, x0), at(y1, x1)],
                    dx: xs - xf,
                    dy: ys - yf,
                }));
            }
        }
        Self { out_h, out_w, taps }
    }

    /// Plain bilinear in pixel-centre coordinates `(row, col) = f(row_out, col_out)`, with
    /// neighbours outside the image reading 0 (scipy's `order=1, mode='constant', cval=0`).
    pub(crate) fn centred_zero(
        out_h: usize,
        out_w: usize,
        in_h: usize,
        in_w: usize,
        f: impl Fn(usize, usize) -> (f64, f64),
    ) -> Self {
        let mut taps = Vec::with_capacity(out_h * out_w);
        for r in 0..out_h {
            for c in 0..out_w {
                let (ri, ci) = f(r, c);
                if !(ri > -1.0 && ri < in_h as f64 && ci > -1.0 && ci < in_w as f64) {
                    taps.push(None);
                    continue;
                }
                let (yf, xf) = (ri.floor(), ci.floor());
                let (y, x) = (yf as i64, xf as i64);
                let at = |ry: i64, cx: i64| {
                    if ry >= 0 && ry < in_h as i64 && cx >= 0 && cx < in_w as i64 {
                        (ry as usize * in_w + cx as usize) as u32
                    } else {
                        OUTSIDE
                    }
                };
                taps.push(Some(Tap {
                    idx: [at(y, x), at(y, x + 1), at(y + 1, x), at(y + 1, x + 1)],
                    dx: ci - xf,
                    dy: ri - yf,
                }));
            }
        }
        Self { out_h, out_w, taps }
    }

    /// Applies the map to every plane of an (N, H, W) array; `to_f`/`from_f` convert the element
    /// type (Pillow truncates to `u8`).
    pub(crate) fn apply3<T: Copy>(
        &self,
        planes: ArrayView3<'_, T>,
        fill: T,
        to_f: impl Fn(T) -> f64,
        from_f: impl Fn(f64) -> T,
    ) -> Array3<T> {
        let n = planes.shape()[0];
        let std = planes.as_standard_layout();
        let flat = std.as_slice().expect("standard layout");
        let plane_len = std.shape()[1] * std.shape()[2];
        let mut out = Vec::with_capacity(n * self.taps.len());
        for p in 0..n {
            let plane = &flat[p * plane_len..(p + 1) * plane_len];
            let get = |i: u32| {
                if i == OUTSIDE {
                    0.0
                } else {
                    to_f(plane[i as usize])
                }
            };
            out.extend(self.taps.iter().map(|t| match t {
                None => fill,
                Some(t) => {
                    let [a, b, c, d] = t.idx.map(get);
                    let v1 = a + (b - a) * t.dx;
                    let v2 = c + (d - c) * t.dx;
                    from_f(v1 + (v2 - v1) * t.dy)
                }
            }));
        }
        Array3::from_shape_vec((n, self.out_h, self.out_w), out).expect("shape")
    }

    /// Applies the map to an `f32` image stack (D, C, H, W) with fill 0.
    pub(crate) fn apply4_f32(&self, image: &Array4<f32>) -> Array4<f32> {
        let s = image.shape();
        let (d, c) = (s[0], s[1]);
        let std = image.as_standard_layout();
        let planes = std
            .view()
            .into_shape_with_order((d * c, s[2], s[3]))
            .expect("standard layout");
        let out = self.apply3(planes, 0.0, |v| v as f64, |v| v as f32);
        out.into_shape_with_order((d, c, self.out_h, self.out_w))
            .expect("shape")
    }
}
