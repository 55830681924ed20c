//! The full `Sam` against the reference fixtures: plain SAM (no adapters) on the converted
//! encoder weights plus the fixture decoder reproduces `plain_outputs.safetensors`.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use masam_nn::SeededVarMap;
use masam_sam::mask_decoder::MaskSelection;
use masam_sam::sam::resize_bilinear;
use masam_sam::{
    Error, ForwardContext, ImageEncoderConfig, MaskDecoderConfig, Prompt, PromptEncoderConfig, Sam,
    SamConfig,
};
use masam_testkit::{assert_close, load_reference_tiny};

/// The converted frozen encoder plus the fixture prompt encoder and mask decoder.
fn tiny_sam() -> Sam {
    let mut weights = load_reference_tiny("converted_encoder.safetensors");
    for (k, v) in load_reference_tiny("masam_adapter.safetensors") {
        if k.starts_with("prompt_encoder.") || k.starts_with("mask_decoder.") {
            weights.insert(k, v);
        }
    }
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    Sam::new(&SamConfig::tiny(), vb).unwrap()
}

#[test]
fn full_sam_reproduces_plain_outputs() {
    let sam = tiny_sam();
    let plain = load_reference_tiny("plain_outputs.safetensors");
    let out = sam
        .forward(&plain["images"], &Prompt::None, &ForwardContext::eval_2d())
        .unwrap();
    assert_close("sam masks", &out.masks, &plain["masks"], 1e-4);
    assert_close(
        "sam iou_predictions",
        &out.iou_predictions,
        &plain["iou_predictions"],
        1e-4,
    );
    // At the native size post-processing is the identity: masks are the decoder logits.
    assert_close(
        "low_res_logits == masks",
        &out.low_res_logits,
        &out.masks,
        0.0,
    );
    let emb = sam
        .image_encoder
        .forward(
            &sam.preprocess(&plain["images"]).unwrap(),
            &ForwardContext::eval_2d(),
        )
        .unwrap();
    assert_close(
        "sam image_embeddings",
        &emb,
        &plain["image_embeddings"],
        1e-4,
    );
}

#[test]
fn box_and_point_prompts_run_per_image() {
    let sam = tiny_sam();
    let plain = load_reference_tiny("plain_outputs.safetensors");
    let ctx = ForwardContext::eval_2d();
    let boxes = Prompt::Boxes(plain["boxes"].clone());
    let out = sam.forward(&plain["images"], &boxes, &ctx).unwrap();
    assert_eq!(out.masks.dims(), &[2, 4, 64, 64]);
    // Same as decoding the reference embeddings with the same boxes.
    let (m, _) = sam
        .decode(&plain["image_embeddings"], &boxes, MaskSelection::All)
        .unwrap();
    assert_close(
        "box-prompted masks vs decode(reference embeddings)",
        &out.masks,
        &m,
        1e-4,
    );
    // Official SAM: one image, several prompts, one output per prompt.
    let one = plain["images"].narrow(0, 0, 1).unwrap();
    let out1 = sam.forward(&one, &boxes, &ctx).unwrap();
    assert_eq!(out1.masks.dims(), &[2, 4, 64, 64]);
    assert_close(
        "one image, box 0",
        &out1.masks.get(0).unwrap(),
        &out.masks.get(0).unwrap(),
        1e-4,
    );
    let points = Prompt::Points {
        coords: plain["points_coords"].clone(),
        labels: plain["points_labels"].clone(),
    };
    let out = sam
        .forward_select(&plain["images"], &points, &ctx, MaskSelection::Multimask)
        .unwrap();
    assert_eq!(out.masks.dims(), &[2, 3, 64, 64]);
    assert_eq!(out.iou_predictions.dims(), &[2, 3]);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let sam = tiny_sam();
    let dev = Device::Cpu;
    let ctx = ForwardContext::eval_2d();
    let too_big = Tensor::zeros((1, 3, 80, 64), DType::F32, &dev).unwrap();
    assert!(matches!(
        sam.forward(&too_big, &Prompt::None, &ctx),
        Err(Error::InputShape { .. })
    ));
    let grey = Tensor::zeros((1, 1, 64, 64), DType::F32, &dev).unwrap();
    assert!(matches!(
        sam.forward(&grey, &Prompt::None, &ctx),
        Err(Error::InputShape { .. })
    ));
    let images = Tensor::zeros((3, 3, 64, 64), DType::F32, &dev).unwrap();
    let boxes = Prompt::Boxes(Tensor::zeros((2, 4), DType::F32, &dev).unwrap());
    assert!(matches!(
        sam.forward(&images, &boxes, &ctx),
        Err(Error::InputShape { .. })
    ));
    let mut cfg = SamConfig::tiny();
    cfg.prompt.embed_dim = 32;
    assert!(matches!(cfg.validate(), Err(Error::Config(_))));
    let mut cfg = SamConfig::tiny();
    cfg.pixel_std = [1.0, 0.0, 1.0];
    assert!(matches!(cfg.validate(), Err(Error::Config(_))));
}

#[test]
fn presets_are_consistent() {
    for (name, cfg) in [
        ("vit_b", SamConfig::vit_b()),
        ("vit_l", SamConfig::vit_l()),
        ("vit_h", SamConfig::vit_h()),
        (
            "masam vit_h 512",
            SamConfig::masam(ImageEncoderConfig::vit_h(), 512, 12),
        ),
        ("default", SamConfig::default()),
        ("tiny", SamConfig::tiny()),
    ] {
        cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let sam = SamConfig::vit_b();
    assert_eq!(sam.prompt, PromptEncoderConfig::sam());
    assert_eq!(sam.decoder, MaskDecoderConfig::sam());
    assert_eq!(sam.decoder.upscale_factor(), 4);
    let masam = SamConfig::masam(ImageEncoderConfig::vit_b(), 512, 12);
    assert_eq!(masam.decoder.upscaling_channels, vec![64, 32, 16, 8]);
    assert_eq!((masam.pixel_mean, masam.pixel_std), ([0.0; 3], [1.0; 3]));
}

#[test]
fn sam_style_decoder_is_postprocessed_to_the_input_size() {
    // A SAM-layout model (2 upscaling stages, 4× the token grid) at the tiny size: the 16×16
    // logits are resized to 64 px, cropped to the unpadded input and returned at its size.
    let cfg = SamConfig {
        decoder: MaskDecoderConfig {
            num_multimask_outputs: 3,
            upscaling_channels: vec![16, 8],
            ..MaskDecoderConfig::tiny()
        },
        pixel_mean: [0.5, 0.4, 0.3],
        pixel_std: [0.2, 0.25, 0.3],
        ..SamConfig::tiny()
    };
    let params = SeededVarMap::new(3);
    let sam = Sam::new(&cfg, params.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let images = Tensor::rand(0f32, 1., (2, 3, 48, 64), &Device::Cpu).unwrap();
    let out = sam
        .forward_select(
            &images,
            &Prompt::None,
            &ForwardContext::eval_2d(),
            MaskSelection::Multimask,
        )
        .unwrap();
    assert_eq!(out.low_res_logits.dims(), &[2, 3, 16, 16]);
    assert_eq!(out.masks.dims(), &[2, 3, 48, 64]);
    let expect = resize_bilinear(&out.low_res_logits, 64, 64)
        .unwrap()
        .narrow(2, 0, 48)
        .unwrap();
    assert_close("postprocess = resize + crop", &out.masks, &expect, 0.0);
    // Preprocessing: normalised, then zero padding at the bottom.
    let x = sam.preprocess(&images).unwrap();
    assert_eq!(x.dims(), &[2, 3, 64, 64]);
    let pad: f32 = x
        .narrow(2, 48, 16)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(pad, 0.0);
    let v: f32 = x
        .get(0)
        .unwrap()
        .get(1)
        .unwrap()
        .get(0)
        .unwrap()
        .get(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    let raw: f32 = images
        .get(0)
        .unwrap()
        .get(1)
        .unwrap()
        .get(0)
        .unwrap()
        .get(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((v - (raw - 0.4) / 0.25).abs() < 1e-6);
}

#[test]
fn resize_bilinear_matches_candle_and_has_a_backward() {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1., (2, 3, 5, 7), &dev).unwrap();
    for (oh, ow) in [(20, 28), (10, 3), (5, 7), (13, 9)] {
        let ours = resize_bilinear(&x, oh, ow).unwrap();
        let candle = x.upsample_bilinear2d(oh, ow, false).unwrap();
        assert_close(&format!("resize to {oh}x{ow}"), &ours, &candle, 1e-5);
    }
    let v = candle_core::Var::from_tensor(&x).unwrap();
    let y = resize_bilinear(v.as_tensor(), 20, 28).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let gx = g.get(v.as_tensor()).expect("resize records a backward");
    // Every output pixel distributes weight 1 over its inputs: the gradient sums to the count.
    let total: f32 = gx.sum_all().unwrap().to_scalar().unwrap();
    assert!((total - (2 * 3 * 20 * 28) as f32).abs() < 1e-2, "{total}");
}
