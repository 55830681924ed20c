//! Parity with the PyTorch reference: `tests/fixtures/reference-tiny/conv3d.safetensors`
//! (`F.conv3d(padding='same')` forward, and the gradients of `(y * grad_y).sum()`).
//! Tolerances from the fixtures README: forward ≤ 1e-4, gradients ≤ 1e-3, as
//! `max|a−b| / (max|b| + 1e-6)`.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use masam_conv3d::reference::conv3d_reference;
use masam_conv3d::{conv3d_op_with, Conv3d, Conv3dConfig, Conv3dKernel, Conv3dPadding};
use masam_testkit::{load_reference_tiny, rel_err};

const CASES: [&str; 4] = ["k311", "k333", "k111", "k135"];

#[derive(Clone, Copy, Debug)]
enum Impl {
    Op(Conv3dKernel),
    Layer,
    Reference,
}

/// Runs one case through `imp`, returns (forward, grad_x, grad_weight, grad_bias) errors.
fn run_case(t: &HashMap<String, Tensor>, case: &str, imp: Impl) -> [f64; 4] {
    let get = |k: &str| {
        t.get(&format!("{case}.{k}"))
            .unwrap_or_else(|| panic!("{case}.{k}"))
            .clone()
    };
    let x = Var::from_tensor(&get("x")).unwrap();
    let w = Var::from_tensor(&get("weight")).unwrap();
    let b = Var::from_tensor(&get("bias")).unwrap();
    let (xt, wt, bt) = (x.as_tensor(), w.as_tensor(), b.as_tensor());
    let y = match imp {
        Impl::Op(k) => conv3d_op_with(xt, wt, Some(bt), Conv3dPadding::Same, k).unwrap(),
        Impl::Layer => Conv3d::new(wt.clone(), Some(bt.clone()), Conv3dConfig::default())
            .unwrap()
            .forward(xt)
            .unwrap(),
        Impl::Reference => conv3d_reference(xt, wt, Some(bt), Conv3dPadding::Same).unwrap(),
    };
    let grads = (&y * get("grad_y"))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = |v: &Var| grads.get(v.as_tensor()).expect("missing gradient").clone();
    [
        rel_err(&y, &get("y")),
        rel_err(&g(&x), &get("grad_x")),
        rel_err(&g(&w), &get("grad_weight")),
        rel_err(&g(&b), &get("grad_bias")),
    ]
}

fn check(imp: Impl) {
    let t = load_reference_tiny("conv3d.safetensors");
    for case in CASES {
        let [fwd, gx, gw, gb] = run_case(&t, case, imp);
        println!("{imp:?} {case}: y {fwd:.2e}  grad_x {gx:.2e}  grad_weight {gw:.2e}  grad_bias {gb:.2e}");
        assert!(fwd <= 1e-4, "{imp:?} {case}: forward error {fwd}");
        assert!(
            gx <= 1e-3 && gw <= 1e-3 && gb <= 1e-3,
            "{imp:?} {case}: grads {gx} {gw} {gb}"
        );
    }
}

#[test]
fn custom_op_auto_path_matches_pytorch() {
    check(Impl::Op(Conv3dKernel::Auto));
}

#[test]
fn custom_op_general_path_matches_pytorch() {
    check(Impl::Op(Conv3dKernel::General));
}

#[test]
fn custom_op_winograd_path_matches_pytorch() {
    // forced Winograd for every depth-only case (k311, k111), general path for the others
    check(Impl::Op(Conv3dKernel::Winograd));
}

#[test]
fn custom_op_exact_depth_path_matches_pytorch() {
    check(Impl::Op(Conv3dKernel::DepthGemm));
}

#[test]
fn conv3d_layer_matches_pytorch() {
    check(Impl::Layer);
}

#[test]
fn reference_oracle_matches_pytorch() {
    check(Impl::Reference);
}

#[test]
fn fixture_has_the_expected_shapes() {
    let t = load_reference_tiny("conv3d.safetensors");
    assert_eq!(t["k311.weight"].dims(), &[8, 8, 3, 1, 1]);
    assert_eq!(t["k135.x"].dims(), &[1, 3, 6, 7, 9]);
    assert_eq!(t["k135.y"].dims(), &[1, 5, 6, 7, 9]);
    for case in CASES {
        for k in [
            "x",
            "weight",
            "bias",
            "y",
            "grad_y",
            "grad_x",
            "grad_weight",
            "grad_bias",
        ] {
            assert!(t.contains_key(&format!("{case}.{k}")), "{case}.{k}");
        }
    }
}
