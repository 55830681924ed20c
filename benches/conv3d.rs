//! Conv3D benchmark: forward + backward of the MA-SAM adapter convolution
//! (1 × 384 × 5 × 32 × 32, kernel 3×1×1, 'same', bias) through the custom op and through the
//! conv2d-taps oracle, on CPU. Prints one JSON object.
//!
//! The custom op runs on its automatic kernel choice (Winograd for this shape) and, for
//! comparison in the same run, forced onto the exact shifted-GEMM path (`Conv3dKernel::DepthGemm`).
//!
//! `cargo bench --bench conv3d`. If `MASAM_TORCH_PYTHON` names a Python with torch (or plain
//! `python3` has it), `scripts/bench_conv3d_torch.py` is run afterwards in the same process
//! tree and its result is embedded, so that both numbers come from the same run.

use std::time::Instant;

use candle_core::CustomOp3;
use candle_core::{DType, Device, Tensor, Var};
use masam_conv3d::reference::conv3d_reference;
use masam_conv3d::{
    conv3d_op, conv3d_op_with, Conv3dGeometry, Conv3dKernel, Conv3dOp, Conv3dPadding,
};

const SHAPE: (usize, usize, usize, usize, usize) = (1, 384, 5, 32, 32);
const KERNEL: [usize; 3] = [3, 1, 1];

fn stats(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    serde_json::json!({ "median_ms": v[v.len() / 2], "min_ms": v[0], "runs": v.len() })
}

/// Times `f` (`warmup` untimed runs, then `iters` timed), in ms.
fn time(warmup: usize, iters: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

/// Times `f` and `g` alternately, in ms.
fn time_pair(
    warmup: usize,
    iters: usize,
    mut f: impl FnMut(),
    mut g: impl FnMut(),
) -> (Vec<f64>, Vec<f64>) {
    for _ in 0..warmup {
        f();
        g();
    }
    let mut a = Vec::with_capacity(iters);
    let mut b = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f();
        a.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        g();
        b.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (a, b)
}

type ConvFn = fn(&Tensor, &Tensor, Option<&Tensor>, Conv3dPadding) -> masam_conv3d::Result<Tensor>;

fn fwd_bwd(f: ConvFn, x: &Var, w: &Var, b: &Var, gy: &Tensor) {
    let y = f(
        x.as_tensor(),
        w.as_tensor(),
        Some(b.as_tensor()),
        Conv3dPadding::Same,
    )
    .unwrap();
    let grads = (y * gy).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(w.as_tensor()).is_some());
}

fn exact_path(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv3dPadding,
) -> masam_conv3d::Result<Tensor> {
    conv3d_op_with(x, w, b, p, Conv3dKernel::DepthGemm)
}

fn torch_result() -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_conv3d_torch.py");
    let python = std::env::var("MASAM_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    match std::process::Command::new(&python)
        .arg(script)
        .env("MALLOC_MMAP_THRESHOLD_", "33554432")
        .env("MALLOC_TRIM_THRESHOLD_", "536870912")
        .env("MALLOC_TOP_PAD_", "67108864")
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            serde_json::from_str(text.trim()).unwrap_or_else(
                |e| serde_json::json!({ "error": format!("bad JSON from torch script: {e}") }),
            )
        }
        Ok(out) => serde_json::json!({
            "error": format!("{python} {script} failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""))
        }),
        Err(e) => serde_json::json!({ "error": format!("cannot run {python}: {e}") }),
    }
}

fn main() {
    // both sides with the same allocator settings (the torch subprocess gets them through the
    // environment): without them each backward faults its buffers in afresh
    masam_nn::runtime::tune_allocator();
    let dev = Device::Cpu;
    let (n, c, d, h, w) = SHAPE;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., SHAPE, &dev).unwrap()).unwrap();
    let bound = 1.0 / ((c * 3) as f32).sqrt();
    let wt = Var::from_tensor(
        &(Tensor::rand(-bound, bound, (c, c, KERNEL[0], KERNEL[1], KERNEL[2]), &dev).unwrap()),
    )
    .unwrap();
    let bt = Var::from_tensor(&Tensor::rand(-bound, bound, c, &dev).unwrap()).unwrap();
    let gy = Tensor::randn(0f32, 1., SHAPE, &dev).unwrap();
    let geom = Conv3dGeometry::new(&[n, c, d, h, w], wt.dims(), Conv3dPadding::Same).unwrap();
    let gflop = 3.0 * geom.flops() / 1e9;

    // agreement of the two implementations on this shape
    let a = conv3d_op(
        x.as_tensor(),
        wt.as_tensor(),
        Some(bt.as_tensor()),
        Conv3dPadding::Same,
    )
    .unwrap();
    let r = conv3d_reference(
        x.as_tensor(),
        wt.as_tensor(),
        Some(bt.as_tensor()),
        Conv3dPadding::Same,
    )
    .unwrap();
    let err: f32 = (&a - &r)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    let scale: f32 = r.abs().unwrap().max_all().unwrap().to_scalar().unwrap();

    let op_fwd = time(2, 10, || {
        conv3d_op(
            x.as_tensor(),
            wt.as_tensor(),
            Some(bt.as_tensor()),
            Conv3dPadding::Same,
        )
        .unwrap();
    });
    // the automatic and the exact path take turns, so that both see the same machine load
    let (op, exact) = time_pair(
        2,
        12,
        || fwd_bwd(conv3d_op, &x, &wt, &bt, &gy),
        || fwd_bwd(exact_path, &x, &wt, &bt, &gy),
    );
    // forward + the op's explicit backward called directly (no autograd graph, as
    // `y.backward(grad_y)` in PyTorch)
    let op_struct = Conv3dOp {
        geom,
        kernel: Conv3dKernel::Auto,
    };
    let direct = time(2, 10, || {
        let y = conv3d_op(
            x.as_tensor(),
            wt.as_tensor(),
            Some(bt.as_tensor()),
            Conv3dPadding::Same,
        )
        .unwrap();
        let (gx, gw, gb) = op_struct
            .bwd(x.as_tensor(), wt.as_tensor(), bt.as_tensor(), &y, &gy)
            .unwrap();
        assert!(gx.is_some() && gw.is_some() && gb.is_some());
    });
    let exact_fwd = time(2, 10, || {
        exact_path(
            x.as_tensor(),
            wt.as_tensor(),
            Some(bt.as_tensor()),
            Conv3dPadding::Same,
        )
        .unwrap();
    });
    let oracle = time(1, 5, || fwd_bwd(conv3d_reference, &x, &wt, &bt, &gy));
    let op_ms = stats(op.clone());
    let exact_ms = stats(exact.clone());
    let op_median = op_ms["median_ms"].as_f64().unwrap();
    let op_min = op_ms["min_ms"].as_f64().unwrap();
    let exact_min = exact_ms["min_ms"].as_f64().unwrap();
    let torch = torch_result();
    let torch_median = torch["fwd_bwd"]["median_ms"].as_f64();
    let torch_min = torch["fwd_bwd"]["min_ms"].as_f64();
    let direct_median = stats(direct.clone())["median_ms"].as_f64().unwrap();
    let torch_direct = torch["fwd_bwd_grad_y"]["median_ms"].as_f64();
    let out = serde_json::json!({
        "shape": [n, c, d, h, w],
        "kernel": KERNEL,
        "padding": "same",
        "dtype": "f32",
        "device": "cpu",
        "threads": rayon_threads(),
        "fwd_bwd_gflop": gflop,
        "custom_op": {
            "forward": stats(op_fwd),
            "fwd_bwd": op_ms,
            "fwd_bwd_direct_grad_y": stats(direct),
            "fwd_bwd_gflops": gflop / (op_median / 1e3),
        },
        "custom_op_exact_depth_gemm": {
            "forward": stats(exact_fwd),
            "fwd_bwd": exact_ms,
        },
        "oracle_conv2d_taps": { "fwd_bwd": stats(oracle) },
        "torch": torch,
        "ratio_custom_op_over_torch": torch_median.map(|t| op_median / t),
        "ratio_custom_op_over_torch_best": torch_min.map(|t| op_min / t),
        "ratio_exact_over_torch_best": torch_min.map(|t| exact_min / t),
        "ratio_custom_op_over_exact_best": op_min / exact_min,
        "ratio_custom_op_over_exact_paired_median": paired_median(&op, &exact),
        "ratio_direct_over_torch_grad_y": torch_direct.map(|t| direct_median / t),
        "max_rel_err_op_vs_oracle": err / (scale + 1e-6),
        "dtype_bytes": DType::F32.size_in_bytes(),
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}

/// Median of the per-iteration ratios `a[i] / b[i]`.
fn paired_median(a: &[f64], b: &[f64]) -> f64 {
    let mut r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    r.sort_by(|x, y| x.total_cmp(y));
    r[r.len() / 2]
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
