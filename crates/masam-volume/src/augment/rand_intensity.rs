//! The RandAugment intensity ops with Pillow's 8-bit semantics: posterize, contrast, brightness,
//! sharpness. Each works on one slice `(C, H, W)` of `u8` (C = 1 grey or 3 RGB), as the reference
//! runs them per slice through `PIL.Image`/`ImageEnhance`.

use super::Sample;
use ndarray::{Array3, ArrayViewMut3, Axis};
use serde::{Deserialize, Serialize};

/// `ImageOps.posterize`: keep the top `bits` bits (1..=8) of every value.
pub fn posterize(mut slice: ArrayViewMut3<'_, u8>, bits: u8) {
    let bits = bits.clamp(1, 8);
    let mask = !((1u16 << (8 - bits)) - 1) as u8;
    slice.mapv_inplace(|v| v & mask);
}

/// `Image.blend(degenerate, image, alpha)` for 8-bit data: `trunc(d + alpha·(v − d))` in f32,
/// clipped to [0, 255].
fn blend(v: u8, degenerate: u8, alpha: f32) -> u8 {
    let t = degenerate as f32 + alpha * (v as i32 - degenerate as i32) as f32;
    if t <= 0.0 {
        0
    } else if t >= 255.0 {
        255
    } else {
        t as u8
    }
}

/// `ImageEnhance.Contrast(img).enhance(factor)`: blend with a constant image of the rounded mean
/// grey level (`int(mean + 0.5)`; RGB is first converted with Pillow's `L` weights
/// 19595/38470/7471 >> 16).
pub fn contrast(mut slice: ArrayViewMut3<'_, u8>, factor: f64) {
    let c = slice.shape()[0];
    let n = (slice.shape()[1] * slice.shape()[2]) as f64;
    let sum: f64 = if c == 3 {
        let (r, g, b) = (
            slice.index_axis(Axis(0), 0),
            slice.index_axis(Axis(0), 1),
            slice.index_axis(Axis(0), 2),
        );
        ndarray::Zip::from(&r)
            .and(&g)
            .and(&b)
            .fold(0u64, |acc, &r, &g, &b| {
                acc + ((r as u64 * 19595 + g as u64 * 38470 + b as u64 * 7471 + 0x8000) >> 16)
            }) as f64
    } else {
        slice
            .index_axis(Axis(0), 0)
            .iter()
            .map(|&v| v as u64)
            .sum::<u64>() as f64
    };
    let mean = (sum / n + 0.5) as u8;
    let alpha = factor as f32;
    slice.mapv_inplace(|v| blend(v, mean, alpha));
}

/// `ImageEnhance.Brightness(img).enhance(factor)`: blend with black.
pub fn brightness(mut slice: ArrayViewMut3<'_, u8>, factor: f64) {
    let alpha = factor as f32;
    slice.mapv_inplace(|v| blend(v, 0, alpha));
}

/// `ImageEnhance.Sharpness(img).enhance(factor)`: blend with `ImageFilter.SMOOTH` (3×3 kernel
/// 1 1 1 / 1 5 1 / 1 1 1, divided by 13, rounded; border pixels copied unchanged).
pub fn sharpness(mut slice: ArrayViewMut3<'_, u8>, factor: f64) {
    let (c, h, w) = (slice.shape()[0], slice.shape()[1], slice.shape()[2]);
    let mut smooth = Array3::<u8>::zeros((c, h, w));
    let k1 = 1.0f32 / 13.0;
    let k5 = 5.0f32 / 13.0;
    for ch in 0..c {
        let src = slice.index_axis(Axis(0), ch);
        let mut dst = smooth.index_axis_mut(Axis(0), ch);
        dst.assign(&src);
        if h < 3 || w < 3 {
            continue;
        }
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let row = |yy: usize, mid: f32| {
                    src[[yy, x - 1]] as f32 * k1
                        + src[[yy, x]] as f32 * mid
                        + src[[yy, x + 1]] as f32 * k1
                };
                let mut ss = 0.5f32;
                ss += row(y + 1, k1);
                ss += row(y, k5);
                ss += row(y - 1, k1);
                dst[[y, x]] = if ss <= 0.0 {
                    0
                } else if ss >= 255.0 {
                    255
                } else {
                    ss as u8
                };
            }
        }
    }
    let alpha = factor as f32;
    ndarray::Zip::from(&mut slice)
        .and(&smooth)
        .for_each(|v, &d| *v = blend(*v, d, alpha));
}

/// One Pillow intensity op with its magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum IntensityOp {
    /// [`posterize`] to this many bits.
    Posterize(u8),
    /// [`contrast`] with this factor.
    Contrast(f64),
    /// [`brightness`] with this factor.
    Brightness(f64),
    /// [`sharpness`] with this factor.
    Sharpness(f64),
}

impl IntensityOp {
    /// Applies the op to one 8-bit slice `(C, H, W)`.
    pub fn apply_u8(&self, slice: ArrayViewMut3<'_, u8>) {
        match *self {
            Self::Posterize(b) => posterize(slice, b),
            Self::Contrast(f) => contrast(slice, f),
            Self::Brightness(f) => brightness(slice, f),
            Self::Sharpness(f) => sharpness(slice, f),
        }
    }

    /// Applies the op to every slice of `sample` through the reference's 8-bit round trip
    /// (`trunc(clip(x, 0, 1)·255)`, op, `/255`). Labels and boxes are untouched.
    pub fn apply(&self, sample: &mut Sample) {
        let mut q = quantize(sample);
        for d in 0..q.shape()[0] {
            self.apply_u8(q.index_axis_mut(Axis(0), d));
        }
        dequantize(sample, &q);
    }
}

/// The reference's `(clip(img, 0, 1)·255).astype(uint8)`, as (D, C, H, W).
pub(crate) fn quantize(sample: &Sample) -> ndarray::Array4<u8> {
    sample.image.mapv(|x| (x.clamp(0.0, 1.0) * 255.0) as u8)
}

/// Back to [0, 1]: `v / 255`.
pub(crate) fn dequantize(sample: &mut Sample, q: &ndarray::Array4<u8>) {
    sample.image = q.mapv(|v| v as f32 / 255.0);
}
