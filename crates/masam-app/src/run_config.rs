//! A run's whole configuration ([`FinetuneConfig`]: model, optimisation, data, budget, files)
//! and its recipes: the paper's ([`FinetuneConfig::paper`]) and the embedded phantom default
//! ([`FinetuneConfig::phantom_default`]). A configuration is written to and read from a run
//! folder's `config.toml`.

use std::path::PathBuf;

use masam_adapter::conv3d::Adapter3dConfig;
use masam_adapter::data::Sampling;
use masam_adapter::sam::ImageEncoderConfig;
use masam_adapter::volume::boxes::BoxPromptConfig;
use masam_adapter::volume::transforms::{IntensityConfig, StackConfig};
use masam_adapter::{AdamWConfig, Finetune, LrSchedule, MaSamConfig, TrainerConfig};
use serde::{Deserialize, Serialize};

use crate::DataSource;

/// What the binaries print when they train on the embedded default.
pub const PHANTOM_NOTE: &str = "NOTE: no --data given: training on a SYNTHETIC abdomen phantom \
(not real CT),\n      with a small randomly initialised backbone trained end to end (no SAM \
weights),\n      full-resolution pixel skips in the mask decoder and class-balanced sampling.";

/// One fine-tuning run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// The model.
    pub model: MaSamConfig,
    /// Optimisation.
    pub trainer: TrainerConfig,
    /// The data.
    pub data: DataSource,
    /// Official SAM checkpoint for the backbone (`None`: random initialisation).
    pub sam_checkpoint: Option<PathBuf>,
    /// Stop training after this many seconds (on top of `trainer.steps`).
    pub time_budget_s: Option<f64>,
    /// Apply the reference augmentation recipe.
    pub augment: bool,
    /// How training stacks are picked (uniform like the reference, or class-balanced).
    #[serde(default)]
    pub sampling: Sampling,
    /// Where the model trains: `cpu`, `cuda` or `cuda:N` (CUDA needs the `cuda` feature).
    #[serde(default = "crate::device::default_device")]
    pub device: String,
    /// Windows per forward pass during evaluation.
    pub eval_batch: usize,
    /// Intensity chain of the stacks (reference CT abdomen window by default).
    pub intensity: IntensityConfig,
    /// Run folder: config, checkpoints, metrics, curves.
    pub out_dir: PathBuf,
    /// Save a training checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Continue from `out_dir/train_state.safetensors` if it exists.
    pub resume: bool,
    /// Evaluate on the held-out volumes every this many steps and keep the best model as
    /// `model_best.safetensors` (0: evaluate only at the end).
    #[serde(default)]
    pub eval_every: u64,
    /// Also write the trainable tensors in the reference's checkpoint format
    /// (`masam_adapter.safetensors`; parameter-efficient runs only).
    #[serde(default)]
    pub export_reference: bool,
    /// Box prompts (`None`: prompt-free MA-SAM). Training stacks carry the jittered box of the
    /// class made from their volume's label, and held-out volumes are predicted with the
    /// unjittered box of their own label.
    #[serde(default)]
    pub box_prompt: Option<BoxPromptConfig>,
    /// With a time budget: measure the speed of the first steps, then decay the learning-rate
    /// schedule over the number of steps the budget allows
    /// ([`crate::schedule_horizon`]; kept in the run folder for a resumed run), instead of
    /// over the configured `max_iter`. Without a time budget it has no effect.
    #[serde(default)]
    pub fit_schedule_to_budget: bool,
}

impl FinetuneConfig {
    /// The embedded default run (`docs/btcv_finetune.md`): the synthetic phantom and a small ViT
    /// (C 96, 4 blocks, patch 16, 128 px) trained end to end without SAM weights, with the
    /// decoder's pixel skips and class-balanced stack sampling; batch 2, lr 1.5e-3 with poly
    /// decay over the steps that an 8.5-minute training budget allows (measured
    /// during the run: `fit_schedule_to_budget`).
    pub fn phantom_default(steps: u64, seed: u64, out_dir: PathBuf) -> Self {
        let mut enc = ImageEncoderConfig::vit_b();
        enc.embed_dim = 96;
        enc.depth = 4;
        enc.num_heads = 4;
        enc.global_attn_indexes = vec![1, 3];
        enc.window_size = 4;
        enc.patch_size = 16;
        enc.out_chans = 64;
        let mut model = MaSamConfig::from_backbone(enc, 128, 12);
        model.sam.decoder.upscaling_channels = vec![32, 16, 16, 8];
        // full-resolution image features in the upscaling stages: at patch 16 a token covers
        // 47 mm, and the small organs are only a few pixels wide
        model.sam.decoder.pixel_skip = true;
        model.sam.decoder.transformer.num_heads = 4;
        model.sam.decoder.transformer.mlp_dim = 256;
        model.fact = None;
        model.adapter = Some(Adapter3dConfig::for_dim(96).with_channels(48));
        model.finetune = Finetune::Full;
        Self {
            model,
            trainer: TrainerConfig {
                steps,
                batch: 2,
                accumulation: 1,
                optimizer: AdamWConfig::default().with_weight_decay(0.01),
                schedule: LrSchedule::WarmupPoly {
                    base_lr: 1.5e-3,
                    warmup_iters: 50,
                    // replaced by the number of steps the time budget allows once the first
                    // steps are measured (`fit_schedule_to_budget`)
                    max_iter: 1_600,
                    power: 0.9,
                },
                seed,
                ..TrainerConfig::default()
            },
            data: DataSource::phantom_default(),
            sam_checkpoint: None,
            time_budget_s: Some(8.5 * 60.0),
            // a short budget learns faster without the reference's heavy augmentation; the
            // phantom already varies anatomy from case to case
            augment: false,
            // half of the stacks are drawn per organ, so that adrenals and gallbladder are
            // seen as often as the liver
            sampling: Sampling::ClassBalanced(0.5),
            device: crate::device::default_device(),
            eval_batch: 8,
            intensity: IntensityConfig::ct_abdomen(),
            out_dir,
            checkpoint_every: 100,
            resume: false,
            eval_every: 0,
            export_reference: false,
            box_prompt: None,
            fit_schedule_to_budget: true,
        }
    }

    /// The paper's recipe on `data`: [`MaSamConfig::paper`] (the SAM `backbone` preset at 512 px,
    /// FacT-TT rank 32 on q/v, 3D adapters before and after attention, 5 slices, frozen encoder)
    /// trained with the reference optimiser and schedule over `steps` steps (batch 3 × 8
    /// accumulated, AdamW weight decay 0.1, warmup + poly), the reference augmentation, the CT
    /// abdomen intensity window, a checkpoint every 500 steps.
    ///
    /// ```
    /// use masam_adapter::sam::ImageEncoderConfig;
    /// use masam_app::{DataSource, FinetuneConfig};
    /// let data = DataSource::Btcv { root: "/data/BTCV".into() };
    /// let cfg = FinetuneConfig::paper(data, ImageEncoderConfig::vit_b(), 12, 30_000, "runs/btcv".into());
    /// assert_eq!(cfg.model.sam.encoder.img_size, 512);
    /// assert!(cfg.augment);
    /// ```
    pub fn paper(
        data: DataSource,
        backbone: ImageEncoderConfig,
        num_classes: usize,
        steps: u64,
        out_dir: PathBuf,
    ) -> Self {
        Self {
            model: MaSamConfig::paper(backbone, num_classes),
            trainer: TrainerConfig {
                steps,
                schedule: LrSchedule::reference(steps),
                ..TrainerConfig::default()
            },
            data,
            sam_checkpoint: None,
            time_budget_s: None,
            augment: true,
            sampling: Sampling::Uniform,
            device: crate::device::default_device(),
            eval_batch: 2,
            intensity: IntensityConfig::ct_abdomen(),
            out_dir,
            checkpoint_every: 500,
            resume: false,
            eval_every: 0,
            export_reference: false,
            box_prompt: None,
            fit_schedule_to_budget: false,
        }
    }

    /// Checks the whole configuration: the model's own rules
    /// ([`MaSamConfig::validate`]: odd slices up to 63, at most 254 classes, consistent widths)
    /// and the bounds of [`config_limits`](crate::config_limits) on every value that sizes an
    /// allocation (image size, widths, depths, batch, steps).
    ///
    /// # Errors
    /// [`AppError::Config`](crate::AppError::Config) or the model's error, naming the value.
    pub fn validate(&self) -> crate::Result<()> {
        // the bounds first: their errors name the field, the model's consistency rules may
        // trip over an out-of-range value with a less direct message
        crate::config_limits::check(self)?;
        Ok(self.model.validate()?)
    }

    /// This configuration with the SAM checkpoint of its frozen backbone.
    pub fn with_sam_checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.sam_checkpoint = Some(path.into());
        self
    }

    /// This configuration with another run seed (data order, augmentation, fresh weights).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.trainer.seed = seed;
        self
    }

    /// The stack settings matching `model` and the data source (phantom volumes are generated in the
    /// model's orientation, video frames are images already; files get the reference
    /// orientation).
    pub fn stack_config(&self) -> StackConfig {
        let img = self.model.sam.encoder.img_size;
        StackConfig {
            out_size: Some((img, img)),
            orient: !matches!(
                self.data,
                DataSource::Phantom { .. } | DataSource::Endovis18 { .. }
            ),
            intensity: self.intensity,
            ..StackConfig::default()
        }
        .with_depth(self.model.slices)
    }
}
