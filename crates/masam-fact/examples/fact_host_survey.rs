//! Which candle-transformers vision models train FacT correctly? A measurement.
//!
//! Each model is built at a tiny width from random weights, FacT-TT (rank 4, q and v) is served
//! into it through [`FactBackend`], and [`check_factors`] compares autograd with finite
//! differences (f32, 4 entries per tensor, V set to N(0, 0.1²) so that no gradient is zero by
//! construction). The loss is the mean square of the model's output. It prints one markdown
//! table row per model; `docs/fact.md` quotes the result.
//!
//! ```text
//! cargo run -p masam-fact --example fact_host_survey
//! ```

use anyhow::Result;
use candle_core::{DType, Device, Module, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use candle_transformers::models::{beit, clip, dinov2, eva2, vit};
use masam_fact::backend::{FactBackend, ProjectionMap};
use masam_fact::gradcheck::{check_factors, GradCheckConfig, GradCheckReport};
use masam_fact::hosts::vit::{Vit, VitConfig};
use masam_fact::{Fact, FactConfig, Projection};
use masam_nn::SeededVarMap;

/// Random weights for any name a model asks for, stable across builds. Constant hints (LayerNorm
/// scales and shifts, layer-scale gammas, tokens) get N(c, 0.1²) so nothing is exactly 0 or 1.
struct RandomBackend(SeededVarMap);

impl SimpleBackend for RandomBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(v) = self.0.get(name) {
            return v.as_tensor().to_dtype(dtype)?.to_device(dev);
        }
        let init = match h {
            Init::Const(c) => Init::Randn {
                mean: c,
                stdev: 0.1,
            },
            other => other,
        };
        let t = self.0.sample(&s, init, dtype, dev)?;
        Ok(self.0.insert(name, &t)?.as_tensor().clone())
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("RandomBackend: no shape for {name}")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

fn random_vb(seed: u64) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(RandomBackend(SeededVarMap::new(seed))),
        DType::F32,
        Device::Cpu,
    )
}

struct Host {
    name: &'static str,
    softmax: &'static str,
    layer_norm: &'static str,
    dim: usize,
    image: usize,
    /// Batch sizes to check (the stock ViT and CLIP depend on it, see docs/fact.md).
    batches: &'static [usize],
    map: ProjectionMap,
    build: Box<dyn Fn(VarBuilder<'static>) -> candle_core::Result<Box<dyn Module>>>,
}

fn vit_config(dim: usize, image: usize, patch: usize) -> VitConfig {
    VitConfig {
        hidden_size: dim,
        image_size: image,
        patch_size: patch,
        ..VitConfig::tiny()
    }
}

fn stock_vit_config(c: &VitConfig) -> vit::Config {
    vit::Config {
        hidden_size: c.hidden_size,
        num_hidden_layers: c.num_hidden_layers,
        num_attention_heads: c.num_attention_heads,
        intermediate_size: c.intermediate_size,
        hidden_act: c.hidden_act,
        layer_norm_eps: c.layer_norm_eps,
        image_size: c.image_size,
        patch_size: c.patch_size,
        num_channels: c.num_channels,
        qkv_bias: c.qkv_bias,
    }
}

/// `vit::Model` has an inherent `forward` only.
struct StockVit(vit::Model);

impl Module for StockVit {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.0.forward(xs)
    }
}

/// `vit::Embeddings` + `vit::Encoder` (public), no final LayerNorm: the loss reads the encoder.
struct VitEncoder(vit::Embeddings, vit::Encoder);

impl Module for VitEncoder {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.1.forward(&self.0.forward(xs, None, false)?)
    }
}

fn hosts() -> Vec<Host> {
    let tiny = vit_config(32, 16, 4);
    let (t1, t2, t3) = (tiny.clone(), tiny.clone(), tiny.clone());
    vec![
        Host {
            name: "vit::Model",
            softmax: "ops::softmax_last_dim (no backward)",
            layer_norm: "candle_nn::LayerNorm fused (no backward)",
            dim: 32,
            image: 16,
            batches: &[1, 2],
            map: ProjectionMap::hf_vit(),
            build: Box::new(move |vb| {
                let m = vit::Model::new(&stock_vit_config(&t1), 3, vb)?;
                Ok(Box::new(StockVit(m)) as Box<dyn Module>)
            }),
        },
        Host {
            name: "vit::Embeddings + vit::Encoder",
            softmax: "ops::softmax_last_dim (no backward)",
            layer_norm: "candle_nn::LayerNorm fused (no backward)",
            dim: 32,
            image: 16,
            batches: &[1, 2],
            map: ProjectionMap::hf_vit(),
            build: Box::new(move |vb| {
                let c = stock_vit_config(&t2);
                let vb = vb.pp("vit");
                let e = vit::Embeddings::new(&c, false, vb.pp("embeddings"))?;
                let enc = vit::Encoder::new(&c, vb.pp("encoder"))?;
                Ok(Box::new(VitEncoder(e, enc)) as Box<dyn Module>)
            }),
        },
        Host {
            name: "dinov2::DinoVisionTransformer",
            softmax: "ops::softmax (composed, has backward)",
            layer_norm: "candle_nn::LayerNorm fused (no backward)",
            dim: 32,
            image: 518,
            batches: &[1],
            map: ProjectionMap::dinov2(),
            build: Box::new(|vb| {
                Ok(Box::new(dinov2::DinoVisionTransformer::new(vb, 2, 32, 4)?) as Box<dyn Module>)
            }),
        },
        Host {
            name: "beit::BeitVisionTransformer",
            softmax: "ops::softmax (composed, has backward)",
            layer_norm: "candle_nn::LayerNorm fused (no backward)",
            dim: 32,
            image: 384,
            batches: &[1],
            map: ProjectionMap::dinov2(),
            build: Box::new(|vb| {
                Ok(Box::new(beit::BeitVisionTransformer::new(vb, 2, 32, 4)?) as Box<dyn Module>)
            }),
        },
        Host {
            name: "eva2::EVA2VisionTransformer",
            softmax: "ops::softmax (composed, has backward)",
            layer_norm: "candle_nn::LayerNorm fused (no backward)",
            dim: 128,
            image: 448,
            batches: &[1],
            map: ProjectionMap::new()
                .with("blocks.{i}.attn.q_proj.weight", Projection::Q)
                .with("blocks.{i}.attn.v_proj.weight", Projection::V),
            build: Box::new(|vb| {
                Ok(Box::new(eva2::EVA2VisionTransformer::new(vb, 2, 128, 2)?) as Box<dyn Module>)
            }),
        },
        Host {
            name: "clip::vision_model::ClipVisionTransformer",
            softmax: "ops::softmax (composed, has backward)",
            layer_norm: "candle_nn::LayerNorm fused in blocks, composed on the pooled token",
            dim: 32,
            image: 16,
            batches: &[1, 2],
            map: ProjectionMap::clip_encoder(),
            build: Box::new(|vb| {
                let c = clip::vision_model::ClipVisionConfig {
                    embed_dim: 32,
                    activation: clip::text_model::Activation::QuickGelu,
                    intermediate_size: 64,
                    num_hidden_layers: 2,
                    num_attention_heads: 4,
                    projection_dim: 32,
                    num_channels: 3,
                    image_size: 16,
                    patch_size: 4,
                };
                Ok(
                    Box::new(clip::vision_model::ClipVisionTransformer::new(vb, &c)?)
                        as Box<dyn Module>,
                )
            }),
        },
        Host {
            name: "masam_fact::hosts::vit::Vit (twin of vit::Model)",
            softmax: "masam_nn::softmax_last_dim (backward)",
            layer_norm: "masam_nn::LayerNorm (backward)",
            dim: 32,
            image: 16,
            batches: &[1, 2],
            map: ProjectionMap::hf_vit(),
            build: Box::new(move |vb| Ok(Box::new(Vit::new(&t3, 3, vb)?) as Box<dyn Module>)),
        },
    ]
}

fn cell(r: &GradCheckReport, name: &str) -> String {
    match r.get(name) {
        Some(t) => {
            let e = t
                .entries
                .iter()
                .max_by(|a, b| a.finite_diff.abs().total_cmp(&b.finite_diff.abs()));
            match e {
                Some(e) => format!(
                    "{} ({:+.2e} vs fd {:+.2e})",
                    t.verdict, e.autograd, e.finite_diff
                ),
                None => t.verdict.to_string(),
            }
        }
        None => "-".into(),
    }
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    println!("| model | batch | softmax | LayerNorm | U | V | q core, block 0 | v core, block 0 | q core, block 1 | v core, block 1 |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (k, h) in hosts().into_iter().enumerate() {
        for &batch in h.batches {
            let params = SeededVarMap::new(100 + k as u64);
            let fact = Fact::new(
                &FactConfig::ma_sam().with_rank(4),
                h.dim,
                2,
                params.var_builder(DType::F32, &dev),
            )?;
            let v = fact.factors().v();
            let v0 = params.sample(
                v.shape(),
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.1,
                },
                DType::F32,
                &dev,
            )?;
            v.slice_set(&v0, 0, 0)?;
            let backend = FactBackend::new(random_vb(7), &fact, h.map.clone());
            let x = params.sample(
                &(batch, 3, h.image, h.image).into(),
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
                DType::F32,
                &dev,
            )?;
            let report = check_factors(&fact, &GradCheckConfig::for_dtype(DType::F32), || {
                let m = (h.build)(backend.var_builder())?;
                m.forward(&x)?.sqr()?.mean_all()
            })?;
            backend.check_coverage()?;
            println!(
                "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                h.name,
                batch,
                h.softmax,
                h.layer_norm,
                cell(&report, "FacTu.weight"),
                cell(&report, "FacTv.weight"),
                cell(&report, "blocks.0.q_FacTs.weight"),
                cell(&report, "blocks.0.v_FacTs.weight"),
                cell(&report, "blocks.1.q_FacTs.weight"),
                cell(&report, "blocks.1.v_FacTs.weight"),
            );
        }
    }
    Ok(())
}
