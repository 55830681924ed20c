//! The transformer block of SAM's image encoder, with MA-SAM's extension points.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use masam_nn::{layer_norm, LayerNorm};

use crate::attention::Attention;
use crate::config::ImageEncoderConfig;
use crate::extension::{BlockContext, BlockHooks};
use crate::mlp::Mlp;

/// One encoder block: `norm1` → [`Attention`] (over windows, see
/// [`Attention::forward_windowed`]) →
/// residual → `norm2` → [`Mlp`] → residual, with the hooks of [`BlockHooks`] called at the points
/// documented in [`crate::extension`].
///
/// Weights (under `blocks.{i}`): `norm1.*`, `attn.qkv.*`, `attn.proj.*`, `attn.rel_pos_h`,
/// `attn.rel_pos_w`, `norm2.*`, `mlp.lin1.*`, `mlp.lin2.*`.
///
/// # Shapes
/// - `x`: (B·D, H, W, C); returns (B·D, H, W, C)
#[derive(Debug, Clone)]
pub struct Block {
    /// LayerNorm before attention.
    pub norm1: LayerNorm,
    /// The attention.
    pub attn: Attention,
    /// LayerNorm before the MLP.
    pub norm2: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
    /// Window side in tokens, or 0 for global attention.
    pub window_size: usize,
    /// Extension points; empty (`Default`) for a plain SAM block.
    pub hooks: BlockHooks,
}

impl Block {
    /// Builds block `index` of an encoder configured by `cfg`, from `vb` (the block's own
    /// prefix, e.g. `image_encoder.blocks.3`). Hooks start empty.
    pub fn new(cfg: &ImageEncoderConfig, index: usize, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim;
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            norm1: layer_norm(dim, eps, vb.pp("norm1"))?,
            attn: Attention::new(
                dim,
                cfg.num_heads,
                cfg.qkv_bias,
                cfg.use_rel_pos,
                cfg.block_input_size(index),
                vb.pp("attn"),
            )?,
            norm2: layer_norm(dim, eps, vb.pp("norm2"))?,
            mlp: Mlp::new(dim, cfg.mlp_dim(), vb.pp("mlp"))?,
            window_size: cfg.block_window(index).unwrap_or(0),
            hooks: BlockHooks::default(),
        })
    }

    /// True when the block attends globally.
    pub fn is_global(&self) -> bool {
        self.window_size == 0
    }

    /// Runs the block.
    pub fn forward(&self, x: &Tensor, ctx: &BlockContext) -> Result<Tensor> {
        let x = match &self.hooks.pre_attn {
            Some(hook) => hook.forward(x, ctx)?,
            None => x.clone(),
        };
        // mixed precision: the residual stream `x` keeps its dtype, the layers compute in
        // `ct` (LayerNorm returns its input's dtype, so it reads the full-precision stream)
        let (st, ct) = (x.dtype(), ctx.compute_dtype(&x));
        let y = self.norm1.forward(&x)?.to_dtype(ct)?;
        let qkv_hook = self.hooks.qkv.as_deref();
        let proj_hook = self.hooks.proj.as_deref();
        // windows (or the whole map), real tokens only: see `Attention::forward_windowed`
        let y = self
            .attn
            .forward_windowed(&y, self.window_size, qkv_hook, proj_hook, ctx)?;
        let x = (x + y.to_dtype(st)?)?;
        let x = match &self.hooks.post_attn {
            Some(hook) => hook.forward(&x, ctx)?,
            None => x,
        };
        let m = self.mlp.forward_with_hooks(
            &self.norm2.forward(&x)?.to_dtype(ct)?,
            self.hooks.mlp_fc1.as_deref(),
            self.hooks.mlp_fc2.as_deref(),
            ctx,
        )?;
        x + m.to_dtype(st)?
    }
}
