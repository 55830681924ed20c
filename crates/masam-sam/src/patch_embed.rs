//! Patch embedding: a non-overlapping convolution that turns an image into a token map.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// PyTorch's default `Conv2d` / `Linear` initialisation bound `1/√fan_in`.
pub(crate) fn uniform_fan_in(fan_in: usize) -> Init {
    let b = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

/// SAM's `PatchEmbed`: `Conv2d(in_chans, C, kernel=patch, stride=patch, bias)`, then NCHW → NHWC.
///
/// Weights: `proj.weight` (C, in_chans, p, p) and `proj.bias` (C,).
///
/// A convolution whose stride equals its kernel is a matrix product on non-overlapping patches,
/// and that is how it runs: the image is cut into (N·h·w, in_chans·p·p) rows (a permuted copy of
/// the input, which carries no gradient) and multiplied by the flattened weight. The result is
/// the same as `Conv2d` up to f32 rounding, but the backward is two GEMMs instead of candle's
/// generic transposed convolution, which dominated the encoder's backward at small widths.
///
/// # Shapes
/// - `x`: (N, in_chans, H, W) with H, W multiples of the patch size
/// - returns: (N, H/p, W/p, C)
#[derive(Debug, Clone)]
pub struct PatchEmbed {
    /// The projection weight, (C, in_chans, p, p) as in PyTorch.
    pub weight: Tensor,
    /// The projection bias, (C,).
    pub bias: Tensor,
    /// Patch side in pixels.
    pub patch_size: usize,
}

impl PatchEmbed {
    /// Builds the layer from `vb` (names `proj.weight`, `proj.bias`).
    pub fn new(
        in_chans: usize,
        embed_dim: usize,
        patch_size: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let fan_in = in_chans * patch_size * patch_size;
        let vb = vb.pp("proj");
        let weight = vb.get_with_hints(
            (embed_dim, in_chans, patch_size, patch_size),
            "weight",
            uniform_fan_in(fan_in),
        )?;
        let bias = vb.get_with_hints(embed_dim, "bias", uniform_fan_in(fan_in))?;
        Ok(Self {
            weight,
            bias,
            patch_size,
        })
    }

    /// Embeds the patches.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, cin, h, w) = x.dims4()?;
        let (c, wcin, _, _) = self.weight.dims4()?;
        let p = self.patch_size;
        if cin != wcin || p == 0 || h % p != 0 || w % p != 0 {
            candle_core::bail!(
                "PatchEmbed: input {:?} does not fit weight {:?} (patch {p})",
                x.dims(),
                self.weight.dims()
            );
        }
        let (gh, gw) = (h / p, w / p);
        // (N, Cin, gh, p, gw, p) → (N, gh, gw, Cin, p, p): one row per patch, in weight order.
        let patches = x
            .reshape((n, cin, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((n * gh * gw, cin * p * p))?;
        let w = self.weight.to_dtype(x.dtype())?.reshape((c, cin * p * p))?;
        let b = self.bias.to_dtype(x.dtype())?;
        let y = if masam_nn::ops::fusable(&[&patches, &w, &b]) {
            masam_nn::ops::linear_fused(&patches, &w, Some(&b))?
        } else {
            masam_nn::add_bias(&patches.matmul(&w.t()?)?, &b)?
        };
        y.reshape((n, gh, gw, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use masam_nn::SeededVarMap;

    #[test]
    fn equals_the_strided_convolution() -> Result<()> {
        let dev = Device::Cpu;
        let params = SeededVarMap::new(3);
        let pe = PatchEmbed::new(3, 8, 4, params.var_builder(DType::F32, &dev))?;
        let x = Tensor::randn(0f32, 1., (2, 3, 8, 12), &dev)?;
        let conv = x
            .conv2d(&pe.weight, 0, 4, 1, 1)?
            .broadcast_add(&pe.bias.reshape((1, 8, 1, 1))?)?
            .permute((0, 2, 3, 1))?;
        let ours = pe.forward(&x)?;
        assert_eq!(ours.dims(), &[2, 2, 3, 8]);
        let d = (ours - conv)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "differs by {d}");
        assert!(pe
            .forward(&Tensor::zeros((1, 3, 6, 8), DType::F32, &dev)?)
            .is_err());
        Ok(())
    }
}
