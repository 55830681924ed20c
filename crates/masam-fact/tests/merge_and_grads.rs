//! Merged and unmerged layers agree; every trainable parameter receives a gradient.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::*;
use masam_fact::{Fact, FactConfig, FactHook, FactKind, FactLinear};
use masam_nn::{FrozenLinear, SeededVarMap};

const C: usize = 8;

fn build(cfg: &FactConfig, depth: usize, seed: u64) -> (SeededVarMap, Fact) {
    let params = SeededVarMap::new(seed);
    params
        .insert("FacTv.weight", &randn(seed + 1, &[C, cfg.rank]))
        .unwrap();
    let fact = Fact::new(cfg, C, depth, params.var_builder(DType::F32, &Device::Cpu)).unwrap();
    (params, fact)
}

fn layer(hook: FactHook, out: usize, inp: usize, seed: u64) -> FactLinear {
    FactLinear::new(
        FrozenLinear::new(randn(seed, &[out, inp]), Some(randn(seed + 1, &[out]))),
        hook,
    )
    .unwrap()
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
fn merged_equals_unmerged_for_every_layer_kind() {
    for kind in [FactKind::Tt, FactKind::Tk] {
        let cfg = FactConfig::petl_vit_tt()
            .with_kind(kind)
            .with_rank(4)
            .with_scale(0.3);
        let (_p, fact) = build(&cfg, 2, 7);
        let layers = [
            ("qkv", fact.qkv(1).unwrap().unwrap(), 3 * C, C),
            ("proj", fact.proj(1).unwrap().unwrap(), C, C),
            ("fc1", fact.fc1(1).unwrap().unwrap(), 4 * C, C),
            ("fc2", fact.fc2(1).unwrap().unwrap(), C, 4 * C),
        ];
        for (i, (name, hook, out, inp)) in layers.into_iter().enumerate() {
            let mut l = layer(hook, out, inp, 50 + i as u64);
            let x = randn(70 + i as u64, &[2, 5, inp]);
            let unmerged = l.forward(&x, false).unwrap();
            let plain = l.base().forward(&x).unwrap();
            assert!(
                max_abs_diff(&unmerged, &plain) > 1e-3,
                "{kind:?} {name}: increment is active"
            );
            l.merge().unwrap();
            assert!(l.is_merged());
            let merged = l.forward(&x, false).unwrap();
            let e = rel_err(&Mat::from_tensor(&merged), &Mat::from_tensor(&unmerged));
            assert!(e < 1e-5, "{kind:?} {name}: merged vs unmerged rel err {e}");
            // Training mode cannot apply dropout to a merged weight: it is the eval forward.
            assert_eq!(max_abs_diff(&l.forward(&x, true).unwrap(), &merged), 0.0);
            l.unmerge();
            assert!(!l.is_merged());
            let again = l.forward(&x, false).unwrap();
            assert_eq!(max_abs_diff(&again, &unmerged), 0.0, "unmerge is exact");
            // The merged layer on its own (deployment form) and W' itself.
            let deployed = l.merged_linear().unwrap();
            assert_eq!(max_abs_diff(&deployed.forward(&x).unwrap(), &merged), 0.0);
            let dw = l.hook().delta_weight(out, DType::F32).unwrap();
            let w2 = (l.base().weight() + &dw).unwrap();
            assert_eq!(max_abs_diff(deployed.weight(), &w2), 0.0);
        }
    }
}

#[test]
fn fused_qkv_merge_only_touches_adapted_rows() {
    let (_p, fact) = build(&FactConfig::tiny(), 1, 3);
    let l = layer(fact.qkv(0).unwrap().unwrap(), 3 * C, C, 9);
    let dw = l.hook().delta_weight(3 * C, DType::F32).unwrap();
    let k_rows: f32 = dw
        .narrow(0, C, C)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(k_rows, 0.0, "k rows of ΔW are zero");
    for start in [0, 2 * C] {
        let s: f32 = dw
            .narrow(0, start, C)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(s > 0.0);
    }
}

/// A two-block ViT-like stack (fused qkv → proj → fc1 → GELU → fc2, residuals) with every
/// projection adapted; returns the loss.
fn tiny_stack(fact: &Fact, x: &Tensor) -> Tensor {
    let mut h = x.clone();
    for b in 0..fact.depth() {
        let s = 100 * b as u64;
        let qkv = layer(fact.qkv(b).unwrap().unwrap(), 3 * C, C, s + 1).forward(&h, true);
        let qkv = qkv.unwrap();
        // A stand-in for attention that uses q, k and v.
        let q = qkv.narrow(2, 0, C).unwrap();
        let k = qkv.narrow(2, C, C).unwrap();
        let v = qkv.narrow(2, 2 * C, C).unwrap();
        // scaled so that tanh does not saturate (a saturated tanh has an exactly zero derivative
        // in f32, which made this test depend on the dropout draw)
        let a = ((q * k).unwrap().affine(1e-3, 0.0).unwrap().tanh().unwrap() * v).unwrap();
        let o = layer(fact.proj(b).unwrap().unwrap(), C, C, s + 3)
            .forward(&a, true)
            .unwrap();
        h = (h + o).unwrap();
        let m = layer(fact.fc1(b).unwrap().unwrap(), 4 * C, C, s + 5)
            .forward(&h, true)
            .unwrap()
            .gelu_erf()
            .unwrap();
        let m = layer(fact.fc2(b).unwrap().unwrap(), C, 4 * C, s + 7)
            .forward(&m, true)
            .unwrap();
        h = (h + m).unwrap();
    }
    h.sqr().unwrap().mean_all().unwrap()
}

#[test]
fn every_trainable_parameter_gets_a_gradient() {
    for kind in [FactKind::Tt, FactKind::Tk] {
        let cfg = FactConfig::petl_vit_tt().with_kind(kind).with_rank(4);
        let (params, fact) = build(&cfg, 2, 13);
        let expected = match kind {
            FactKind::Tt => 2 + 2 * 6,
            FactKind::Tk => 4,
        };
        assert_eq!(params.vars().all_vars().len(), expected);
        let x = Var::from_tensor(&randn(14, &[2, 6, C])).unwrap();
        let grads = tiny_stack(&fact, x.as_tensor()).backward().unwrap();
        for (name, var) in params.named_vars() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{kind:?}: no gradient for {name}"));
            let n: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(n > 0.0, "{kind:?}: zero gradient for {name}: {n}");
        }
    }
}

#[test]
fn at_initialisation_only_v_moves_first() {
    // As in the reference: V = 0, so the increment and the gradients of U and the cores are
    // zero at step 0; V's gradient is not.
    let params = SeededVarMap::new(1);
    let fact = Fact::new(
        &FactConfig::tiny(),
        C,
        1,
        params.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    let l = layer(fact.qkv(0).unwrap().unwrap(), 3 * C, C, 2);
    let x = randn(3, &[4, C]);
    let y = l.forward(&x, false).unwrap();
    assert_eq!(max_abs_diff(&y, &l.base().forward(&x).unwrap()), 0.0);
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let norm = |t: &Tensor| -> f32 {
        grads
            .get(t)
            .map(|g| g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap())
            .unwrap_or(0.0)
    };
    assert!(norm(fact.factors().v()) > 0.0);
    assert_eq!(norm(fact.factors().u()), 0.0);
    // U's init bound is 1/√C.
    let umax: f32 = fact
        .factors()
        .u()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(umax <= 1.0 / (C as f32).sqrt() && umax > 0.0);
}
