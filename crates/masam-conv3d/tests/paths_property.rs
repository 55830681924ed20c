//! Property test: on random shapes, the depth-only fast path, the general vol2col path and the
//! conv2d-taps oracle agree on the forward and on all three gradients; covers odd and even
//! kernels (2, 4), 'same' and explicit padding (including padding larger than the kernel).

use candle_core::{DType, Device, Tensor, Var};
use masam_conv3d::reference::conv3d_reference;
use masam_conv3d::{conv3d_op_with, Conv3dError, Conv3dGeometry, Conv3dKernel, Conv3dPadding};
use masam_testkit::rel_err;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ALL_KERNELS: [Conv3dKernel; 4] = [
    Conv3dKernel::Auto,
    Conv3dKernel::General,
    Conv3dKernel::DepthGemm,
    Conv3dKernel::Winograd,
];

fn rand_tensor(rng: &mut ChaCha8Rng, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// y, grad_x, grad_w, grad_b of `(conv(x, w, b) * gy).sum()`.
fn run(
    which: Option<Conv3dKernel>,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    gy_seed: u64,
    pad: Conv3dPadding,
) -> [Tensor; 4] {
    let (xv, wv, bv) = (
        Var::from_tensor(x).unwrap(),
        Var::from_tensor(w).unwrap(),
        Var::from_tensor(b).unwrap(),
    );
    let (xt, wt, bt) = (xv.as_tensor(), wv.as_tensor(), bv.as_tensor());
    let y = match which {
        Some(k) => conv3d_op_with(xt, wt, Some(bt), pad, k).unwrap(),
        None => conv3d_reference(xt, wt, Some(bt), pad).unwrap(),
    };
    let gy = rand_tensor(&mut ChaCha8Rng::seed_from_u64(gy_seed), y.dims());
    let grads = (&y * gy).unwrap().sum_all().unwrap().backward().unwrap();
    let g = |v: &Var| grads.get(v.as_tensor()).expect("gradient missing").clone();
    [y.clone(), g(&xv), g(&wv), g(&bv)]
}

#[test]
fn fast_general_and_oracle_agree_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(20261127);
    let mut depth_only_seen = 0;
    let mut worst = [0f64; 4];
    for case in 0..40 {
        let depth_only = case % 2 == 0;
        let kd = rng.random_range(1..=5usize);
        let (kh, kw) = if depth_only {
            (1, 1)
        } else {
            (rng.random_range(1..=4usize), rng.random_range(1..=4usize))
        };
        let pad = if case % 3 == 2 {
            let pd = rng.random_range(0..=kd + 1);
            let (ph, pw) = if depth_only {
                (0, 0)
            } else {
                (rng.random_range(0..=kh), rng.random_range(0..=kw))
            };
            Conv3dPadding::Explicit([pd, ph, pw])
        } else {
            Conv3dPadding::Same
        };
        let n = rng.random_range(1..=3usize);
        let c = rng.random_range(1..=6usize);
        let o = rng.random_range(1..=6usize);
        let sp = [
            rng.random_range(kd.max(2)..=7usize),
            rng.random_range(kh.max(1)..=6usize),
            rng.random_range(kw.max(1)..=6usize),
        ];
        let xd = [n, c, sp[0], sp[1], sp[2]];
        let wd = [o, c, kd, kh, kw];
        let g = Conv3dGeometry::new(&xd, &wd, pad).unwrap();
        if g.is_depth_only() {
            depth_only_seen += 1;
        }
        let x = rand_tensor(&mut rng, &xd);
        let w = rand_tensor(&mut rng, &wd);
        let b = rand_tensor(&mut rng, &[o]);
        let oracle = run(None, &x, &w, &b, case, pad);
        for which in ALL_KERNELS {
            let got = run(Some(which), &x, &w, &b, case, pad);
            for (i, (a, e)) in got.iter().zip(&oracle).enumerate() {
                let err = rel_err(a, e);
                worst[i] = worst[i].max(err);
                let tol = if i == 0 { 1e-4 } else { 1e-3 };
                assert!(
                    err <= tol,
                    "case {case} {which:?} x {xd:?} w {wd:?} {pad:?}: tensor {i} error {err}"
                );
            }
        }
    }
    println!("worst relative errors (y, gx, gw, gb): {worst:?}");
    assert!(
        depth_only_seen >= 15,
        "only {depth_only_seen} depth-only cases"
    );
}

#[test]
fn even_kernels_pad_at_the_end_like_pytorch() {
    // kernel 2 along depth, 'same': out[z] = w0·x[z] + w1·x[z+1] (x[D] = 0)
    let x = Tensor::new(&[1f32, 2., 3., 4.], &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 4, 1, 1))
        .unwrap();
    let w = Tensor::new(&[10f32, 1.], &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 2, 1, 1))
        .unwrap();
    // exact paths: exact values; Winograd rounds differently
    let close = |v: &[f32], want: &[f32], k: Conv3dKernel| {
        let exact = matches!(k, Conv3dKernel::General | Conv3dKernel::DepthGemm);
        let scale = want.iter().fold(0f32, |m, b| m.max(b.abs()));
        for (a, b) in v.iter().zip(want) {
            let tol = if exact { 0.0 } else { 1e-6 * scale };
            assert!((a - b).abs() <= tol, "{k:?}: {v:?} vs {want:?}");
        }
    };
    for k in ALL_KERNELS {
        let y = conv3d_op_with(&x, &w, None, Conv3dPadding::Same, k).unwrap();
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        close(&v, &[12., 23., 34., 40.], k);
    }
    // kernel 4: front pad 1, back pad 2
    let w = Tensor::new(&[1000f32, 100., 10., 1.], &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 4, 1, 1))
        .unwrap();
    for k in ALL_KERNELS {
        let y = conv3d_op_with(&x, &w, None, Conv3dPadding::Same, k).unwrap();
        let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        close(&v, &[123., 1234., 2340., 3400.], k);
    }
}

#[test]
fn bad_input_gives_typed_errors() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 3, 4, 4, 4), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((2, 3, 3, 1, 1), DType::F32, &dev).unwrap();
    let same = Conv3dPadding::Same;
    let e = conv3d_op_with(
        &x,
        &Tensor::zeros((2, 4, 3, 1, 1), DType::F32, &dev).unwrap(),
        None,
        same,
        Conv3dKernel::Auto,
    );
    assert!(matches!(
        e,
        Err(Conv3dError::ChannelMismatch {
            input: 3,
            weight: 4
        })
    ));
    let e = conv3d_op_with(
        &x,
        &w,
        Some(&Tensor::zeros(3, DType::F32, &dev).unwrap()),
        same,
        Conv3dKernel::Auto,
    );
    assert!(matches!(
        e,
        Err(Conv3dError::BiasShape {
            out_channels: 2,
            ..
        })
    ));
    let e = conv3d_op_with(&x.squeeze(0).unwrap(), &w, None, same, Conv3dKernel::Auto);
    assert!(matches!(e, Err(Conv3dError::Rank { expected: 5, .. })));
    let e = conv3d_op_with(
        &x.to_dtype(DType::F64).unwrap(),
        &w.to_dtype(DType::F64).unwrap(),
        None,
        same,
        Conv3dKernel::Auto,
    );
    assert!(matches!(
        e,
        Err(Conv3dError::UnsupportedDType {
            dtype: DType::F64,
            ..
        })
    ));
    let e = conv3d_op_with(
        &x,
        &w.to_dtype(DType::F64).unwrap(),
        None,
        same,
        Conv3dKernel::Auto,
    );
    assert!(matches!(e, Err(Conv3dError::Mismatch(_))));
    let big = Tensor::zeros((2, 3, 6, 1, 1), DType::F32, &dev).unwrap();
    let e = conv3d_op_with(
        &x,
        &big,
        None,
        Conv3dPadding::Explicit([0, 0, 0]),
        Conv3dKernel::Auto,
    );
    assert!(matches!(e, Err(Conv3dError::EmptyOutput { .. })));
    let e = conv3d_op_with(
        &x,
        &Tensor::zeros((2, 3, 0, 1, 1), DType::F32, &dev).unwrap(),
        None,
        same,
        Conv3dKernel::Auto,
    );
    assert!(matches!(e, Err(Conv3dError::ZeroSize { .. })));
}
