//! A trainable twin of candle-transformers' ViT (`models::vit::Model`).
//!
//! Same weight names, same function, but every op records a backward: LayerNorm and the
//! attention softmax come from masam-nn (fused on CPU f32, composite elsewhere), the exact GELU
//! from [`masam_nn::gelu_erf`], the patch embedding is a reshape and a matmul. Build it from a
//! [`crate::backend::FactBackend`] (with [`crate::backend::ProjectionMap::hf_vit`]) to train
//! FacT on a Hugging Face ViT checkpoint; the stock `candle_transformers::models::vit::Model`
//! built from the merged backend then gives the same logits.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarBuilder;
//! use masam_fact::backend::{FactBackend, ProjectionMap};
//! use masam_fact::hosts::vit::{random_weights, Vit, VitConfig};
//! use masam_fact::{Fact, FactConfig};
//! use masam_nn::SeededVarMap;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dev = Device::Cpu;
//! let cfg = VitConfig::tiny();
//! let base = VarBuilder::from_tensors(random_weights(&cfg, 3, 0)?, DType::F32, &dev);
//! let params = SeededVarMap::new(1);
//! let fact = Fact::new(&FactConfig::ma_sam().with_rank(4), cfg.hidden_size,
//!                      cfg.num_hidden_layers, params.var_builder(DType::F32, &dev))?;
//! let backend = FactBackend::new(base, &fact, ProjectionMap::hf_vit());
//! let model = Vit::new(&cfg, 3, backend.var_builder())?;
//! let logits = model.forward(&Tensor::randn(0f32, 1., (2, 3, 16, 16), &dev)?)?;
//! assert_eq!(logits.dims(), &[2, 3]);
//! backend.check_coverage()?; // q and v of both layers were served
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Activation, Init, Linear, VarBuilder};
use masam_nn::{gelu_erf, layer_norm, softmax_last_dim, LayerNorm, SeededVarMap};
use serde::{Deserialize, Serialize};

/// The configuration of a Hugging Face ViT, with the fields (and `config.json` names) of
/// `candle_transformers::models::vit::Config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Embedding width C.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// MLP hidden width.
    pub intermediate_size: usize,
    /// MLP activation (`gelu` is the exact, erf GELU).
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Input image side.
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Whether q, k, v have biases.
    pub qkv_bias: bool,
}

impl VitConfig {
    /// `google/vit-base-patch16-224`.
    pub fn vit_base_patch16_224() -> Self {
        Self {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
        }
    }

    /// A tiny ViT for tests and examples: width 32, 2 layers, 4 heads, MLP 64, 16×16 RGB
    /// images in 4×4 patches.
    pub fn tiny() -> Self {
        Self {
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 64,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            image_size: 16,
            patch_size: 4,
            num_channels: 3,
            qkv_bias: true,
        }
    }

    /// Patches per image.
    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    /// Every tensor of `Model::new(cfg, num_labels, vb)` / [`Vit::new`]: name and shape.
    pub fn tensor_shapes(&self, num_labels: usize) -> Vec<(String, Vec<usize>)> {
        let (c, p) = (self.hidden_size, self.patch_size);
        let e = "vit.embeddings";
        let mut out = vec![
            (format!("{e}.cls_token"), vec![1, 1, c]),
            (
                format!("{e}.position_embeddings"),
                vec![1, self.num_patches() + 1, c],
            ),
            (
                format!("{e}.patch_embeddings.projection.weight"),
                vec![c, self.num_channels, p, p],
            ),
            (format!("{e}.patch_embeddings.projection.bias"), vec![c]),
        ];
        for i in 0..self.num_hidden_layers {
            let l = format!("vit.encoder.layer.{i}");
            for n in ["query", "key", "value"] {
                out.push((format!("{l}.attention.attention.{n}.weight"), vec![c, c]));
                if self.qkv_bias {
                    out.push((format!("{l}.attention.attention.{n}.bias"), vec![c]));
                }
            }
            let m = self.intermediate_size;
            out.push((format!("{l}.attention.output.dense.weight"), vec![c, c]));
            out.push((format!("{l}.attention.output.dense.bias"), vec![c]));
            out.push((format!("{l}.intermediate.dense.weight"), vec![m, c]));
            out.push((format!("{l}.intermediate.dense.bias"), vec![m]));
            out.push((format!("{l}.output.dense.weight"), vec![c, m]));
            out.push((format!("{l}.output.dense.bias"), vec![c]));
            for n in ["layernorm_before", "layernorm_after"] {
                out.push((format!("{l}.{n}.weight"), vec![c]));
                out.push((format!("{l}.{n}.bias"), vec![c]));
            }
        }
        out.push(("vit.layernorm.weight".into(), vec![c]));
        out.push(("vit.layernorm.bias".into(), vec![c]));
        out.push(("classifier.weight".into(), vec![num_labels, c]));
        out.push(("classifier.bias".into(), vec![num_labels]));
        out
    }
}

/// A deterministic random "checkpoint" for `cfg` (f32, CPU), for tests and examples: matrices
/// N(0, 1/fan_in), biases N(0, 0.02²), LayerNorm scales 1 + N(0, 0.1²) and shifts
/// N(0, 0.1²), class token and position embeddings N(0, 0.5²).
pub fn random_weights(
    cfg: &VitConfig,
    num_labels: usize,
    seed: u64,
) -> Result<HashMap<String, Tensor>> {
    let rng = SeededVarMap::new(seed);
    let dev = Device::Cpu;
    cfg.tensor_shapes(num_labels)
        .into_iter()
        .map(|(name, shape)| {
            let fan_in: usize = shape[1..].iter().product();
            let (mean, stdev) = if name.contains("layernorm") && name.ends_with(".weight") {
                (1.0, 0.1)
            } else if name.contains("layernorm") {
                (0.0, 0.1)
            } else if name.ends_with(".weight") {
                (0.0, 1.0 / (fan_in as f64).sqrt())
            } else if name.ends_with(".bias") {
                (0.0, 0.02)
            } else {
                (0.0, 0.5)
            };
            let t = rng.sample(
                &shape.as_slice().into(),
                Init::Randn { mean, stdev },
                DType::F32,
                &dev,
            )?;
            Ok((name, t))
        })
        .collect()
}

fn linear_from(vb: VarBuilder, inp: usize, out: usize, bias: bool) -> Result<Linear> {
    // Same tensors and initialisation hints as `candle_nn::linear{,_no_bias}`.
    if bias {
        candle_nn::linear(inp, out, vb)
    } else {
        candle_nn::linear_no_bias(inp, out, vb)
    }
}

fn activate(act: Activation, x: &Tensor) -> Result<Tensor> {
    match act {
        Activation::Gelu => gelu_erf(x),
        other => other.forward(x),
    }
}

/// One encoder layer (pre-norm attention and MLP, each with a residual).
#[derive(Debug, Clone)]
struct Layer {
    norm_before: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    norm_after: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    act: Activation,
}

impl Layer {
    fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.hidden_size;
        let att = vb.pp("attention").pp("attention");
        Ok(Self {
            norm_before: layer_norm(c, cfg.layer_norm_eps, vb.pp("layernorm_before"))?,
            query: linear_from(att.pp("query"), c, c, cfg.qkv_bias)?,
            key: linear_from(att.pp("key"), c, c, cfg.qkv_bias)?,
            value: linear_from(att.pp("value"), c, c, cfg.qkv_bias)?,
            attn_out: linear_from(vb.pp("attention").pp("output").pp("dense"), c, c, true)?,
            norm_after: layer_norm(c, cfg.layer_norm_eps, vb.pp("layernorm_after"))?,
            fc1: linear_from(
                vb.pp("intermediate").pp("dense"),
                c,
                cfg.intermediate_size,
                true,
            )?,
            fc2: linear_from(vb.pp("output").pp("dense"), cfg.intermediate_size, c, true)?,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
        })
    }

    /// (B, N, C) → (B, heads, N, C / heads), contiguous.
    fn split_heads(&self, t: &Tensor) -> Result<Tensor> {
        let (b, n, c) = t.dims3()?;
        t.reshape((b, n, self.heads, c / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let h = self.norm_before.forward(x)?;
        let q = self.split_heads(&self.query.forward(&h)?)?;
        let k = self.split_heads(&self.key.forward(&h)?)?;
        let v = self.split_heads(&self.value.forward(&h)?)?;
        let d = (c / self.heads) as f64;
        let scores = (q.matmul(&k.t()?.contiguous()?)? / d.sqrt())?;
        let attn = softmax_last_dim(&scores)?.matmul(&v)?;
        let attn = attn.transpose(1, 2)?.contiguous()?.reshape((b, n, c))?;
        let x = (self.attn_out.forward(&attn)? + x)?;
        let h = activate(self.act, &self.fc1.forward(&self.norm_after.forward(&x)?)?)?;
        self.fc2.forward(&h)? + x
    }
}

/// The twin of `candle_transformers::models::vit::Model` (see the [module docs](self)): reads
/// `vit.embeddings.*`, `vit.encoder.layer.{i}.*`, `vit.layernorm.*` and `classifier.*`, and
/// classifies from the class token.
///
/// # Shapes
/// - pixels: (B, channels, image_size, image_size); logits: (B, num_labels)
#[derive(Debug, Clone)]
pub struct Vit {
    cls_token: Tensor,
    position_embeddings: Tensor,
    /// Patch projection as a matrix (C, channels·p·p) and its bias.
    patch_weight: Tensor,
    patch_bias: Tensor,
    patch: usize,
    layers: Vec<Layer>,
    norm: LayerNorm,
    classifier: Linear,
}

impl Vit {
    /// Builds the model from `vb` (at the root of a Hugging Face ViT checkpoint).
    pub fn new(cfg: &VitConfig, num_labels: usize, vb: VarBuilder) -> Result<Self> {
        let c = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !c.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!(
                "ViT: hidden size {c} is not a multiple of {} heads",
                cfg.num_attention_heads
            );
        }
        let emb = vb.pp("vit").pp("embeddings");
        let cls_token = emb.get((1, 1, c), "cls_token")?;
        let position_embeddings = emb.get((1, cfg.num_patches() + 1, c), "position_embeddings")?;
        let conv = candle_nn::conv2d(
            cfg.num_channels,
            c,
            cfg.patch_size,
            candle_nn::Conv2dConfig {
                stride: cfg.patch_size,
                ..Default::default()
            },
            emb.pp("patch_embeddings").pp("projection"),
        )?;
        let patch_weight = conv.weight().flatten_from(1)?;
        let patch_bias = match conv.bias() {
            Some(b) => b.clone(),
            None => candle_core::bail!("ViT: patch projection without bias"),
        };
        let enc = vb.pp("vit").pp("encoder").pp("layer");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, enc.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = layer_norm(c, cfg.layer_norm_eps, vb.pp("vit").pp("layernorm"))?;
        let classifier = linear_from(vb.pp("classifier"), c, num_labels, true)?;
        Ok(Self {
            cls_token,
            position_embeddings,
            patch_weight,
            patch_bias,
            patch: cfg.patch_size,
            layers,
            norm,
            classifier,
        })
    }

    /// Class token, patch tokens and position embeddings: (B, 1 + patches, C).
    pub fn embed(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, ch, h, w) = pixels.dims4()?;
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        // Non-overlapping p×p patches, row-major over the grid, each flattened as (ch, p, p):
        // the convolution with stride p as one matmul.
        let patches = pixels
            .narrow(2, 0, gh * p)?
            .narrow(3, 0, gw * p)?
            .reshape((b, ch, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * gh * gw, ch * p * p))?;
        let tokens = patches
            .matmul(&self.patch_weight.t()?)?
            .broadcast_add(&self.patch_bias)?
            .reshape((b, gh * gw, ()))?;
        let c = tokens.dim(2)?;
        let cls = self.cls_token.broadcast_as((b, 1, c))?;
        Tensor::cat(&[&cls, &tokens], 1)?.broadcast_add(&self.position_embeddings)
    }

    /// The encoder's output for the embedded tokens: (B, 1 + patches, C).
    pub fn encode(&self, tokens: &Tensor) -> Result<Tensor> {
        self.layers
            .iter()
            .try_fold(tokens.clone(), |x, l| l.forward(&x))
    }

    /// Logits from the normalised class token.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let hidden = self.encode(&self.embed(pixels)?)?;
        self.classifier
            .forward(&self.norm.forward(&hidden.i((.., 0, ..))?.contiguous()?)?)
    }
}

impl Module for Vit {
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        Vit::forward(self, pixels)
    }
}
