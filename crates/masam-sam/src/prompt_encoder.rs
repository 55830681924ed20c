//! SAM's prompt encoder: points, boxes and masks to sparse and dense prompt embeddings.
//!
//! Official semantics (`segment_anything/modeling/prompt_encoder.py`):
//! - points are shifted by +0.5 (pixel centres), encoded with the random-Fourier PE normalised by
//!   the input image size, and tagged by label: −1 → PE zeroed + `not_a_point_embed`,
//!   0 → + `point_embeddings.0`, 1 → + `point_embeddings.1`; when no boxes are given a padding
//!   point `(0, 0)` with label −1 is appended;
//! - boxes `(x0, y0, x1, y1)` are shifted by +0.5 and encoded as two corners, + `point_embeddings.2`
//!   (top-left) and + `point_embeddings.3` (bottom-right);
//! - masks go through `mask_downscaling` (conv 2×2 s2 → LayerNorm2d → GELU → conv 2×2 s2 →
//!   LayerNorm2d → GELU → conv 1×1); without a mask the dense embedding is `no_mask_embed`
//!   broadcast over the token grid;
//! - without any prompt the sparse embedding is empty, (1, 0, C).

use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};
use masam_nn::{layer_norm_2d, LayerNorm2d};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::position_embedding::PositionEmbeddingRandom;

/// Configuration of the [`PromptEncoder`]. `Default` is MA-SAM's (C 256, 32×32 tokens, 512 px).
///
/// ```
/// use masam_sam::PromptEncoderConfig;
/// let cfg = PromptEncoderConfig::square(256, 1024);
/// assert_eq!(cfg.image_embedding_size, (64, 64));
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptEncoderConfig {
    /// Width C of the prompt embeddings (= the image embedding channels, 256 in SAM).
    pub embed_dim: usize,
    /// Token grid (h, w) of the image embedding.
    pub image_embedding_size: (usize, usize),
    /// Input image size (H, W) in pixels, used to normalise point coordinates.
    pub input_image_size: (usize, usize),
    /// Hidden channels of the mask downscaling path (16 in SAM).
    pub mask_in_chans: usize,
}

impl Default for PromptEncoderConfig {
    fn default() -> Self {
        Self::square(256, 512)
    }
}

impl PromptEncoderConfig {
    /// A square input of `img_size` pixels with SAM's 16-pixel patches.
    pub fn square(embed_dim: usize, img_size: usize) -> Self {
        Self {
            embed_dim,
            image_embedding_size: (img_size / 16, img_size / 16),
            input_image_size: (img_size, img_size),
            mask_in_chans: 16,
        }
    }

    /// Official SAM: C 256, 1024 px input, 64×64 tokens.
    pub fn sam() -> Self {
        Self::square(256, 1024)
    }

    /// The tiny test model of the reference fixtures: C 64, 64 px input, 4×4 tokens.
    pub fn tiny() -> Self {
        Self::square(64, 64)
    }

    /// Checks that the sizes are usable.
    pub fn validate(&self) -> Result<()> {
        if self.embed_dim == 0 || !self.embed_dim.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "prompt encoder: embed_dim must be even and positive, got {}",
                self.embed_dim
            )));
        }
        let (h, w) = self.image_embedding_size;
        let (ih, iw) = self.input_image_size;
        if h == 0 || w == 0 || ih == 0 || iw == 0 {
            return Err(Error::Config(format!(
                "prompt encoder: sizes must be positive, got image_embedding_size {:?}, input_image_size {:?}",
                self.image_embedding_size, self.input_image_size
            )));
        }
        if self.mask_in_chans < 4 || !self.mask_in_chans.is_multiple_of(4) {
            return Err(Error::Config(format!(
                "prompt encoder: mask_in_chans must be a positive multiple of 4, got {}",
                self.mask_in_chans
            )));
        }
        Ok(())
    }
}

/// A convolution with bias (PyTorch default init `U(±1/√fan_in)`), no padding, given stride.
#[derive(Debug, Clone)]
struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
}

impl Conv {
    fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let b = 1.0 / ((cin * k * k) as f64).sqrt();
        let init = Init::Uniform { lo: -b, up: b };
        let weight = vb.get_with_hints((cout, cin, k, k), "weight", init)?;
        let bias = vb.get_with_hints(cout, "bias", init)?;
        Ok(Self {
            weight,
            bias,
            stride,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.conv2d(&self.weight, 0, self.stride, 1, 1)?;
        let c = self.bias.dim(0)?;
        y.broadcast_add(&self.bias.reshape((1, c, 1, 1))?)
    }
}

/// SAM's `mask_downscaling` (`nn.Sequential` indices 0, 1, 3, 4, 6): a mask of 4× the token grid
/// to a dense embedding on the token grid.
#[derive(Debug, Clone)]
struct MaskDownscaling {
    conv0: Conv,
    norm1: LayerNorm2d,
    conv3: Conv,
    norm4: LayerNorm2d,
    conv6: Conv,
}

impl MaskDownscaling {
    fn new(mask_in_chans: usize, embed_dim: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let c4 = mask_in_chans / 4;
        Ok(Self {
            conv0: Conv::new(1, c4, 2, 2, vb.pp("0"))?,
            norm1: layer_norm_2d(c4, 1e-6, vb.pp("1"))?,
            conv3: Conv::new(c4, mask_in_chans, 2, 2, vb.pp("3"))?,
            norm4: layer_norm_2d(mask_in_chans, 1e-6, vb.pp("4"))?,
            conv6: Conv::new(mask_in_chans, embed_dim, 1, 1, vb.pp("6"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = masam_nn::gelu_erf(&self.norm1.forward(&self.conv0.forward(x)?)?)?;
        let x = masam_nn::gelu_erf(&self.norm4.forward(&self.conv3.forward(&x)?)?)?;
        self.conv6.forward(&x)
    }
}

/// SAM's prompt encoder. Weight names under its `VarBuilder` are the official ones:
/// `pe_layer.positional_encoding_gaussian_matrix`, `point_embeddings.{0..3}.weight`,
/// `not_a_point_embed.weight`, `no_mask_embed.weight`, `mask_downscaling.{0,1,3,4,6}.*`.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use masam_nn::SeededVarMap;
/// use masam_sam::{PromptEncoder, PromptEncoderConfig};
/// # fn main() -> masam_sam::Result<()> {
/// let params = SeededVarMap::new(0);
/// let pe = PromptEncoder::new(&PromptEncoderConfig::tiny(), params.var_builder(DType::F32, &Device::Cpu))?;
/// let (sparse, dense) = pe.forward(None, None, None)?;
/// assert_eq!(sparse.dims(), &[1, 0, 64]);
/// assert_eq!(dense.dims(), &[1, 64, 4, 4]);
/// let boxes = Tensor::new(&[[4f32, 8., 40., 50.]], &Device::Cpu)?;
/// let (sparse, _) = pe.forward(None, Some(&boxes), None)?;
/// assert_eq!(sparse.dims(), &[1, 2, 64]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PromptEncoder {
    cfg: PromptEncoderConfig,
    pe_layer: PositionEmbeddingRandom,
    point_embeddings: Vec<Tensor>,
    not_a_point_embed: Tensor,
    no_mask_embed: Tensor,
    mask_downscaling: MaskDownscaling,
}

fn embedding(dim: usize, vb: VarBuilder) -> candle_core::Result<Tensor> {
    // nn.Embedding(1, C): weight (1, C) ~ N(0, 1).
    vb.get_with_hints(
        (1, dim),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
    )
}

impl PromptEncoder {
    /// Builds the prompt encoder from `vb` (the `prompt_encoder` prefix of a SAM checkpoint).
    pub fn new(cfg: &PromptEncoderConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let c = cfg.embed_dim;
        let pe_layer = PositionEmbeddingRandom::new(c / 2, vb.pp("pe_layer"))?;
        let point_embeddings = (0..4)
            .map(|i| embedding(c, vb.pp("point_embeddings").pp(i.to_string())))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            pe_layer,
            point_embeddings,
            not_a_point_embed: embedding(c, vb.pp("not_a_point_embed"))?,
            no_mask_embed: embedding(c, vb.pp("no_mask_embed"))?,
            mask_downscaling: MaskDownscaling::new(
                cfg.mask_in_chans,
                c,
                vb.pp("mask_downscaling"),
            )?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PromptEncoderConfig {
        &self.cfg
    }

    /// The positional encoding layer.
    pub fn pe_layer(&self) -> &PositionEmbeddingRandom {
        &self.pe_layer
    }

    /// The dense positional encoding of the token grid (SAM's `get_dense_pe`).
    ///
    /// # Shapes
    /// - returns (1, C, h, w)
    pub fn get_dense_pe(&self) -> candle_core::Result<Tensor> {
        let (h, w) = self.cfg.image_embedding_size;
        self.pe_layer.forward(h, w)?.unsqueeze(0)
    }

    /// Embeds point prompts (SAM's `_embed_points`).
    ///
    /// # Shapes
    /// - `coords`: (B, N, 2) `[x, y]` in input-image pixels; `labels`: (B, N), any numeric dtype,
    ///   values −1 (padding), 0 (background) or 1 (foreground)
    /// - returns (B, N + 1, C) when `pad` (a padding point is appended), else (B, N, C)
    pub fn embed_points(&self, coords: &Tensor, labels: &Tensor, pad: bool) -> Result<Tensor> {
        let dims = coords.dims();
        if dims.len() != 3 || dims[2] != 2 {
            return Err(Error::InputShape {
                what: "point coordinates",
                expected: "(B, N, 2)".into(),
                found: dims.to_vec(),
            });
        }
        let (b, n) = (dims[0], dims[1]);
        if labels.dims() != [b, n] {
            return Err(Error::InputShape {
                what: "point labels",
                expected: format!("({b}, {n})"),
                found: labels.dims().to_vec(),
            });
        }
        let dev = coords.device();
        let mut points = (coords.to_dtype(DType::F32)? + 0.5)?;
        let mut labels = labels.to_dtype(DType::F32)?;
        if pad {
            let pad_point = Tensor::zeros((b, 1, 2), DType::F32, dev)?;
            let pad_label = Tensor::full(-1f32, (b, 1), dev)?;
            points = Tensor::cat(&[&points, &pad_point], 1)?;
            labels = Tensor::cat(&[&labels, &pad_label], 1)?;
        }
        let pe = self
            .pe_layer
            .forward_with_coords(&points, self.cfg.input_image_size)?
            .to_dtype(self.no_mask_embed.dtype())?;
        let dtype = pe.dtype();
        let labels = labels.unsqueeze(2)?;
        let is = |v: f32| -> candle_core::Result<Tensor> { labels.eq(v as f64)?.to_dtype(dtype) };
        let (neg, bg, fg) = (is(-1.0)?, is(0.0)?, is(1.0)?);
        // point_embedding[labels == -1] = 0, then += the learned embedding of each label.
        let keep = (1.0 - &neg)?;
        let out = pe.broadcast_mul(&keep)?;
        let out = (out + neg.broadcast_mul(&self.not_a_point_embed)?)?;
        let out = (out + bg.broadcast_mul(&self.point_embeddings[0])?)?;
        let out = (out + fg.broadcast_mul(&self.point_embeddings[1])?)?;
        Ok(out)
    }

    /// Embeds box prompts (SAM's `_embed_boxes`).
    ///
    /// # Shapes
    /// - `boxes`: (B, 4) `(x0, y0, x1, y1)` in input-image pixels
    /// - returns (B, 2, C)
    pub fn embed_boxes(&self, boxes: &Tensor) -> Result<Tensor> {
        let dims = boxes.dims();
        if dims.len() != 2 || dims[1] != 4 {
            return Err(Error::InputShape {
                what: "boxes",
                expected: "(B, 4)".into(),
                found: dims.to_vec(),
            });
        }
        let b = dims[0];
        let corners = (boxes.to_dtype(DType::F32)? + 0.5)?.reshape((b, 2, 2))?;
        let pe = self
            .pe_layer
            .forward_with_coords(&corners, self.cfg.input_image_size)?
            .to_dtype(self.no_mask_embed.dtype())?;
        let corner_embed = Tensor::cat(&[&self.point_embeddings[2], &self.point_embeddings[3]], 0)?;
        Ok(pe.broadcast_add(&corner_embed)?)
    }

    /// Embeds mask prompts through `mask_downscaling`.
    ///
    /// # Shapes
    /// - `masks`: (B, 1, 4h, 4w); returns (B, C, h, w)
    pub fn embed_masks(&self, masks: &Tensor) -> Result<Tensor> {
        let (h, w) = self.cfg.image_embedding_size;
        let dims = masks.dims();
        if dims.len() != 4 || dims[1] != 1 || dims[2] != 4 * h || dims[3] != 4 * w {
            return Err(Error::InputShape {
                what: "mask prompt",
                expected: format!("(B, 1, {}, {})", 4 * h, 4 * w),
                found: dims.to_vec(),
            });
        }
        Ok(self
            .mask_downscaling
            .forward(&masks.to_dtype(self.no_mask_embed.dtype())?)?)
    }

    /// The dense embedding used when no mask is given: `no_mask_embed` broadcast to
    /// (`batch`, C, h, w).
    pub fn no_mask_dense(&self, batch: usize) -> candle_core::Result<Tensor> {
        let (h, w) = self.cfg.image_embedding_size;
        let c = self.cfg.embed_dim;
        self.no_mask_embed
            .reshape((1, c, 1, 1))?
            .broadcast_as((batch, c, h, w))
    }

    /// Encodes the prompts (SAM's `forward`). The batch size is that of the first prompt given,
    /// 1 when there is none.
    ///
    /// # Shapes
    /// - `points`: coordinates (B, N, 2) and labels (B, N), see [`embed_points`](Self::embed_points)
    /// - `boxes`: (B, 4); `masks`: (B, 1, 4h, 4w)
    /// - returns `sparse` (B, S, C), S = N (+1 padding point without boxes) + 2 with boxes, and
    ///   `dense` (B, C, h, w)
    pub fn forward(
        &self,
        points: Option<(&Tensor, &Tensor)>,
        boxes: Option<&Tensor>,
        masks: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let bs = if let Some((c, _)) = points {
            c.dims().first().copied().unwrap_or(1)
        } else if let Some(b) = boxes {
            b.dims().first().copied().unwrap_or(1)
        } else if let Some(m) = masks {
            m.dims().first().copied().unwrap_or(1)
        } else {
            1
        };
        let mut parts = Vec::new();
        if let Some((coords, labels)) = points {
            parts.push(self.embed_points(coords, labels, boxes.is_none())?);
        }
        if let Some(b) = boxes {
            parts.push(self.embed_boxes(b)?);
        }
        for p in &parts {
            if p.dim(0)? != bs {
                return Err(Error::InputShape {
                    what: "prompts",
                    expected: format!("the same batch size {bs} for every prompt"),
                    found: p.dims().to_vec(),
                });
            }
        }
        let sparse = match parts.len() {
            0 => Tensor::zeros(
                (bs, 0, self.cfg.embed_dim),
                self.no_mask_embed.dtype(),
                self.no_mask_embed.device(),
            )?,
            1 => parts.pop().expect("one part"),
            _ => Tensor::cat(&parts, 1)?,
        };
        let dense = match masks {
            Some(m) => {
                let d = self.embed_masks(m)?;
                if d.dim(0)? != bs {
                    return Err(Error::InputShape {
                        what: "mask prompt",
                        expected: format!("batch size {bs}"),
                        found: m.dims().to_vec(),
                    });
                }
                d
            }
            None => self.no_mask_dense(bs)?,
        };
        Ok((sparse, dense))
    }
}
