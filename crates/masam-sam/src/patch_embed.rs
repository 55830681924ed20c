//! Patch embedding: a non-overlapping convolution that turns an image into a token map.

use candle_core::{Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Init, VarBuilder};

/// PyTorch's default `Conv2d` / `Linear` initialisation bound `1/√fan_in`.
pub(crate) fn uniform_fan_in(fan_in: usize) -> Init {
    let b = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

/// SAM's `PatchEmbed`: `Conv2d(in_chans, C, kernel=patch, stride=patch, bias)`, then NCHW → NHWC.
///
/// Weights: `proj.weight` (C, in_chans, p, p) and `proj.bias` (C,).
///
/// # Shapes
/// - `x`: (N, in_chans, H, W) with H, W multiples of the patch size
/// - returns: (N, H/p, W/p, C)
#[derive(Debug, Clone)]
pub struct PatchEmbed {
    /// The projection convolution.
    pub proj: Conv2d,
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
        let w = vb.get_with_hints(
            (embed_dim, in_chans, patch_size, patch_size),
            "weight",
            uniform_fan_in(fan_in),
        )?;
        let b = vb.get_with_hints(embed_dim, "bias", uniform_fan_in(fan_in))?;
        let cfg = Conv2dConfig {
            padding: 0,
            stride: patch_size,
            dilation: 1,
            groups: 1,
            cudnn_fwd_algo: None,
        };
        Ok(Self {
            proj: Conv2d::new(w, Some(b), cfg),
            patch_size,
        })
    }

    /// Embeds the patches.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = candle_core::Module::forward(&self.proj, x)?;
        y.permute([0, 2, 3, 1])
    }
}
