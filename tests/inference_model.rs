//! The inference model (`MaSam::to_inference`): plain tensors, FacT folded into the frozen
//! weights, no graph recorded, same outputs as the training model in eval mode.

use masam_adapter::candle::{DType, Device, Tensor};
use masam_adapter::{Batch, Finetune, MaSam, MaSamConfig, Mode, Prompt, Trainer, TrainerConfig};

fn images(seed: usize) -> Tensor {
    let n = 2 * 5 * 3 * 64 * 64;
    let v: Vec<f32> = (0..n)
        .map(|i| (((i * 37 + seed * 11) % 101) as f32) / 101.0)
        .collect();
    Tensor::from_vec(v, (2, 5, 3, 64, 64), &Device::Cpu).unwrap()
}

/// Gives every FacT factor non-zero values (fresh FacT increments are zero, and merging a zero
/// increment would prove nothing).
fn perturb_fact(model: &MaSam) {
    let mut changed = 0;
    for (name, var) in model.trainable_vars() {
        if name.starts_with("fact.") {
            let noise = var.as_tensor().randn_like(0.0, 0.05).unwrap();
            var.set(&noise).unwrap();
            changed += 1;
        }
    }
    assert!(changed > 0, "the model has no FacT factors");
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    let s = b.abs().unwrap().max_all().unwrap();
    d.to_scalar::<f32>().unwrap() / s.to_scalar::<f32>().unwrap().max(1e-6)
}

fn check_same_outputs(cfg: &MaSamConfig) {
    let model = MaSam::random(cfg, 7, &Device::Cpu).unwrap();
    if cfg.fact.is_some() {
        perturb_fact(&model);
    }
    let fast = model.to_inference().unwrap();
    assert!(fast.is_inference() && !model.is_inference());
    let x = images(1);
    let slow = model.forward(&x, &Prompt::None, Mode::Eval).unwrap();
    let out = fast.forward(&x, &Prompt::None, Mode::Eval).unwrap();
    assert!(slow.masks.track_op(), "the training model records a graph");
    assert!(
        !out.masks.track_op(),
        "the inference model recorded a graph"
    );
    assert!(!out.iou_predictions.track_op());
    let d = max_rel_diff(&out.masks, &slow.masks);
    assert!(
        d < 1e-4,
        "masks differ by {d} (relative to the largest logit)"
    );
    let d = max_rel_diff(&out.iou_predictions, &slow.iou_predictions);
    assert!(d < 1e-4, "IoU predictions differ by {d}");
}

#[test]
fn parameter_efficient_model_with_merged_fact_matches() {
    check_same_outputs(&MaSamConfig::tiny());
}

#[test]
fn fully_fine_tuned_model_matches() {
    let mut cfg = MaSamConfig::tiny();
    cfg.finetune = Finetune::Full;
    check_same_outputs(&cfg);
}

#[test]
fn fact_is_really_merged() {
    // with FacT perturbed, the merged inference model must differ from one that drops FacT
    let cfg = MaSamConfig::tiny();
    let model = MaSam::random(&cfg, 7, &Device::Cpu).unwrap();
    let before = model.to_inference().unwrap();
    perturb_fact(&model);
    let after = model.to_inference().unwrap();
    let x = images(2);
    let a = before.segment(&x, Mode::Eval).unwrap();
    let b = after.segment(&x, Mode::Eval).unwrap();
    assert!(max_rel_diff(&a, &b) > 1e-3, "merging FacT changed nothing");
    // and the inference model is a snapshot: changing the trainable model does not move it
    perturb_fact(&model);
    let again = after.segment(&x, Mode::Eval).unwrap();
    assert_eq!(max_rel_diff(&again, &b), 0.0);
}

#[test]
fn inference_model_cannot_be_trained_or_saved() {
    let model = MaSam::random(&MaSamConfig::tiny(), 0, &Device::Cpu).unwrap();
    let fast = model.to_inference().unwrap();
    let err = Trainer::new(&fast, TrainerConfig::default())
        .err()
        .expect("training an inference model must fail");
    assert!(err.to_string().contains("inference model"), "{err}");
    let path = std::env::temp_dir().join(format!("masam-inf-{}.safetensors", std::process::id()));
    let err = fast.save_trainable(&path).unwrap_err();
    assert!(err.to_string().contains("inference model"), "{err}");
    assert!(!path.exists());
    // the model it came from still trains
    let mut trainer = Trainer::new(&model, TrainerConfig::default()).unwrap();
    let labels = Tensor::zeros((10, 64, 64), DType::I64, &Device::Cpu).unwrap();
    let s = trainer.step(&[Batch::new(images(3), labels)]).unwrap();
    assert!(s.loss.is_finite());
}

#[test]
fn weights_with_nan_are_refused() {
    let model = MaSam::random(&MaSamConfig::tiny(), 0, &Device::Cpu).unwrap();
    let dir = std::env::temp_dir().join(format!("masam-nanw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    model.save_trainable(&path).unwrap();
    // poison one tensor of the file
    let mut tensors = masam_adapter::candle::safetensors::load(&path, &Device::Cpu).unwrap();
    let name = tensors
        .keys()
        .find(|k| k.contains("mask_decoder"))
        .unwrap()
        .clone();
    let t = &tensors[&name];
    let nan = Tensor::full(f32::NAN, t.dims(), &Device::Cpu).unwrap();
    tensors.insert(name.clone(), nan);
    masam_adapter::candle::safetensors::save(&tensors, &path).unwrap();
    let fresh = MaSam::random(&MaSamConfig::tiny(), 1, &Device::Cpu).unwrap();
    let before = fresh.segment(&images(4), Mode::Eval).unwrap();
    let err = fresh.load_trainable(&path).unwrap_err().to_string();
    assert!(err.contains("NaN") && err.contains(&name), "{err}");
    // nothing was loaded
    let after = fresh.segment(&images(4), Mode::Eval).unwrap();
    assert_eq!(max_rel_diff(&after, &before), 0.0);
    std::fs::remove_dir_all(&dir).ok();
}
