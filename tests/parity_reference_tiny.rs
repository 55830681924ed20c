//! Full-model parity with the reference fixtures (`tests/fixtures/reference-tiny`): every tensor of
//! `outputs.safetensors`, the loss, every gradient of `grads.safetensors`, the AdamW trajectory,
//! the box-prompted outputs, and checkpoint round trips.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use masam_adapter::checkpoint::reference_key;
use masam_adapter::MaSam;
use masam_app::reference_config::ReferenceConfig;
use masam_sam::{Prompt, SamCheckpoint};
use masam_train::{AdamW, AdamWConfig, DiceCeLoss, DiceCeLossConfig};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference-tiny")
        .join(name)
}

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name), &Device::Cpu).unwrap()
}

/// max|a−b| / (max|b| + 1e-6), the fixture README's measure.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    let d: f32 = (&a - &b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    let m: f32 = b
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    d / (m + 1e-6)
}

fn reference_model() -> (ReferenceConfig, MaSam) {
    let rc = ReferenceConfig::from_file(&fixture("config.json")).unwrap();
    let cfg = rc.model_config().unwrap();
    let sam = SamCheckpoint::load(fixture("sam_base.safetensors")).unwrap();
    let model = MaSam::from_sam_checkpoint(&cfg, &sam, 0, &Device::Cpu).unwrap();
    model
        .load_reference(fixture("masam_adapter.safetensors"))
        .unwrap();
    (rc, model)
}

fn loss_fn(rc: &ReferenceConfig) -> DiceCeLoss {
    DiceCeLoss::new(
        DiceCeLossConfig::default()
            .with_ce_weight(rc.loss.ce_weight)
            .with_dice_weight(rc.loss.dice_weight)
            .with_ignore_index(rc.loss.ignore_index),
    )
    .unwrap()
}

#[test]
fn forward_outputs_match_reference() {
    let (rc, model) = reference_model();
    let inputs = load("inputs.safetensors");
    let expect = load("outputs.safetensors");
    let images = &inputs["images"];

    let enc = model
        .encode_with_intermediates(images, masam_adapter::Mode::Eval)
        .unwrap();
    // the reference records the patch embedding before the absolute position is added
    let pos = model.sam.image_encoder.pos_embed.as_ref().unwrap();
    let patch = enc.patch_embed.broadcast_sub(pos).unwrap();
    let mut errs = vec![(
        "patch_embed".to_string(),
        rel_err(&patch, &expect["patch_embed"]),
    )];
    for (i, b) in enc.blocks.iter().enumerate() {
        errs.push((
            format!("block_{i}"),
            rel_err(b, &expect[&format!("block_{i}")]),
        ));
    }
    errs.push((
        "image_embeddings".into(),
        rel_err(&enc.embeddings, &expect["image_embeddings"]),
    ));
    let pe = model.sam.prompt_encoder.get_dense_pe().unwrap();
    errs.push(("dense_pe".into(), rel_err(&pe, &expect["dense_pe"])));

    let out = model
        .forward(images, &Prompt::None, masam_adapter::Mode::Eval)
        .unwrap();
    errs.push((
        "low_res_logits".into(),
        rel_err(&out.low_res_logits, &expect["low_res_logits"]),
    ));
    errs.push((
        "iou_predictions".into(),
        rel_err(&out.iou_predictions, &expect["iou_predictions"]),
    ));

    let loss = loss_fn(&rc).forward(&out.masks, &inputs["labels"]).unwrap();
    for (name, t) in [
        ("loss", &loss.total),
        ("loss_ce", &loss.ce),
        ("loss_dice", &loss.dice),
    ] {
        errs.push((name.into(), rel_err(&t.reshape(1).unwrap(), &expect[name])));
    }
    for (name, e) in &errs {
        eprintln!("{name}: {e:.3e}");
        assert!(*e < 1e-4, "{name}: relative error {e:.3e} exceeds 1e-4");
    }
}

#[test]
fn gradients_match_reference_and_reach_exactly_the_trainable_set() {
    let (rc, model) = reference_model();
    let inputs = load("inputs.safetensors");
    let expect = load("grads.safetensors");
    let out = model
        .forward(&inputs["images"], &Prompt::None, masam_adapter::Mode::Eval)
        .unwrap();
    let loss = loss_fn(&rc).forward(&out.masks, &inputs["labels"]).unwrap();
    let grads = loss.total.backward().unwrap();

    let mut nonzero = BTreeSet::new();
    let mut worst = (String::new(), 0f32);
    for (name, var) in model.trainable_vars() {
        let key = reference_key(&name).expect("every trainable parameter has a reference key");
        let g = grads.get(var.as_tensor());
        let norm = g
            .map(|g| {
                g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .unwrap_or(0.0);
        if norm > 0.0 {
            nonzero.insert(key.clone());
        }
        if let Some(e) = expect.get(&key) {
            let g = g.unwrap_or_else(|| panic!("no gradient for {key}"));
            let err = rel_err(g, e);
            if err > worst.1 {
                worst = (key.clone(), err);
            }
            assert!(err < 1e-3, "{key}: gradient relative error {err:.3e}");
        }
    }
    eprintln!("worst gradient error: {} {:.3e}", worst.0, worst.1);
    let expected: BTreeSet<String> = rc.trainable_keys.iter().cloned().collect();
    assert_eq!(
        nonzero, expected,
        "parameters with a non-zero gradient differ from the reference's trainable set"
    );
    let with_grads: BTreeSet<String> = expect.keys().cloned().collect();
    assert_eq!(with_grads, expected);
}

#[test]
fn adamw_trajectory_matches_reference() {
    let (rc, model) = reference_model();
    let inputs = load("inputs.safetensors");
    let expect: Vec<f32> = load("outputs.safetensors")["adamw_losses"]
        .to_vec1()
        .unwrap();
    let cfg = AdamWConfig::default()
        .with_lr(rc.adamw.lr)
        .with_betas(rc.adamw.betas[0], rc.adamw.betas[1])
        .with_eps(rc.adamw.eps)
        .with_weight_decay(rc.adamw.weight_decay);
    let before: HashMap<String, Tensor> = model
        .trainable_vars()
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().copy().unwrap()))
        .collect();
    let mut opt = AdamW::from_map(model.trainable_vars().into_iter().collect(), cfg).unwrap();
    let lf = loss_fn(&rc);
    let mut losses = vec![];
    for step in 0..=rc.adamw.steps {
        let out = model
            .forward(&inputs["images"], &Prompt::None, masam_adapter::Mode::Eval)
            .unwrap();
        let loss = lf.forward(&out.masks, &inputs["labels"]).unwrap();
        losses.push(loss.total.to_scalar::<f32>().unwrap());
        if step < rc.adamw.steps {
            opt.step(&loss.total.backward().unwrap()).unwrap();
        }
    }
    eprintln!("adamw losses {losses:?} vs {expect:?}");
    for (a, b) in losses.iter().zip(&expect) {
        assert!((a - b).abs() < 1e-3, "AdamW loss {a} vs reference {b}");
    }
    // parameters without a gradient (the reference's untrained ones) did not move
    let trainable: BTreeSet<String> = rc.trainable_keys.iter().cloned().collect();
    for (name, var) in model.trainable_vars() {
        let moved = rel_err(var.as_tensor(), &before[&name]) > 0.0;
        let key = reference_key(&name).unwrap();
        assert_eq!(moved, trainable.contains(&key), "{key}: moved = {moved}");
    }
}

#[test]
fn box_prompted_outputs_match_reference() {
    let (_, model) = reference_model();
    let inputs = load("inputs.safetensors");
    let expect = load("bbox_outputs.safetensors");
    let prompt = MaSam::boxes_prompt(&expect["boxes"]).unwrap();
    let out = model
        .forward(&inputs["images"], &prompt, masam_adapter::Mode::Eval)
        .unwrap();
    let e1 = rel_err(&out.low_res_logits, &expect["low_res_logits"]);
    let e2 = rel_err(&out.iou_predictions, &expect["iou_predictions"]);
    eprintln!("bbox logits {e1:.3e} iou {e2:.3e}");
    assert!(e1 < 1e-4 && e2 < 1e-4);
}

#[test]
fn reference_checkpoint_round_trips_and_pth_equals_safetensors() {
    let (_, model) = reference_model();
    let original = load("masam_adapter.safetensors");
    let saved = model.reference_tensors().unwrap();
    assert_eq!(saved.len(), original.len());
    for (k, t) in &original {
        assert_eq!(rel_err(&saved[k], t), 0.0, "{k} changed on the round trip");
    }
    // the .pth written by torch.save loads to the same tensors
    let rc = ReferenceConfig::from_file(&fixture("config.json")).unwrap();
    let cfg = rc.model_config().unwrap();
    let sam = SamCheckpoint::load(fixture("sam_base.pth")).unwrap();
    let from_pth = MaSam::from_sam_checkpoint(&cfg, &sam, 1, &Device::Cpu).unwrap();
    from_pth
        .load_reference(fixture("masam_adapter.pth"))
        .unwrap();
    for (k, t) in from_pth.reference_tensors().unwrap() {
        assert_eq!(
            rel_err(&t, &original[&k]),
            0.0,
            "{k}: .pth differs from .safetensors"
        );
    }
    // save in the reference format, reload into a fresh model: identical; our format too
    let dir = std::env::temp_dir().join(format!("masam-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    model.save_reference(dir.join("ref.safetensors")).unwrap();
    model.save_trainable(dir.join("ours.safetensors")).unwrap();
    let fresh = MaSam::from_sam_checkpoint(&cfg, &sam, 2, &Device::Cpu).unwrap();
    fresh.load_reference(dir.join("ref.safetensors")).unwrap();
    let fresh2 = MaSam::from_sam_checkpoint(&cfg, &sam, 3, &Device::Cpu).unwrap();
    fresh2.load_trainable(dir.join("ours.safetensors")).unwrap();
    for (k, t) in fresh
        .reference_tensors()
        .unwrap()
        .into_iter()
        .chain(fresh2.reference_tensors().unwrap())
    {
        assert_eq!(rel_err(&t, &original[&k]), 0.0, "{k} after save/load");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_checkpoints_give_typed_errors() {
    let (_, model) = reference_model();
    let dir = std::env::temp_dir().join(format!("masam-badckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut t = load("masam_adapter.safetensors");
    t.remove("q_FacTs_002");
    candle_core::safetensors::save(&t, dir.join("missing.safetensors")).unwrap();
    let e = model
        .load_reference(dir.join("missing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("q_FacTs_002"), "{e}");
    let mut t = load("masam_adapter.safetensors");
    t.insert(
        "q_FacTs_001".into(),
        Tensor::zeros((5, 5), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, dir.join("shape.safetensors")).unwrap();
    let e = model
        .load_reference(dir.join("shape.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("q_FacTs") && e.contains("[5, 5]"), "{e}");
    std::fs::write(dir.join("junk.pth"), b"not a checkpoint").unwrap();
    assert!(model.load_reference(dir.join("junk.pth")).is_err());
    std::fs::remove_dir_all(&dir).ok();
}
