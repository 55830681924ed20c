//! SAM's mask decoder (`segment_anything/modeling/mask_decoder.py`), with MA-SAM's deeper
//! progressive upsampling as a configuration.
//!
//! ```text
//! tokens = [iou_token, mask_tokens(T)] ++ sparse prompts           (B, 1+T+S, C)
//! src    = image_embeddings + dense prompts                         (B, C, h, w)
//! hs, src = TwoWayTransformer(src, dense_pe, tokens)
//! up     = output_upscaling(src)        n × [ConvT 2×2 s2 → LayerNorm2d → GELU], the last without LN
//! masks  = stack_t(hypernet_t(hs[:, 1+t])) @ up                     (B, T, 2ⁿh, 2ⁿw)
//! iou    = iou_prediction_head(hs[:, 0])                            (B, T)
//! ```
//!
//! SAM: 2 stages C → C/4 → C/8, 3 multimask outputs. MA-SAM: 4 stages C → C/4 → C/8 → C/16 →
//! C/32, `num_classes + 1` mask tokens, and all of them are returned. GELU is the exact erf form
//! (PyTorch's `nn.GELU`), and the 2×2 stride-2 transposed convolutions are computed as one matmul
//! (no overlap), which records a backward.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use masam_nn::{layer_norm_2d, linear, LayerNorm2d, Linear};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::pixel_skip::PixelSkip;
use crate::transformer::{TwoWayTransformer, TwoWayTransformerConfig};

/// Configuration of the [`MaskDecoder`]. `Default` is MA-SAM's for BTCV (C 256, 12 classes →
/// 13 mask tokens, 4 upscaling stages).
///
/// ```
/// use masam_sam::MaskDecoderConfig;
/// let sam = MaskDecoderConfig::sam();
/// assert_eq!((sam.num_mask_tokens(), sam.upscaling_channels.clone()), (4, vec![64, 32]));
/// let masam = MaskDecoderConfig::masam(256, 12);
/// assert_eq!(masam.upscaling_channels, vec![64, 32, 16, 8]);
/// assert_eq!(masam.upscale_factor(), 16);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskDecoderConfig {
    /// Token / image-embedding width C.
    pub transformer_dim: usize,
    /// The two-way transformer (its `embedding_dim` must equal `transformer_dim`).
    pub transformer: TwoWayTransformerConfig,
    /// Mask tokens are `num_multimask_outputs + 1` (SAM: 3; MA-SAM: the number of classes).
    pub num_multimask_outputs: usize,
    /// Layers of the IoU head MLP (3).
    pub iou_head_depth: usize,
    /// Hidden width of the IoU head MLP (= C in SAM).
    pub iou_head_hidden_dim: usize,
    /// Output channels of each 2× upscaling stage; the last is the hypernetwork output width.
    pub upscaling_channels: Vec<usize>,
    /// Epsilon of the upscaling `LayerNorm2d`s (1e-6).
    pub upscaling_ln_eps: f64,
    /// Adds full-resolution image features to every upscaling stage
    /// ([`crate::pixel_skip`]); the decoder then needs the image. Off in SAM and MA-SAM.
    #[serde(default)]
    pub pixel_skip: bool,
    /// Which decoder: SAM's 2 stages, the 4 progressive stages, or the U-shaped fusion of
    /// intermediate encoder features ([`DecoderKind`]). Set it with
    /// [`MaskDecoderConfig::with_kind`], which also sets the stages.
    #[serde(default)]
    pub kind: DecoderKind,
    /// [`DecoderKind::Fusion`]: width of the encoder's block outputs (the ViT's embed dim).
    #[serde(default)]
    pub fusion_encoder_dim: usize,
}

/// The three mask decoders compared by the MA-SAM paper (its Table 6).
///
/// - `Sam`: SAM's decoder as is: 2 transposed-convolution stages (C/4, C/8), the logits at 4×
///   the token grid, then bilinearly resized to the input size.
/// - `Progressive` (default, the reference): 4 transposed-convolution stages (C/4 … C/32), the
///   logits at full resolution (16× the token grid at patch 16).
/// - `Fusion`: the progressive stages plus a U-shaped skip path: before the normalisation of
///   stage `s` (0 = coarsest) it adds an intermediate encoder feature map, layer-normalised,
///   projected to the stage's width by a linear layer and bilinearly upsampled to the stage's
///   resolution. Stage `s` of `n` reads block `depth − 1 − (s + 1)·depth / n` (the patch
///   embedding when that is negative): for ViT-B/L/H with 4 stages these are the outputs of the
///   global-attention blocks before the last one, deepest to the coarsest stage, and the patch
///   embedding at full resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    /// SAM's 2 upscaling stages.
    Sam,
    /// MA-SAM's 4 progressive upscaling stages.
    #[default]
    Progressive,
    /// Progressive stages fused with intermediate encoder features.
    Fusion,
}

impl std::str::FromStr for DecoderKind {
    type Err = Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "sam" => Ok(Self::Sam),
            "progressive" => Ok(Self::Progressive),
            "fusion" => Ok(Self::Fusion),
            _ => Err(Error::Config(format!(
                "unknown decoder `{s}`: use sam, progressive or fusion"
            ))),
        }
    }
}

impl DecoderKind {
    /// The encoder block each of `stages` fusion stages reads (`None`: the patch embedding),
    /// coarsest stage first.
    ///
    /// ```
    /// use masam_sam::mask_decoder::DecoderKind;
    /// assert_eq!(DecoderKind::fusion_sources(12, 4), vec![Some(8), Some(5), Some(2), None]);
    /// ```
    pub fn fusion_sources(depth: usize, stages: usize) -> Vec<Option<usize>> {
        (0..stages)
            .map(|s| {
                let i = depth as isize - 1 - ((s + 1) * depth / stages.max(1)) as isize;
                (i >= 0).then_some(i as usize)
            })
            .collect()
    }
}

impl Default for MaskDecoderConfig {
    fn default() -> Self {
        Self::masam(256, 12)
    }
}

impl MaskDecoderConfig {
    /// Official SAM: C 256, 3 multimask outputs, 2 upscaling stages (64, 32).
    pub fn sam() -> Self {
        Self {
            transformer_dim: 256,
            transformer: TwoWayTransformerConfig::default(),
            num_multimask_outputs: 3,
            iou_head_depth: 3,
            iou_head_hidden_dim: 256,
            upscaling_channels: vec![64, 32],
            upscaling_ln_eps: 1e-6,
            pixel_skip: false,
            kind: DecoderKind::Sam,
            fusion_encoder_dim: 0,
        }
    }

    /// This configuration as decoder `kind` (`encoder_dim`: the ViT width, used by
    /// [`DecoderKind::Fusion`]): `Sam` gets 2 upscaling stages (C/4, C/8), `Progressive` and
    /// `Fusion` 4 (C/4, C/8, C/16, C/32) unless they already have 3 or more.
    ///
    /// ```
    /// use masam_sam::mask_decoder::{DecoderKind, MaskDecoderConfig};
    /// let d = MaskDecoderConfig::masam(256, 12).with_kind(DecoderKind::Sam, 768);
    /// assert_eq!(d.upscaling_channels, vec![64, 32]);
    /// let f = d.with_kind(DecoderKind::Fusion, 768);
    /// assert_eq!((f.upscaling_channels.len(), f.fusion_encoder_dim), (4, 768));
    /// ```
    pub fn with_kind(mut self, kind: DecoderKind, encoder_dim: usize) -> Self {
        let c = self.transformer_dim;
        match kind {
            DecoderKind::Sam => {
                self.upscaling_channels = vec![(c / 4).max(1), (c / 8).max(1)];
            }
            DecoderKind::Progressive | DecoderKind::Fusion => {
                if self.upscaling_channels.len() < 3 {
                    self.upscaling_channels = vec![
                        (c / 4).max(1),
                        (c / 8).max(1),
                        (c / 16).max(1),
                        (c / 32).max(1),
                    ];
                }
            }
        }
        self.kind = kind;
        self.fusion_encoder_dim = encoder_dim;
        self
    }

    /// MA-SAM: width `dim`, `num_classes + 1` mask tokens (0 = background), 4 upscaling stages
    /// `dim/4, dim/8, dim/16, dim/32`, the SAM transformer (8 heads, MLP 2048) at width `dim`.
    pub fn masam(dim: usize, num_classes: usize) -> Self {
        Self {
            transformer_dim: dim,
            transformer: TwoWayTransformerConfig {
                embedding_dim: dim,
                ..TwoWayTransformerConfig::default()
            },
            num_multimask_outputs: num_classes,
            iou_head_depth: 3,
            iou_head_hidden_dim: dim,
            upscaling_channels: vec![dim / 4, dim / 8, dim / 16, dim / 32],
            upscaling_ln_eps: 1e-6,
            pixel_skip: false,
            kind: DecoderKind::Progressive,
            fusion_encoder_dim: 0,
        }
    }

    /// The tiny decoder of the reference fixtures: C 64, 4 heads, MLP 128, 3 classes.
    pub fn tiny() -> Self {
        Self {
            transformer: TwoWayTransformerConfig::tiny(),
            ..Self::masam(64, 3)
        }
    }

    /// Number of mask tokens T = `num_multimask_outputs + 1`.
    pub fn num_mask_tokens(&self) -> usize {
        self.num_multimask_outputs + 1
    }

    /// Ratio of the mask size to the token grid, `2^stages`.
    pub fn upscale_factor(&self) -> usize {
        1 << self.upscaling_channels.len()
    }

    /// Checks the sizes.
    pub fn validate(&self) -> crate::Result<()> {
        self.transformer.validate()?;
        if self.transformer.embedding_dim != self.transformer_dim {
            return Err(Error::Config(format!(
                "mask decoder: transformer width {} differs from transformer_dim {}",
                self.transformer.embedding_dim, self.transformer_dim
            )));
        }
        if self.upscaling_channels.is_empty() || self.upscaling_channels.contains(&0) {
            return Err(Error::Config(format!(
                "mask decoder: upscaling_channels must be non-empty and positive, got {:?}",
                self.upscaling_channels
            )));
        }
        if self.kind == DecoderKind::Fusion && self.fusion_encoder_dim == 0 {
            return Err(Error::Config(
                "mask decoder: the fusion decoder needs fusion_encoder_dim (the ViT width); \
                 use MaskDecoderConfig::with_kind"
                    .into(),
            ));
        }
        if self.iou_head_depth == 0 || self.iou_head_hidden_dim == 0 {
            return Err(Error::Config(
                "mask decoder: the IoU head needs a positive depth and width".into(),
            ));
        }
        Ok(())
    }
}

/// Channels of the image the [`crate::pixel_skip`] pyramid reads (SAM's RGB input).
pub const PIXEL_SKIP_IN_CHANS: usize = 3;

/// Which mask channels the decoder returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MaskSelection {
    /// Every mask token (MA-SAM: one channel per class, 0 = background).
    #[default]
    All,
    /// SAM's `multimask_output=True`: tokens 1.. .
    Multimask,
    /// SAM's `multimask_output=False`: token 0 only.
    Single,
}

/// SAM's `MLP`: `depth` linear layers, ReLU between them.
#[derive(Debug, Clone)]
struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    fn new(
        input: usize,
        hidden: usize,
        output: usize,
        depth: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb = vb.pp("layers");
        let layers = (0..depth)
            .map(|i| {
                let cin = if i == 0 { input } else { hidden };
                let cout = if i + 1 == depth { output } else { hidden };
                linear(cin, cout, vb.pp(i.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(&x)?;
            if i + 1 < self.layers.len() {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

/// One upscaling stage: ConvTranspose2d(k 2, s 2) + bias, optional LayerNorm2d, GELU (erf).
/// Runs on channels-last maps: the channel LayerNorm is then a LayerNorm over the last
/// dimension, and no NCHW ↔ NHWC copies are needed between stages.
#[derive(Debug, Clone)]
struct UpscaleStage {
    weight: Tensor,
    bias: Tensor,
    norm: Option<LayerNorm2d>,
}

impl UpscaleStage {
    /// (N, h, w, Cin) → (N, 2h, 2w, Cout); `skip`, if any, is (N, 2h, 2w, Cout).
    fn forward_nhwc(&self, x: &Tensor, skip: Option<&Tensor>) -> Result<Tensor> {
        let x = conv_transpose_2x2_nhwc(x, &self.weight, &self.bias)?;
        let x = match skip {
            Some(f) => (x + f)?,
            None => x,
        };
        let x = match &self.norm {
            Some(n) => n.forward_channels_last(&x)?,
            None => x,
        };
        masam_nn::gelu_erf(&x)
    }
}

/// [`conv_transpose_2x2`] on channels-last maps: (N, H, W, Cin) → (N, 2H, 2W, Cout).
pub fn conv_transpose_2x2_nhwc(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (n, h, w, cin) = x.dims4()?;
    let (wcin, cout, kh, kw) = weight.dims4()?;
    if wcin != cin || kh != 2 || kw != 2 {
        candle_core::bail!(
            "conv_transpose_2x2_nhwc: input has {cin} channels, weight has shape {:?}",
            weight.dims()
        );
    }
    if bias.dims() != [cout] {
        candle_core::bail!(
            "conv_transpose_2x2_nhwc: bias {:?} does not fit {cout} output channels",
            bias.dims()
        );
    }
    if masam_nn::ops::fusable(&[x, weight, bias]) {
        // small GEMMs writing the interleaved output in place, one graph node
        let op = crate::conv_transpose_kernel::ConvTranspose2x2Op(
            crate::conv_transpose_kernel::ConvTranspose2x2 { n, h, w, cin, cout },
        );
        return x
            .contiguous()?
            .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op);
    }
    let xs = x.contiguous()?.reshape((n * h * w, cin))?;
    let w2 = weight.to_dtype(x.dtype())?.reshape((cin, cout * 4))?;
    let bias4 = bias
        .to_dtype(x.dtype())?
        .reshape((cout, 1))?
        .broadcast_as((cout, 4))?
        .contiguous()?
        .reshape(cout * 4)?;
    let y = if masam_nn::ops::fusable(&[&xs, &w2, &bias4]) {
        // one GEMM into the bias (the weight's transpose is a small copy)
        masam_nn::ops::linear_fused(&xs, &w2.t()?, Some(&bias4))?
    } else {
        masam_nn::add_bias(&xs.matmul(&w2)?, &bias4)?
    };
    // (n, i, j, o, a, b) → (n, i, a, j, b, o)
    y.reshape((n, h, w, cout, 2, 2))?
        .permute((0, 1, 4, 2, 5, 3))?
        .reshape((n, 2 * h, 2 * w, cout))
}

/// `ConvTranspose2d(kernel 2, stride 2, padding 0)` with bias, written as one matmul:
/// `out[n, o, 2i+a, 2j+b] = bias[o] + Σ_c x[n, c, i, j]·W[c, o, a, b]`.
///
/// # Shapes
/// - `x`: (N, Cin, H, W); `weight`: (Cin, Cout, 2, 2) (PyTorch layout); `bias`: (Cout,)
/// - returns (N, Cout, 2H, 2W)
pub fn conv_transpose_2x2(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    conv_transpose_2x2_nhwc(&x.permute((0, 2, 3, 1))?, weight, bias)?
        .permute((0, 3, 1, 2))?
        .contiguous()
}

/// SAM's mask decoder. Weight names under its `VarBuilder` are the official ones: `transformer.*`,
/// `iou_token.weight`, `mask_tokens.weight`, `output_upscaling.{3s, 3s+1}.*`,
/// `output_hypernetworks_mlps.{t}.layers.{0,1,2}.*`, `iou_prediction_head.layers.*`.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use masam_nn::SeededVarMap;
/// use masam_sam::{MaskDecoder, MaskDecoderConfig, MaskSelection};
/// # fn main() -> masam_sam::Result<()> {
/// let params = SeededVarMap::new(0);
/// let dec = MaskDecoder::new(&MaskDecoderConfig::tiny(), params.var_builder(DType::F32, &Device::Cpu))?;
/// let emb = Tensor::randn(0f32, 1., (3, 64, 4, 4), &Device::Cpu)?;
/// let pe = Tensor::randn(0f32, 1., (1, 64, 4, 4), &Device::Cpu)?;
/// let sparse = Tensor::zeros((1, 0, 64), DType::F32, &Device::Cpu)?;
/// let dense = Tensor::zeros((1, 64, 4, 4), DType::F32, &Device::Cpu)?;
/// let (masks, iou) = dec.forward(&emb, &pe, &sparse, &dense, MaskSelection::All)?;
/// assert_eq!(masks.dims(), &[3, 4, 64, 64]);
/// assert_eq!(iou.dims(), &[3, 4]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MaskDecoder {
    cfg: MaskDecoderConfig,
    transformer: TwoWayTransformer,
    iou_token: Tensor,
    mask_tokens: Tensor,
    upscaling: Vec<UpscaleStage>,
    pixel_skip: Option<PixelSkip>,
    fusion: Vec<FusionSkip>,
    hypernetworks: Vec<Mlp>,
    iou_head: Mlp,
}

/// One skip of the fusion decoder: LayerNorm over the encoder width, linear to the stage width.
#[derive(Debug, Clone)]
struct FusionSkip {
    norm: LayerNorm2d,
    proj: Linear,
}

impl FusionSkip {
    /// (N, h, w, C_enc) → (N, oh, ow, C_stage).
    fn forward(&self, f: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
        let x = self.proj.forward(&self.norm.forward_channels_last(f)?)?;
        crate::rel_pos::resize_bilinear_bhwc(&x, oh, ow)
    }
}

impl MaskDecoder {
    /// Builds the decoder from `vb` (the `mask_decoder` prefix of a SAM checkpoint).
    pub fn new(cfg: &MaskDecoderConfig, vb: VarBuilder) -> crate::Result<Self> {
        cfg.validate()?;
        let c = cfg.transformer_dim;
        let t = cfg.num_mask_tokens();
        let transformer = TwoWayTransformer::new(&cfg.transformer, vb.pp("transformer"))?;
        let randn = Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        };
        let iou_token = vb.pp("iou_token").get_with_hints((1, c), "weight", randn)?;
        let mask_tokens = vb
            .pp("mask_tokens")
            .get_with_hints((t, c), "weight", randn)?;

        let vbu = vb.pp("output_upscaling");
        let n = cfg.upscaling_channels.len();
        let mut upscaling = Vec::with_capacity(n);
        let mut cin = c;
        for (s, &cout) in cfg.upscaling_channels.iter().enumerate() {
            let b = 1.0 / ((cout * 4) as f64).sqrt();
            let init = Init::Uniform { lo: -b, up: b };
            let conv = vbu.pp((3 * s).to_string());
            let weight = conv.get_with_hints((cin, cout, 2, 2), "weight", init)?;
            let bias = conv.get_with_hints(cout, "bias", init)?;
            let norm = if s + 1 < n {
                Some(layer_norm_2d(
                    cout,
                    cfg.upscaling_ln_eps,
                    vbu.pp((3 * s + 1).to_string()),
                )?)
            } else {
                None
            };
            upscaling.push(UpscaleStage { weight, bias, norm });
            cin = cout;
        }
        let hyper_out = cin;
        let vbh = vb.pp("output_hypernetworks_mlps");
        let hypernetworks = (0..t)
            .map(|i| Mlp::new(c, c, hyper_out, 3, vbh.pp(i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let iou_head = Mlp::new(
            c,
            cfg.iou_head_hidden_dim,
            t,
            cfg.iou_head_depth,
            vb.pp("iou_prediction_head"),
        )?;
        let pixel_skip = if cfg.pixel_skip {
            Some(PixelSkip::new(
                PIXEL_SKIP_IN_CHANS,
                &cfg.upscaling_channels,
                vb.pp("pixel_skip"),
            )?)
        } else {
            None
        };
        let fusion = if cfg.kind == DecoderKind::Fusion {
            let vbf = vb.pp("fusion_skips");
            cfg.upscaling_channels
                .iter()
                .enumerate()
                .map(|(s, &cout)| -> Result<FusionSkip> {
                    let v = vbf.pp(s.to_string());
                    Ok(FusionSkip {
                        norm: layer_norm_2d(cfg.fusion_encoder_dim, 1e-6, v.pp("norm"))?,
                        proj: linear(cfg.fusion_encoder_dim, cout, v.pp("proj"))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![]
        };
        Ok(Self {
            cfg: cfg.clone(),
            transformer,
            iou_token,
            mask_tokens,
            upscaling,
            pixel_skip,
            fusion,
            hypernetworks,
            iou_head,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MaskDecoderConfig {
        &self.cfg
    }

    /// Predicts masks and IoU scores (SAM's `forward`).
    ///
    /// Batch semantics: the sparse prompts give the token batch Bs, the image embeddings Bi.
    /// Bs = Bi pairs them (per-image prompts, e.g. MA-SAM's boxes); Bs = 1 broadcasts the tokens
    /// over every image (MA-SAM's prompt-free path); Bi = 1 repeats the image for every prompt
    /// (official SAM). The dense prompts and the PE have batch 1 or B = max(Bs, Bi).
    ///
    /// # Shapes
    /// - `image_embeddings`: (Bi, C, h, w); `image_pe`: (1 or B, C, h, w)
    /// - `sparse_prompt_embeddings`: (Bs, S, C) (S may be 0); `dense_prompt_embeddings`: (1 or B, C, h, w)
    /// - returns `masks` (B, T', 2ⁿh, 2ⁿw) and `iou_predictions` (B, T'), with T' = T for
    ///   [`MaskSelection::All`], T − 1 for `Multimask`, 1 for `Single`
    pub fn forward(
        &self,
        image_embeddings: &Tensor,
        image_pe: &Tensor,
        sparse_prompt_embeddings: &Tensor,
        dense_prompt_embeddings: &Tensor,
        selection: MaskSelection,
    ) -> crate::Result<(Tensor, Tensor)> {
        self.forward_with_image(
            image_embeddings,
            None,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            selection,
        )
    }

    /// [`forward`](Self::forward) with the preprocessed image, which a decoder with
    /// [`pixel_skip`](MaskDecoderConfig::pixel_skip) needs (others ignore it).
    ///
    /// # Shapes
    /// - `image`: (B, 3, H, W), H and W multiples of the mask size; the rest as in `forward`
    pub fn forward_with_image(
        &self,
        image_embeddings: &Tensor,
        image: Option<&Tensor>,
        image_pe: &Tensor,
        sparse_prompt_embeddings: &Tensor,
        dense_prompt_embeddings: &Tensor,
        selection: MaskSelection,
    ) -> crate::Result<(Tensor, Tensor)> {
        let (masks, iou) = self.predict_masks_with_image(
            image_embeddings,
            image,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
        )?;
        let t = self.cfg.num_mask_tokens();
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

    fn check_input(
        &self,
        what: &'static str,
        x: &Tensor,
        batch: Option<&[usize]>,
    ) -> crate::Result<()> {
        let (h, w) = (x.dims().get(2).copied(), x.dims().get(3).copied());
        let c = self.cfg.transformer_dim;
        let ok = x.rank() == 4
            && x.dims()[1] == c
            && batch.is_none_or(|bs| bs.contains(&x.dims()[0]))
            && h.is_some()
            && w.is_some();
        if ok {
            Ok(())
        } else {
            Err(Error::InputShape {
                what,
                expected: match batch {
                    Some(bs) => format!("(one of {bs:?}, {c}, h, w)"),
                    None => format!("(B, {c}, h, w)"),
                },
                found: x.dims().to_vec(),
            })
        }
    }

    /// Runs the decoder and returns all T masks and IoU scores (SAM's `predict_masks`).
    pub fn predict_masks(
        &self,
        image_embeddings: &Tensor,
        image_pe: &Tensor,
        sparse_prompt_embeddings: &Tensor,
        dense_prompt_embeddings: &Tensor,
    ) -> crate::Result<(Tensor, Tensor)> {
        self.predict_masks_with_image(
            image_embeddings,
            None,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
        )
    }

    /// [`predict_masks`](Self::predict_masks) with the preprocessed image for the pixel skips.
    pub fn predict_masks_with_image(
        &self,
        image_embeddings: &Tensor,
        image: Option<&Tensor>,
        image_pe: &Tensor,
        sparse_prompt_embeddings: &Tensor,
        dense_prompt_embeddings: &Tensor,
    ) -> crate::Result<(Tensor, Tensor)> {
        self.predict_masks_with_features(
            image_embeddings,
            image,
            None,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
        )
    }

    /// [`predict_masks_with_image`](Self::predict_masks_with_image) with the encoder features a
    /// [`DecoderKind::Fusion`] decoder reads: one (B, h, w, C_enc) map per upscaling stage,
    /// coarsest stage first ([`DecoderKind::fusion_sources`]); other decoders ignore them.
    pub fn predict_masks_with_features(
        &self,
        image_embeddings: &Tensor,
        image: Option<&Tensor>,
        features: Option<&[Tensor]>,
        image_pe: &Tensor,
        sparse_prompt_embeddings: &Tensor,
        dense_prompt_embeddings: &Tensor,
    ) -> crate::Result<(Tensor, Tensor)> {
        let c = self.cfg.transformer_dim;
        self.check_input("image embeddings", image_embeddings, None)?;
        let (bi, _, h, w) = image_embeddings.dims4()?;
        let sdims = sparse_prompt_embeddings.dims();
        if sdims.len() != 3 || sdims[2] != c || !(sdims[0] == bi || sdims[0] == 1 || bi == 1) {
            return Err(Error::InputShape {
                what: "sparse prompt embeddings",
                expected: format!("(1 or {bi}, S, {c})"),
                found: sdims.to_vec(),
            });
        }
        let bs = sdims[0];
        let b = bs.max(bi);
        self.check_input(
            "dense prompt embeddings",
            dense_prompt_embeddings,
            Some(&[1, b]),
        )?;
        self.check_input("image positional encoding", image_pe, Some(&[1, b]))?;
        for (what, t) in [
            ("dense prompt embeddings", dense_prompt_embeddings),
            ("image positional encoding", image_pe),
        ] {
            if t.dims()[2] != h || t.dims()[3] != w {
                return Err(Error::InputShape {
                    what,
                    expected: format!("(·, {c}, {h}, {w})"),
                    found: t.dims().to_vec(),
                });
            }
        }

        // the decoder computes in the image embeddings' dtype (mixed precision: the prompt
        // encoder's outputs and the f32 tokens are converted at use)
        let dt = image_embeddings.dtype();
        let (sparse_prompt_embeddings, dense_prompt_embeddings, image_pe) = (
            &sparse_prompt_embeddings.to_dtype(dt)?,
            &dense_prompt_embeddings.to_dtype(dt)?,
            &image_pe.to_dtype(dt)?,
        );
        let t = self.cfg.num_mask_tokens();
        let output_tokens = Tensor::cat(&[&self.iou_token, &self.mask_tokens], 0)?.to_dtype(dt)?;
        let output_tokens = output_tokens.unsqueeze(0)?.broadcast_as((bs, 1 + t, c))?;
        let tokens = if sdims[1] == 0 {
            output_tokens.contiguous()?
        } else {
            Tensor::cat(&[&output_tokens, sparse_prompt_embeddings], 1)?
        };
        let n = tokens.dim(1)?;
        let tokens = tokens.broadcast_as((b, n, c))?.contiguous()?;
        let src = image_embeddings
            .broadcast_as((b, c, h, w))?
            .broadcast_add(dense_prompt_embeddings)?;
        let (hs, src) = self.transformer.forward(&src, image_pe, &tokens)?;

        let iou_token_out = hs.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
        let src = src.reshape((b, h, w, c))?; // (B, h·w, C) tokens are channels-last already
        let skips = match (&self.pixel_skip, image) {
            (None, _) => None,
            (Some(pyramid), Some(img)) => {
                let f = self.cfg.upscale_factor();
                let id = img.dims();
                if id.len() != 4 || id[0] != b || id[1] != PIXEL_SKIP_IN_CHANS {
                    return Err(Error::InputShape {
                        what: "image for the pixel skips",
                        expected: format!("({b}, {PIXEL_SKIP_IN_CHANS}, H, W)"),
                        found: id.to_vec(),
                    });
                }
                Some(pyramid.forward(img, (h * f, w * f))?)
            }
            (Some(_), None) => {
                return Err(Error::Config(
                    "mask decoder: pixel_skip is on, so the decoder needs the image \
                     (use forward_with_image / Sam::decode_with_image)"
                        .into(),
                ))
            }
        };
        let fused = if self.fusion.is_empty() {
            None
        } else {
            let n = self.fusion.len();
            let feats = features.filter(|f| f.len() == n).ok_or_else(|| {
                Error::Config(format!(
                    "mask decoder: the fusion decoder needs {n} encoder feature maps (one per \
                     stage), got {}",
                    features.map_or(0, |f| f.len())
                ))
            })?;
            let mut out = Vec::with_capacity(n);
            for (s, (skip, f)) in self.fusion.iter().zip(feats).enumerate() {
                let fd = f.dims();
                if fd.len() != 4 || fd[0] != b || fd[3] != self.cfg.fusion_encoder_dim {
                    return Err(Error::InputShape {
                        what: "encoder feature for the fusion decoder",
                        expected: format!("({b}, h, w, {})", self.cfg.fusion_encoder_dim),
                        found: fd.to_vec(),
                    });
                }
                out.push(skip.forward(f, h << (s + 1), w << (s + 1))?);
            }
            Some(out)
        };
        let mut up = src;
        for (s, stage) in self.upscaling.iter().enumerate() {
            let skip = match (skips.as_ref(), fused.as_ref()) {
                (Some(p), Some(f)) => Some((&p[s] + &f[s])?),
                (Some(p), None) => Some(p[s].clone()),
                (None, Some(f)) => Some(f[s].clone()),
                (None, None) => None,
            };
            up = stage.forward_nhwc(&up, skip.as_ref())?;
        }
        let (_, hu, wu, cu) = up.dims4()?;
        let hyper_in = self
            .hypernetworks
            .iter()
            .enumerate()
            // (B, C) rows, contiguous, so each layer is one plain GEMM (a strided 3D input
            // would make candle broadcast the weight and reduce its gradient over the batch).
            .map(|(i, mlp)| mlp.forward(&hs.narrow(1, 1 + i, 1)?.squeeze(1)?.contiguous()?))
            .collect::<Result<Vec<_>>>()?;
        let hyper_in = Tensor::stack(&hyper_in, 1)?; // (B, T, cu)
        let masks = if masam_nn::ops::fusable(&[&hyper_in, &up]) {
            // one GEMM per image reading the map in place, one graph node
            let op =
                crate::mask_logits_kernel::MaskLogitsOp(crate::mask_logits_kernel::MaskLogits {
                    b,
                    t,
                    h: hu,
                    w: wu,
                    c: cu,
                });
            hyper_in.contiguous()?.apply_op2(&up.contiguous()?, op)?
        } else {
            hyper_in
                .matmul(&up.reshape((b, hu * wu, cu))?.transpose(1, 2)?)?
                .reshape((b, t, hu, wu))?
        };
        let iou = self.iou_head.forward(&iou_token_out)?;
        Ok((masks, iou))
    }
}

#[cfg(test)]
mod conv_transpose_tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn equals_candle_conv_transpose2d_in_both_layouts() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 4, 5), &dev)?;
        let w = Tensor::randn(0f32, 1., (3, 6, 2, 2), &dev)?;
        let b = Tensor::randn(0f32, 1., 6, &dev)?;
        let want = x
            .conv_transpose2d(&w, 0, 0, 2, 1)?
            .broadcast_add(&b.reshape((1, 6, 1, 1))?)?;
        let nchw = conv_transpose_2x2(&x, &w, &b)?;
        let nhwc = conv_transpose_2x2_nhwc(&x.permute((0, 2, 3, 1))?, &w, &b)?;
        let d1 = (&nchw - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let d2 = (nhwc.permute((0, 3, 1, 2))? - &want)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(d1 < 1e-5 && d2 < 1e-5, "{d1} {d2}");
        assert!(conv_transpose_2x2(&x, &w.narrow(0, 0, 2)?, &b).is_err());
        assert!(conv_transpose_2x2(&x, &w, &b.narrow(0, 0, 5)?).is_err());
        Ok(())
    }
}
