//! The Winograd depth-only path against the exact shifted-GEMM path, the general vol2col path
//! and a naive f64 loop, on random depth-only shapes (D 1–16, kd 1–5, N, C, O, H·W, 'same' and
//! explicit padding up to kd + 1), for the forward and all three gradients through candle
//! autograd; plus which path `Auto` picks.

use candle_core::{Device, Tensor, Var};
use masam_conv3d::cpu::{select, CpuPath, AUTO_MIN_COLUMNS};
use masam_conv3d::winograd::AUTO_MAX_POINTS;
use masam_conv3d::{conv3d_op_with, Conv3dGeometry, Conv3dKernel, Conv3dPadding};
use masam_testkit::compare_slices;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// y, grad_x, grad_w, grad_b of `(conv(x, w) + b) · gy` summed, by direct f64 loops.
fn naive(g: &Conv3dGeometry, x: &[f32], w: &[f32], b: &[f32], gy: &[f32]) -> [Vec<f32>; 4] {
    let (n, c, o, kd) = (g.batch, g.in_channels, g.out_channels, g.kernel[0]);
    let (d, od, hw) = (g.input[0], g.output[0], g.input[1] * g.input[2]);
    let mut y = vec![0f64; n * o * od * hw];
    let mut gx = vec![0f64; n * c * d * hw];
    let mut gw = vec![0f64; o * c * kd];
    let mut gb = vec![0f64; o];
    for ni in 0..n {
        for oi in 0..o {
            for z in 0..od {
                for p in 0..hw {
                    let yi = ((ni * o + oi) * od + z) * hw + p;
                    y[yi] += f64::from(b[oi]);
                    gb[oi] += f64::from(gy[yi]);
                    for ci in 0..c {
                        for t in 0..kd {
                            let s = z as isize + t as isize - g.pad_front[0];
                            if s < 0 || s >= d as isize {
                                continue;
                            }
                            let xi = ((ni * c + ci) * d + s as usize) * hw + p;
                            let wi = (oi * c + ci) * kd + t;
                            y[yi] += f64::from(w[wi]) * f64::from(x[xi]);
                            gx[xi] += f64::from(w[wi]) * f64::from(gy[yi]);
                            gw[wi] += f64::from(x[xi]) * f64::from(gy[yi]);
                        }
                    }
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect();
    [f(y), f(gx), f(gw), f(gb)]
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn through_op(
    kernel: Conv3dKernel,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    gy: &Tensor,
    pad: Conv3dPadding,
) -> [Vec<f32>; 4] {
    let (xv, wv, bv) = (
        Var::from_tensor(x).unwrap(),
        Var::from_tensor(w).unwrap(),
        Var::from_tensor(b).unwrap(),
    );
    let y = conv3d_op_with(
        xv.as_tensor(),
        wv.as_tensor(),
        Some(bv.as_tensor()),
        pad,
        kernel,
    )
    .unwrap();
    let grads = (&y * gy).unwrap().sum_all().unwrap().backward().unwrap();
    let g = |v: &Var| flat(grads.get(v.as_tensor()).expect("gradient missing"));
    [flat(&y), g(&xv), g(&wv), g(&bv)]
}

fn tensor(v: Vec<f32>, dims: &[usize]) -> Tensor {
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

#[test]
fn winograd_exact_general_and_naive_agree_on_random_depth_only_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let kernels = [
        Conv3dKernel::Winograd,
        Conv3dKernel::DepthGemm,
        Conv3dKernel::General,
        Conv3dKernel::Auto,
    ];
    let mut worst = [[0f64; 4]; 4];
    let mut winograd_vs_exact = [0f64; 4];
    let mut auto_winograd = 0;
    for case in 0..48 {
        let kd = 1 + case % 5;
        let d = rng.random_range(1..=16usize);
        let pad = if case % 3 == 2 {
            Conv3dPadding::Explicit([rng.random_range(0..=kd + 1), 0, 0])
        } else {
            Conv3dPadding::Same
        };
        let (n, c, o) = (
            rng.random_range(1..=3usize),
            rng.random_range(1..=12usize),
            rng.random_range(1..=12usize),
        );
        let (h, wd) = (rng.random_range(1..=5usize), rng.random_range(1..=6usize));
        let xd = [n, c, d, h, wd];
        let wdims = [o, c, kd, 1, 1];
        let Ok(g) = Conv3dGeometry::new(&xd, &wdims, pad) else {
            continue; // padded depth shorter than the kernel
        };
        let bound = 1.0 / ((c * kd) as f32).sqrt();
        let x: Vec<f32> = (0..n * c * d * h * wd)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let w: Vec<f32> = (0..o * c * kd)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let b: Vec<f32> = (0..o).map(|_| rng.random_range(-bound..bound)).collect();
        let gy: Vec<f32> = (0..n * o * g.output.iter().product::<usize>())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let truth = naive(&g, &x, &w, &b, &gy);
        let [od, oh, ow] = g.output;
        let (xt, wt, bt, gyt) = (
            tensor(x, &xd),
            tensor(w, &wdims),
            tensor(b, &[o]),
            tensor(gy, &[n, o, od, oh, ow]),
        );
        let mut results = Vec::new();
        for (ki, &k) in kernels.iter().enumerate() {
            let got = through_op(k, &xt, &wt, &bt, &gyt, pad);
            for i in 0..4 {
                let err = compare_slices(&got[i], &truth[i]).rel();
                worst[ki][i] = worst[ki][i].max(err);
                assert!(
                    err <= 1e-5,
                    "case {case} {k:?} x {xd:?} kd {kd} {pad:?}: product {i} error {err}"
                );
            }
            results.push(got);
        }
        for i in 0..4 {
            let e = compare_slices(&results[0][i], &results[1][i]).rel();
            winograd_vs_exact[i] = winograd_vs_exact[i].max(e);
            assert!(
                e <= 1e-5,
                "case {case}: Winograd vs exact, product {i}: {e}"
            );
        }
        if matches!(select(Conv3dKernel::Auto, &g), CpuPath::Winograd { .. }) {
            auto_winograd += 1;
        }
    }
    for (k, w) in kernels.iter().zip(&worst) {
        println!(
            "{k:?} vs f64 loop (y, gx, gw, gb): {:.1e} {:.1e} {:.1e} {:.1e}",
            w[0], w[1], w[2], w[3]
        );
    }
    println!(
        "Winograd vs exact (y, gx, gw, gb): {:.1e} {:.1e} {:.1e} {:.1e}",
        winograd_vs_exact[0], winograd_vs_exact[1], winograd_vs_exact[2], winograd_vs_exact[3]
    );
    // these shapes are small (N·H·W < 256): Auto must have kept the exact path throughout
    assert_eq!(auto_winograd, 0);
}

#[test]
fn auto_picks_winograd_only_where_it_saves_gemms() {
    // H·W = 16 × 16: N·H·W = 256 = AUTO_MIN_COLUMNS
    let geom = |d: usize, kd: usize, pad: Conv3dPadding| {
        Conv3dGeometry::new(&[1, 8, d, 16, 16], &[8, 8, kd, 1, 1], pad).unwrap()
    };
    assert_eq!(AUTO_MIN_COLUMNS, 256);
    let same = Conv3dPadding::Same;
    let wino = CpuPath::Winograd {
        max_points: AUTO_MAX_POINTS,
    };
    // the adapter's depth geometry: D = 5, kd = 3, both the forward and the transposed
    // (input-gradient) geometry
    let g = geom(5, 3, same);
    assert_eq!(select(Conv3dKernel::Auto, &g), wino);
    assert_eq!(select(Conv3dKernel::Auto, &g.transposed()), wino);
    // tiny shapes gain nothing: the k311 fixture (N·H·W = 2·6·7 = 84) stays exact on Auto
    let k311 = Conv3dGeometry::new(&[2, 8, 5, 6, 7], &[8, 8, 3, 1, 1], same).unwrap();
    assert_eq!(select(Conv3dKernel::Auto, &k311), CpuPath::DepthGemm);
    assert_eq!(select(Conv3dKernel::Winograd, &k311), wino);
    let two = Conv3dGeometry::new(&[2, 8, 5, 8, 16], &[8, 8, 3, 1, 1], same).unwrap();
    assert_eq!(select(Conv3dKernel::Auto, &two), wino); // 2 volumes × 128 columns
                                                        // no gain: kd = 1, a single slice, two slices with kd = 3
    for g in [geom(5, 1, same), geom(1, 3, same), geom(2, 3, same)] {
        assert_eq!(select(Conv3dKernel::Auto, &g), CpuPath::DepthGemm, "{g:?}");
    }
    // not depth-only
    let g = Conv3dGeometry::new(&[1, 8, 5, 16, 16], &[8, 8, 3, 3, 3], same).unwrap();
    assert_eq!(select(Conv3dKernel::Auto, &g), CpuPath::General);
    assert_eq!(select(Conv3dKernel::Winograd, &g), CpuPath::General);
    // forced paths
    assert_eq!(
        select(Conv3dKernel::DepthGemm, &geom(5, 3, same)),
        CpuPath::DepthGemm
    );
    assert_eq!(
        select(Conv3dKernel::General, &geom(5, 3, same)),
        CpuPath::General
    );
    assert!(matches!(
        select(Conv3dKernel::Winograd, &geom(5, 1, same)),
        CpuPath::Winograd { .. }
    ));
}
