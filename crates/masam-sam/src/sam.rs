//! The full Segment Anything model: image encoder, prompt encoder and mask decoder.
//!
//! ```text
//! images (N, 3, H, W) → (x − mean)/std → zero-pad to img_size (bottom/right)
//!   → ImageEncoder → (N, C, h, w)
//!   → MaskDecoder(dense PE, prompts) → low-res logits (N, T, 2ⁿh, 2ⁿw)
//!   → postprocess: bilinear to img_size, crop to (H, W) → masks (N, T, H, W)
//! ```
//!
//! Official SAM ([`SamConfig::vit_b`] …): 1024 px, ImageNet pixel statistics in 0..255, two
//! upscaling stages (logits at 256 px, upsampled). MA-SAM ([`SamConfig::masam`]): identity pixel
//! normalisation on [0, 1] inputs, four stages, so the logits are already full resolution and the
//! post-processing is skipped. The bilinear resize is written as two interpolation matrices, so
//! it records a backward (candle's `upsample_bilinear2d` has none).

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::config::ImageEncoderConfig;
use crate::error::{Error, Result};
use crate::extension::ForwardContext;
use crate::image_encoder::ImageEncoder;
use crate::mask_decoder::{MaskDecoder, MaskDecoderConfig, MaskSelection};
use crate::prompt_encoder::{PromptEncoder, PromptEncoderConfig};

/// SAM's pixel mean (ImageNet, 0..255 scale).
pub const SAM_PIXEL_MEAN: [f64; 3] = [123.675, 116.28, 103.53];
/// SAM's pixel standard deviation (ImageNet, 0..255 scale).
pub const SAM_PIXEL_STD: [f64; 3] = [58.395, 57.12, 57.375];

/// Configuration of a [`Sam`] model. `Default` is MA-SAM on the encoder's default backbone
/// ([`ImageEncoderConfig::default`]) at 512 px with 12 classes.
///
/// ```
/// use masam_sam::{ImageEncoderConfig, SamConfig};
/// let sam = SamConfig::vit_h();
/// assert_eq!(sam.decoder.num_mask_tokens(), 4);
/// let masam = SamConfig::masam(ImageEncoderConfig::vit_b(), 512, 12);
/// assert_eq!(masam.decoder.num_mask_tokens(), 13);
/// assert_eq!(masam.prompt.image_embedding_size, (32, 32));
/// assert!(masam.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamConfig {
    /// The ViT image encoder.
    pub encoder: ImageEncoderConfig,
    /// The prompt encoder.
    pub prompt: PromptEncoderConfig,
    /// The mask decoder.
    pub decoder: MaskDecoderConfig,
    /// Per-channel mean subtracted from the input.
    pub pixel_mean: [f64; 3],
    /// Per-channel standard deviation dividing the input.
    pub pixel_std: [f64; 3],
}

impl Default for SamConfig {
    fn default() -> Self {
        Self::masam(ImageEncoderConfig::default(), 512, 12)
    }
}

impl SamConfig {
    fn official(encoder: ImageEncoderConfig) -> Self {
        Self {
            prompt: PromptEncoderConfig::square(encoder.out_chans, encoder.img_size),
            decoder: MaskDecoderConfig::sam(),
            encoder,
            pixel_mean: SAM_PIXEL_MEAN,
            pixel_std: SAM_PIXEL_STD,
        }
    }

    /// Official SAM ViT-B (`sam_vit_b_01ec64.pth`): 1024 px, 3 multimask outputs, 2 stages.
    pub fn vit_b() -> Self {
        Self::official(ImageEncoderConfig::vit_b())
    }

    /// Official SAM ViT-L (`sam_vit_l_0b3195.pth`).
    pub fn vit_l() -> Self {
        Self::official(ImageEncoderConfig::vit_l())
    }

    /// Official SAM ViT-H (`sam_vit_h_4b8939.pth`).
    pub fn vit_h() -> Self {
        Self::official(ImageEncoderConfig::vit_h())
    }

    /// MA-SAM: `backbone` at `img_size` px, `num_classes + 1` mask tokens (0 = background), four
    /// upscaling stages (full-resolution logits), identity pixel normalisation.
    pub fn masam(backbone: ImageEncoderConfig, img_size: usize, num_classes: usize) -> Self {
        let encoder = backbone.with_img_size(img_size);
        let c = encoder.out_chans;
        Self {
            prompt: PromptEncoderConfig {
                image_embedding_size: (
                    img_size / encoder.patch_size,
                    img_size / encoder.patch_size,
                ),
                ..PromptEncoderConfig::square(c, img_size)
            },
            decoder: MaskDecoderConfig::masam(c, num_classes),
            encoder,
            pixel_mean: [0.0; 3],
            pixel_std: [1.0; 3],
        }
    }

    /// The tiny MA-SAM of the reference fixtures: C 64, 4 blocks, 64 px, 3 classes, decoder
    /// with 4 heads and MLP 128.
    pub fn tiny() -> Self {
        Self {
            encoder: ImageEncoderConfig::tiny(),
            prompt: PromptEncoderConfig::tiny(),
            decoder: MaskDecoderConfig::tiny(),
            pixel_mean: [0.0; 3],
            pixel_std: [1.0; 3],
        }
    }

    /// Checks every part and that they fit together.
    pub fn validate(&self) -> Result<()> {
        self.encoder.validate()?;
        self.prompt.validate()?;
        self.decoder.validate()?;
        let c = self.encoder.out_chans;
        if self.decoder.kind == crate::mask_decoder::DecoderKind::Fusion
            && self.decoder.fusion_encoder_dim != self.encoder.embed_dim
        {
            return Err(Error::Config(format!(
                "SAM: the fusion decoder reads {}-wide encoder features, the encoder is {} wide",
                self.decoder.fusion_encoder_dim, self.encoder.embed_dim
            )));
        }
        if self.prompt.embed_dim != c || self.decoder.transformer_dim != c {
            return Err(Error::Config(format!(
                "SAM: encoder output {c} channels, prompt encoder {}, mask decoder {}: they must agree",
                self.prompt.embed_dim, self.decoder.transformer_dim
            )));
        }
        let img = self.encoder.img_size;
        let g = img / self.encoder.patch_size;
        if self.prompt.image_embedding_size != (g, g) || self.prompt.input_image_size != (img, img)
        {
            return Err(Error::Config(format!(
                "SAM: prompt encoder sizes {:?} / {:?} do not match the encoder ({g}×{g} tokens, {img} px)",
                self.prompt.image_embedding_size, self.prompt.input_image_size
            )));
        }
        if self.encoder.in_chans != 3 {
            return Err(Error::Config(format!(
                "SAM: the pixel statistics are per RGB channel, encoder has {} input channels",
                self.encoder.in_chans
            )));
        }
        if self.pixel_std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(Error::Config(format!(
                "SAM: pixel_std must be finite and non-zero, got {:?}",
                self.pixel_std
            )));
        }
        Ok(())
    }
}

/// The prompts of one forward pass.
#[derive(Debug, Clone, Default)]
pub enum Prompt {
    /// No prompt (MA-SAM's default): tokens of batch 1 shared by every image.
    #[default]
    None,
    /// One box per image, (N, 4) `(x0, y0, x1, y1)` in input pixels (MA-SAM's box variant).
    ///
    /// For every prompt kind a batch of 1 is shared by all images, and a single image may take
    /// P prompts (official SAM), giving P outputs.
    Boxes(Tensor),
    /// Points per image: `coords` (N, K, 2) `[x, y]` in input pixels and `labels` (N, K)
    /// (1 foreground, 0 background, −1 ignored); a padding point is appended as in SAM.
    Points {
        /// Point coordinates, (N, K, 2).
        coords: Tensor,
        /// Point labels, (N, K).
        labels: Tensor,
    },
}

/// What [`Sam::forward`] returns.
#[derive(Debug, Clone)]
pub struct SamOutput {
    /// Mask logits at the input size, (N, T, H, W).
    pub masks: Tensor,
    /// Predicted IoU per mask, (N, T).
    pub iou_predictions: Tensor,
    /// The decoder's logits before post-processing, (N, T, 2ⁿh, 2ⁿw); the same tensor as
    /// `masks` when the decoder already works at the input size (MA-SAM).
    pub low_res_logits: Tensor,
}

/// Segment Anything: [`ImageEncoder`] + [`PromptEncoder`] + [`MaskDecoder`], with the official
/// weight prefixes `image_encoder`, `prompt_encoder` and `mask_decoder`.
///
/// The parts are public so that encoder blocks can receive hooks (`image_encoder.blocks[i].hooks`).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use masam_nn::SeededVarMap;
/// use masam_sam::{ForwardContext, Prompt, Sam, SamConfig};
/// # fn main() -> masam_sam::Result<()> {
/// let params = SeededVarMap::new(0);
/// let sam = Sam::new(&SamConfig::tiny(), params.var_builder(DType::F32, &Device::Cpu))?;
/// let images = Tensor::zeros((2, 3, 64, 64), DType::F32, &Device::Cpu)?;
/// let out = sam.forward(&images, &Prompt::None, &ForwardContext::eval_2d())?;
/// assert_eq!(out.masks.dims(), &[2, 4, 64, 64]);
/// assert_eq!(out.iou_predictions.dims(), &[2, 4]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Sam {
    /// The configuration it was built with.
    pub config: SamConfig,
    /// The ViT image encoder.
    pub image_encoder: ImageEncoder,
    /// The prompt encoder.
    pub prompt_encoder: PromptEncoder,
    /// The mask decoder.
    pub mask_decoder: MaskDecoder,
    pixel_mean: Tensor,
    pixel_std: Tensor,
}

impl Sam {
    /// Builds the model from `vb` (the root of an official SAM checkpoint).
    pub fn new(cfg: &SamConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let image_encoder = ImageEncoder::new(&cfg.encoder, vb.pp("image_encoder"))?;
        let prompt_encoder = PromptEncoder::new(&cfg.prompt, vb.pp("prompt_encoder"))?;
        let mask_decoder = MaskDecoder::new(&cfg.decoder, vb.pp("mask_decoder"))?;
        let dev = vb.device();
        let stat = |v: [f64; 3]| -> Result<Tensor> {
            Ok(Tensor::new(&v.map(|x| x as f32), dev)?
                .reshape((1, 3, 1, 1))?
                .to_dtype(vb.dtype())?)
        };
        Ok(Self {
            config: cfg.clone(),
            image_encoder,
            prompt_encoder,
            mask_decoder,
            pixel_mean: stat(cfg.pixel_mean)?,
            pixel_std: stat(cfg.pixel_std)?,
        })
    }

    /// Assembles a model from parts built separately, for example a frozen encoder from a
    /// checkpoint and a trainable decoder from a `VarMap`. The pixel statistics come from `cfg`.
    pub fn from_parts(
        cfg: &SamConfig,
        image_encoder: ImageEncoder,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        device: &candle_core::Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let stat = |v: [f64; 3]| -> Result<Tensor> {
            Ok(Tensor::new(&v.map(|x| x as f32), device)?.reshape((1, 3, 1, 1))?)
        };
        Ok(Self {
            config: cfg.clone(),
            image_encoder,
            prompt_encoder,
            mask_decoder,
            pixel_mean: stat(cfg.pixel_mean)?,
            pixel_std: stat(cfg.pixel_std)?,
        })
    }

    fn check_images(&self, images: &Tensor) -> Result<(usize, usize, usize)> {
        let img = self.config.encoder.img_size;
        let d = images.dims();
        if d.len() != 4 || d[1] != 3 || d[2] == 0 || d[3] == 0 || d[2] > img || d[3] > img {
            return Err(Error::InputShape {
                what: "images",
                expected: format!("(N, 3, H, W) with 0 < H, W <= {img}"),
                found: d.to_vec(),
            });
        }
        Ok((d[0], d[2], d[3]))
    }

    /// Normalises `(x − mean)/std` and zero-pads to `img_size × img_size` (bottom and right),
    /// as SAM's `preprocess`. The result is f32, or bf16/f16 for bf16/f16 images: the whole
    /// model then computes in that dtype (every layer converts its weights to its input's
    /// dtype, see `masam_nn`). For autocast-style mixed precision keep the images f32 and set
    /// [`ForwardContext::compute`].
    ///
    /// # Shapes
    /// - `images`: (N, 3, H, W) with H, W ≤ img_size; returns (N, 3, img_size, img_size)
    pub fn preprocess(&self, images: &Tensor) -> Result<Tensor> {
        let (_, h, w) = self.check_images(images)?;
        let img = self.config.encoder.img_size;
        // bf16 and f16 images stay in their dtype (mixed precision); others become f32
        let dt = match images.dtype() {
            dt @ (DType::BF16 | DType::F16) => dt,
            _ => self.pixel_mean.dtype(),
        };
        let x = images
            .to_dtype(dt)?
            .broadcast_sub(&self.pixel_mean.to_dtype(dt)?)?
            .broadcast_div(&self.pixel_std.to_dtype(dt)?)?;
        let x = if h < img {
            x.pad_with_zeros(2, 0, img - h)?
        } else {
            x
        };
        let x = if w < img {
            x.pad_with_zeros(3, 0, img - w)?
        } else {
            x
        };
        Ok(x)
    }

    /// Encodes the prompt into sparse and dense embeddings for `n` images.
    fn encode_prompt(&self, prompt: &Prompt, n: usize) -> Result<(Tensor, Tensor)> {
        let check_batch = |what: &'static str, t: &Tensor| -> Result<()> {
            match t.dims().first() {
                Some(&b) if b == n || b == 1 || n == 1 => Ok(()),
                _ => Err(Error::InputShape {
                    what,
                    expected: format!("batch 1 or {n} (one per image)"),
                    found: t.dims().to_vec(),
                }),
            }
        };
        match prompt {
            Prompt::None => self.prompt_encoder.forward(None, None, None),
            Prompt::Boxes(b) => {
                check_batch("boxes", b)?;
                self.prompt_encoder.forward(None, Some(b), None)
            }
            Prompt::Points { coords, labels } => {
                check_batch("point coordinates", coords)?;
                self.prompt_encoder
                    .forward(Some((coords, labels)), None, None)
            }
        }
    }

    /// The device the model lives on.
    pub fn device(&self) -> &candle_core::Device {
        self.pixel_mean.device()
    }

    /// Decodes image embeddings with a prompt.
    ///
    /// # Shapes
    /// - `embeddings`: (N, C, h, w); returns logits (N, T', 2ⁿh, 2ⁿw) and IoU (N, T')
    pub fn decode(
        &self,
        embeddings: &Tensor,
        prompt: &Prompt,
        selection: MaskSelection,
    ) -> Result<(Tensor, Tensor)> {
        self.decode_with_image(embeddings, None, prompt, selection)
    }

    /// [`decode`](Self::decode) with the preprocessed image (N, 3, H, W), which a mask decoder
    /// with [`pixel_skip`](crate::MaskDecoderConfig::pixel_skip) needs.
    pub fn decode_with_image(
        &self,
        embeddings: &Tensor,
        image: Option<&Tensor>,
        prompt: &Prompt,
        selection: MaskSelection,
    ) -> Result<(Tensor, Tensor)> {
        self.decode_with_features(embeddings, image, None, prompt, selection)
    }

    /// [`decode_with_image`](Self::decode_with_image) with the encoder features of a
    /// [`DecoderKind::Fusion`](crate::mask_decoder::DecoderKind::Fusion) decoder (see
    /// [`Sam::fusion_features`]).
    pub fn decode_with_features(
        &self,
        embeddings: &Tensor,
        image: Option<&Tensor>,
        features: Option<&[Tensor]>,
        prompt: &Prompt,
        selection: MaskSelection,
    ) -> Result<(Tensor, Tensor)> {
        let n = embeddings.dims().first().copied().unwrap_or(0);
        let (sparse, dense) = self.encode_prompt(prompt, n)?;
        let dense_pe = self.prompt_encoder.get_dense_pe()?;
        let (masks, iou) = self
            .mask_decoder
            .predict_masks_with_features(embeddings, image, features, &dense_pe, &sparse, &dense)?;
        let t = self.mask_decoder.config().num_mask_tokens();
        let (start, len) = match selection {
            MaskSelection::All => (0, t),
            MaskSelection::Multimask => (1, t - 1),
            MaskSelection::Single => (0, 1),
        };
        if len == t {
            return Ok((masks, iou));
        }
        Ok((masks.narrow(1, start, len)?, iou.narrow(1, start, len)?))
    }

    /// The encoder features a fusion decoder reads from `out`, one per upscaling stage,
    /// coarsest first ([`DecoderKind::fusion_sources`](crate::mask_decoder::DecoderKind::fusion_sources)).
    pub fn fusion_features(&self, out: &crate::EncoderOutput) -> Vec<Tensor> {
        let stages = self.mask_decoder.config().upscaling_channels.len();
        crate::mask_decoder::DecoderKind::fusion_sources(out.blocks.len(), stages)
            .into_iter()
            .map(|i| match i {
                Some(i) => out.blocks[i].clone(),
                None => out.patch_embed.clone(),
            })
            .collect()
    }

    /// Runs the model and returns every mask channel ([`MaskSelection::All`]).
    ///
    /// # Shapes
    /// - `images`: (N, 3, H, W), H, W ≤ img_size, N = B·D with `ctx.slices = D`
    /// - returns masks (N, T, H, W), IoU (N, T)
    pub fn forward(
        &self,
        images: &Tensor,
        prompt: &Prompt,
        ctx: &ForwardContext,
    ) -> Result<SamOutput> {
        self.forward_select(images, prompt, ctx, MaskSelection::All)
    }

    /// [`forward`](Self::forward) with SAM's mask selection (`Multimask`: tokens 1..,
    /// `Single`: token 0).
    pub fn forward_select(
        &self,
        images: &Tensor,
        prompt: &Prompt,
        ctx: &ForwardContext,
        selection: MaskSelection,
    ) -> Result<SamOutput> {
        let (_, h, w) = self.check_images(images)?;
        let x = self.preprocess(images)?;
        if self.mask_decoder.config().kind == crate::mask_decoder::DecoderKind::Fusion {
            let out = self.image_encoder.forward_with_intermediates(&x, ctx)?;
            let features = self.fusion_features(&out);
            self.decode_and_postprocess(
                &out.embeddings,
                &x,
                Some(&features),
                (h, w),
                prompt,
                selection,
            )
        } else {
            let embeddings = self.image_encoder.forward(&x, ctx)?;
            self.decode_and_postprocess(&embeddings, &x, None, (h, w), prompt, selection)
        }
    }

    /// The encoder blocks a [`DecoderKind::Fusion`](crate::mask_decoder::DecoderKind::Fusion)
    /// decoder reads, one per upscaling stage, coarsest first (`None`: the patch embedding);
    /// empty for the other decoders, which read the neck's output only.
    ///
    /// ```
    /// use masam_sam::{mask_decoder::DecoderKind, SamConfig};
    /// # fn main() -> masam_sam::Result<()> {
    /// # use masam_nn::SeededVarMap;
    /// # use candle_core::{DType, Device};
    /// let mut cfg = SamConfig::tiny(); // 4 blocks, 4 upscaling stages
    /// cfg.decoder = cfg.decoder.with_kind(DecoderKind::Fusion, cfg.encoder.embed_dim);
    /// let sam = masam_sam::Sam::new(&cfg, SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu))?;
    /// assert_eq!(sam.fusion_sources(), vec![Some(2), Some(1), Some(0), None]);
    /// # Ok(()) }
    /// ```
    pub fn fusion_sources(&self) -> Vec<Option<usize>> {
        let cfg = self.mask_decoder.config();
        if cfg.kind != crate::mask_decoder::DecoderKind::Fusion {
            return Vec::new();
        }
        crate::mask_decoder::DecoderKind::fusion_sources(
            self.image_encoder.blocks.len(),
            cfg.upscaling_channels.len(),
        )
    }

    /// What [`forward_select`](Self::forward_select) does after the encoder's last block, for
    /// callers that run the encoder themselves (activation checkpointing, see
    /// [`ImageEncoder::forward_embed`](crate::ImageEncoder::forward_embed)): the neck on the
    /// last block's `tokens`, the prompt encoder, the mask decoder (with the fusion decoder's
    /// encoder `features`, in the order of [`Sam::fusion_sources`]) and the post-processing.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use masam_nn::SeededVarMap;
    /// use masam_sam::{ForwardContext, MaskSelection, Prompt, Sam, SamConfig};
    /// # fn main() -> masam_sam::Result<()> {
    /// let sam = Sam::new(&SamConfig::tiny(), SeededVarMap::new(0).var_builder(DType::F32, &Device::Cpu))?;
    /// let images = Tensor::rand(0f32, 1., (2, 3, 64, 64), &Device::Cpu)?;
    /// let ctx = ForwardContext::eval_2d();
    /// let x = sam.preprocess(&images)?;
    /// let mut t = sam.image_encoder.forward_embed(&x, &ctx)?;
    /// for i in 0..sam.image_encoder.blocks.len() {
    ///     t = sam.image_encoder.forward_block(i, &t, &ctx)?;
    /// }
    /// let out = sam.forward_head(&x, (64, 64), &t, None, &Prompt::None, MaskSelection::All, &ctx)?;
    /// let whole = sam.forward(&images, &Prompt::None, &ctx)?;
    /// let diff = (out.masks - whole.masks)?.abs()?.max_all()?.to_scalar::<f32>()?;
    /// assert_eq!(diff, 0.0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Shapes
    /// - `image`: the preprocessed images (N, 3, img_size, img_size) ([`Sam::preprocess`])
    /// - `input_size`: (H, W) of the images before preprocessing
    /// - `tokens`: the last block's output (N, h, w, C); `features`: (N, h, w, C) each
    /// - returns masks (N, T', H, W), IoU (N, T')
    pub fn forward_head(
        &self,
        image: &Tensor,
        input_size: (usize, usize),
        tokens: &Tensor,
        features: Option<&[Tensor]>,
        prompt: &Prompt,
        selection: MaskSelection,
        ctx: &ForwardContext,
    ) -> Result<SamOutput> {
        let embeddings = self.image_encoder.forward_neck(tokens, ctx)?;
        self.decode_and_postprocess(&embeddings, image, features, input_size, prompt, selection)
    }

    /// The mask decoder and the post-processing of [`Sam::forward_select`].
    fn decode_and_postprocess(
        &self,
        embeddings: &Tensor,
        image: &Tensor,
        features: Option<&[Tensor]>,
        (h, w): (usize, usize),
        prompt: &Prompt,
        selection: MaskSelection,
    ) -> Result<SamOutput> {
        let (low_res_logits, iou_predictions) =
            self.decode_with_features(embeddings, Some(image), features, prompt, selection)?;
        let masks = self.postprocess_masks(&low_res_logits, (h, w), (h, w))?;
        Ok(SamOutput {
            masks,
            iou_predictions,
            low_res_logits,
        })
    }

    /// SAM's `postprocess_masks`: bilinear (`align_corners=False`) to `img_size`, crop to the
    /// unpadded `input_size`, bilinear to `original_size`. Each step is skipped when it is the
    /// identity (MA-SAM at its native size), so the logits pass through bit for bit.
    ///
    /// # Shapes
    /// - `masks`: (N, T, h', w'); returns (N, T, original_size.0, original_size.1)
    pub fn postprocess_masks(
        &self,
        masks: &Tensor,
        input_size: (usize, usize),
        original_size: (usize, usize),
    ) -> Result<Tensor> {
        let img = self.config.encoder.img_size;
        let (_, _, mh, mw) = masks.dims4()?;
        let (ih, iw) = input_size;
        if ih == 0
            || iw == 0
            || ih > img
            || iw > img
            || original_size.0 == 0
            || original_size.1 == 0
        {
            return Err(Error::InputShape {
                what: "postprocess sizes",
                expected: format!("0 < input size <= {img}, positive original size"),
                found: vec![ih, iw, original_size.0, original_size.1],
            });
        }
        let x = if (mh, mw) != (img, img) {
            resize_bilinear(masks, img, img)?
        } else {
            masks.clone()
        };
        let x = if (ih, iw) != (img, img) {
            x.narrow(2, 0, ih)?.narrow(3, 0, iw)?
        } else {
            x
        };
        if (ih, iw) != original_size {
            Ok(resize_bilinear(&x, original_size.0, original_size.1)?)
        } else {
            Ok(x)
        }
    }
}

/// The (out, in) matrix of 1D linear interpolation with PyTorch's `align_corners=False` rule:
/// `src = max((i + 0.5)·in/out − 0.5, 0)`, in f32.
fn interp_matrix(n_in: usize, n_out: usize) -> Vec<f32> {
    let scale = n_in as f32 / n_out as f32;
    let mut m = vec![0f32; n_out * n_in];
    for i in 0..n_out {
        let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let l1 = src - i0 as f32;
        let l0 = 1.0 - l1;
        m[i * n_in + i0] += l0;
        m[i * n_in + i1] += l1;
    }
    m
}

/// Bilinear resize with `align_corners=False` (PyTorch's `F.interpolate(mode="bilinear")`
/// given a size), as two matmuls so that it records a backward.
///
/// # Shapes
/// - `x`: (N, C, H, W); returns (N, C, out_h, out_w)
pub fn resize_bilinear(x: &Tensor, out_h: usize, out_w: usize) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if (h, w) == (out_h, out_w) {
        return Ok(x.clone());
    }
    let dev = x.device();
    let ah = Tensor::from_vec(interp_matrix(h, out_h), (out_h, h), dev)?.to_dtype(x.dtype())?;
    let aw = Tensor::from_vec(interp_matrix(w, out_w), (out_w, w), dev)?.to_dtype(x.dtype())?;
    // rows: (N·C·H, W) @ (W, out_w)
    let y = x
        .reshape((n * c * h, w))?
        .matmul(&aw.t()?)?
        .reshape((n * c, h, out_w))?;
    // columns: (out_h, H) @ (N·C, H, out_w)
    let y = ah
        .unsqueeze(0)?
        .broadcast_as((n * c, out_h, h))?
        .contiguous()?
        .matmul(&y)?;
    y.reshape((n, c, out_h, out_w))
}
