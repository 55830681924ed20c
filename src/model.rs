//! The MA-SAM model: SAM with FacT on the frozen encoder, 3D adapters in every block, and a
//! 4-stage mask decoder.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use masam_conv3d::{Adapter3d, AdapterNames};
use masam_fact::Fact;
use masam_nn::SeededVarMap;
use masam_sam::checkpoint::{ConvertedCheckpoint, InitFromSam, Matched, ParamSource};
use masam_sam::{
    EncoderOutput, ForwardContext, ImageEncoder, MaskDecoder, Prompt, PromptEncoder, Sam,
    SamCheckpoint, SamOutput,
};
use masam_train::Precision;

use crate::config::{AdapterPlacement, Finetune, MaSamConfig};
use crate::hooks::{AdapterHook, FactLinearHook};
use crate::output::VolumeOutput;
use crate::{Error, Mode, Result};

/// The two optional 3D adapters of one block: (before attention, after attention).
pub type BlockAdapters = (Option<Arc<Adapter3d>>, Option<Arc<Adapter3d>>);

/// Prefix of the FacT parameters among the trainable variables.
pub const FACT_PREFIX: &str = "fact";

/// Prefix of the image encoder's tensors.
const ENCODER_PREFIX: &str = "image_encoder.";

/// MA-SAM: a SAM whose image encoder is frozen, with FacT increments on
/// its q/v projections and two 3D adapters per block, and a trainable prompt encoder and mask
/// decoder with `num_classes + 1` mask tokens.
///
/// Parameters are split by construction: frozen encoder weights are plain tensors; everything
/// trained is a [`Var`] in [`MaSam::trainable`], named as in SAM's state dict
/// (`image_encoder.blocks.{i}.adapter_conv.weight`, `mask_decoder.…`, `prompt_encoder.…`) and
/// `fact.FacTu.weight`, `fact.blocks.{i}.q_FacTs.weight` for FacT.
///
/// Numeric precision ([`MaSam::with_precision`]): in bf16 or f16 the frozen encoder weights
/// are stored in that type and the forward pass computes in it, while the trainable
/// variables stay f32 (converted at use, so their gradients arrive in f32); LayerNorm, softmax
/// and the outputs are f32.
///
/// ```
/// use masam_adapter::candle::{DType, Device, Tensor};
/// use masam_adapter::{MaSam, MaSamConfig, Mode, Prompt};
/// # fn main() -> masam_adapter::Result<()> {
/// let model = MaSam::random(&MaSamConfig::tiny(), 0, &Device::Cpu)?;
/// let x = Tensor::zeros((1, 5, 3, 64, 64), DType::F32, &Device::Cpu)?; // 1 volume, 5 slices
/// let out = model.forward(&x, &Prompt::None, Mode::Eval)?;
/// assert_eq!(out.masks.dims(), &[5, 4, 64, 64]); // per-slice logits, background + 3 classes
/// let vol = model.forward_volumes(&x, &Prompt::None, Mode::Eval)?;
/// assert_eq!(vol.masks.dims(), &[1, 5, 4, 64, 64]); // (B, D, K, H, W)
/// # Ok(()) }
/// ```
pub struct MaSam {
    /// The configuration.
    pub config: MaSamConfig,
    /// SAM with the hooks installed in its encoder blocks.
    pub sam: Sam,
    /// FacT, when enabled.
    pub fact: Option<Fact>,
    /// The adapters of each block (before, after attention).
    pub adapters: Vec<BlockAdapters>,
    trainable: SeededVarMap,
    init_report: BTreeMap<String, ParamSource>,
    /// The frozen encoder's tensors (parameter-efficient models), for [`MaSam::to_inference`].
    frozen: Option<Arc<HashMap<String, Tensor>>>,
    inference: bool,
    precision: Precision,
}

impl std::fmt::Debug for MaSam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaSam")
            .field("config", &self.config)
            .field("trainable", &self.trainable.named_vars().len())
            .field("inference", &self.inference)
            .field("precision", &self.precision)
            .finish()
    }
}

impl MaSam {
    /// Builds the model from an official SAM checkpoint (any input size: it is converted to the
    /// configured size exactly as the reference's `load_from`). Tensors whose name and shape
    /// match are taken from SAM (the reference's partial-load semantics); the others (adapters,
    /// FacT, new decoder layers) are initialised from `seed`.
    pub fn from_sam_checkpoint(
        cfg: &MaSamConfig,
        checkpoint: &SamCheckpoint,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let converted = checkpoint.convert(&cfg.sam.encoder)?;
        Self::build(cfg, Some(&converted), seed, device)
    }

    /// Builds the model with every weight freshly initialised from `seed` (no SAM weights). With
    /// [`Finetune::ParameterEfficient`] the random encoder is frozen; use [`Finetune::Full`] to
    /// train it.
    pub fn random(cfg: &MaSamConfig, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate()?;
        Self::build(cfg, None, seed, device)
    }

    fn build(
        cfg: &MaSamConfig,
        converted: Option<&ConvertedCheckpoint>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let dtype = DType::F32;
        let trainable = SeededVarMap::new(seed);
        let init = match converted {
            Some(c) => c.init(trainable.clone(), Matched::Trainable),
            None => InitFromSam::new(HashMap::new(), trainable.clone(), Matched::Trainable),
        };
        let tvb = init.var_builder(dtype, device);

        // the frozen encoder's plain tensors (none under full fine-tuning: it is trained)
        let frozen: Option<HashMap<String, Tensor>> = match (cfg.finetune, converted) {
            (Finetune::Full, _) => None,
            (Finetune::ParameterEfficient, Some(c)) => Some(
                c.checkpoint
                    .tensors
                    .iter()
                    .filter(|(k, _)| k.starts_with(ENCODER_PREFIX))
                    .map(|(k, t)| (k.clone(), t.clone()))
                    .collect(),
            ),
            (Finetune::ParameterEfficient, None) => {
                // a random frozen encoder: draw it, then keep it as plain tensors
                let scratch = SeededVarMap::new(seed ^ 0x5eed_f00d_0000_0001);
                ImageEncoder::new(
                    &cfg.sam.encoder,
                    scratch.var_builder(dtype, device).pp("image_encoder"),
                )?;
                Some(
                    scratch
                        .named_vars()
                        .into_iter()
                        .map(|(k, v)| (k, v.as_tensor().detach()))
                        .collect(),
                )
            }
        };
        let encoder_vb = match &frozen {
            None => tvb.clone(),
            Some(t) => VarBuilder::from_tensors(t.clone(), dtype, device),
        };
        let (sam, fact, adapters) = Self::assemble(cfg, encoder_vb, &tvb, true, device)?;
        Ok(Self {
            config: cfg.clone(),
            sam,
            fact,
            adapters,
            trainable,
            init_report: init.report(),
            frozen: frozen.map(Arc::new),
            inference: false,
            precision: Precision::F32,
        })
    }

    /// The numeric precision the model computes in ([`Precision::F32`] unless changed by
    /// [`MaSam::with_precision`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The same model computing in `precision`: the frozen encoder weights are converted to its
    /// dtype (half the memory in bf16/f16; converting back to f32 later does not restore the
    /// rounded bits), the trainable variables are the same `Var`s, still f32 (f32 master
    /// weights, converted at use in the forward pass). Inputs are converted to the compute
    /// dtype and the outputs ([`MaSam::forward`], [`MaSam::segment`]) are f32 whatever the
    /// precision.
    ///
    /// ```
    /// use masam_adapter::candle::{DType, Device, Tensor};
    /// use masam_adapter::{MaSam, MaSamConfig, Mode, Precision};
    /// # fn main() -> masam_adapter::Result<()> {
    /// let model = MaSam::random(&MaSamConfig::tiny(), 0, &Device::Cpu)?;
    /// let x = Tensor::rand(0f32, 1., (1, 5, 3, 64, 64), &Device::Cpu)?;
    /// let full = model.segment(&x, Mode::Eval)?;
    /// let model = model.with_precision(Precision::Bf16)?;
    /// let half = model.segment(&x, Mode::Eval)?;
    /// assert_eq!(half.dtype(), DType::F32);
    /// let diff = (half - full)?.abs()?.max_all()?.to_scalar::<f32>()?;
    /// assert!(diff < 0.1, "{diff}"); // bf16 keeps 8 significant bits
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] on an inference model ([`MaSam::to_inference`]): set the precision on
    /// the model it is made from.
    pub fn with_precision(self, precision: Precision) -> Result<Self> {
        if precision == self.precision {
            return Ok(self);
        }
        if self.inference {
            return Err(Error::Config(
                "an inference model keeps no separate weights to convert: call with_precision \
                 on the model it was made from, then to_inference"
                    .into(),
            ));
        }
        let device = self.device().clone();
        let dtype = precision.dtype();
        let frozen: Option<HashMap<String, Tensor>> = match &self.frozen {
            None => None,
            Some(f) => Some(
                f.iter()
                    .map(|(k, t)| Ok((k.clone(), t.to_dtype(dtype)?)))
                    .collect::<Result<_>>()?,
            ),
        };
        // the trainable map already holds every variable: rebuilding takes them, draws nothing
        let tvb = self.trainable.var_builder(DType::F32, &device);
        let encoder_vb = match &frozen {
            None => tvb.clone(),
            Some(t) => VarBuilder::from_tensors(t.clone(), dtype, &device),
        };
        let (sam, fact, adapters) = Self::assemble(&self.config, encoder_vb, &tvb, true, &device)?;
        Ok(Self {
            sam,
            fact,
            adapters,
            frozen: frozen.map(Arc::new),
            precision,
            ..self
        })
    }

    /// Builds SAM, FacT (when `with_fact`) and the adapters, with the hooks installed: the
    /// encoder from `encoder_vb`, everything else from `tvb`, in a fixed order (the seeded
    /// initialisation depends on it).
    fn assemble(
        cfg: &MaSamConfig,
        encoder_vb: VarBuilder,
        tvb: &VarBuilder,
        with_fact: bool,
        device: &Device,
    ) -> Result<(Sam, Option<Fact>, Vec<BlockAdapters>)> {
        let encoder = ImageEncoder::new(&cfg.sam.encoder, encoder_vb.pp("image_encoder"))?;
        let prompt = PromptEncoder::new(&cfg.sam.prompt, tvb.pp("prompt_encoder"))?;
        let decoder = MaskDecoder::new(&cfg.sam.decoder, tvb.pp("mask_decoder"))?;
        let mut sam = Sam::from_parts(&cfg.sam, encoder, prompt, decoder, device)?;

        let depth = cfg.sam.encoder.depth;
        let fact = match (&cfg.fact, with_fact) {
            (Some(fc), true) => Some(Fact::new(
                fc,
                cfg.sam.encoder.embed_dim,
                depth,
                tvb.pp(FACT_PREFIX),
            )?),
            _ => None,
        };
        let mut adapters = Vec::with_capacity(depth);
        for i in 0..depth {
            let bvb = tvb.pp(format!("image_encoder.blocks.{i}"));
            let make = |suffix: &str| -> Result<Option<Arc<Adapter3d>>> {
                match &cfg.adapter {
                    Some(a) => Ok(Some(Arc::new(Adapter3d::new_with_names(
                        *a,
                        &AdapterNames::reference(suffix),
                        bvb.clone(),
                    )?))),
                    None => Ok(None),
                }
            };
            let before = match cfg.adapter_placement {
                AdapterPlacement::Before | AdapterPlacement::Both => make("")?,
                AdapterPlacement::After => None,
            };
            let after = match cfg.adapter_placement {
                AdapterPlacement::After | AdapterPlacement::Both => make("_2")?,
                AdapterPlacement::Before => None,
            };
            let hooks = &mut sam.image_encoder.blocks[i].hooks;
            hooks.pre_attn = before.clone().map(|a| Arc::new(AdapterHook(a)) as _);
            hooks.post_attn = after.clone().map(|a| Arc::new(AdapterHook(a)) as _);
            if let Some(f) = &fact {
                let wrap = |h: masam_fact::Result<Option<masam_fact::FactHook>>| -> Result<_> {
                    Ok(h?.map(|h| Arc::new(FactLinearHook(h)) as _))
                };
                hooks.qkv = wrap(f.qkv(i))?;
                hooks.proj = wrap(f.proj(i))?;
                hooks.mlp_fc1 = wrap(f.fc1(i))?;
                hooks.mlp_fc2 = wrap(f.fc2(i))?;
            }
            adapters.push((before, after));
        }
        Ok((sam, fact, adapters))
    }

    /// The same model for prediction: every weight a plain tensor (no [`Var`], so no forward
    /// pass records a graph and each intermediate is freed as soon as it is used), and the FacT
    /// increments folded into the frozen weights once (`W + s·ΔW`, no per-forward hook).
    ///
    /// Its outputs equal this model's in [`Mode::Eval`] up to float rounding; it shares the
    /// weight storage of this model except for the merged projections. It cannot be trained or
    /// saved ([`MaSam::is_inference`]).
    ///
    /// ```
    /// use masam_adapter::candle::{Device, Tensor};
    /// use masam_adapter::{MaSam, MaSamConfig, Mode};
    /// # fn main() -> masam_adapter::Result<()> {
    /// let model = MaSam::random(&MaSamConfig::tiny(), 0, &Device::Cpu)?;
    /// let fast = model.to_inference()?;
    /// let x = Tensor::rand(0f32, 1., (1, 5, 3, 64, 64), &Device::Cpu)?;
    /// let out = fast.segment(&x, Mode::Eval)?;
    /// assert!(!out.track_op()); // no graph was recorded
    /// let diff = (out - model.segment(&x, Mode::Eval)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
    /// assert!(diff < 1e-4);
    /// # Ok(()) }
    /// ```
    pub fn to_inference(&self) -> Result<Self> {
        let dtype = self.precision.dtype();
        let device = self.device().clone();
        let mut tensors: HashMap<String, Tensor> =
            self.frozen.as_deref().cloned().unwrap_or_default();
        for (k, v) in self.trainable.named_vars() {
            tensors.insert(k, v.as_tensor().detach());
        }
        if let Some(f) = &self.fact {
            for i in 0..self.config.sam.encoder.depth {
                let hooks = [
                    (f.qkv(i)?, "attn.qkv"),
                    (f.proj(i)?, "attn.proj"),
                    (f.fc1(i)?, "mlp.lin1"),
                    (f.fc2(i)?, "mlp.lin2"),
                ];
                for (hook, layer) in hooks {
                    let Some(hook) = hook else { continue };
                    let key = format!("{ENCODER_PREFIX}blocks.{i}.{layer}.weight");
                    let w = tensors.get(&key).ok_or_else(|| {
                        Error::Config(format!("cannot merge FacT: the encoder has no `{key}`"))
                    })?;
                    // merged in f32, then stored in the compute dtype
                    let merged = hook.merge_weight(&w.to_dtype(DType::F32)?)?.detach();
                    tensors.insert(key, merged);
                }
            }
        }
        // as in training: the encoder's weights in the compute dtype, everything that is trained
        // (decoder, prompt encoder, adapters) kept in f32 and converted at use; the prompt
        // encoder's Fourier features need f32
        let encoder_vb = VarBuilder::from_tensors(tensors.clone(), dtype, &device);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let (sam, _, adapters) = Self::assemble(&self.config, encoder_vb, &vb, false, &device)?;
        Ok(Self {
            config: self.config.clone(),
            sam,
            fact: None,
            adapters,
            trainable: SeededVarMap::new(0),
            init_report: BTreeMap::new(),
            frozen: None,
            inference: true,
            precision: self.precision,
        })
    }

    /// True for a model made by [`MaSam::to_inference`] (plain tensors, FacT merged).
    pub fn is_inference(&self) -> bool {
        self.inference
    }

    /// The trainable variables.
    pub fn trainable(&self) -> &SeededVarMap {
        &self.trainable
    }

    /// The trainable variables by name, sorted.
    pub fn trainable_vars(&self) -> BTreeMap<String, Var> {
        self.trainable.named_vars().into_iter().collect()
    }

    /// Where every trainable parameter's initial value came from (SAM, resized, fresh).
    pub fn init_report(&self) -> &BTreeMap<String, ParamSource> {
        &self.init_report
    }

    /// The encoder's settings for a forward pass over `slices`-slice volumes: in bf16/f16 the
    /// encoder's layers compute in that dtype around an f32 residual stream (autocast-style);
    /// the images, the embeddings and the mask decoder stay f32.
    pub(crate) fn forward_context(&self, slices: usize, mode: Mode) -> ForwardContext {
        ForwardContext {
            slices,
            train: mode.is_train(),
            compute: (self.precision != Precision::F32).then(|| self.precision.dtype()),
        }
    }

    /// (B, D, 3, H, W) images → (B·D, 3, H, W) in f32, with B and D.
    pub(crate) fn flatten(&self, images: &Tensor) -> Result<(Tensor, usize, usize)> {
        let d = images.dims();
        if d.len() != 5 || d[2] != 3 {
            return Err(Error::Shape {
                what: "images",
                expected: "(B, D, 3, H, W)".into(),
                found: d.to_vec(),
            });
        }
        if d[1] != self.config.slices {
            return Err(Error::Config(format!(
                "input has {} slices per volume, the model was configured for {}",
                d[1], self.config.slices
            )));
        }
        let x = images.reshape((d[0] * d[1], 3, d[3], d[4]))?;
        Ok((x.to_dtype(DType::F32)?, d[0], d[1]))
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        self.sam.device()
    }

    /// Runs the model on B volumes of D adjacent slices.
    ///
    /// `prompt` is [`Prompt::None`] (MA-SAM) or per-slice boxes ([`MaSam::boxes_prompt`]).
    /// [`Mode::Train`] enables FacT dropout.
    ///
    /// # Shapes
    /// - `images`: (B, D, 3, H, W), values as the reference pipeline makes them ([0, 1])
    /// - returns masks (B·D, K, H, W) logits and IoU (B·D, K), K = classes + 1, volume-major
    ///   (slice `d` of volume `b` is row `b·D + d`); [`MaSam::forward_volumes`] returns them as
    ///   (B, D, K, H, W) and (B, D, K).
    pub fn forward(&self, images: &Tensor, prompt: &Prompt, mode: Mode) -> Result<SamOutput> {
        let (x, _, d) = self.flatten(images)?;
        let ctx = self.forward_context(d, mode);
        Self::outputs_to_f32(self.sam.forward(&x, prompt, &ctx)?)
    }

    /// SAM's outputs in f32 whatever the compute precision: the loss and the metrics read them.
    pub(crate) fn outputs_to_f32(out: SamOutput) -> Result<SamOutput> {
        let masks = out.masks.to_dtype(DType::F32)?;
        let low_res_logits = if out.low_res_logits.id() == out.masks.id() {
            masks.clone() // the 4-stage decoder's logits are the masks: convert once
        } else {
            out.low_res_logits.to_dtype(DType::F32)?
        };
        Ok(SamOutput {
            masks,
            iou_predictions: out.iou_predictions.to_dtype(DType::F32)?,
            low_res_logits,
        })
    }

    /// [`MaSam::forward`] with the outputs grouped per volume: masks (B, D, K, H, W), IoU
    /// (B, D, K).
    pub fn forward_volumes(
        &self,
        images: &Tensor,
        prompt: &Prompt,
        mode: Mode,
    ) -> Result<VolumeOutput> {
        let b = images.dims().first().copied().unwrap_or(0);
        VolumeOutput::from_slices(&self.forward(images, prompt, mode)?, b)
    }

    /// The prompt-free mask logits (B, D, K, H, W) of B volumes of D slices.
    pub fn segment(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        Ok(self.forward_volumes(images, &Prompt::None, mode)?.masks)
    }

    /// Per-slice box prompts (B, D, 4) `(x0, y0, x1, y1)` in input pixels, as a [`Prompt`].
    pub fn boxes_prompt(boxes: &Tensor) -> Result<Prompt> {
        let (b, d, four) = boxes.dims3()?;
        if four != 4 {
            return Err(Error::Shape {
                what: "boxes",
                expected: "(B, D, 4)".into(),
                found: boxes.dims().to_vec(),
            });
        }
        Ok(Prompt::Boxes(boxes.reshape((b * d, 4))?))
    }

    /// The encoder's intermediate results (patch embedding, every block, embeddings), in the
    /// compute dtype ([`MaSam::precision`]).
    pub fn encode_with_intermediates(&self, images: &Tensor, mode: Mode) -> Result<EncoderOutput> {
        let (x, _, d) = self.flatten(images)?;
        let x = self.sam.preprocess(&x)?;
        let ctx = self.forward_context(d, mode);
        Ok(self
            .sam
            .image_encoder
            .forward_with_intermediates(&x, &ctx)?)
    }
}

/// The prompt-free forward pass as a candle module: (B, D, 3, H, W) images in, (B, D, K, H, W)
/// logits out, dropout on when `train` is true.
impl candle_nn::ModuleT for MaSam {
    fn forward_t(&self, images: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.segment(images, Mode::from(train))
            .map_err(candle_core::Error::wrap)
    }
}
