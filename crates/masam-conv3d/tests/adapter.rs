//! The 3D adapter: shapes, residual, slice mixing confined to each volume, parameter names and
//! inits, and gradients reaching every parameter.

use candle_core::{DType, Device, Tensor};
use masam_conv3d::{Adapter3d, Adapter3dConfig, AdapterNames, Conv3dError};
use masam_nn::SeededVarMap;
use masam_testkit::max_abs;

fn tiny() -> Adapter3dConfig {
    Adapter3dConfig::tiny().with_dim(12).with_channels(6)
}

#[test]
fn shape_residual_and_names() {
    let params = SeededVarMap::new(3);
    let vb = params.var_builder(DType::F32, &Device::Cpu);
    let a = Adapter3d::new(tiny(), vb.pp("blk")).unwrap();
    let x = Tensor::randn(0f32, 1., (2 * 5, 3, 4, 12), &Device::Cpu).unwrap();
    let y = a.forward(&x, 5).unwrap();
    assert_eq!(y.dims(), &[10, 3, 4, 12]);
    let d = a.delta(&x, 5).unwrap();
    assert!(
        max_abs(&d) > 1e-3,
        "a fresh adapter (up not zeroed) changes its input"
    );
    assert!(
        max_abs(&((&y - &x).unwrap() - &d).unwrap()) < 1e-6,
        "forward = x + delta"
    );
    let mut names: Vec<String> = params.named_vars().into_keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "blk.conv.bias",
            "blk.conv.weight",
            "blk.linear_down.weight",
            "blk.linear_up.weight",
            "blk.norm.bias",
            "blk.norm.weight"
        ]
    );
    // shapes and PyTorch default init bounds
    assert_eq!(a.conv().weight().dims(), &[6, 6, 3, 1, 1]);
    let conv_bound = 1.0 / (6.0f64 * 3.0).sqrt();
    assert!(
        max_abs(a.conv().weight()) <= conv_bound && max_abs(a.conv().bias().unwrap()) <= conv_bound
    );
    assert!(
        max_abs(a.conv().bias().unwrap()) > 0.0,
        "conv bias is not zero-initialised"
    );
    assert!(max_abs(a.linear_down().weight()) <= 1.0 / 12f64.sqrt());
    assert!(max_abs(a.linear_up().weight()) <= 1.0 / 6f64.sqrt());
    assert!(max_abs(a.linear_up().weight()) > 0.0);
}

#[test]
fn zero_init_up_is_identity_and_reference_names() {
    let params = SeededVarMap::new(4);
    let vb = params.var_builder(DType::F32, &Device::Cpu);
    let cfg = tiny().with_zero_init_up(true);
    let a = Adapter3d::new_with_names(cfg, &AdapterNames::reference("_2"), vb).unwrap();
    let x = Tensor::randn(0f32, 1., (5, 2, 2, 12), &Device::Cpu).unwrap();
    let y = a.forward(&x, 5).unwrap();
    assert_eq!(max_abs(&(y - &x).unwrap()), 0.0);
    for n in [
        "adapter_norm_2.weight",
        "adapter_linear_down_2.weight",
        "adapter_conv_2.bias",
        "adapter_linear_up_2.weight",
    ] {
        assert!(params.get(n).is_some(), "missing {n}");
    }
}

#[test]
fn slices_mix_only_within_a_volume_and_only_with_neighbours() {
    let params = SeededVarMap::new(5);
    let vb = params.var_builder(DType::F32, &Device::Cpu);
    let a = Adapter3d::new(tiny(), vb).unwrap(); // kernel (3, 1, 1)
    let (b, d) = (2, 5);
    let x = Tensor::randn(0f32, 1., (b * d, 3, 3, 12), &Device::Cpu).unwrap();
    let y0 = a.forward(&x, d).unwrap();
    // perturb slice 1 of volume 0 at one pixel (not a constant shift: LayerNorm would remove it)
    let ramp = Tensor::arange(0f32, 12., &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 1, 12))
        .unwrap();
    let bump = Tensor::zeros((b * d, 3, 3, 12), DType::F32, &Device::Cpu)
        .unwrap()
        .slice_assign(&[1..2, 1..2, 2..3, 0..12], &ramp)
        .unwrap();
    let y1 = a.forward(&(&x + bump).unwrap(), d).unwrap();
    let diff = (y1 - y0).unwrap().abs().unwrap();
    let changed = |s: usize, h: usize, w: usize| -> bool {
        diff.get(s)
            .unwrap()
            .get(h)
            .unwrap()
            .get(w)
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 1e-6
    };
    for s in 0..b * d {
        let expect = s <= 2; // slices 0, 1, 2 of volume 0 see slice 1; nothing else does
        assert_eq!(changed(s, 1, 2), expect, "slice {s} at the bumped pixel");
        assert!(
            !changed(s, 0, 0),
            "slice {s}: a (3,1,1) kernel does not mix pixels"
        );
    }
}

#[test]
fn gradients_reach_every_parameter() {
    let params = SeededVarMap::new(6);
    let vb = params.var_builder(DType::F32, &Device::Cpu);
    let a = Adapter3d::new(tiny(), vb).unwrap();
    let x = Tensor::randn(0f32, 1., (10, 3, 2, 12), &Device::Cpu).unwrap();
    let loss = a.forward(&x, 5).unwrap().sqr().unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let vars = params.named_vars();
    assert_eq!(vars.len(), 6);
    for (name, v) in vars {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert!(max_abs(g) > 0.0, "zero gradient for {name}");
    }
}

#[test]
fn bad_shapes_are_typed_errors() {
    let params = SeededVarMap::new(7);
    let a = Adapter3d::new(tiny(), params.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let x = Tensor::zeros((10, 2, 2, 12), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        a.forward(&x, 3),
        Err(Conv3dError::SlicesNotDivisor {
            batch: 10,
            slices: 3
        })
    ));
    assert!(matches!(
        a.forward(&x, 0),
        Err(Conv3dError::SlicesNotDivisor { .. })
    ));
    let x = Tensor::zeros((10, 2, 2, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        a.forward(&x, 5),
        Err(Conv3dError::ChannelMismatch {
            input: 8,
            weight: 12
        })
    ));
    let x = Tensor::zeros((10, 4, 12), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        a.forward(&x, 5),
        Err(Conv3dError::Rank { expected: 4, .. })
    ));
    let bad = Adapter3dConfig::tiny().with_channels(0);
    assert!(matches!(
        Adapter3d::new(
            bad,
            params.var_builder(DType::F32, &Device::Cpu).pp("other")
        ),
        Err(Conv3dError::Config(_))
    ));
}
