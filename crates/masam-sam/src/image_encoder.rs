//! SAM's ViT image encoder (`ImageEncoderViT`), trainable and open to per-block hooks.

use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use masam_nn::{layer_norm_2d, LayerNorm2d};

use crate::block::Block;
use crate::config::ImageEncoderConfig;
use crate::conv_gemm::conv2d_same_nhwc;
use crate::extension::ForwardContext;
use crate::patch_embed::{uniform_fan_in, PatchEmbed};
use crate::rel_pos::resize_bilinear_bhwc;

/// The neck: `Conv2d(C, out, 1, no bias)` → `LayerNorm2d` → `Conv2d(out, out, 3, pad 1, no bias)`
/// → `LayerNorm2d` (weights `neck.0` … `neck.3`).
///
/// It runs on the encoder's channels-last tokens: the 1×1 convolution is a matrix product, the
/// channel LayerNorms are LayerNorms over the last dimension, and the 3×3 convolution is one
/// matrix product over the nine shifted copies of the zero-padded map. The result equals the
/// NCHW `Conv2d` chain up to f32 rounding, and its backward is GEMMs and copies rather than
/// candle's generic transposed convolution.
///
/// # Shapes
/// - [`Neck::forward`]: (N, C, h, w) → (N, out, h, w); [`Neck::forward_nhwc`]: (N, h, w, C) → (N, out, h, w)
#[derive(Debug, Clone)]
pub struct Neck {
    /// `neck.0.weight`: the 1×1 convolution C → out, (out, C, 1, 1).
    pub conv1: Tensor,
    /// `neck.1`.
    pub norm1: LayerNorm2d,
    /// `neck.2.weight`: the 3×3 convolution out → out, padding 1, (out, out, 3, 3).
    pub conv2: Tensor,
    /// `neck.3`.
    pub norm2: LayerNorm2d,
}

impl Neck {
    /// Builds the neck from `vb` (the `neck` prefix).
    pub fn new(dim: usize, out: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let conv1 = vb
            .pp("0")
            .get_with_hints((out, dim, 1, 1), "weight", uniform_fan_in(dim))?;
        let conv2 =
            vb.pp("2")
                .get_with_hints((out, out, 3, 3), "weight", uniform_fan_in(out * 9))?;
        Ok(Self {
            conv1,
            norm1: layer_norm_2d(out, eps, vb.pp("1"))?,
            conv2,
            norm2: layer_norm_2d(out, eps, vb.pp("3"))?,
        })
    }

    /// Runs the neck on an NCHW map.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_nhwc(&x.permute((0, 2, 3, 1))?)
    }

    /// Runs the neck on channels-last tokens (N, h, w, C); returns NCHW (N, out, h, w).
    pub fn forward_nhwc(&self, t: &Tensor) -> Result<Tensor> {
        let y = conv2d_same_nhwc(t, &self.conv1, None)?;
        let y = self.norm1.forward_channels_last(&y)?;
        let z = conv2d_same_nhwc(&y, &self.conv2, None)?;
        self.norm2
            .forward_channels_last(&z)?
            .permute((0, 3, 1, 2))?
            .contiguous()
    }
}

/// Everything [`ImageEncoder::forward_with_intermediates`] computes.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// Patch embedding plus absolute position, (N, h, w, C).
    pub patch_embed: Tensor,
    /// The output of every block, (N, h, w, C) each.
    pub blocks: Vec<Tensor>,
    /// The neck output, (N, out_chans, h, w).
    pub embeddings: Tensor,
}

/// SAM's ViT image encoder: [`PatchEmbed`] → `+ pos_embed` → [`Block`]s → [`Neck`].
///
/// Weight names are the official ones under the builder's prefix (use `vb.pp("image_encoder")`
/// over an official checkpoint): `patch_embed.proj.*`, `pos_embed` (1, g, g, C),
/// `blocks.{i}.*`, `neck.{0..3}.*`. Every op records a backward, so any parameter that is a
/// `Var` gets a gradient. The blocks are public: set `blocks[i].hooks` to plug in adapters.
///
/// Inputs of any size that is a multiple of the patch size are accepted, square or not; when
/// the token grid differs from the one `pos_embed` was made for, `pos_embed` is resized
/// bilinearly (`align_corners=False`) and relative-position tables linearly, at run time.
///
/// # Shapes
/// - `x`: (N, in_chans, H, W), N = B·D
/// - returns: (N, out_chans, H/p, W/p)
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use masam_nn::SeededVarMap;
/// use masam_sam::{ForwardContext, ImageEncoder, ImageEncoderConfig};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let params = SeededVarMap::new(0);
/// let vb = params.var_builder(DType::F32, &Device::Cpu);
/// let enc = ImageEncoder::new(&ImageEncoderConfig::tiny(), vb.pp("image_encoder"))?;
/// let x = Tensor::zeros((2, 3, 64, 48), DType::F32, &Device::Cpu)?;
/// let y = enc.forward(&x, &ForwardContext::eval_2d())?;
/// assert_eq!(y.dims(), &[2, 64, 4, 3]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ImageEncoder {
    /// The configuration it was built with.
    pub config: ImageEncoderConfig,
    /// Patch embedding.
    pub patch_embed: PatchEmbed,
    /// Absolute position embedding (1, g, g, C), when `use_abs_pos`.
    pub pos_embed: Option<Tensor>,
    /// The transformer blocks, with their hooks.
    pub blocks: Vec<Block>,
    /// The neck.
    pub neck: Neck,
}

impl ImageEncoder {
    /// Builds the encoder from `vb` after validating `cfg`. Fresh parameters follow SAM's
    /// initialisation (zero `pos_embed` and relative positions, PyTorch defaults elsewhere).
    ///
    /// # Errors
    /// [`crate::Error::Config`] for an invalid configuration, [`crate::Error::Candle`] when `vb`
    /// lacks a tensor or has one of the wrong shape.
    pub fn new(cfg: &ImageEncoderConfig, vb: VarBuilder) -> crate::Result<Self> {
        cfg.validate()?;
        let c = cfg.embed_dim;
        let patch_embed = PatchEmbed::new(cfg.in_chans, c, cfg.patch_size, vb.pp("patch_embed"))?;
        let g = cfg.grid_size();
        let pos_embed = if cfg.use_abs_pos {
            Some(vb.get_with_hints((1, g, g, c), "pos_embed", Init::Const(0.0))?)
        } else {
            None
        };
        let vbb = vb.pp("blocks");
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(cfg, i, vbb.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let neck = Neck::new(c, cfg.out_chans, cfg.layer_norm_eps, vb.pp("neck"))?;
        Ok(Self {
            config: cfg.clone(),
            patch_embed,
            pos_embed,
            blocks,
            neck,
        })
    }

    /// Checks the input against the configuration, failing with the dims seen.
    fn check_input(&self, x: &Tensor, ctx: &ForwardContext) -> Result<()> {
        let cfg = &self.config;
        let p = cfg.patch_size;
        let dims = x.dims();
        let ok = dims.len() == 4
            && dims[1] == cfg.in_chans
            && dims[2] >= p
            && dims[3] >= p
            && dims[2].is_multiple_of(p)
            && dims[3].is_multiple_of(p);
        if !ok {
            candle_core::bail!(
                "ImageEncoder: expected input (N, {}, H, W) with H, W positive multiples of {p}, got {dims:?}",
                cfg.in_chans
            );
        }
        if ctx.slices == 0 || !dims[0].is_multiple_of(ctx.slices) {
            candle_core::bail!(
                "ImageEncoder: batch of {} images is not a whole number of {}-slice volumes",
                dims[0],
                ctx.slices
            );
        }
        Ok(())
    }

    /// Patch embedding plus absolute position (resized if the grid differs).
    ///
    /// # Shapes
    /// - `x`: (N, in_chans, H, W); returns (N, H/p, W/p, C)
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        self.embed_in(x, None)
    }

    /// [`embed`](Self::embed) with the patch embedding computed in `compute` (mixed precision,
    /// [`ForwardContext::compute`]) and the result in `x`'s dtype.
    fn embed_in(&self, x: &Tensor, compute: Option<DType>) -> Result<Tensor> {
        let st = x.dtype();
        let x = x.to_dtype(compute.unwrap_or(st))?;
        let t = self.patch_embed.forward(&x.contiguous()?)?.to_dtype(st)?;
        match &self.pos_embed {
            Some(pos) => {
                let (_, h, w, _) = t.dims4()?;
                let pos = resize_bilinear_bhwc(pos, h, w)?;
                t.broadcast_add(&pos.to_dtype(t.dtype())?)
            }
            None => Ok(t),
        }
    }

    /// Encodes a batch of images.
    pub fn forward(&self, x: &Tensor, ctx: &ForwardContext) -> Result<Tensor> {
        self.check_input(x, ctx)?;
        let mut t = self.embed_in(x, ctx.compute)?;
        for (i, blk) in self.blocks.iter().enumerate() {
            t = blk.forward(&t, &ctx.block(i))?;
        }
        self.forward_neck(&t, ctx)
    }

    /// The last stage of [`forward`](Self::forward): the neck on the last block's output,
    /// computed in `ctx.compute` (mixed precision) and returned in the dtype of `t`.
    ///
    /// # Shapes
    /// - `t`: (N, h, w, C); returns (N, out_chans, h, w)
    pub fn forward_neck(&self, t: &Tensor, ctx: &ForwardContext) -> Result<Tensor> {
        let st = t.dtype();
        self.neck
            .forward_nhwc(&t.to_dtype(ctx.compute.unwrap_or(st))?)?
            .to_dtype(st)
    }

    /// The first stage of [`forward`](Self::forward), for callers that run the blocks one at a
    /// time (activation checkpointing): checks the input as `forward` does and returns the
    /// patch embedding plus absolute position. `forward` is this, then
    /// [`forward_block`](Self::forward_block) for every block in order, then
    /// [`forward_neck`](Self::forward_neck).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use masam_nn::SeededVarMap;
    /// use masam_sam::{ForwardContext, ImageEncoder, ImageEncoderConfig};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let params = SeededVarMap::new(0);
    /// let enc = ImageEncoder::new(&ImageEncoderConfig::tiny(), params.var_builder(DType::F32, &Device::Cpu))?;
    /// let x = Tensor::rand(0f32, 1., (2, 3, 64, 64), &Device::Cpu)?;
    /// let ctx = ForwardContext::eval_2d();
    /// let mut t = enc.forward_embed(&x, &ctx)?; // (2, 4, 4, 64)
    /// for i in 0..enc.blocks.len() {
    ///     t = enc.forward_block(i, &t, &ctx)?;
    /// }
    /// let y = enc.forward_neck(&t, &ctx)?;
    /// let diff = (y - enc.forward(&x, &ctx)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
    /// assert_eq!(diff, 0.0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Shapes
    /// - `x`: (N, in_chans, H, W), N = B·D; returns (N, H/p, W/p, C)
    pub fn forward_embed(&self, x: &Tensor, ctx: &ForwardContext) -> Result<Tensor> {
        self.check_input(x, ctx)?;
        self.embed_in(x, ctx.compute)
    }

    /// Runs block `index` on its input tokens as [`forward`](Self::forward) does (the block's
    /// hooks see `ctx.block(index)`). See [`forward_embed`](Self::forward_embed).
    ///
    /// # Shapes
    /// - `t`: (N, h, w, C); returns (N, h, w, C)
    ///
    /// # Errors
    /// `index` is not a block of this encoder, or the block fails.
    pub fn forward_block(&self, index: usize, t: &Tensor, ctx: &ForwardContext) -> Result<Tensor> {
        match self.blocks.get(index) {
            Some(blk) => blk.forward(t, &ctx.block(index)),
            None => candle_core::bail!(
                "ImageEncoder: no block {index} (the encoder has {})",
                self.blocks.len()
            ),
        }
    }

    /// Encodes a batch of images and keeps the patch embedding and every block output (for
    /// parity tests and multi-scale decoders).
    pub fn forward_with_intermediates(
        &self,
        x: &Tensor,
        ctx: &ForwardContext,
    ) -> Result<EncoderOutput> {
        self.check_input(x, ctx)?;
        let patch_embed = self.embed_in(x, ctx.compute)?;
        let mut blocks = Vec::with_capacity(self.blocks.len());
        let mut t = patch_embed.clone();
        for (i, blk) in self.blocks.iter().enumerate() {
            t = blk.forward(&t, &ctx.block(i))?;
            blocks.push(t.clone());
        }
        let embeddings = self.forward_neck(&t, ctx)?;
        Ok(EncoderOutput {
            patch_embed,
            blocks,
            embeddings,
        })
    }
}
