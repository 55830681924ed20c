//! AdamW against a hand-computed PyTorch (`torch.optim.AdamW`, single-tensor) trajectory in f64,
//! and bit-exact resume through a checkpoint on disk.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Device, Tensor, Var};
use masam_testkit::{f32_bits, TempDir};
use masam_train::{AdamW, AdamWConfig, GradAccumulator, ParamGroup, RngState, TrainingState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const THETA0: [f64; 5] = [0.5, -1.2, 2.0, 0.0, 3.0];
const C: [f64; 5] = [1.0, 0.5, 2.0, 1.0, 0.25];
const D: [f64; 5] = [0.3, -0.1, 0.0, 0.0, -2.0];
const PHI0: [f64; 2] = [1.0, -0.3];
const LRS: [f64; 3] = [0.05, 0.1, 0.02];
const WD: f64 = 0.1;
const PHI_LR_SCALE: f64 = 0.5;
const EPS: f64 = 1e-8;
const B1: f64 = 0.9;
const B2: f64 = 0.999;

/// loss = Σ c·θ² + d·θ  +  Σ φ³  (+ Σ noise·θ when noise is given).
fn loss(theta: &Var, phi: &Var, noise: Option<&[f32]>) -> Tensor {
    let dev = Device::Cpu;
    let c = Tensor::new(&C.map(|v| v as f32), &dev).unwrap();
    let d = Tensor::new(&D.map(|v| v as f32), &dev).unwrap();
    let t = theta.as_tensor();
    let mut l = ((t.sqr().unwrap() * &c).unwrap() + (t * &d).unwrap()).unwrap();
    if let Some(n) = noise {
        l = (l + (t * Tensor::new(n, &dev).unwrap()).unwrap()).unwrap();
    }
    let p = phi.as_tensor();
    (l.sum_all().unwrap() + p.powf(3.0).unwrap().sum_all().unwrap()).unwrap()
}

fn optimizer(theta: &Var, phi: &Var) -> AdamW {
    let groups = vec![
        ParamGroup::new("theta", vec![("theta".into(), theta.clone())]),
        ParamGroup::new("phi", vec![("phi".into(), phi.clone())])
            .with_lr_scale(PHI_LR_SCALE)
            .with_weight_decay(0.0),
    ];
    let cfg = AdamWConfig::default().with_weight_decay(WD);
    AdamW::new(groups, cfg).unwrap()
}

/// torch.optim.AdamW single-tensor step, in f64.
fn torch_adamw_step(
    p: &mut [f64],
    g: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    t: i32,
    lr: f64,
    wd: f64,
) {
    let bc1 = 1.0 - B1.powi(t);
    let bc2 = 1.0 - B2.powi(t);
    let step_size = lr / bc1;
    for i in 0..p.len() {
        p[i] *= 1.0 - lr * wd;
        m[i] = B1 * m[i] + (1.0 - B1) * g[i];
        v[i] = B2 * v[i] + (1.0 - B2) * g[i] * g[i];
        let denom = v[i].sqrt() / bc2.sqrt() + EPS;
        p[i] -= step_size * m[i] / denom;
    }
}

#[test]
fn three_steps_match_hand_computed_pytorch_trajectory() {
    let theta = Var::new(&THETA0.map(|v| v as f32), &Device::Cpu).unwrap();
    let phi = Var::new(&PHI0.map(|v| v as f32), &Device::Cpu).unwrap();
    let mut opt = optimizer(&theta, &phi);

    let (mut th, mut ph) = (THETA0.to_vec(), PHI0.to_vec());
    let (mut m_th, mut v_th) = (vec![0.0; 5], vec![0.0; 5]);
    let (mut m_ph, mut v_ph) = (vec![0.0; 2], vec![0.0; 2]);
    let mut worst = 0f64;
    for (i, &lr) in LRS.iter().enumerate() {
        // Expected, in f64, from the f64 parameters.
        let g_th: Vec<f64> = (0..5).map(|j| 2.0 * C[j] * th[j] + D[j]).collect();
        let g_ph: Vec<f64> = ph.iter().map(|x| 3.0 * x * x).collect();
        let t = i as i32 + 1;
        torch_adamw_step(&mut th, &g_th, &mut m_th, &mut v_th, t, lr, WD);
        torch_adamw_step(
            &mut ph,
            &g_ph,
            &mut m_ph,
            &mut v_ph,
            t,
            lr * PHI_LR_SCALE,
            0.0,
        );
        // Ours.
        opt.set_lr(lr);
        opt.step(&loss(&theta, &phi, None).backward().unwrap())
            .unwrap();
        let got_th = theta.as_tensor().to_vec1::<f32>().unwrap();
        let got_ph = phi.as_tensor().to_vec1::<f32>().unwrap();
        for (got, want) in got_th.iter().zip(&th).chain(got_ph.iter().zip(&ph)) {
            let err = (*got as f64 - want).abs();
            worst = worst.max(err);
            assert!(err < 2e-6, "step {t}: {got} vs {want}");
        }
    }
    println!("AdamW 3-step trajectory: max |candle f32 − torch formula f64| = {worst:.3e}");
    // The moments are the f32 images of the f64 ones.
    let sd = opt.state_dict().unwrap();
    let m = sd["state.theta.exp_avg"].to_vec1::<f32>().unwrap();
    let v = sd["state.theta.exp_avg_sq"].to_vec1::<f32>().unwrap();
    for j in 0..5 {
        assert!((m[j] as f64 - m_th[j]).abs() <= 1e-6 * (1.0 + m_th[j].abs()));
        assert!((v[j] as f64 - v_th[j]).abs() <= 1e-6 * (1.0 + v_th[j].abs()));
    }
    assert_eq!(sd["state.theta.step"].to_scalar::<i64>().unwrap(), 3);
    // Coupled (L2) weight decay (torch.optim.Adam's weight_decay) gives a trajectory far outside
    // the tolerance above, so the test tells decoupled from coupled decay apart.
    let mut l2 = THETA0.to_vec();
    let (mut m, mut v) = (vec![0.0; 5], vec![0.0; 5]);
    for (i, &lr) in LRS.iter().enumerate() {
        let g: Vec<f64> = (0..5)
            .map(|j| 2.0 * C[j] * l2[j] + D[j] + WD * l2[j])
            .collect();
        torch_adamw_step(&mut l2, &g, &mut m, &mut v, i as i32 + 1, lr, 0.0);
    }
    let got = theta.as_tensor().to_vec1::<f32>().unwrap();
    let gap = (0..5)
        .map(|j| (got[j] as f64 - l2[j]).abs())
        .fold(0.0, f64::max);
    assert!(gap > 1e-3, "coupled decay indistinguishable: {gap}");
}

fn noise(rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..5).map(|_| rng.random_range(-0.5f32..0.5)).collect()
}

#[test]
fn resume_from_checkpoint_is_bit_exact() {
    let dir = TempDir::new("train-resume");
    let path = dir.join("ckpt.safetensors");

    // A: three uninterrupted steps, with "data" noise from a seeded RNG.
    let theta_a = Var::new(&THETA0.map(|v| v as f32), &Device::Cpu).unwrap();
    let phi_a = Var::new(&PHI0.map(|v| v as f32), &Device::Cpu).unwrap();
    let mut opt_a = optimizer(&theta_a, &phi_a);
    let mut rng_a = ChaCha8Rng::seed_from_u64(1234);
    for &lr in &LRS {
        opt_a.set_lr(lr);
        let n = noise(&mut rng_a);
        opt_a
            .step(&loss(&theta_a, &phi_a, Some(&n)).backward().unwrap())
            .unwrap();
    }

    // B: one step, checkpoint to disk, then a fresh process-like restart from the file.
    {
        let theta = Var::new(&THETA0.map(|v| v as f32), &Device::Cpu).unwrap();
        let phi = Var::new(&PHI0.map(|v| v as f32), &Device::Cpu).unwrap();
        let mut opt = optimizer(&theta, &phi);
        let mut rng = ChaCha8Rng::seed_from_u64(1234);
        opt.set_lr(LRS[0]);
        let n = noise(&mut rng);
        opt.step(&loss(&theta, &phi, Some(&n)).backward().unwrap())
            .unwrap();
        let rngs = BTreeMap::from([("data".to_string(), RngState::capture(&rng))]);
        let cfg = serde_json::json!({"optimizer": opt.config(), "note": "resume test"});
        TrainingState::capture(&opt, 1, rngs, cfg)
            .unwrap()
            .save(&path)
            .unwrap();
    }
    let theta_b = Var::new(&[9f32; 5], &Device::Cpu).unwrap(); // overwritten by restore
    let phi_b = Var::new(&[9f32; 2], &Device::Cpu).unwrap();
    let mut opt_b = optimizer(&theta_b, &phi_b);
    let state = TrainingState::load(&path, &Device::Cpu).unwrap();
    state.restore(&mut opt_b).unwrap();
    assert_eq!(state.step, 1);
    assert_eq!(state.config["note"], "resume test");
    let mut rng_b: ChaCha8Rng = state.rngs["data"].restore();
    for (i, &lr) in LRS.iter().enumerate().skip(state.step as usize) {
        assert_eq!(opt_b.step_count("theta"), Some(i as u64));
        opt_b.set_lr(lr);
        let n = noise(&mut rng_b);
        opt_b
            .step(&loss(&theta_b, &phi_b, Some(&n)).backward().unwrap())
            .unwrap();
    }

    assert_eq!(f32_bits(theta_a.as_tensor()), f32_bits(theta_b.as_tensor()));
    assert_eq!(f32_bits(phi_a.as_tensor()), f32_bits(phi_b.as_tensor()));
    let (sa, sb) = (opt_a.state_dict().unwrap(), opt_b.state_dict().unwrap());
    for key in [
        "state.theta.exp_avg",
        "state.theta.exp_avg_sq",
        "state.phi.exp_avg_sq",
    ] {
        assert_eq!(f32_bits(&sa[key]), f32_bits(&sb[key]), "{key}");
    }
}

#[test]
fn accumulated_gradients_equal_the_mean_loss_gradient() {
    let theta = Var::new(&THETA0.map(|v| v as f32), &Device::Cpu).unwrap();
    let phi = Var::new(&PHI0.map(|v| v as f32), &Device::Cpu).unwrap();
    let noises = [
        [0.1f32, -0.2, 0.3, 0.0, 0.5],
        [-0.4f32, 0.2, 0.1, 0.7, -0.5],
    ];

    let mut acc = GradAccumulator::new([&theta, &phi]);
    for n in &noises {
        acc.accumulate(loss(&theta, &phi, Some(n)).backward().unwrap())
            .unwrap();
    }
    // A third micro-batch that only touches theta: phi's sum is divided by 3 all the same.
    acc.accumulate(theta.as_tensor().sum_all().unwrap().backward().unwrap())
        .unwrap();
    assert_eq!(acc.micro_batches(), 3);
    let grads = acc.finish().unwrap();
    assert_eq!(acc.micro_batches(), 0);

    let mean = ((loss(&theta, &phi, Some(&noises[0])) + loss(&theta, &phi, Some(&noises[1])))
        .unwrap()
        + theta.as_tensor().sum_all().unwrap())
    .unwrap()
    .affine(1.0 / 3.0, 0.0)
    .unwrap();
    let want = mean.backward().unwrap();
    for v in [&theta, &phi] {
        let a = grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let b = want.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
    // Only the tracked variables are kept.
    assert_eq!(grads.get_ids().count(), 2);
}

#[test]
fn split_no_decay_groups_skip_decay_on_biases() {
    let w = Var::new(&[[1f32, 1.], [1., 1.]], &Device::Cpu).unwrap();
    let b = Var::new(&[1f32, 1.], &Device::Cpu).unwrap();
    let named = HashMap::from([
        ("fc.weight".to_string(), w.clone()),
        ("fc.bias".to_string(), b.clone()),
    ]);
    let mut opt = AdamW::new(
        ParamGroup::split_no_decay(named, 0.5),
        AdamWConfig::default().with_lr(0.1),
    )
    .unwrap();
    let mut grads = candle_core::backprop::GradStore::default();
    grads.insert(w.as_tensor(), w.as_tensor().zeros_like().unwrap());
    grads.insert(b.as_tensor(), b.as_tensor().zeros_like().unwrap());
    opt.step(&grads).unwrap();
    assert_eq!(
        w.as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        vec![0.95f32; 4]
    );
    assert_eq!(b.as_tensor().to_vec1::<f32>().unwrap(), vec![1f32; 2]);
    assert_eq!(
        opt.group_names().collect::<Vec<_>>(),
        vec!["decay", "no_decay"]
    );
}
