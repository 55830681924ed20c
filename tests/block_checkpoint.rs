//! Activation checkpointing of the encoder blocks (`TrainerConfig::checkpoint_blocks`,
//! `block_checkpoint::CheckpointedPass`) against the plain forward and backward pass: the same
//! loss, the same gradient for every trainable tensor (FacT dropout on, FacT factors non-zero,
//! every decoder, box prompts, full fine-tuning), the same weights after AdamW steps with
//! accumulation and with two data-parallel ranks, bf16, and f16 loss scaling.

use std::collections::{BTreeMap, BTreeSet};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use masam_adapter::block_checkpoint::CheckpointedPass;
use masam_adapter::sam::mask_decoder::DecoderKind;
use masam_adapter::train::{DiceCeLoss, DiceCeLossConfig};
use masam_adapter::trainer::{Trainer, TrainerConfig};
use masam_adapter::{Batch, LrSchedule, MaSam, MaSamConfig, Mode, Precision, Prompt};

/// FacT dropout probability of these tests (the paper's 0.1 drops too few of the tiny model's
/// rank-4 entries to be sure that a wrong mask would show).
const DROPOUT: f32 = 0.3;
/// Largest relative error `max|a − b| / max|b|` between a gradient with checkpointing and
/// without, in f32: the rebuilt blocks compute the same values, only the order in which the
/// gradients of shared tensors (FacT's U and V, a block output read twice) are summed differs.
/// 8e-8 to 6e-7 is measured (the fusion decoder and full fine-tuning the most).
const GRAD_TOL: f64 = 1e-5;
/// Largest relative difference of the loss (the forward passes are the same operations).
const LOSS_TOL: f64 = 1e-6;
/// Learning rate of the AdamW runs.
const LR: f64 = 1e-3;
/// Largest difference between the weights of two 3-step AdamW runs, as a fraction of the
/// largest distance 3 AdamW steps move a weight (about 3·lr). Not relative to each tensor's own
/// update: AdamW divides by the gradient's size, so a weight whose gradient is zero but for
/// rounding (the attention's key biases: softmax ignores a shift of its scores) moves by about
/// lr in a direction that rounding decides. About 1.2e-4 is measured.
const WEIGHT_TOL: f64 = 1e-3;
/// bf16: the loss tolerance of the bf16-versus-f32 test (`tests/mixed_precision.rs`).
const BF16_LOSS_TOL: f64 = 2e-3;
/// bf16: the largest relative L2 distance between the two ways' gradients, the logit tolerance
/// of `tests/mixed_precision.rs` (bf16 keeps 8 significant bits).
const BF16_GRAD_TOL: f64 = 0.03;

fn config(kind: DecoderKind) -> MaSamConfig {
    let mut cfg = MaSamConfig::tiny().with_decoder(kind);
    cfg.fact = cfg.fact.map(|f| f.with_dropout(DROPOUT));
    cfg
}

/// The tiny model with every FacT factor non-zero (fresh increments are zero, which zeroes the
/// other factors' gradients), deterministic values (candle's CPU generator cannot be seeded).
fn model(cfg: &MaSamConfig, precision: Precision) -> MaSam {
    let m = MaSam::random(cfg, 3, &Device::Cpu).unwrap();
    for (name, var) in m.trainable_vars() {
        if name.starts_with("fact.") {
            let v: Vec<f32> = (0..var.elem_count())
                .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.2)
                .collect();
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    m.with_precision(precision).unwrap()
}

/// A stack whose labels are four column bands (shifted by `k`) that the image shows.
fn batch(k: usize) -> Batch {
    let dev = Device::Cpu;
    let class = |i: usize| ((i % 64) / 16 + k) % 4;
    let img: Vec<f32> = (0..5 * 3 * 64 * 64)
        .map(|i| {
            let p = i % (64 * 64);
            0.2 * class(p) as f32 + 0.2 * (((i * 31 + k * 7) % 97) as f32) / 97.0
        })
        .collect();
    let lab: Vec<i64> = (0..5 * 64 * 64)
        .map(|i| class(i % (64 * 64)) as i64)
        .collect();
    Batch::new(
        Tensor::from_vec(img, (1, 5, 3, 64, 64), &dev).unwrap(),
        Tensor::from_vec(lab, (5, 64, 64), &dev).unwrap(),
    )
}

/// The same box on every slice, (1, 5, 4).
fn boxes() -> Tensor {
    let b: Vec<f32> = (0..5).flat_map(|_| [8f32, 4., 50., 60.]).collect();
    Tensor::from_vec(b, (1, 5, 4), &Device::Cpu).unwrap()
}

/// Dice + CE, plus a small term on the IoU predictions so that the IoU head has a gradient
/// too.
fn objective(out: &masam_adapter::SamOutput, labels: &Tensor) -> Tensor {
    let loss = DiceCeLoss::new(DiceCeLossConfig::default()).unwrap();
    let l = loss.forward(&out.masks, labels).unwrap();
    let iou = (out.iou_predictions.sqr().unwrap().mean_all().unwrap() * 0.1).unwrap();
    (l.total + iou).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn max_abs(t: &Tensor) -> f64 {
    scalar(
        &t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap(),
    )
}

/// `max|a − b| / max|b|`.
fn rel_max(a: &Tensor, b: &Tensor) -> f64 {
    max_abs(&(a - b).unwrap()) / max_abs(b).max(1e-30)
}

/// `‖a − b‖ / ‖b‖`.
fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let d = scalar(&(a - b).unwrap().sqr().unwrap().sum_all().unwrap());
    let n = scalar(&b.sqr().unwrap().sum_all().unwrap());
    (d / n.max(1e-60)).sqrt()
}

/// Loss, gradients by name and the dropout counter after the pass, with or without
/// checkpointing, from the start of step 0 of seed 11.
fn gradients(
    m: &MaSam,
    b: &Batch,
    prompt: &Prompt,
    checkpoint: bool,
) -> (f64, BTreeMap<String, Tensor>, u64) {
    let rng = m.fact.as_ref().unwrap().dropout_rng();
    rng.reseed(11);
    rng.begin_step(0);
    let (loss, grads): (f64, GradStore) = if checkpoint {
        let (pass, out) = CheckpointedPass::forward(m, &b.images, prompt, Mode::Train).unwrap();
        let loss = objective(&out, &b.labels);
        (scalar(&loss), pass.backward(loss).unwrap())
    } else {
        let out = m.forward(&b.images, prompt, Mode::Train).unwrap();
        let loss = objective(&out, &b.labels);
        (scalar(&loss), loss.backward().unwrap())
    };
    let by_name = m
        .trainable_vars()
        .into_iter()
        .filter_map(|(k, v)| grads.get(v.as_tensor()).map(|g| (k, g.clone())))
        .collect();
    (loss, by_name, rng.draws())
}

/// Compares both ways on `m`; returns the largest relative gradient error.
fn check_gradients(what: &str, m: &MaSam, prompt: &Prompt) -> f64 {
    let b = batch(0);
    let (l0, g0, d0) = gradients(m, &b, prompt, false);
    let (l1, g1, d1) = gradients(m, &b, prompt, true);
    assert!(d0 > 0, "{what}: FacT dropout drew no mask");
    assert_eq!(d1, d0, "{what}: the dropout counter after the pass");
    let dl = (l1 - l0).abs() / l0.abs();
    assert!(dl <= LOSS_TOL, "{what}: loss {l1} against {l0}");
    let names0: BTreeSet<_> = g0.keys().collect();
    let names1: BTreeSet<_> = g1.keys().collect();
    assert_eq!(names1, names0, "{what}: the tensors with a gradient");
    // every trainable tensor outside the prompt encoder is trained, and in it the no-mask
    // embedding and, with boxes, the two box-corner embeddings
    let boxed = matches!(prompt, Prompt::Boxes(_));
    let used = |k: &str| {
        !k.starts_with("prompt_encoder.")
            || k.starts_with("prompt_encoder.no_mask_embed")
            || (boxed
                && (k.starts_with("prompt_encoder.point_embeddings.2")
                    || k.starts_with("prompt_encoder.point_embeddings.3")))
    };
    let mut worst: f64 = 0.0;
    for (k, _) in m.trainable_vars().iter().filter(|(k, _)| used(k)) {
        let (a, b) = match (g1.get(k), g0.get(k)) {
            (Some(a), Some(b)) => (a, b),
            _ => panic!("{what}: {k} has no gradient"),
        };
        assert!(max_abs(b) > 0.0, "{what}: {k} has a zero gradient");
        let e = rel_max(a, b);
        assert!(e <= GRAD_TOL, "{what}: {k}: relative error {e:e}");
        worst = worst.max(e);
    }
    eprintln!(
        "{what}: loss {l0} / {l1}, {} gradients, largest relative error {worst:.2e}",
        g0.len()
    );
    worst
}

#[test]
fn every_decoder_gets_the_same_loss_and_gradients_with_checkpointing() {
    for kind in [
        DecoderKind::Sam,
        DecoderKind::Progressive,
        DecoderKind::Fusion,
    ] {
        let m = model(&config(kind), Precision::F32);
        check_gradients(&format!("{kind:?}"), &m, &Prompt::None);
    }
}

#[test]
fn box_prompts_and_full_fine_tuning_get_the_same_gradients() {
    // box prompts: the prompt encoder's box-corner embeddings are trained too
    let m = model(&config(DecoderKind::Progressive), Precision::F32);
    let prompt = MaSam::boxes_prompt(&boxes()).unwrap();
    check_gradients("boxes", &m, &prompt);
    // the whole encoder trained (the phantom preset): the patch embedding, the position
    // embedding and every block's own weights get their gradients through the rebuilt blocks
    let mut cfg = config(DecoderKind::Fusion);
    cfg.finetune = masam_adapter::Finetune::Full;
    let m = model(&cfg, Precision::F32);
    assert!(m
        .trainable_vars()
        .contains_key("image_encoder.patch_embed.proj.weight"));
    check_gradients("full fine-tuning", &m, &Prompt::None);
}

#[test]
fn the_dropout_masks_matter_so_replaying_them_is_tested() {
    // the same pass at another step draws other masks and gives other gradients: equal
    // gradients above are not an accident of masks that change nothing
    let m = model(&config(DecoderKind::Progressive), Precision::F32);
    let b = batch(0);
    let (_, g0, _) = gradients(&m, &b, &Prompt::None, false);
    let rng = m.fact.as_ref().unwrap().dropout_rng();
    rng.begin_step(1);
    let out = m.forward(&b.images, &Prompt::None, Mode::Train).unwrap();
    let grads = objective(&out, &b.labels).backward().unwrap();
    let u = &m.trainable_vars()["fact.FacTu.weight"];
    let e = rel_max(grads.get(u.as_tensor()).unwrap(), &g0["fact.FacTu.weight"]);
    assert!(
        e > 100.0 * GRAD_TOL,
        "other masks change FacT's gradient by {e:e} only"
    );
}

fn trainer_cfg(checkpoint_blocks: bool, precision: Precision) -> TrainerConfig {
    TrainerConfig {
        steps: 3,
        batch: 1,
        accumulation: 2,
        schedule: LrSchedule::Constant { lr: LR },
        seed: 5,
        precision,
        checkpoint_blocks,
        ..TrainerConfig::default()
    }
}

/// Three AdamW steps of two accumulated micro-batches; returns the losses and the weights.
fn train(
    kind: DecoderKind,
    checkpoint_blocks: bool,
    precision: Precision,
) -> (Vec<f64>, BTreeMap<String, Tensor>, BTreeMap<String, Tensor>) {
    let m = model(&config(kind), precision);
    let start = m
        .trainable_vars()
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().copy().unwrap()))
        .collect();
    let mut t = Trainer::new(&m, trainer_cfg(checkpoint_blocks, precision)).unwrap();
    let mut losses = vec![];
    for s in 0..3 {
        let mut micro = vec![batch(s), batch(s + 1)];
        micro[1].boxes = Some(boxes());
        losses.push(t.step(&micro).unwrap().loss as f64);
    }
    let end = m
        .trainable_vars()
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().copy().unwrap()))
        .collect();
    (losses, start, end)
}

#[test]
fn adamw_steps_with_accumulation_give_the_same_weights() {
    let (l0, start, w0) = train(DecoderKind::Fusion, false, Precision::F32);
    let (l1, _, w1) = train(DecoderKind::Fusion, true, Precision::F32);
    for (a, b) in l1.iter().zip(&l0) {
        assert!(
            (a - b).abs() <= LOSS_TOL * b.abs(),
            "losses {l1:?} / {l0:?}"
        );
    }
    assert!(l0[2] < l0[0], "the runs learn: {l0:?}");
    let mut moved = 0;
    let mut worst: f64 = 0.0;
    for (k, b) in &w0 {
        let step = max_abs(&(b - &start[k]).unwrap());
        let d = max_abs(&(&w1[k] - b).unwrap());
        if step == 0.0 {
            assert_eq!(d, 0.0, "{k} moved with checkpointing only");
            continue;
        }
        moved += 1;
        let e = d / (3.0 * LR);
        assert!(
            e <= WEIGHT_TOL,
            "{k}: the weights differ by {d:e} ({e:.2e} of 3 steps), the update is {step:e}"
        );
        worst = worst.max(e);
    }
    assert!(moved > 40, "{moved} tensors trained");
    eprintln!(
        "3 AdamW steps: losses {l0:?} / {l1:?}; largest weight difference {worst:.2e} of 3·lr"
    );
}

#[test]
fn bf16_with_checkpointing_follows_bf16_without() {
    let m = model(&config(DecoderKind::Fusion), Precision::Bf16);
    let b = batch(0);
    let (l0, g0, d0) = gradients(&m, &b, &Prompt::None, false);
    let (l1, g1, d1) = gradients(&m, &b, &Prompt::None, true);
    assert_eq!(d1, d0);
    assert!((l1 - l0).abs() <= BF16_LOSS_TOL, "loss {l1} / {l0}");
    assert_eq!(g1.keys().collect::<Vec<_>>(), g0.keys().collect::<Vec<_>>());
    let mut worst: f64 = 0.0;
    for (k, a) in &g1 {
        assert_eq!(
            a.dtype(),
            DType::F32,
            "{k}: gradients of the f32 master weights"
        );
        let e = rel_l2(a, &g0[k]);
        assert!(e <= BF16_GRAD_TOL, "{k}: relative L2 distance {e:e}");
        worst = worst.max(e);
    }
    let (s0, _, _) = train(DecoderKind::Fusion, false, Precision::Bf16);
    let (s1, _, _) = train(DecoderKind::Fusion, true, Precision::Bf16);
    for (a, b) in s1.iter().zip(&s0) {
        assert!(
            (a - b).abs() <= BF16_LOSS_TOL,
            "bf16 losses {s1:?} / {s0:?}"
        );
    }
    eprintln!(
        "bf16: loss {l0} / {l1}, largest gradient distance {worst:.2e}; steps {s0:?} / {s1:?}"
    );
}

#[test]
fn f16_loss_scaling_skips_and_applies_the_same_steps() {
    let mut runs = vec![];
    for checkpoint_blocks in [false, true] {
        let m = model(&config(DecoderKind::Progressive), Precision::F16);
        let cfg = TrainerConfig {
            // 2⁶⁰ overflows f16 gradients at once; each back-off divides the scale by 2²⁴
            loss_scale: masam_adapter::LossScaleConfig {
                init_scale: 2f64.powi(60),
                backoff_factor: 2f64.powi(-24),
                ..masam_adapter::LossScaleConfig::default()
            },
            ..trainer_cfg(checkpoint_blocks, Precision::F16)
        };
        let mut t = Trainer::new(&m, cfg).unwrap();
        let mut log = vec![];
        for s in 0..4 {
            let loss = t.step(&[batch(s), batch(s + 1)]).unwrap().loss as f64;
            log.push((t.last_step_skipped(), t.loss_scale().unwrap(), loss));
        }
        runs.push(log);
    }
    let (plain, ckpt) = (&runs[0], &runs[1]);
    assert!(plain[0].0, "a 2^60 scale must overflow f16: {plain:?}");
    assert!(plain.iter().any(|r| !r.0), "no step applied: {plain:?}");
    for (a, b) in ckpt.iter().zip(plain) {
        assert_eq!(
            (a.0, a.1),
            (b.0, b.1),
            "skips and scales: {ckpt:?} / {plain:?}"
        );
        assert!((a.2 - b.2).abs() <= BF16_LOSS_TOL, "{ckpt:?} / {plain:?}");
    }
}

/// Two data-parallel ranks (threads) taking 2 steps, rank r on stack 2k + r at step k; returns
/// each rank's weights.
fn two_ranks(checkpoint_blocks: bool) -> Vec<BTreeMap<String, Tensor>> {
    use masam_adapter::dist::{buckets, Communicator, ThreadGroup};
    let handles: Vec<_> = ThreadGroup::new(2)
        .unwrap()
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                let r = c.rank();
                let m = model(&config(DecoderKind::Progressive), Precision::F32);
                let cfg = TrainerConfig {
                    accumulation: 1,
                    ..trainer_cfg(checkpoint_blocks, Precision::F32)
                };
                let mut t = Trainer::new(&m, cfg).unwrap();
                t.set_communicator(std::sync::Arc::new(c), buckets::DEFAULT_BUCKET_BYTES)
                    .unwrap();
                for k in 0..2 {
                    t.step(&[batch(2 * k + r)]).unwrap();
                }
                m.trainable_vars()
                    .into_iter()
                    .map(|(k, v)| (k, v.as_tensor().copy().unwrap()))
                    .collect::<BTreeMap<_, _>>()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn data_parallel_ranks_with_checkpointing_take_the_same_steps() {
    let plain = two_ranks(false);
    let ckpt = two_ranks(true);
    let start = model(&config(DecoderKind::Progressive), Precision::F32).trainable_vars();
    let mut moved = 0;
    for (k, b) in &plain[0] {
        // the ranks of a run agree bit for bit: the same averaged gradients
        assert_eq!(max_abs(&(&ckpt[1][k] - &ckpt[0][k]).unwrap()), 0.0, "{k}");
        let d = max_abs(&(&ckpt[0][k] - b).unwrap());
        assert!(
            d <= WEIGHT_TOL * 2.0 * LR,
            "{k}: the weights differ by {d:e}"
        );
        if max_abs(&(b - start[k].as_tensor()).unwrap()) > 0.0 {
            moved += 1;
        }
    }
    assert!(moved > 40, "{moved} tensors trained");
}
