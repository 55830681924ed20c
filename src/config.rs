//! Configuration of the MA-SAM model.

use masam_conv3d::Adapter3dConfig;
use masam_fact::FactConfig;
use masam_sam::{ImageEncoderConfig, SamConfig};
use serde::{Deserialize, Serialize};

use crate::reference_config::ReferenceConfig;
use crate::{Error, Result};

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

    /// The model a fixture `config.json` describes.
    pub fn from_reference(r: &ReferenceConfig) -> Result<Self> {
        let mut enc = ImageEncoderConfig::vit_b();
        enc.embed_dim = r.embed_dim;
        enc.depth = r.depth;
        enc.num_heads = r.heads;
        enc.global_attn_indexes = r.global_idx.clone();
        enc.window_size = r.window;
        enc.img_size = r.img;
        enc.out_chans = r.prompt_dim;
        let mut sam = SamConfig::masam(enc, r.img, r.num_classes);
        sam.decoder.transformer.mlp_dim = r.dec_mlp;
        sam.decoder.transformer.num_heads = r.dec_heads;
        let cfg = Self {
            sam,
            slices: r.slices,
            fact: Some(FactConfig::ma_sam().with_rank(r.rank).with_scale(r.scale)),
            adapter: Some(
                Adapter3dConfig::for_dim(r.embed_dim)
                    .with_channels(r.adapter_ch)
                    .with_kernel(r.conv_kernel),
            ),
            adapter_placement: AdapterPlacement::Both,
            finetune: Finetune::ParameterEfficient,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Number of foreground classes (mask channels − 1).
    pub fn num_classes(&self) -> usize {
        self.sam.decoder.num_multimask_outputs
    }

    /// The encoder configuration.
    pub fn encoder(&self) -> &ImageEncoderConfig {
        &self.sam.encoder
    }

    /// Checks that the parts agree.
    pub fn validate(&self) -> Result<()> {
        self.sam.validate()?;
        if self.slices == 0 {
            return Err(Error::Config("slices must be at least 1".into()));
        }
        if let Some(a) = &self.adapter {
            if a.dim != self.sam.encoder.embed_dim {
                return Err(Error::Config(format!(
                    "adapter dim {} differs from the encoder width {}",
                    a.dim, self.sam.encoder.embed_dim
                )));
            }
            a.validate()
                .map_err(|e| Error::Config(format!("adapter: {e}")))?;
        }
        if let Some(f) = &self.fact {
            f.validate()
                .map_err(|e| Error::Config(format!("FacT: {e}")))?;
        }
        Ok(())
    }
}
