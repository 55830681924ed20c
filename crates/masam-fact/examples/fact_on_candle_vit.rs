//! FacT on candle-transformers' ViT, a model whose layers are private: no code change to it.
//!
//! 1. FacT is served into `candle_transformers::models::vit::Model` through a `VarBuilder`
//!    backend ([`FactBackend`]) that hands out `W + s·ΔW` for the q and v weights. A
//!    finite-difference gradient check shows that this stock model does **not** train FacT in
//!    candle 0.11: its softmax and LayerNorms record no backward.
//! 2. The factors (and a new classifier head) are fine-tuned with AdamW through the trainable
//!    twin [`Vit`] (same weights, same function, backward-capable ops); the gradient check
//!    passes and the loss goes down.
//! 3. FacT is merged and the stock model, built from the merged backend, gives the twin's logits.
//!
//! ```text
//! cargo run -p masam-fact --example fact_on_candle_vit            # table + JSON summary
//! cargo run -p masam-fact --example fact_on_candle_vit -- --steps 50
//! ```

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder};
use candle_transformers::models::vit;
use masam_fact::backend::{FactBackend, ProjectionMap};
use masam_fact::gradcheck::{check_gradients, GradCheckConfig, GradCheckReport, Verdict};
use masam_fact::hosts::vit::{random_weights, Vit, VitConfig};
use masam_fact::{Fact, FactConfig};
use masam_nn::SeededVarMap;
use serde_json::json;

const LABELS: usize = 3;

/// candle-transformers' config with the same fields.
fn stock_config(c: &VitConfig) -> vit::Config {
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

/// Synthetic task: the label is the colour channel with the largest mean.
fn data(n: usize, seed: u64, dev: &Device) -> Result<(Tensor, Tensor)> {
    let rng = SeededVarMap::new(seed);
    let x = rng.sample(
        &(n, 3, 16, 16).into(),
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        DType::F32,
        dev,
    )?;
    let y = x.mean(D::Minus1)?.mean(D::Minus1)?.argmax(D::Minus1)?;
    Ok((x, y))
}

fn main() -> Result<()> {
    let steps: usize = match std::env::args().skip_while(|a| a != "--steps").nth(1) {
        Some(s) => s.parse()?,
        None => 30,
    };
    let dev = Device::Cpu;
    let cfg = VitConfig::tiny();
    let stock_cfg = stock_config(&cfg);

    // The "pretrained" checkpoint (random here), FacT (MA-SAM's q and v, rank 4) and a new head.
    let base = VarBuilder::from_tensors(random_weights(&cfg, LABELS, 0)?, DType::F32, &dev);
    let params = SeededVarMap::new(1);
    let fact = Fact::new(
        &FactConfig::ma_sam().with_rank(4),
        cfg.hidden_size,
        cfg.num_hidden_layers,
        params.var_builder(DType::F32, &dev),
    )?;
    let head = SeededVarMap::new(2);
    let backend = FactBackend::new(base, &fact, ProjectionMap::hf_vit())
        .with_trainable("classifier", head.var_builder(DType::F32, &dev));
    let (x, y) = data(16, 3, &dev)?;
    let (xc, yc) = (x.narrow(0, 0, 4)?, y.narrow(0, 0, 4)?);

    // 1. Gradient checks, at a point with V != 0 (at V = 0 the gradients of U and of the cores
    //    are exactly zero and a check cannot tell missing from zero).
    let v = fact.factors().v();
    let v_check = SeededVarMap::new(5).sample(
        v.shape(),
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.1,
        },
        DType::F32,
        &dev,
    )?;
    v.slice_set(&v_check, 0, 0)?;
    let gc = GradCheckConfig::for_dtype(DType::F32);
    let ce = |logits: Tensor, y: &Tensor| candle_nn::loss::cross_entropy(&logits, y);
    let stock_report = check_gradients(&fact.parameters(), &gc, || {
        let m = vit::Model::new(&stock_cfg, LABELS, backend.var_builder())?;
        ce(m.forward(&xc)?, &yc)
    })?;
    backend.check_coverage()?;
    println!("Stock candle-transformers ViT, FacT served through the backend:\n{stock_report}");
    let twin_report = check_gradients(&fact.parameters(), &gc, || {
        let m = Vit::new(&cfg, LABELS, backend.var_builder())?;
        ce(m.forward(&xc)?, &yc)
    })?;
    println!("Trainable twin (masam-nn LayerNorm/softmax/GELU), same weights:\n{twin_report}");
    if stock_report.passed() || !twin_report.passed() {
        bail!("unexpected gradient-check outcome");
    }

    // 2. Fine-tune from FacT's initialisation (V = 0) through the twin.
    v.slice_set(&v.zeros_like()?, 0, 0)?;
    let mut vars = params.vars().all_vars();
    // Create the head's variables (first request), then train them with the factors.
    Vit::new(&cfg, LABELS, backend.var_builder())?;
    vars.extend(head.vars().all_vars());
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: 1e-2,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        // The served weights are computed when the model is built: build it every step.
        let model = Vit::new(&cfg, LABELS, backend.var_builder())?;
        let loss = ce(model.forward(&x)?, &y)?;
        losses.push(loss.to_scalar::<f32>()?);
        opt.backward_step(&loss)?;
    }
    // Check again at the trained point, on images not trained on (the training loss is small).
    let (xh, yh) = data(4, 4, &dev)?;
    let after_report = check_gradients(&fact.parameters(), &gc, || {
        let m = Vit::new(&cfg, LABELS, backend.var_builder())?;
        ce(m.forward(&xh)?, &yh)
    })?;
    println!("Twin after {steps} steps, on held-out images:\n{after_report}");
    let (first, last) = (losses[0], *losses.last().unwrap_or(&losses[0]));
    println!("loss {first:.4} -> {last:.4} in {steps} AdamW steps");

    // 3. Merge: the stock model on merged weights gives the twin's logits.
    let twin_logits = Vit::new(&cfg, LABELS, backend.var_builder())?.forward(&x)?;
    let merged = vit::Model::new(&stock_cfg, LABELS, backend.merged().var_builder())?;
    let stock_logits = merged.forward(&x)?;
    let diff: f32 = (&twin_logits - &stock_logits)?
        .abs()?
        .max_all()?
        .to_scalar()?;
    println!("merged stock model vs twin: max |logit difference| = {diff:.2e}");
    let improved = last < first;
    if !improved || !after_report.passed() || diff > 1e-4 {
        bail!("training or merging did not behave");
    }

    let summary = |r: &GradCheckReport| {
        r.tensors
            .iter()
            .map(|t| {
                json!({
                    "tensor": t.name,
                    "verdict": t.verdict,
                    "max_rel_err": t.max_rel_err(),
                })
            })
            .collect::<Vec<_>>()
    };
    let missing = stock_report.with_verdict(Verdict::Missing);
    let wrong = stock_report.with_verdict(Verdict::Wrong);
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "model": "candle_transformers::models::vit (hidden 32, 2 layers, 4 heads, 16px, patch 4)",
            "fact": "FacT-TT rank 4 on q and v",
            "stock_gradcheck": { "missing": missing, "wrong": wrong, "tensors": summary(&stock_report) },
            "twin_gradcheck_before": summary(&twin_report),
            "twin_gradcheck_after_training": summary(&after_report),
            "loss_first": first,
            "loss_last": last,
            "steps": steps,
            "merged_max_abs_logit_diff": diff,
        }))?
    );
    Ok(())
}
