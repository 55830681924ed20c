//! The three mask decoders (`sam`, `progressive`, `fusion`): output shapes, gradients for every
//! trainable parameter (FacT, adapters, decoder), and a training step each.

use candle_core::{DType, Device, Tensor};
use masam_adapter::sam::mask_decoder::DecoderKind;
use masam_adapter::trainer::{Trainer, TrainerConfig};
use masam_adapter::{Batch, LrSchedule, MaSam, MaSamConfig, Mode, Prompt};

fn config(kind: DecoderKind) -> MaSamConfig {
    let mut cfg = MaSamConfig::tiny().with_decoder(kind);
    cfg.fact = cfg.fact.map(|f| f.with_dropout(0.0));
    cfg
}

#[test]
fn every_decoder_has_full_size_outputs_and_trains_all_its_parameters() {
    let dev = Device::Cpu;
    let x = Tensor::rand(0f32, 1., (1, 5, 3, 64, 64), &dev).unwrap();
    let mut n_params = vec![];
    for (kind, low_res) in [
        (DecoderKind::Sam, 16),
        (DecoderKind::Progressive, 64),
        (DecoderKind::Fusion, 64),
    ] {
        let model = MaSam::random(&config(kind), 0, &dev).unwrap();
        // fresh FacT increments are zero (V·S·U with a zero factor), which zeroes the other
        // factors' gradients: give every factor a value so that every trainable tensor is checked
        for (name, var) in model.trainable_vars() {
            if name.starts_with("fact.") {
                var.set(&var.as_tensor().randn_like(0.0, 0.05).unwrap())
                    .unwrap();
            }
        }
        let out = model.forward(&x, &Prompt::None, Mode::Train).unwrap();
        assert_eq!(out.masks.dims(), &[5, 4, 64, 64], "{kind:?}");
        assert_eq!(
            out.low_res_logits.dims(),
            &[5, 4, low_res, low_res],
            "{kind:?}"
        );
        let loss = (out.masks.sqr().unwrap().mean_all().unwrap()
            + out.iou_predictions.sqr().unwrap().mean_all().unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        let vars = model.trainable_vars();
        // every trainable tensor outside the prompt encoder (whose point/box embeddings see no
        // prompt here) receives a gradient: FacT, the 3D adapters and the decoder
        for (name, v) in vars
            .iter()
            .filter(|(k, _)| !k.starts_with("prompt_encoder."))
        {
            let n = grads
                .get(v.as_tensor())
                .map(|g| {
                    g.abs()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                })
                .unwrap_or(0.0);
            assert!(n > 0.0, "{kind:?}: {name} has no gradient");
        }
        let decoder: Vec<_> = vars
            .iter()
            .filter(|(k, _)| k.starts_with("mask_decoder."))
            .collect();
        for (name, v) in &decoder {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{kind:?} {name}"));
            let n = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n > 0.0, "{kind:?}: {name} has a zero gradient");
        }
        let fusion = decoder
            .iter()
            .filter(|(k, _)| k.contains("fusion_skips"))
            .count();
        assert_eq!(fusion > 0, kind == DecoderKind::Fusion, "{kind:?}");
        n_params.push(decoder.len());

        // one training step moves the loss
        let cfg = TrainerConfig {
            steps: 1,
            batch: 1,
            accumulation: 1,
            schedule: LrSchedule::Constant { lr: 1e-3 },
            ..TrainerConfig::default()
        };
        let mut t = Trainer::new(&model, cfg).unwrap();
        let labels = Tensor::ones((5, 64, 64), DType::I64, &dev).unwrap();
        assert!(t
            .step(&[Batch::new(x.clone(), labels)])
            .unwrap()
            .loss
            .is_finite());
    }
    // sam < progressive < fusion in parameter tensors
    assert!(
        n_params[0] < n_params[1] && n_params[1] < n_params[2],
        "{n_params:?}"
    );
}

#[test]
fn fusion_without_features_is_a_typed_error() {
    let model = MaSam::random(&config(DecoderKind::Fusion), 0, &Device::Cpu).unwrap();
    let emb = Tensor::zeros((1, 64, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let err = model
        .sam
        .decode(&emb, &Prompt::None, masam_adapter::sam::MaskSelection::All)
        .unwrap_err();
    assert!(err.to_string().contains("encoder feature"), "{err}");
    let mut bad = MaSamConfig::tiny().with_decoder(DecoderKind::Fusion);
    bad.sam.decoder.fusion_encoder_dim = 32;
    assert!(bad.validate().is_err());
}
