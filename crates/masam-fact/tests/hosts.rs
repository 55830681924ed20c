//! FacT on candle-transformers' ViT through the VarBuilder backend: exact serving, the gradient
//! check's verdicts on the stock model and on the twin, forward and merged-inference equality,
//! and training with finite-difference-checked gradients.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Init, Optimizer, ParamsAdamW, VarBuilder};
use candle_transformers::models::vit;
use masam_fact::backend::{merge_tensors, FactBackend, ProjectionMap, ServeMode};
use masam_fact::gradcheck::{check_factors, check_gradients, GradCheckConfig, Verdict};
use masam_fact::hosts::vit::{random_weights, Vit, VitConfig};
use masam_fact::{Fact, FactConfig, FactError, Projection};
use masam_nn::SeededVarMap;

const LABELS: usize = 3;

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

fn randn(rng: &SeededVarMap, shape: &[usize], stdev: f64) -> Tensor {
    rng.sample(
        &shape.into(),
        Init::Randn { mean: 0.0, stdev },
        DType::F32,
        &Device::Cpu,
    )
    .unwrap()
}

/// FacT of `cfg` for the tiny ViT, with V set to N(0, 0.1²) (a point where no gradient is zero
/// by construction).
fn fact_with_v(cfg: &FactConfig, seed: u64) -> (SeededVarMap, Fact) {
    let vit = VitConfig::tiny();
    let params = SeededVarMap::new(seed);
    params
        .insert(
            "FacTv.weight",
            &randn(&params, &[vit.hidden_size, cfg.rank], 0.1),
        )
        .unwrap();
    let fact = Fact::new(
        cfg,
        vit.hidden_size,
        vit.num_hidden_layers,
        params.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    (params, fact)
}

fn checkpoint() -> HashMap<String, Tensor> {
    random_weights(&VitConfig::tiny(), LABELS, 0).unwrap()
}

fn base_vb(tensors: &HashMap<String, Tensor>) -> VarBuilder<'static> {
    VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu)
}

fn images(n: usize, seed: u64) -> (Tensor, Tensor) {
    let rng = SeededVarMap::new(seed);
    let x = randn(&rng, &[n, 3, 16, 16], 1.0);
    let y = x.mean(3).unwrap().mean(2).unwrap().argmax(1).unwrap();
    (x, y)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn backend_serves_base_plus_delta_weight_exactly() {
    let tensors = checkpoint();
    // Every projection adapted, with a non-trivial scale.
    let cfg = FactConfig::petl_vit_tt()
        .with_rank(4)
        .with_scale(0.7)
        .with_mlp_ratio(2);
    let (_p, fact) = fact_with_v(&cfg, 1);
    let backend = FactBackend::new(base_vb(&tensors), &fact, ProjectionMap::hf_vit());
    let vb = backend.var_builder();
    let names = [
        ("attention.attention.query", Projection::Q),
        ("attention.attention.key", Projection::K),
        ("attention.attention.value", Projection::V),
        ("attention.output.dense", Projection::Proj),
        ("intermediate.dense", Projection::Fc1),
        ("output.dense", Projection::Fc2),
    ];
    for block in 0..2 {
        for (name, p) in names {
            let path = format!("vit.encoder.layer.{block}.{name}.weight");
            let w = &tensors[&path];
            let served = vb.get(w.dims(), &path).unwrap();
            let inc = fact.increment(block, p).unwrap();
            let expected = (w + inc.delta_weight().unwrap()).unwrap();
            assert_eq!(max_abs_diff(&served, &expected), 0.0, "{path}");
            assert!(max_abs_diff(&served, w) > 1e-3, "{path}: no increment");
        }
    }
    // Everything else unchanged.
    for path in [
        "vit.encoder.layer.0.attention.attention.query.bias",
        "vit.layernorm.weight",
        "classifier.weight",
    ] {
        let w = &tensors[path];
        assert_eq!(max_abs_diff(&vb.get(w.dims(), path).unwrap(), w), 0.0);
    }
    backend.check_coverage().unwrap();

    // Gradients reach the factors in training mode, and nothing in merged mode.
    let q = "vit.encoder.layer.1.attention.attention.query.weight";
    let loss = vb
        .get((32, 32), q)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let g = loss.backward().unwrap();
    assert!(g.get(fact.factors().u()).is_some());
    let merged = backend.merged();
    assert_eq!(merged.mode(), ServeMode::Merged);
    let m = merged.var_builder().get((32, 32), q).unwrap();
    assert_eq!(max_abs_diff(&m, &vb.get((32, 32), q).unwrap()), 0.0);
    let g = m.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(fact.factors().u()).is_none());

    // A fused qkv (DINOv2 layout): q rows [0, C), v rows [2C, 3C), k untouched.
    let qkv_fact = fact_with_v(&FactConfig::ma_sam().with_rank(4), 2).1;
    let w = randn(&SeededVarMap::new(3), &[96, 32], 0.2);
    let dino = HashMap::from([("blocks.1.attn.qkv.weight".to_string(), w.clone())]);
    let served = FactBackend::new(base_vb(&dino), &qkv_fact, ProjectionMap::dinov2())
        .var_builder()
        .get((96, 32), "blocks.1.attn.qkv.weight")
        .unwrap();
    let expected = (&w
        + qkv_fact
            .qkv(1)
            .unwrap()
            .unwrap()
            .delta_weight(96, DType::F32)
            .unwrap())
    .unwrap();
    assert_eq!(max_abs_diff(&served, &expected), 0.0);
    assert_eq!(
        max_abs_diff(
            &served.narrow(0, 32, 32).unwrap(),
            &w.narrow(0, 32, 32).unwrap()
        ),
        0.0
    );
    // merge_tensors writes the same merged checkpoint.
    let merged = merge_tensors(&dino, &qkv_fact, &ProjectionMap::dinov2()).unwrap();
    assert_eq!(
        max_abs_diff(&merged["blocks.1.attn.qkv.weight"], &expected),
        0.0
    );
}

#[test]
fn backend_reports_unserved_projections_and_bad_blocks() {
    let tensors = checkpoint();
    let (_p, fact) = fact_with_v(&FactConfig::ma_sam().with_rank(4), 1);
    // A DINOv2 map on a Hugging Face ViT matches nothing: FacT would silently do nothing.
    let backend = FactBackend::new(base_vb(&tensors), &fact, ProjectionMap::dinov2());
    vit::Model::new(
        &stock_config(&VitConfig::tiny()),
        LABELS,
        backend.var_builder(),
    )
    .unwrap();
    match backend.check_coverage() {
        Err(FactError::Unserved(missing)) => assert_eq!(missing.len(), 4, "{missing:?}"),
        other => panic!("expected Unserved, got {other:?}"),
    }
    // A checkpoint deeper than FacT: a typed error for the block past the end.
    let backend = FactBackend::new(base_vb(&tensors), &fact, ProjectionMap::hf_vit());
    let w = Tensor::zeros((32, 32), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        backend.adapt("vit.encoder.layer.5.attention.attention.query.weight", &w),
        Err(FactError::BlockOutOfRange { block: 5, depth: 2 })
    ));
    let narrow = Tensor::zeros((32, 16), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        backend.adapt(
            "vit.encoder.layer.0.attention.attention.query.weight",
            &narrow
        ),
        Err(FactError::ShapeMismatch { .. })
    ));
}

#[test]
fn twin_computes_the_stock_forward() {
    let cfg = VitConfig::tiny();
    let tensors = checkpoint();
    let (x, _) = images(3, 9);
    let stock = vit::Model::new(&stock_config(&cfg), LABELS, base_vb(&tensors)).unwrap();
    let twin = Vit::new(&cfg, LABELS, base_vb(&tensors)).unwrap();
    let (a, b) = (stock.forward(&x).unwrap(), twin.forward(&x).unwrap());
    let scale: f32 = a.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    assert!(scale > 0.1, "degenerate logits");
    let d = max_abs_diff(&a, &b);
    assert!(d < 1e-5, "logits differ by {d}");
    // The encoder (public in candle-transformers) agrees token by token too.
    let c = stock_config(&cfg);
    let vb = base_vb(&tensors).pp("vit");
    let emb = vit::Embeddings::new(&c, false, vb.pp("embeddings")).unwrap();
    let enc = vit::Encoder::new(&c, vb.pp("encoder")).unwrap();
    let tokens = emb.forward(&x, None, false).unwrap();
    assert!(max_abs_diff(&tokens, &twin.embed(&x).unwrap()) < 1e-5);
    use candle_core::Module;
    let d = max_abs_diff(
        &enc.forward(&tokens).unwrap(),
        &twin.encode(&tokens).unwrap(),
    );
    assert!(d < 1e-5, "encoder outputs differ by {d}");
}

#[test]
fn gradcheck_finds_the_stock_models_dropped_gradients_and_passes_the_twin() {
    let cfg = VitConfig::tiny();
    let tensors = checkpoint();
    let (_p, fact) = fact_with_v(&FactConfig::ma_sam().with_rank(4), 1);
    let backend = FactBackend::new(base_vb(&tensors), &fact, ProjectionMap::hf_vit());
    let (x, y) = images(2, 4);
    let gc = GradCheckConfig::for_dtype(DType::F32).with_entries(3);
    let stock_cfg = stock_config(&cfg);
    let stock = check_factors(&fact, &gc, || {
        let m = vit::Model::new(&stock_cfg, LABELS, backend.var_builder())?;
        candle_nn::loss::cross_entropy(&m.forward(&x)?, &y)
    })
    .unwrap();
    backend.check_coverage().unwrap();
    // softmax_last_dim has no backward: the q cores get nothing. The fused LayerNorms cut the
    // other paths: U, V and the v cores get a gradient, but not the right one.
    assert_eq!(
        stock.with_verdict(Verdict::Missing),
        ["blocks.0.q_FacTs.weight", "blocks.1.q_FacTs.weight"],
        "{stock}"
    );
    for name in ["FacTu.weight", "FacTv.weight", "blocks.0.v_FacTs.weight"] {
        assert_eq!(stock.get(name).unwrap().verdict, Verdict::Wrong, "{stock}");
    }
    assert!(!stock.passed());

    let twin = check_factors(&fact, &gc, || {
        let m = Vit::new(&cfg, LABELS, backend.var_builder())?;
        candle_nn::loss::cross_entropy(&m.forward(&x)?, &y)
    })
    .unwrap();
    assert!(twin.passed(), "{twin}");
    assert!(
        twin.tensors.iter().all(|t| t.verdict == Verdict::Ok),
        "{twin}"
    );
    // Both checks saw the same loss: same weights, same function.
    assert!((stock.loss - twin.loss).abs() < 1e-5);
}

#[test]
fn merged_stock_model_gives_the_twins_logits() {
    let cfg = VitConfig::tiny();
    let tensors = checkpoint();
    let (_p, fact) = fact_with_v(&FactConfig::ma_sam().with_rank(4), 6);
    let backend = FactBackend::new(base_vb(&tensors), &fact, ProjectionMap::hf_vit());
    let (x, _) = images(3, 5);
    let twin = Vit::new(&cfg, LABELS, backend.var_builder())
        .unwrap()
        .forward(&x)
        .unwrap();
    let plain = Vit::new(&cfg, LABELS, base_vb(&tensors))
        .unwrap()
        .forward(&x)
        .unwrap();
    assert!(max_abs_diff(&twin, &plain) > 1e-3, "FacT changed nothing");
    let stock_cfg = stock_config(&cfg);
    let merged = vit::Model::new(&stock_cfg, LABELS, backend.merged().var_builder())
        .unwrap()
        .forward(&x)
        .unwrap();
    let d = max_abs_diff(&twin, &merged);
    assert!(d < 1e-5, "merged backend: logits differ by {d}");
    // A merged checkpoint loads into the stock model with a plain VarBuilder.
    let file = merge_tensors(&tensors, &fact, &ProjectionMap::hf_vit()).unwrap();
    let from_file = vit::Model::new(&stock_cfg, LABELS, base_vb(&file))
        .unwrap()
        .forward(&x)
        .unwrap();
    let d = max_abs_diff(&twin, &from_file);
    assert!(d < 1e-5, "merged checkpoint: logits differ by {d}");
}

#[test]
fn training_through_the_twin_lowers_the_loss_with_checked_gradients() {
    let dev = Device::Cpu;
    let cfg = VitConfig::tiny();
    let tensors = checkpoint();
    // FacT's own initialisation: V = 0.
    let params = SeededVarMap::new(11);
    let fact = Fact::new(
        &FactConfig::ma_sam().with_rank(4),
        cfg.hidden_size,
        cfg.num_hidden_layers,
        params.var_builder(DType::F32, &dev),
    )
    .unwrap();
    let head = SeededVarMap::new(12);
    let backend = FactBackend::new(base_vb(&tensors), &fact, ProjectionMap::hf_vit())
        .with_trainable("classifier", head.var_builder(DType::F32, &dev));
    let (x, y) = images(8, 13);
    let build = || Vit::new(&cfg, LABELS, backend.var_builder());
    build().unwrap();
    let mut vars = params.vars().all_vars();
    vars.extend(head.vars().all_vars());
    assert_eq!(
        vars.len(),
        2 + 2 * 2 + 2,
        "U, V, 4 cores, head weight and bias"
    );
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: 1e-2,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut losses = Vec::new();
    for _ in 0..8 {
        let loss =
            candle_nn::loss::cross_entropy(&build().unwrap().forward(&x).unwrap(), &y).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        opt.backward_step(&loss).unwrap();
    }
    assert!(
        losses[7] < 0.7 * losses[0],
        "loss did not go down: {losses:?}"
    );
    // V moved off zero, so every factor has a gradient; check it, head included.
    let mut checked = fact.parameters();
    for (n, v) in head.named_vars() {
        checked.push((n, v.as_tensor().clone()));
    }
    let (xh, yh) = images(2, 14);
    let report = check_gradients(
        &checked,
        &GradCheckConfig::for_dtype(DType::F32).with_entries(3),
        || candle_nn::loss::cross_entropy(&build()?.forward(&xh)?, &yh),
    )
    .unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(
        report.with_verdict(Verdict::Ok).len(),
        checked.len(),
        "{report}"
    );
    // The stock model built from the merged backend (trained head included) agrees.
    let twin = build().unwrap().forward(&x).unwrap();
    let stock = vit::Model::new(&stock_config(&cfg), LABELS, backend.merged().var_builder())
        .unwrap()
        .forward(&x)
        .unwrap();
    assert!(max_abs_diff(&twin, &stock) < 1e-5);
}
