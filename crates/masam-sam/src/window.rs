//! Window partition of SAM's windowed-attention blocks.
//!
//! The token map is zero-padded at the bottom and right up to a multiple of the window size
//! (after `norm1`, with no attention mask: padded tokens take part in attention as keys/values),
//! cut into windows in row-major order, and put back and cropped afterwards.
//!
//! [`window_partition`] and [`window_unpartition`] are that definition, kept as the reference
//! path; the encoder block runs [`crate::attention::Attention::forward_windowed`], which gives
//! the same result without computing the padded tokens (their bands: [`window_bands`]).

use candle_core::{Result, Tensor};

/// Splits `(B, H, W, C)` into `(B·nH·nW, ws, ws, C)` windows, zero-padding H and W up to
/// multiples of `ws` first. Returns the windows and the padded size `(Hp, Wp)`.
///
/// Windows are ordered batch-major, then row-major over the window grid, as SAM's
/// `window_partition`.
///
/// # Shapes
/// - `x`: (B, H, W, C)
/// - returns: (B·(Hp/ws)·(Wp/ws), ws, ws, C) and (Hp, Wp)
///
/// ```
/// # use candle_core::{Device, Tensor};
/// use masam_sam::window::{window_partition, window_unpartition};
/// let x = Tensor::arange(0f32, 2. * 4. * 5. * 3., &Device::Cpu).unwrap().reshape((2, 4, 5, 3)).unwrap();
/// let (w, pad) = window_partition(&x, 3).unwrap();
/// assert_eq!(w.dims(), &[8, 3, 3, 3]);
/// assert_eq!(pad, (6, 6));
/// let back = window_unpartition(&w, 3, pad, (4, 5)).unwrap();
/// let d: f32 = (back - &x).unwrap().abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
/// assert_eq!(d, 0.0);
/// ```
pub fn window_partition(x: &Tensor, ws: usize) -> Result<(Tensor, (usize, usize))> {
    if ws == 0 {
        candle_core::bail!("window_partition: window size must be positive");
    }
    let (b, h, w, c) = x.dims4()?;
    let pad_h = (ws - h % ws) % ws;
    let pad_w = (ws - w % ws) % ws;
    let x = if pad_h > 0 {
        x.pad_with_zeros(1, 0, pad_h)?
    } else {
        x.clone()
    };
    let x = if pad_w > 0 {
        x.pad_with_zeros(2, 0, pad_w)?
    } else {
        x
    };
    let (hp, wp) = (h + pad_h, w + pad_w);
    let windows = x
        .reshape(vec![b, hp / ws, ws, wp / ws, ws, c])?
        .permute([0, 1, 3, 2, 4, 5])?
        .contiguous()?
        .reshape((b * (hp / ws) * (wp / ws), ws, ws, c))?;
    Ok((windows, (hp, wp)))
}

/// Inverse of [`window_partition`]: reassembles `(B·nH·nW, ws, ws, C)` windows into the padded
/// map `(B, Hp, Wp, C)` and crops it to `(B, H, W, C)`.
///
/// # Shapes
/// - `windows`: (B·(Hp/ws)·(Wp/ws), ws, ws, C)
/// - returns: (B, H, W, C)
pub fn window_unpartition(
    windows: &Tensor,
    ws: usize,
    padded: (usize, usize),
    size: (usize, usize),
) -> Result<Tensor> {
    let (hp, wp) = padded;
    let (h, w) = size;
    let (n, wh, ww, c) = windows.dims4()?;
    if ws == 0 || wh != ws || ww != ws || hp % ws != 0 || wp % ws != 0 || h > hp || w > wp {
        candle_core::bail!(
            "window_unpartition: windows {:?} do not fit window {ws}, padded {padded:?}, size {size:?}",
            windows.dims()
        );
    }
    let per_image = (hp / ws) * (wp / ws);
    if n % per_image != 0 {
        candle_core::bail!(
            "window_unpartition: {n} windows is not a multiple of {per_image} windows per image"
        );
    }
    let b = n / per_image;
    let x = windows
        .reshape(vec![b, hp / ws, wp / ws, ws, ws, c])?
        .permute([0, 1, 3, 2, 4, 5])?
        .contiguous()?
        .reshape((b, hp, wp, c))?;
    let x = if hp > h { x.narrow(1, 0, h)? } else { x };
    if wp > w {
        x.narrow(2, 0, w)
    } else {
        Ok(x)
    }
}

/// One band of windows along an axis of the token grid: `count` windows starting at window
/// index `first`, each holding `real` tokens of the grid (the rest of the window is padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowBand {
    /// Index of the band's first window along the axis.
    pub first: usize,
    /// Number of windows in the band.
    pub count: usize,
    /// Real (unpadded) tokens per window along the axis.
    pub real: usize,
}

/// The windows along one axis of `len` tokens cut into windows of `ws`, grouped into bands of
/// equal real extent: the whole windows, then the last, partly padded one (if `len` is not a
/// multiple of `ws`). Empty for `ws == 0` or `len == 0`.
///
/// ```
/// use masam_sam::window::{window_bands, WindowBand};
/// // 32 tokens in windows of 14: two whole windows, then one with 4 real tokens.
/// assert_eq!(
///     window_bands(32, 14),
///     vec![WindowBand { first: 0, count: 2, real: 14 }, WindowBand { first: 2, count: 1, real: 4 }]
/// );
/// assert_eq!(window_bands(28, 14), vec![WindowBand { first: 0, count: 2, real: 14 }]);
/// ```
pub fn window_bands(len: usize, ws: usize) -> Vec<WindowBand> {
    if ws == 0 || len == 0 {
        return Vec::new();
    }
    let (whole, rest) = (len / ws, len % ws);
    let mut bands = Vec::with_capacity(2);
    if whole > 0 {
        bands.push(WindowBand {
            first: 0,
            count: whole,
            real: ws,
        });
    }
    if rest > 0 {
        bands.push(WindowBand {
            first: whole,
            count: 1,
            real: rest,
        });
    }
    bands
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn row_major_windows_and_zero_padding() -> Result<()> {
        let x = (Tensor::arange(0f32, 16., &Device::Cpu)? + 1.)?.reshape((1, 4, 4, 1))?;
        let (w, pad) = window_partition(&x, 3)?;
        assert_eq!(pad, (6, 6));
        let w: Vec<Vec<f32>> = w.reshape((4, 9))?.to_vec2()?;
        // Window 0 is the top-left 3x3 block; window 1 the top-right one with zero padding.
        assert_eq!(w[0], vec![1., 2., 3., 5., 6., 7., 9., 10., 11.]);
        assert_eq!(w[1], vec![4., 0., 0., 8., 0., 0., 12., 0., 0.]);
        assert_eq!(w[2], vec![13., 14., 15., 0., 0., 0., 0., 0., 0.]);
        assert_eq!(w[3], vec![16., 0., 0., 0., 0., 0., 0., 0., 0.]);
        Ok(())
    }
}
