//! Prompt encoder and mask decoder against the reference fixtures (computed by the authors'
//! PyTorch code, `tests/fixtures/reference-tiny`).
//!
//! Which weights produced the decoder outputs: the `prompt_encoder.*` and `mask_decoder.*`
//! tensors of `sam_base.safetensors` and `masam_adapter.safetensors` are bit-identical (145
//! tensors, 4 upscaling stages, 4 mask tokens), so the fixtures' "plain SAM on the converted
//! weights" and the MA-SAM outputs use the same decoder; the tests load `masam_adapter`.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use masam_nn::SeededVarMap;
use masam_sam::{
    MaskDecoder, MaskDecoderConfig, MaskSelection, PromptEncoder, PromptEncoderConfig,
};
use masam_testkit::{assert_close, load_reference_tiny, rel_err};

fn weights_vb() -> VarBuilder<'static> {
    VarBuilder::from_tensors(
        load_reference_tiny("masam_adapter.safetensors"),
        DType::F32,
        &Device::Cpu,
    )
}

fn modules(vb: &VarBuilder) -> (PromptEncoder, MaskDecoder) {
    let pe = PromptEncoder::new(&PromptEncoderConfig::tiny(), vb.pp("prompt_encoder")).unwrap();
    let dec = MaskDecoder::new(&MaskDecoderConfig::tiny(), vb.pp("mask_decoder")).unwrap();
    (pe, dec)
}

#[test]
fn dense_pe_matches_reference() {
    let (pe, _) = modules(&weights_vb());
    let out = load_reference_tiny("outputs.safetensors");
    let dense_pe = pe.get_dense_pe().unwrap();
    assert_close("dense_pe", &dense_pe, &out["dense_pe"], 1e-4);
}

#[test]
fn prompt_free_decoder_matches_plain_outputs() {
    let (pe, dec) = modules(&weights_vb());
    let plain = load_reference_tiny("plain_outputs.safetensors");
    let (sparse, dense) = pe.forward(None, None, None).unwrap();
    assert_eq!(sparse.dims(), &[1, 0, 64]);
    assert_eq!(dense.dims(), &[1, 64, 4, 4]);
    let (masks, iou) = dec
        .forward(
            &plain["image_embeddings"],
            &pe.get_dense_pe().unwrap(),
            &sparse,
            &dense,
            MaskSelection::All,
        )
        .unwrap();
    assert_close("plain masks", &masks, &plain["masks"], 1e-4);
    assert_close(
        "plain iou_predictions",
        &iou,
        &plain["iou_predictions"],
        1e-4,
    );

    // SAM's multimask selection: channels 1.. and channel 0 of the same outputs.
    let (m3, i3) = dec
        .forward(
            &plain["image_embeddings"],
            &pe.get_dense_pe().unwrap(),
            &sparse,
            &dense,
            MaskSelection::Multimask,
        )
        .unwrap();
    assert_close(
        "multimask masks",
        &m3,
        &plain["masks"].narrow(1, 1, 3).unwrap(),
        1e-4,
    );
    assert_close(
        "multimask iou",
        &i3,
        &plain["iou_predictions"].narrow(1, 1, 3).unwrap(),
        1e-4,
    );
    let (m1, _) = dec
        .forward(
            &plain["image_embeddings"],
            &pe.get_dense_pe().unwrap(),
            &sparse,
            &dense,
            MaskSelection::Single,
        )
        .unwrap();
    assert_close(
        "single mask",
        &m1,
        &plain["masks"].narrow(1, 0, 1).unwrap(),
        1e-4,
    );
}

#[test]
fn prompt_free_decoder_matches_masam_outputs() {
    // The MA-SAM forward of `outputs.safetensors`: 10 images (B·D), tokens of batch 1 broadcast.
    let (pe, dec) = modules(&weights_vb());
    let out = load_reference_tiny("outputs.safetensors");
    let (sparse, dense) = pe.forward(None, None, None).unwrap();
    let (masks, iou) = dec
        .forward(
            &out["image_embeddings"],
            &pe.get_dense_pe().unwrap(),
            &sparse,
            &dense,
            MaskSelection::All,
        )
        .unwrap();
    assert_close("masam low_res_logits", &masks, &out["low_res_logits"], 1e-4);
    assert_close("masam iou_predictions", &iou, &out["iou_predictions"], 1e-4);
}

#[test]
fn point_and_box_prompts_match_reference() {
    let (pe, _) = modules(&weights_vb());
    let plain = load_reference_tiny("plain_outputs.safetensors");
    let coords = &plain["points_coords"];
    let labels = &plain["points_labels"];
    let (sparse, dense) = pe.forward(Some((coords, labels)), None, None).unwrap();
    assert_close("points_sparse", &sparse, &plain["points_sparse"], 1e-4);
    assert_eq!(dense.dims(), &[2, 64, 4, 4]);
    let (sparse, _) = pe.forward(None, Some(&plain["boxes"]), None).unwrap();
    assert_close("boxes_sparse", &sparse, &plain["boxes_sparse"], 1e-4);
    // Points together with boxes: no padding point.
    let (both, _) = pe
        .forward(Some((coords, labels)), Some(&plain["boxes"]), None)
        .unwrap();
    assert_eq!(both.dims(), &[2, 4, 64]);
    assert_close(
        "points+boxes (boxes part)",
        &both.narrow(1, 2, 2).unwrap(),
        &plain["boxes_sparse"],
        1e-4,
    );
    assert_close(
        "points+boxes (points part)",
        &both.narrow(1, 0, 2).unwrap(),
        &plain["points_sparse"].narrow(1, 0, 2).unwrap(),
        1e-4,
    );
}

#[test]
fn box_prompted_decoder_matches_bbox_outputs() {
    // As in the authors' box-prompt variant: one box per slice, tokens per image, image
    // embeddings not repeated.
    let (pe, dec) = modules(&weights_vb());
    let out = load_reference_tiny("outputs.safetensors");
    let bbox = load_reference_tiny("bbox_outputs.safetensors");
    let boxes = bbox["boxes"].reshape((10, 4)).unwrap();
    let (sparse, dense) = pe.forward(None, Some(&boxes), None).unwrap();
    assert_eq!(sparse.dims(), &[10, 2, 64]);
    let (masks, iou) = dec
        .forward(
            &out["image_embeddings"],
            &pe.get_dense_pe().unwrap(),
            &sparse,
            &dense,
            MaskSelection::All,
        )
        .unwrap();
    assert_close("bbox low_res_logits", &masks, &bbox["low_res_logits"], 1e-4);
    assert_close("bbox iou_predictions", &iou, &bbox["iou_predictions"], 1e-4);
}

#[test]
fn mask_prompt_path_runs() {
    let (pe, dec) = modules(&weights_vb());
    let plain = load_reference_tiny("plain_outputs.safetensors");
    let mask = Tensor::randn(0f32, 1., (2, 1, 16, 16), &Device::Cpu).unwrap();
    let (sparse, dense) = pe.forward(None, None, Some(&mask)).unwrap();
    assert_eq!(sparse.dims(), &[2, 0, 64]);
    assert_eq!(dense.dims(), &[2, 64, 4, 4]);
    let (masks, _) = dec
        .forward(
            &plain["image_embeddings"],
            &pe.get_dense_pe().unwrap(),
            &sparse,
            &dense,
            MaskSelection::All,
        )
        .unwrap();
    assert_eq!(masks.dims(), &[2, 4, 64, 64]);
    // A wrong mask size is a typed error.
    let bad = Tensor::zeros((2, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        pe.forward(None, None, Some(&bad)),
        Err(masam_sam::Error::InputShape { .. })
    ));
}

#[test]
fn bad_inputs_are_typed_errors() {
    let (pe, dec) = modules(&weights_vb());
    let dev = Device::Cpu;
    let bad_boxes = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    assert!(matches!(
        pe.forward(None, Some(&bad_boxes), None),
        Err(masam_sam::Error::InputShape { .. })
    ));
    let coords = Tensor::zeros((2, 2, 2), DType::F32, &dev).unwrap();
    let labels = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    assert!(matches!(
        pe.forward(Some((&coords, &labels)), None, None),
        Err(masam_sam::Error::InputShape { .. })
    ));
    let emb = Tensor::zeros((3, 32, 4, 4), DType::F32, &dev).unwrap();
    let (sparse, dense) = pe.forward(None, None, None).unwrap();
    let dpe = pe.get_dense_pe().unwrap();
    assert!(matches!(
        dec.forward(&emb, &dpe, &sparse, &dense, MaskSelection::All),
        Err(masam_sam::Error::InputShape { .. })
    ));
    // 3 images but 2 per-image prompts: neither pairs nor broadcasts.
    let emb = Tensor::zeros((3, 64, 4, 4), DType::F32, &dev).unwrap();
    let sparse2 = Tensor::zeros((2, 2, 64), DType::F32, &dev).unwrap();
    assert!(matches!(
        dec.forward(&emb, &dpe, &sparse2, &dense, MaskSelection::All),
        Err(masam_sam::Error::InputShape { .. })
    ));
    let mut cfg = MaskDecoderConfig::tiny();
    cfg.transformer.num_heads = 5;
    assert!(matches!(
        MaskDecoder::new(&cfg, weights_vb().pp("mask_decoder")),
        Err(masam_sam::Error::Config(_))
    ));
}

/// Builds the modules on `Var`s initialised from the fixture weights and returns the gradient
/// norm of every variable after a backward through the decoder.
fn grad_norms(with_boxes: bool) -> HashMap<String, f32> {
    let params = SeededVarMap::new(0);
    for (k, v) in load_reference_tiny("masam_adapter.safetensors") {
        if k.starts_with("prompt_encoder.") || k.starts_with("mask_decoder.") {
            params.insert(&k, &v).unwrap();
        }
    }
    let n_before = params.named_vars().len();
    let vb = params.var_builder(DType::F32, &Device::Cpu);
    let (pe, dec) = modules(&vb);
    assert_eq!(
        params.named_vars().len(),
        n_before,
        "every parameter comes from the checkpoint"
    );
    let plain = load_reference_tiny("plain_outputs.safetensors");
    let boxes = plain["boxes"].clone();
    let (sparse, dense) = pe
        .forward(None, with_boxes.then_some(&boxes), None)
        .unwrap();
    let (masks, iou) = dec
        .forward(
            &plain["image_embeddings"],
            &pe.get_dense_pe().unwrap(),
            &sparse,
            &dense,
            MaskSelection::All,
        )
        .unwrap();
    // A fixed, non-symmetric weighting so that no gradient cancels by construction.
    let n = masks.elem_count();
    let w: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.618).sin()).collect();
    let w = Tensor::from_vec(w, masks.dims(), &Device::Cpu).unwrap();
    let loss =
        ((masks * w).unwrap().sum_all().unwrap() + iou.sqr().unwrap().sum_all().unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    params
        .named_vars()
        .into_iter()
        .map(|(k, v)| {
            let g = grads
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
            (k, g)
        })
        .collect()
}

fn expect_on_path(k: &str, with_boxes: bool) -> bool {
    k.starts_with("mask_decoder.")
        || k == "prompt_encoder.no_mask_embed.weight"
        || (with_boxes
            && (k == "prompt_encoder.point_embeddings.2.weight"
                || k == "prompt_encoder.point_embeddings.3.weight"))
}

#[test]
fn every_parameter_on_the_path_gets_a_gradient() {
    for with_boxes in [false, true] {
        let norms = grad_norms(with_boxes);
        assert_eq!(norms.len(), 145);
        let mut on_path = 0;
        for (k, g) in &norms {
            if expect_on_path(k, with_boxes) {
                on_path += 1;
                assert!(
                    g.is_finite() && *g > 0.0,
                    "boxes={with_boxes}: {k} has no gradient"
                );
            } else {
                assert_eq!(
                    *g, 0.0,
                    "boxes={with_boxes}: {k} is off the path but got a gradient"
                );
            }
        }
        println!("boxes={with_boxes}: {on_path} parameters with a non-zero gradient");
    }
}

/// The reference loss (`0.2·CE(ignore −100) + 0.8·Dice`, fixtures README) on (N, T, H, W)
/// logits, written with plain differentiable ops for this test.
fn reference_loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    let t = logits.dim(1).unwrap();
    let max = logits.max_keepdim(1).unwrap().detach();
    let shifted = logits.broadcast_sub(&max).unwrap();
    let sum = shifted.exp().unwrap().sum_keepdim(1).unwrap();
    let log_p = shifted.broadcast_sub(&sum.log().unwrap()).unwrap();
    let p = log_p.exp().unwrap();
    let labels = labels.unsqueeze(1).unwrap();
    let valid = labels.ne(-100f64).unwrap().to_dtype(DType::F32).unwrap();
    let onehot: Vec<Tensor> = (0..t)
        .map(|c| labels.eq(c as f64).unwrap().to_dtype(DType::F32).unwrap())
        .collect();
    let onehot = Tensor::cat(&onehot, 1).unwrap();
    let ce = (onehot
        .broadcast_mul(&log_p)
        .unwrap()
        .sum_all()
        .unwrap()
        .neg()
        .unwrap()
        / valid.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64)
        .unwrap();
    let pm = p.broadcast_mul(&valid).unwrap();
    let sums = |x: &Tensor| x.sum(0).unwrap().sum(1).unwrap().sum(1).unwrap(); // (T,)
    let inter = sums(&(&pm * &onehot).unwrap());
    let y = sums(&onehot.sqr().unwrap().broadcast_mul(&valid).unwrap());
    let z = sums(&pm.sqr().unwrap());
    let dice = ((inter * 2.0).unwrap() + 1e-5)
        .unwrap()
        .div(&((z + y).unwrap() + 1e-5).unwrap())
        .unwrap();
    let dice = (1.0 - dice).unwrap().mean_all().unwrap();
    ((ce * 0.2).unwrap() + (dice * 0.8).unwrap()).unwrap()
}

#[test]
fn decoder_gradients_match_reference() {
    // Given the reference image embeddings, the gradients of the reference loss w.r.t. the
    // decoder and prompt-encoder parameters depend on the decoder alone.
    let params = SeededVarMap::new(0);
    for (k, v) in load_reference_tiny("masam_adapter.safetensors") {
        if k.starts_with("prompt_encoder.") || k.starts_with("mask_decoder.") {
            params.insert(&k, &v).unwrap();
        }
    }
    let vb = params.var_builder(DType::F32, &Device::Cpu);
    let (pe, dec) = modules(&vb);
    let out = load_reference_tiny("outputs.safetensors");
    let labels = &load_reference_tiny("inputs.safetensors")["labels"];
    let (sparse, dense) = pe.forward(None, None, None).unwrap();
    let (masks, _) = dec
        .forward(
            &out["image_embeddings"],
            &pe.get_dense_pe().unwrap(),
            &sparse,
            &dense,
            MaskSelection::All,
        )
        .unwrap();
    let loss = reference_loss(&masks, labels);
    assert_close("loss", &loss.reshape(1).unwrap(), &out["loss"], 1e-4);
    let grads = loss.backward().unwrap();
    let reference = load_reference_tiny("grads.safetensors");
    let vars = params.named_vars();
    let mut worst = 0f64;
    let mut n = 0;
    for (k, g_ref) in &reference {
        if !(k.starts_with("prompt_encoder.") || k.starts_with("mask_decoder.")) {
            continue;
        }
        let g = grads
            .get(vars[k].as_tensor())
            .unwrap_or_else(|| panic!("{k}: no gradient"));
        let e = rel_err(g, g_ref);
        assert!(e <= 1e-3, "{k}: gradient relative error {e:.3e}");
        worst = worst.max(e);
        n += 1;
    }
    assert_eq!(n, 123);
    println!("decoder gradients: {n} tensors, worst relative error {worst:.3e}");
}
