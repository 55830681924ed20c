//! The fused CPU Dice+CE op against the composite (candle-ops) implementation: values, gradients,
//! determinism across rayon pool sizes, and errors.

use candle_core::{DType, Device, Tensor, Var};
use masam_testkit::{compare, max_abs};
use masam_train::{DiceCeLoss, DiceCeLossConfig, DiceCeOutput, TrainError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random logits (N, K, spatial...) and labels (N, spatial...) with about `ignored` of the pixels
/// set to `ignore` (labels in `dtype`).
fn case(dims: &[usize], ignored: f64, ignore: i64, dtype: DType, seed: u64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = dims[1];
    let n_logits: usize = dims.iter().product();
    let logits: Vec<f32> = (0..n_logits)
        .map(|_| rng.random_range(-4.0f32..4.0))
        .collect();
    let label_dims: Vec<usize> = dims
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 1)
        .map(|(_, &d)| d)
        .collect();
    let n_labels: usize = label_dims.iter().product();
    let labels: Vec<i64> = (0..n_labels)
        .map(|_| {
            if rng.random_bool(ignored) {
                ignore
            } else {
                // Skew towards low classes so that some classes are rare.
                let a = rng.random_range(0..k as i64);
                let b = rng.random_range(0..k as i64);
                a.min(b)
            }
        })
        .collect();
    let dev = Device::Cpu;
    let logits = Tensor::from_vec(logits, dims, &dev).unwrap();
    let labels = Tensor::from_vec(labels, label_dims, &dev)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    (logits, labels)
}

/// Loss values and the gradient of `pick(out)` w.r.t. the logits.
fn run(
    loss: &DiceCeLoss,
    fused: bool,
    logits: &Tensor,
    labels: &Tensor,
    pick: fn(&DiceCeOutput) -> &Tensor,
) -> ([f32; 3], Tensor) {
    let var = Var::from_tensor(logits).unwrap();
    let out = if fused {
        loss.forward_fused(var.as_tensor(), labels)
    } else {
        loss.forward_composite(var.as_tensor(), labels)
    }
    .unwrap();
    let vals = [
        out.total.to_scalar::<f32>().unwrap(),
        out.ce.to_scalar::<f32>().unwrap(),
        out.dice.to_scalar::<f32>().unwrap(),
    ];
    let grads = pick(&out).backward().unwrap();
    let g = grads.get(var.as_tensor()).expect("logits gradient").clone();
    assert_eq!(g.dims(), logits.dims());
    (vals, g)
}

#[test]
fn fused_matches_composite() {
    // (dims, label dtype, ignore index, config)
    let default = DiceCeLossConfig::default();
    let cases: Vec<(Vec<usize>, DType, i64, DiceCeLossConfig)> = vec![
        (vec![2, 2, 8, 8], DType::I64, -100, default),
        (vec![3, 5, 17, 13], DType::U32, 7, default),
        // More than one chunk per batch item (2048 pixels), with a remainder.
        (vec![2, 4, 50, 50], DType::I64, -100, default),
        (vec![2, 13, 48, 48], DType::U8, 255, default),
        // Volumes (N, K, D, H, W).
        (vec![2, 3, 4, 9, 10], DType::I64, -100, default),
        (vec![1, 6, 3, 40, 30], DType::U8, 255, default),
        // Other weights and smoothing; an ignore index that is a class.
        (
            vec![2, 4, 20, 20],
            DType::I64,
            1,
            default
                .with_ce_weight(0.7)
                .with_dice_weight(1.3)
                .with_smooth(0.5),
        ),
    ];
    for (i, (dims, dtype, ignore, cfg)) in cases.into_iter().enumerate() {
        let cfg = cfg.with_ignore_index(ignore);
        let loss = DiceCeLoss::new(cfg).unwrap();
        let (logits, labels) = case(&dims, 0.15, ignore, dtype, 100 + i as u64);
        let (vf, gf) = run(&loss, true, &logits, &labels, |o| &o.total);
        let (vc, gc) = run(&loss, false, &logits, &labels, |o| &o.total);
        for (j, name) in ["total", "ce", "dice"].iter().enumerate() {
            let e = ((vf[j] - vc[j]) as f64).abs() / (vc[j] as f64).abs();
            println!(
                "case {i} {dims:?}: {name} {} vs {} (rel {e:.2e})",
                vf[j], vc[j]
            );
            assert!(
                e <= 1e-6,
                "case {i}: {name} fused {} composite {}",
                vf[j],
                vc[j]
            );
        }
        let eg = compare(&gf, &gc).rel_with_eps(1e-12);
        println!("case {i} {dims:?}: grad rel err {eg:.2e}");
        assert!(eg <= 1e-5, "case {i}: gradient rel err {eg}");
        // Ignored pixels get exactly no gradient.
        let ignored = labels
            .to_dtype(DType::I64)
            .unwrap()
            .eq(ignore)
            .unwrap()
            .unsqueeze(1)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let leak = max_abs(&gf.broadcast_mul(&ignored).unwrap());
        assert_eq!(leak, 0.0, "case {i}: gradient at ignored pixels");
    }
}

#[test]
fn ce_and_dice_outputs_have_their_own_gradients() {
    let loss = DiceCeLoss::new(DiceCeLossConfig::default()).unwrap();
    let (logits, labels) = case(&[2, 5, 30, 30], 0.1, -100, DType::I64, 7);
    for (name, pick) in [
        (
            "ce",
            (|o: &DiceCeOutput| &o.ce) as fn(&DiceCeOutput) -> &Tensor,
        ),
        ("dice", |o: &DiceCeOutput| &o.dice),
    ] {
        let (_, gf) = run(&loss, true, &logits, &labels, pick);
        let (_, gc) = run(&loss, false, &logits, &labels, pick);
        let e = compare(&gf, &gc).rel_with_eps(1e-12);
        println!("{name}: grad rel err {e:.2e}");
        assert!(e <= 1e-5, "{name}: gradient rel err {e}");
    }
}

#[test]
fn non_contiguous_logits_match() {
    let loss = DiceCeLoss::new(DiceCeLossConfig::default()).unwrap();
    let (logits, labels) = case(&[2, 4, 12, 10], 0.2, -100, DType::I64, 3);
    // The same values stored as (N, H, W, K) and viewed as (N, K, H, W).
    let nhwc = logits.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
    let var = Var::from_tensor(&nhwc).unwrap();
    let view = var.as_tensor().permute((0, 3, 1, 2)).unwrap();
    assert!(!view.is_contiguous());
    let out = loss.forward(&view, &labels).unwrap();
    let g = out.total.backward().unwrap();
    let g = g
        .get(var.as_tensor())
        .unwrap()
        .permute((0, 3, 1, 2))
        .unwrap();
    let (vc, gc) = run(&loss, false, &logits, &labels, |o| &o.total);
    let t: f32 = out.total.to_scalar().unwrap();
    assert!(((t - vc[0]) / vc[0]).abs() <= 1e-6, "{t} vs {}", vc[0]);
    assert!(compare(&g, &gc).rel_with_eps(1e-12) <= 1e-5);
}

#[test]
fn deterministic_across_thread_counts() {
    let loss = DiceCeLoss::new(DiceCeLossConfig::default()).unwrap();
    // 4900 pixels per item: three chunks each, nine in all.
    let (logits, labels) = case(&[3, 6, 70, 70], 0.1, -100, DType::I64, 11);
    let in_pool = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (v, g) = run(&loss, true, &logits, &labels, |o| &o.total);
            let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
            (
                v.map(f32::to_bits),
                g.into_iter().map(f32::to_bits).collect::<Vec<_>>(),
            )
        })
    };
    let (v1, g1) = in_pool(1);
    let (v3, g3) = in_pool(3);
    assert_eq!(v1, v3, "loss values differ between 1 and 3 threads");
    assert!(g1 == g3, "gradients differ between 1 and 3 threads");
    assert!(g1.iter().any(|&b| f32::from_bits(b) != 0.0));
}

#[test]
fn errors_match_the_composite_path() {
    let loss = DiceCeLoss::new(DiceCeLossConfig::default()).unwrap();
    let dev = Device::Cpu;
    let logits = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev).unwrap();
    // Every pixel ignored.
    let labels = Tensor::full(-100i64, (2, 4, 4), &dev).unwrap();
    for r in [
        loss.forward(&logits, &labels),
        loss.forward_fused(&logits, &labels),
        loss.forward_composite(&logits, &labels),
    ] {
        assert!(
            matches!(r, Err(TrainError::AllIgnored { ignore_index: -100 })),
            "{r:?}"
        );
    }
    // Two labels out of range.
    let bad = Tensor::new(&[[0i64, 3, -1, -100]], &dev).unwrap();
    let lg = Tensor::zeros((1, 3, 4), DType::F32, &dev).unwrap();
    for r in [
        loss.forward_fused(&lg, &bad),
        loss.forward_composite(&lg, &bad),
    ] {
        assert!(
            matches!(
                r,
                Err(TrainError::LabelOutOfRange {
                    count: 2,
                    num_classes: 3,
                    ..
                })
            ),
            "{r:?}"
        );
    }
    // Float labels, integer logits, wrong shapes.
    let fl = Tensor::zeros((1, 4), DType::F32, &dev).unwrap();
    assert!(matches!(
        loss.forward_fused(&lg, &fl),
        Err(TrainError::UnsupportedDType { .. })
    ));
    let il = Tensor::zeros((1, 3, 4), DType::I64, &dev).unwrap();
    let zl = Tensor::zeros((1, 4), DType::I64, &dev).unwrap();
    assert!(matches!(
        loss.forward_fused(&il, &zl),
        Err(TrainError::UnsupportedDType { .. })
    ));
    let wrong = Tensor::zeros((1, 5), DType::I64, &dev).unwrap();
    assert!(matches!(
        loss.forward_fused(&lg, &wrong),
        Err(TrainError::ShapeMismatch { .. })
    ));
}
