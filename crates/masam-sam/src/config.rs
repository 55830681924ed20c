//! Configuration of the ViT image encoder.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Hyper-parameters of SAM's ViT image encoder (`ImageEncoderViT`).
///
/// `Default` is ViT-B at 512 px, the backbone size and input size MA-SAM fine-tunes. The presets
/// [`vit_b`](Self::vit_b), [`vit_l`](Self::vit_l) and [`vit_h`](Self::vit_h) give the official
/// shapes at 1024 px (the size of the released checkpoints); change the input size with
/// [`with_img_size`](Self::with_img_size).
///
/// ```
/// use masam_sam::ImageEncoderConfig;
/// let cfg = ImageEncoderConfig::vit_h().with_img_size(512);
/// cfg.validate().unwrap();
/// assert_eq!(cfg.grid_size(), 32);
/// assert_eq!(cfg.head_dim(), 80);
/// assert!(ImageEncoderConfig::vit_b().with_img_size(500).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageEncoderConfig {
    /// Token width C (768 / 1024 / 1280 for B / L / H).
    pub embed_dim: usize,
    /// Number of transformer blocks (12 / 24 / 32).
    pub depth: usize,
    /// Attention heads per block (12 / 16 / 16).
    pub num_heads: usize,
    /// Blocks (0-based) that attend globally; all others use windows.
    pub global_attn_indexes: Vec<usize>,
    /// Window side of the windowed blocks, in tokens (14). 0 makes every block global.
    pub window_size: usize,
    /// Side of the (square) input image the absolute position embedding is made for, in pixels.
    pub img_size: usize,
    /// Side of a patch in pixels (16).
    pub patch_size: usize,
    /// Input channels (3).
    pub in_chans: usize,
    /// MLP hidden width as a multiple of `embed_dim` (4.0).
    pub mlp_ratio: f64,
    /// Output channels of the neck (256).
    pub out_chans: usize,
    /// Whether the fused qkv projection has a bias (true).
    pub qkv_bias: bool,
    /// Whether an absolute position embedding is added after the patch embedding (true).
    pub use_abs_pos: bool,
    /// Whether attention uses decomposed relative positions (true).
    pub use_rel_pos: bool,
    /// Epsilon of every LayerNorm of the encoder, neck included (1e-6).
    pub layer_norm_eps: f64,
}

impl Default for ImageEncoderConfig {
    fn default() -> Self {
        Self::vit_b().with_img_size(512)
    }
}

impl ImageEncoderConfig {
    fn official(embed_dim: usize, depth: usize, num_heads: usize, global: [usize; 4]) -> Self {
        Self {
            embed_dim,
            depth,
            num_heads,
            global_attn_indexes: global.to_vec(),
            window_size: 14,
            img_size: 1024,
            patch_size: 16,
            in_chans: 3,
            mlp_ratio: 4.0,
            out_chans: 256,
            qkv_bias: true,
            use_abs_pos: true,
            use_rel_pos: true,
            layer_norm_eps: 1e-6,
        }
    }

    /// ViT-B (`sam_vit_b_01ec64.pth`) at 1024 px: C 768, 12 blocks, 12 heads, global [2, 5, 8, 11].
    pub fn vit_b() -> Self {
        Self::official(768, 12, 12, [2, 5, 8, 11])
    }

    /// ViT-L (`sam_vit_l_0b3195.pth`) at 1024 px: C 1024, 24 blocks, 16 heads, global [5, 11, 17, 23].
    pub fn vit_l() -> Self {
        Self::official(1024, 24, 16, [5, 11, 17, 23])
    }

    /// ViT-H (`sam_vit_h_4b8939.pth`) at 1024 px: C 1280, 32 blocks, 16 heads, global [7, 15, 23, 31].
    pub fn vit_h() -> Self {
        Self::official(1280, 32, 16, [7, 15, 23, 31])
    }

    /// The tiny encoder of the reference fixtures (`tests/fixtures/reference-tiny`): C 64, 4
    /// blocks, 4 heads, global [1, 3], window 3, 64 px input, neck 64 channels. For tests, doc
    /// examples and CPU experiments.
    pub fn tiny() -> Self {
        Self {
            embed_dim: 64,
            depth: 4,
            num_heads: 4,
            global_attn_indexes: vec![1, 3],
            window_size: 3,
            img_size: 64,
            out_chans: 64,
            ..Self::vit_b()
        }
    }

    /// A preset by checkpoint name: `vit_b`, `vit_l`, `vit_h` (also `b`, `l`, `h`) or `tiny`.
    pub fn preset(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "vit_b" | "vit-b" | "b" => Ok(Self::vit_b()),
            "vit_l" | "vit-l" | "l" => Ok(Self::vit_l()),
            "vit_h" | "vit-h" | "h" => Ok(Self::vit_h()),
            "tiny" => Ok(Self::tiny()),
            other => Err(Error::Config(format!(
                "unknown encoder preset `{other}` (expected vit_b, vit_l, vit_h or tiny)"
            ))),
        }
    }

    /// The same backbone for another input size (pixels).
    pub fn with_img_size(mut self, img_size: usize) -> Self {
        self.img_size = img_size;
        self
    }

    /// The same backbone with another neck width.
    pub fn with_out_chans(mut self, out_chans: usize) -> Self {
        self.out_chans = out_chans;
        self
    }

    /// The same backbone with another window size.
    pub fn with_window_size(mut self, window_size: usize) -> Self {
        self.window_size = window_size;
        self
    }

    /// Head width `embed_dim / num_heads`.
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads.max(1)
    }

    /// MLP hidden width, `int(embed_dim · mlp_ratio)` as in PyTorch.
    pub fn mlp_dim(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// Token grid side of the configured input, `img_size / patch_size`.
    pub fn grid_size(&self) -> usize {
        self.img_size / self.patch_size.max(1)
    }

    /// True when block `i` attends globally (listed, or `window_size == 0`).
    pub fn is_global(&self, i: usize) -> bool {
        self.window_size == 0 || self.global_attn_indexes.contains(&i)
    }

    /// The window side of block `i`, or `None` for a global block.
    pub fn block_window(&self, i: usize) -> Option<usize> {
        if self.is_global(i) {
            None
        } else {
            Some(self.window_size)
        }
    }

    /// The token grid a block's relative-position tables are made for: the window for windowed
    /// blocks, the whole grid for global ones.
    pub fn block_input_size(&self, i: usize) -> (usize, usize) {
        match self.block_window(i) {
            Some(w) => (w, w),
            None => (self.grid_size(), self.grid_size()),
        }
    }

    /// A short description, e.g. `vit_b (embed dim 768, 12 blocks, global [2, 5, 8, 11])`.
    pub fn describe(&self) -> String {
        format!(
            "{} (embed dim {}, {} blocks, global {:?})",
            backbone_name(self.embed_dim, self.depth),
            self.embed_dim,
            self.depth,
            self.global_attn_indexes
        )
    }

    /// Checks that the values are consistent.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending field, e.g. an `img_size` that is not a
    /// multiple of `patch_size`, or `embed_dim` not divisible by `num_heads`.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("image encoder: {m}")));
        if self.embed_dim == 0 || self.depth == 0 || self.num_heads == 0 {
            return bad(format!(
                "embed_dim ({}), depth ({}) and num_heads ({}) must be positive",
                self.embed_dim, self.depth, self.num_heads
            ));
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return bad(format!(
                "embed_dim {} is not divisible by num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        if self.patch_size == 0 || self.in_chans == 0 || self.out_chans == 0 {
            return bad(format!(
                "patch_size ({}), in_chans ({}) and out_chans ({}) must be positive",
                self.patch_size, self.in_chans, self.out_chans
            ));
        }
        if self.img_size < self.patch_size || !self.img_size.is_multiple_of(self.patch_size) {
            return bad(format!(
                "img_size {} is not a positive multiple of patch_size {}",
                self.img_size, self.patch_size
            ));
        }
        if let Some(&i) = self.global_attn_indexes.iter().find(|&&i| i >= self.depth) {
            return bad(format!(
                "global attention index {i} is out of range for depth {}",
                self.depth
            ));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) || self.mlp_dim() == 0 {
            return bad(format!(
                "mlp_ratio {} gives no hidden units",
                self.mlp_ratio
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!(
                "layer_norm_eps {} must be positive",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }
}

/// The official name of a backbone with these dimensions (`vit_b`, `vit_l`, `vit_h`), or
/// `custom`.
pub fn backbone_name(embed_dim: usize, depth: usize) -> &'static str {
    match (embed_dim, depth) {
        (768, 12) => "vit_b",
        (1024, 24) => "vit_l",
        (1280, 32) => "vit_h",
        _ => "custom",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let d = ImageEncoderConfig::default();
        assert_eq!((d.embed_dim, d.img_size, d.grid_size()), (768, 512, 32));
        assert!(d.validate().is_ok());
        assert_eq!(ImageEncoderConfig::vit_h().head_dim(), 80);
        assert_eq!(ImageEncoderConfig::vit_l().mlp_dim(), 4096);
        let mut c = ImageEncoderConfig::tiny();
        c.num_heads = 5;
        assert!(matches!(c.validate(), Err(Error::Config(_))));
        let mut c = ImageEncoderConfig::tiny();
        c.global_attn_indexes = vec![4];
        assert!(c.validate().is_err());
        assert!(ImageEncoderConfig::preset("vit_q").is_err());
        assert_eq!(
            ImageEncoderConfig::preset("H").unwrap(),
            ImageEncoderConfig::vit_h()
        );
        assert_eq!(ImageEncoderConfig::tiny().block_input_size(1), (4, 4));
        assert_eq!(ImageEncoderConfig::tiny().block_input_size(0), (3, 3));
    }
}
