//! Accuracy of the Winograd depth-only path against the exact shifted-GEMM path (and both
//! against an f64 loop), for D in 1..=16, kd in 1..=5, 'same' padding, on random data with
//! realistic scales: x ~ N(0, 1), w ~ U(±1/√(C·kd)) (PyTorch's init), grad_y ~ N(0, 1).
//!
//! `cargo run --release -p masam-conv3d --example winograd_accuracy [channels] [hw] [seed] [kd] [D]`
//! (`kd`, `D`: only that kernel depth / depth; default all).
//!
//! Prints, per (kd, tile point limit), the worst relative error `max|a − b| / (max|b| + 1e-6)`
//! over D of forward, grad input and grad weight, and per (kd, D) what `Auto` picks.

use masam_conv3d::cpu::{
    conv3d_forward_on, conv3d_input_grad_on, conv3d_weight_grad_on, select, CpuPath,
};
use masam_conv3d::winograd::{direct_gemms, winograd_gemms, AUTO_MAX_POINTS};
use masam_conv3d::{Conv3dGeometry, Conv3dKernel, Conv3dPadding};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let num = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(0.0, f64::max);
    let den = b.iter().map(|v| f64::from(*v).abs()).fold(0.0, f64::max);
    num / (den + 1e-6)
}

fn normal(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            // Box-Muller
            let u: f64 = rng.random_range(1e-12..1.0);
            let v: f64 = rng.random_range(0.0..1.0);
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

/// f64 forward, grad input and grad weight of the depth-only convolution.
fn truth(g: &Conv3dGeometry, x: &[f32], w: &[f32], gy: &[f32]) -> [Vec<f32>; 3] {
    let (n, c, o, kd) = (g.batch, g.in_channels, g.out_channels, g.kernel[0]);
    let (d, od, hw) = (g.input[0], g.output[0], g.input[1] * g.input[2]);
    let p = g.pad_front[0];
    let mut y = vec![0f64; n * o * od * hw];
    let mut gx = vec![0f64; n * c * d * hw];
    let mut gw = vec![0f64; o * c * kd];
    for ni in 0..n {
        for oi in 0..o {
            for ci in 0..c {
                for t in 0..kd {
                    let wv = f64::from(w[(oi * c + ci) * kd + t]);
                    let mut gacc = 0f64;
                    for z in 0..od {
                        let s = z as isize + t as isize - p;
                        if s < 0 || s >= d as isize {
                            continue;
                        }
                        let xs = &x[((ni * c + ci) * d + s as usize) * hw..][..hw];
                        let gys = &gy[((ni * o + oi) * od + z) * hw..][..hw];
                        let ys = &mut y[((ni * o + oi) * od + z) * hw..][..hw];
                        for (yv, xv) in ys.iter_mut().zip(xs) {
                            *yv += wv * f64::from(*xv);
                        }
                        let gxs = &mut gx[((ni * c + ci) * d + s as usize) * hw..][..hw];
                        for ((gxv, gyv), xv) in gxs.iter_mut().zip(gys).zip(xs) {
                            *gxv += wv * f64::from(*gyv);
                            gacc += f64::from(*gyv) * f64::from(*xv);
                        }
                    }
                    gw[(oi * c + ci) * kd + t] += gacc;
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect();
    [f(y), f(gx), f(gw)]
}

fn run(g: &Conv3dGeometry, x: &[f32], w: &[f32], gy: &[f32], path: CpuPath) -> [Vec<f32>; 3] {
    [
        conv3d_forward_on(g, x, w, None, path),
        conv3d_input_grad_on(g, gy, w, path),
        conv3d_weight_grad_on(g, x, gy, path),
    ]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let c = args.first().copied().unwrap_or(96);
    let hw = args.get(1).copied().unwrap_or(64);
    let seed = args.get(2).copied().unwrap_or(0) as u64;
    let only_kd = args.get(3).copied();
    let only_d = args.get(4).copied();
    let n = 2;
    let limits: Vec<usize> = (4..=9).collect();
    println!("channels {c}, H·W {hw}, batch {n}; errors relative to the exact path (f64 truth in brackets for the exact path)");
    // worst[kd][limit] = [fwd, gx, gw]
    let mut worst = vec![vec![[0f64; 3]; limits.len()]; 6];
    let mut exact_worst = [[0f64; 3]; 6];
    let mut rows = Vec::new();
    for kd in 1..=5usize {
        if only_kd.is_some_and(|k| k != kd) {
            continue;
        }
        for d in 1..=16usize {
            if only_d.is_some_and(|v| v != d) {
                continue;
            }
            let mut rng = ChaCha8Rng::seed_from_u64((kd * 100 + d) as u64 + 1000 * seed);
            let g = Conv3dGeometry::new(&[n, c, d, 1, hw], &[c, c, kd, 1, 1], Conv3dPadding::Same)
                .unwrap();
            let x = normal(&mut rng, n * c * d * hw);
            let bound = 1.0 / ((c * kd) as f32).sqrt();
            let w: Vec<f32> = (0..c * c * kd)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            let gy = normal(&mut rng, n * c * d * hw);
            let t = truth(&g, &x, &w, &gy);
            let exact = run(&g, &x, &w, &gy, CpuPath::DepthGemm);
            for i in 0..3 {
                exact_worst[kd][i] = exact_worst[kd][i].max(rel(&exact[i], &t[i]));
            }
            let mut auto_err = [0f64; 3];
            let auto = select(Conv3dKernel::Auto, &g);
            for (li, &lim) in limits.iter().enumerate() {
                let got = run(&g, &x, &w, &gy, CpuPath::Winograd { max_points: lim });
                for i in 0..3 {
                    let e = rel(&got[i], &exact[i]);
                    worst[kd][li][i] = worst[kd][li][i].max(e);
                    if auto == (CpuPath::Winograd { max_points: lim }) {
                        auto_err[i] = e;
                    }
                }
            }
            rows.push(format!(
                "| {kd} | {d} | {} | {} | {} | {:.1e} / {:.1e} / {:.1e} |",
                direct_gemms(&g),
                winograd_gemms(&g, AUTO_MAX_POINTS),
                match auto {
                    CpuPath::Winograd { .. } => "Winograd",
                    CpuPath::DepthGemm => "DepthGemm",
                    CpuPath::General => "General",
                },
                auto_err[0],
                auto_err[1],
                auto_err[2]
            ));
        }
    }
    println!("\nworst over D = 1..=16 (forward / grad input / grad weight), by tile point limit:");
    print!("| kd | exact vs f64 |");
    for l in &limits {
        print!(" ≤ {l} points |");
    }
    println!();
    for kd in 1..=5 {
        let e = exact_worst[kd];
        print!("| {kd} | {:.1e} / {:.1e} / {:.1e} |", e[0], e[1], e[2]);
        for w in &worst[kd] {
            print!(" {:.1e} / {:.1e} / {:.1e} |", w[0], w[1], w[2]);
        }
        println!();
    }
    println!("\nper shape: kd | D | exact GEMMs | Winograd GEMMs (≤ {AUTO_MAX_POINTS} points) | Auto | Auto error vs exact (y / gx / gw)");
    for r in rows {
        println!("{r}");
    }
}
