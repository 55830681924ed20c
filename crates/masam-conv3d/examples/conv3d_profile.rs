//! Breakdown of the CPU conv3d time on the adapter shape: raw GEMM speed, forward, input
//! gradient and weight gradient kernels, and candle's autograd overhead.
//! `cargo run --release -p masam-conv3d --example conv3d_profile`

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use masam_conv3d::cpu::{self, CpuPath};
use masam_conv3d::{conv3d_op, Conv3dGeometry, Conv3dPadding};

fn best(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> masam_conv3d::Result<()> {
    if std::env::var_os("PROFILE_DEFAULT_MALLOC").is_none() {
        masam_nn::runtime::tune_allocator();
    }
    let dev = Device::Cpu;
    // PROFILE_SHAPE="N,C,D,H,W,kd" overrides the adapter shape for the kernel timings
    let dims: Vec<usize> = std::env::var("PROFILE_SHAPE")
        .ok()
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| v.len() == 6)
        .unwrap_or_else(|| vec![1, 384, 5, 32, 32, 3]);
    let (n, c, d, h, wd, kd) = (dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]);
    let shape = (1, 384, 5, 32, 32);
    let g = Conv3dGeometry::new(&[n, c, d, h, wd], &[c, c, kd, 1, 1], Conv3dPadding::Same)?;
    println!(
        "kernel shape x {:?}, w {:?}",
        [n, c, d, h, wd],
        [c, c, kd, 1, 1]
    );
    let x: Vec<f32> = Tensor::randn(0f32, 1., (n, c, d, h, wd), &dev)?
        .flatten_all()?
        .to_vec1()?;
    let w: Vec<f32> = Tensor::randn(0f32, 0.03, (c, c, kd, 1, 1), &dev)?
        .flatten_all()?
        .to_vec1()?;
    let gf = g.flops() / 1e9;
    let iters: usize = std::env::var("PROFILE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let paths = [
        ("exact (DepthGemm)", CpuPath::DepthGemm),
        ("Winograd <= 6 pts", CpuPath::Winograd { max_points: 6 }),
        ("Winograd <= 7 pts", CpuPath::Winograd { max_points: 7 }),
    ];
    println!(
        "kernels, best of {iters}, paths interleaved (ms, GFLOP/s of the direct method's FLOP count):"
    );
    // [path][product] best times; the paths take turns so that they see the same load
    let mut t = [[f64::INFINITY; 3]; 3];
    // per-iteration ratio of each path's fwd + grad-input + grad-weight time to the exact one
    let mut ratios: [Vec<f64>; 3] = Default::default();
    let time = |f: &mut dyn FnMut()| {
        let t0 = Instant::now();
        f();
        t0.elapsed().as_secs_f64() * 1e3
    };
    let mut sums = [0f64; 3];
    for it in 0..=iters {
        for (pi, (_, path)) in paths.iter().enumerate() {
            let path = *path;
            let r = [
                time(&mut || {
                    cpu::conv3d_forward_on(&g, &x, &w, None, path);
                }),
                time(&mut || {
                    cpu::conv3d_input_grad_on(&g, &x, &w, path);
                }),
                time(&mut || {
                    cpu::conv3d_weight_grad_on(&g, &x, &x, path);
                }),
            ];
            if it > 0 {
                for (b, v) in t[pi].iter_mut().zip(r) {
                    *b = b.min(v);
                }
                sums[pi] = r.iter().sum();
            }
        }
        if it > 0 {
            for pi in 0..3 {
                ratios[pi].push(sums[pi] / sums[0]);
            }
        }
    }
    for (((name, _), [tf, tx, tw]), r) in paths.iter().zip(t).zip(ratios.iter_mut()) {
        r.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{name}: forward {tf:6.2}  grad-input {tx:6.2}  grad-weight {tw:6.2}  sum {:6.2}  ({:6.1} GFLOP/s)  median paired ratio to exact {:.3}",
            tf + tx + tw,
            3.0 * gf / (tf + tx + tw) * 1e3,
            r[r.len() / 2]
        );
    }
    let t = best(iters, || {
        cpu::conv3d_bias_grad(&g, &x);
    });
    println!("grad-bias kernel    {t:7.2} ms");
    let a = Tensor::randn(0f32, 1., (384, 384), &dev)?;
    let b = Tensor::randn(0f32, 1., (384, 5120), &dev)?;
    let t = best(5, || {
        a.matmul(&b).unwrap();
    });
    println!(
        "candle matmul 384x384x5120 {t:7.2} ms  {:6.1} GFLOP/s",
        2.0 * 384.0 * 384.0 * 5120.0 / 1e9 / t * 1e3
    );
    for (m, n, k) in [
        (384, 1024, 384),
        (384, 4096, 384),
        (384, 5120, 384),
        (384, 5120, 1152),
        (384, 384, 5120),
        (384, 15360, 384),
    ] {
        let a = Tensor::randn(0f32, 1., (m, k), &dev)?;
        let b = Tensor::randn(0f32, 1., (k, n), &dev)?;
        let t = best(5, || {
            a.matmul(&b).unwrap();
        });
        let gfl = 2.0 * (m * n * k) as f64 / 1e9;
        println!(
            "matmul {m}x{n}x{k}: {t:7.2} ms  {:6.1} GFLOP/s",
            gfl / t * 1e3
        );
    }
    let xv = Var::from_tensor(&Tensor::randn(0f32, 1., shape, &dev)?)?;
    let wv = Var::from_tensor(&Tensor::randn(0f32, 0.03, (384, 384, 3, 1, 1), &dev)?)?;
    let bv = Var::from_tensor(&Tensor::zeros(384, candle_core::DType::F32, &dev)?)?;
    let gy = Tensor::randn(0f32, 1., shape, &dev)?;
    let t = best(5, || {
        let y = conv3d_op(
            xv.as_tensor(),
            wv.as_tensor(),
            Some(bv.as_tensor()),
            Conv3dPadding::Same,
        )
        .unwrap();
        (y * &gy).unwrap().sum_all().unwrap().backward().unwrap();
    });
    println!(
        "op fwd+bwd (autograd) {t:7.2} ms  {:6.1} GFLOP/s",
        3.0 * gf / t * 1e3
    );
    let t = best(5, || {
        conv3d_op(
            xv.as_tensor(),
            wv.as_tensor(),
            Some(bv.as_tensor()),
            Conv3dPadding::Same,
        )
        .unwrap();
    });
    println!("op forward          {t:7.2} ms");
    let y = conv3d_op(
        xv.as_tensor(),
        wv.as_tensor(),
        Some(bv.as_tensor()),
        Conv3dPadding::Same,
    )?;
    let t = best(5, || {
        (&y * &gy).unwrap().sum_all().unwrap();
    });
    println!("(y*gy).sum_all      {t:7.2} ms");
    let t = best(5, || {
        let l = (&y * &gy).unwrap().sum_all().unwrap();
        let t0 = Instant::now();
        l.backward().unwrap();
        println!(
            "  backward alone {:7.2} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
    });
    println!("loss+backward       {t:7.2} ms");
    let xt = xv.as_tensor().clone();
    let t = best(5, || {
        xt.flatten_all().unwrap().sum_all().unwrap();
    });
    println!("sum_all(x)          {t:7.2} ms");
    let t = best(5, || {
        (&xt * &gy).unwrap();
    });
    println!("x*gy                {t:7.2} ms");
    let t = best(5, || {
        xt.zeros_like().unwrap().add(&gy).unwrap();
    });
    println!("zeros_like+add      {t:7.2} ms");
    Ok(())
}
