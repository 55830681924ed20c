//! Configuration of the MA-SAM model.

use masam_conv3d::Adapter3dConfig;
use masam_fact::FactConfig;
use masam_sam::mask_decoder::DecoderKind;
use masam_sam::{ImageEncoderConfig, SamConfig};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The most slices a stack may have.
pub const MAX_SLICES: usize = 63;
/// The most foreground classes (labels are stored as 8-bit values, background included).
pub const MAX_CLASSES: usize = 254;

/// Where the 3D adapters sit in each encoder block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterPlacement {
    /// Only before attention (on the block input).
    Before,
    /// Only after the attention residual, before the MLP.
    After,
    /// Both (the reference).
    #[default]
    Both,
}

/// Which parameters are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finetune {
    /// The reference: SAM's encoder frozen; adapters, FacT, prompt encoder and mask decoder
    /// trained.
    #[default]
    ParameterEfficient,
    /// Every parameter trained, encoder included (the paper's full fine-tuning ablation; also the
    /// only sensible choice without pre-trained SAM weights).
    Full,
}

/// MA-SAM: SAM + FacT on the encoder + 3D adapters + a 4-stage mask decoder.
///
/// `Default` is the reference's ViT-B model at 512 px with 12 classes (BTCV), 5 slices.
///
/// ```
/// use masam_adapter::MaSamConfig;
/// let cfg = MaSamConfig::tiny();
/// cfg.validate().unwrap();
/// assert_eq!(cfg.num_classes(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaSamConfig {
    /// The SAM backbone, prompt encoder and decoder (MA-SAM: 4 upscaling stages, K = classes + 1
    /// mask tokens, pixel mean 0 / std 1).
    pub sam: SamConfig,
    /// D, adjacent slices (or frames) per sample.
    pub slices: usize,
    /// FacT on the frozen encoder (`None`: off).
    pub fact: Option<FactConfig>,
    /// The 3D adapter (`None`: no adapters).
    pub adapter: Option<Adapter3dConfig>,
    /// Where the adapters go.
    pub adapter_placement: AdapterPlacement,
    /// Which parameters are trained.
    pub finetune: Finetune,
}

impl Default for MaSamConfig {
    fn default() -> Self {
        Self::from_backbone(ImageEncoderConfig::vit_b(), 512, 12)
    }
}

impl MaSamConfig {
    /// The reference model on a SAM backbone preset at `img_size` with `num_classes` foreground
    /// classes: FacT-TT rank 32 on q/v, adapters of width 384 with kernel (3,1,1) before and after
    /// attention, 5 slices.
    pub fn from_backbone(
        backbone: ImageEncoderConfig,
        img_size: usize,
        num_classes: usize,
    ) -> Self {
        let dim = backbone.embed_dim;
        Self {
            sam: SamConfig::masam(backbone, img_size, num_classes),
            slices: 5,
            fact: Some(FactConfig::ma_sam()),
            adapter: Some(Adapter3dConfig::for_dim(dim)),
            adapter_placement: AdapterPlacement::Both,
            finetune: Finetune::ParameterEfficient,
        }
    }

    /// The paper's model: [`MaSamConfig::from_backbone`] at 512 × 512 pixels. With
    /// [`ImageEncoderConfig::vit_b`] and 12 classes this is the BTCV recipe.
    ///
    /// ```
    /// use masam_adapter::sam::ImageEncoderConfig;
    /// use masam_adapter::MaSamConfig;
    /// let cfg = MaSamConfig::paper(ImageEncoderConfig::vit_h(), 12);
    /// assert_eq!(cfg.sam.encoder.img_size, 512);
    /// assert_eq!(cfg.slices, 5);
    /// assert_eq!(cfg, MaSamConfig::default().with_backbone(ImageEncoderConfig::vit_h()));
    /// ```
    pub fn paper(backbone: ImageEncoderConfig, num_classes: usize) -> Self {
        Self::from_backbone(backbone, 512, num_classes)
    }

    /// This model on another SAM backbone preset, keeping the input size, the class count and
    /// every MA-SAM setting (FacT, adapter width and kernel, placement, slices, what is
    /// trained); the adapter follows the new encoder width.
    pub fn with_backbone(&self, backbone: ImageEncoderConfig) -> Self {
        let fresh = Self::from_backbone(backbone, self.sam.encoder.img_size, self.num_classes());
        let mut sam = fresh.sam;
        let dim = sam.encoder.embed_dim;
        if sam.encoder.out_chans == self.sam.encoder.out_chans {
            // the decoder's width is the neck's: a same-width decoder keeps its settings
            sam.decoder = self.sam.decoder.clone();
            if sam.decoder.kind == DecoderKind::Fusion {
                sam.decoder.fusion_encoder_dim = dim;
            }
        }
        Self {
            sam,
            slices: self.slices,
            fact: self.fact.clone(),
            adapter: self.adapter.map(|a| Adapter3dConfig { dim, ..a }),
            adapter_placement: self.adapter_placement,
            finetune: self.finetune,
        }
    }

    /// This model with mask decoder `kind` (SAM's 2 stages, the 4 progressive stages, or the
    /// fusion of intermediate encoder features; see [`DecoderKind`]).
    ///
    /// ```
    /// use masam_adapter::sam::mask_decoder::DecoderKind;
    /// use masam_adapter::MaSamConfig;
    /// let cfg = MaSamConfig::tiny().with_decoder(DecoderKind::Fusion);
    /// assert_eq!(cfg.sam.decoder.fusion_encoder_dim, 64);
    /// cfg.validate().unwrap();
    /// ```
    pub fn with_decoder(&self, kind: DecoderKind) -> Self {
        let mut cfg = self.clone();
        cfg.sam.decoder = cfg
            .sam
            .decoder
            .clone()
            .with_kind(kind, cfg.sam.encoder.embed_dim);
        cfg
    }

    /// The model of the reference fixtures (`tests/fixtures/reference-tiny`).
    pub fn tiny() -> Self {
        Self {
            sam: SamConfig::tiny(),
            slices: 5,
            fact: Some(FactConfig::ma_sam().with_rank(4)),
            adapter: Some(Adapter3dConfig::for_dim(64).with_channels(16)),
            adapter_placement: AdapterPlacement::Both,
            finetune: Finetune::ParameterEfficient,
        }
    }

    /// Number of foreground classes (mask channels − 1).
    pub fn num_classes(&self) -> usize {
        self.sam.decoder.num_multimask_outputs
    }

    /// The encoder configuration.
    pub fn encoder(&self) -> &ImageEncoderConfig {
        &self.sam.encoder
    }

    /// Checks that the parts agree and that sizes are sane (odd slice count up to
    /// [`MAX_SLICES`], at most [`MAX_CLASSES`] classes), before anything is allocated.
    ///
    /// ```
    /// use masam_adapter::MaSamConfig;
    /// let mut cfg = MaSamConfig::tiny();
    /// cfg.slices = 100_001;
    /// assert!(cfg.validate().unwrap_err().to_string().contains("odd number of slices"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.sam.validate()?;
        if self.slices == 0 || self.slices > MAX_SLICES || self.slices.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "slices = {}: a stack must have an odd number of slices from 1 to {MAX_SLICES} \
                 (the paper uses 5), centred on the slice it predicts",
                self.slices
            )));
        }
        if self.num_classes() > MAX_CLASSES {
            return Err(Error::Config(format!(
                "{} classes: at most {MAX_CLASSES} foreground classes (label maps are 8-bit)",
                self.num_classes()
            )));
        }
        if let Some(a) = &self.adapter {
            if a.dim != self.sam.encoder.embed_dim {
                return Err(Error::Config(format!(
                    "adapter dim {} differs from the encoder width {}",
                    a.dim, self.sam.encoder.embed_dim
                )));
            }
            a.validate()?;
        }
        if let Some(f) = &self.fact {
            f.validate()?;
        }
        Ok(())
    }
}
