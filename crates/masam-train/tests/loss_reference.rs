//! `DiceCeLoss` against the reference PyTorch fixture `loss.safetensors`
//! (logits (4,5,16,16), labels (4,16,16) with −100 pixels, loss, loss_ce, loss_dice, grad_logits).

use candle_core::{DType, Var};
use masam_testkit::{load_reference_tiny, rel_err};
use masam_train::losses::{log_softmax, soft_dice, SegTargets};
use masam_train::{DiceCeLoss, DiceCeLossConfig};

/// Both implementations against the fixture: `forward` (the fused CPU op on this device) and the
/// composite candle-ops path.
#[test]
fn loss_values_and_gradient_match_reference() -> masam_train::Result<()> {
    let f = load_reference_tiny("loss.safetensors");
    let labels = &f["labels"];
    assert!(
        labels.flatten_all()?.to_vec1::<i64>()?.contains(&-100),
        "fixture must exercise ignored pixels"
    );
    let loss = DiceCeLoss::new(DiceCeLossConfig::default())?;
    for path in ["forward (fused)", "composite"] {
        let logits = Var::from_tensor(&f["logits"])?;
        let out = if path == "composite" {
            loss.forward_composite(logits.as_tensor(), labels)?
        } else {
            loss.forward(logits.as_tensor(), labels)?
        };
        let e_total = rel_err(&out.total.reshape(1)?, &f["loss"]);
        let e_ce = rel_err(&out.ce.reshape(1)?, &f["loss_ce"]);
        let e_dice = rel_err(&out.dice.reshape(1)?, &f["loss_dice"]);
        let grads = out.total.backward()?;
        let g = grads.get(logits.as_tensor()).expect("logits gradient");
        let e_grad = rel_err(g, &f["grad_logits"]);
        println!(
            "{path}: rel err: loss {e_total:.3e}, ce {e_ce:.3e}, dice {e_dice:.3e}, grad_logits {e_grad:.3e}"
        );
        assert!(e_total <= 1e-5, "{path}: loss {e_total}");
        assert!(e_ce <= 1e-5, "{path}: ce {e_ce}");
        assert!(e_dice <= 1e-5, "{path}: dice {e_dice}");
        assert!(e_grad <= 1e-4, "{path}: grad {e_grad}");
    }
    Ok(())
}

/// The spec's pseudo-code suggests ignored pixels might stay in Dice's Σp² (`t[y==-100] = -100;
/// never happens`). The fixture decides: masking them is right, and not masking is far off.
#[test]
fn dice_masks_ignored_pixels_like_the_reference() -> masam_train::Result<()> {
    let f = load_reference_tiny("loss.safetensors");
    let (n, k, h, w) = f["logits"].dims4()?;
    let logits = f["logits"].reshape((n, k, h * w))?;
    let probs = log_softmax(&logits, 1)?.exp()?;
    let targets = SegTargets::new(&f["labels"], k, -100)?;
    let masked = soft_dice(&probs, &targets, 1e-5)?.reshape(1)?;
    let unmasked_targets = SegTargets {
        mask: targets.mask.ones_like()?,
        ..targets.clone()
    };
    let unmasked = soft_dice(&probs, &unmasked_targets, 1e-5)?.reshape(1)?;
    let e_masked = rel_err(&masked, &f["loss_dice"]);
    let e_unmasked = rel_err(&unmasked, &f["loss_dice"]);
    println!("dice rel err: masked {e_masked:.3e}, unmasked {e_unmasked:.3e}");
    assert!(e_masked <= 1e-5);
    assert!(e_unmasked > 1e-3);
    Ok(())
}

#[test]
fn half_precision_logits_are_computed_in_f32() -> masam_train::Result<()> {
    let f = load_reference_tiny("loss.safetensors");
    let loss = DiceCeLoss::new(DiceCeLossConfig::default())?;
    let logits16 = f["logits"].to_dtype(DType::BF16)?;
    let out = loss.forward(&logits16, &f["labels"])?;
    assert_eq!(out.total.dtype(), DType::F32);
    // bf16 rounding of the logits only (8 bits of mantissa).
    assert!(rel_err(&out.total.reshape(1)?, &f["loss"]) < 1e-2);
    Ok(())
}

#[test]
fn volumetric_logits_equal_flattened_slices() -> masam_train::Result<()> {
    // (N, K, D, H, W) gives the same loss as (N, K, D·H, W): sums run over every pixel.
    let f = load_reference_tiny("loss.safetensors");
    let logits = f["logits"].reshape((2, 5, 2, 16, 16))?;
    let labels = f["labels"].reshape((2, 2, 16, 16))?;
    let loss = DiceCeLoss::new(DiceCeLossConfig::default())?;
    let a = loss.forward(&logits, &labels)?.total.to_scalar::<f32>()?;
    let b = loss
        .forward(
            &logits.reshape((2, 5, 32, 16))?,
            &labels.reshape((2, 32, 16))?,
        )?
        .total
        .to_scalar::<f32>()?;
    assert_eq!(a, b);
    Ok(())
}

#[test]
fn weights_are_configurable() -> masam_train::Result<()> {
    let f = load_reference_tiny("loss.safetensors");
    let cfg = DiceCeLossConfig::default()
        .with_ce_weight(1.0)
        .with_dice_weight(0.0);
    let out = DiceCeLoss::new(cfg)?.forward(&f["logits"], &f["labels"])?;
    let total: f32 = out.total.to_scalar()?;
    let ce: f32 = out.ce.to_scalar()?;
    assert_eq!(total, ce);
    let cfg: DiceCeLossConfig = serde_json::from_str(r#"{"dice_weight": 0.5}"#).unwrap();
    assert_eq!(cfg.ce_weight, 0.2);
    assert_eq!(cfg.dice_weight, 0.5);
    Ok(())
}
