//! The `config.json` schema of the reference fixture sets (`tests/fixtures/reference-tiny/` of the repository).
//!
//! A fixture folder produced by the authors' code for any configuration carries this file; the parity
//! example builds the model from it, so parity can be checked for other dims, kernels, class counts,
//! scales and image sizes than the tiny set.

use std::path::Path;

use masam_adapter::conv3d::Adapter3dConfig;
use masam_adapter::fact::FactConfig;
use masam_adapter::sam::{ImageEncoderConfig, SamConfig};
use masam_adapter::{AdapterPlacement, Finetune, MaSamConfig};
use serde::{Deserialize, Serialize};

use crate::{AppError, Result};

/// Loss settings of a fixture set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceLoss {
    /// Weight of the cross-entropy term (0.2).
    pub ce_weight: f64,
    /// Weight of the Dice term (0.8).
    pub dice_weight: f64,
    /// Classes in the Dice (num_classes + 1).
    pub dice_classes: usize,
    /// Ignored label value (−100).
    pub ignore_index: i64,
}

/// AdamW settings of a fixture set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceAdamW {
    /// Learning rate.
    pub lr: f64,
    /// (β1, β2).
    pub betas: [f64; 2],
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Number of steps taken.
    pub steps: usize,
}

/// The fixture `config.json`: the model the reference code was run with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceConfig {
    /// Seed used by the generator.
    pub seed: u64,
    /// ViT width C.
    pub embed_dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// Blocks with global attention.
    pub global_idx: Vec<usize>,
    /// Window size of the other blocks.
    pub window: usize,
    /// Fine-tuning input size (pixels).
    pub img: usize,
    /// Input size the SAM checkpoint was made at.
    pub pretrain_img: usize,
    /// Neck output channels = decoder width.
    pub prompt_dim: usize,
    /// Decoder MLP width.
    pub dec_mlp: usize,
    /// Decoder heads.
    pub dec_heads: usize,
    /// Foreground classes (mask tokens = num_classes + 1).
    pub num_classes: usize,
    /// 3D adapter width.
    pub adapter_ch: usize,
    /// FacT rank.
    pub rank: usize,
    /// FacT scale.
    pub scale: f64,
    /// Volumes per batch.
    pub batch: usize,
    /// Adjacent slices per volume.
    pub slices: usize,
    /// Adapter Conv3d kernel (d, h, w).
    pub conv_kernel: [usize; 3],
    /// Every trainable parameter, in the reference's save-format names.
    pub trainable_keys: Vec<String>,
    /// Tensors the reference copies from SAM at the start of fine-tuning.
    pub init_copied_from_sam: Vec<String>,
    /// Tensors interpolated on load.
    pub init_resized_from_sam: Vec<String>,
    /// Loss settings.
    pub loss: ReferenceLoss,
    /// Optimiser settings.
    pub adamw: ReferenceAdamW,
}

impl ReferenceConfig {
    /// Reads a fixture `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| AppError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        serde_json::from_str(&text).map_err(|source| AppError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The model this fixture set describes.
    ///
    /// # Errors
    /// [`AppError::Model`] when the settings do not make a valid model.
    pub fn model_config(&self) -> Result<MaSamConfig> {
        let r = self;
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
        let cfg = MaSamConfig {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tiny_fixture_config() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/reference-tiny/config.json");
        let c = ReferenceConfig::from_file(&p).unwrap();
        assert_eq!(
            (c.embed_dim, c.depth, c.heads, c.img, c.pretrain_img),
            (64, 4, 4, 64, 128)
        );
        assert_eq!(c.global_idx, vec![1, 3]);
        assert_eq!(c.conv_kernel, [3, 1, 1]);
        assert_eq!(c.loss.ignore_index, -100);
        assert!(c.trainable_keys.iter().any(|k| k == "q_FacTs_000"));
        assert!(ReferenceConfig::from_file(Path::new("/nonexistent/config.json")).is_err());
    }
}
