//! Times the fused CPU LayerNorm / LayerNorm2d / softmax kernels against the composite
//! reference implementations, forward and forward + backward.
//!
//! ```text
//! cargo run --release -p masam-nn --example fused_bench [-- --iters 5]
//! ```
//!
//! Each forward + backward iteration builds `sum(y · r)` for a fixed random `r` and calls
//! `backward()`, so the gradients of the input, weight and bias are all computed. The median of
//! the iterations is reported.

use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var};
use masam_nn::ops::{self, composite};

type Op = fn(&[Tensor]) -> Result<Tensor>;

/// Median wall time of `iters` runs of `f`, in milliseconds, after one warm-up run.
fn median_ms(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            f().map(|_| s.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_>>()?;
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

/// (forward ms, forward + backward ms) of `op` on fresh variables holding `inputs`.
fn time(op: Op, inputs: &[Tensor], r: &Tensor, iters: usize) -> Result<(f64, f64)> {
    let vars: Vec<Var> = inputs.iter().map(Var::from_tensor).collect::<Result<_>>()?;
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let fwd = median_ms(iters, || op(&ts).map(|_| ()))?;
    let both = median_ms(iters, || {
        let y = op(&ts)?;
        let g = (&y * r)?.sum_all()?.backward()?;
        assert!(g.get(&vars[0]).is_some());
        Ok(())
    })?;
    Ok((fwd, both))
}

/// Prints one line; `harness` is the forward + backward time of the identity, i.e. the cost of
/// `sum(y · r).backward()` itself, subtracted for the "net" column.
fn report(name: &str, composite: (f64, f64), fused: (f64, f64), harness: f64) {
    let (nc, nf) = (composite.1 - harness, fused.1 - harness);
    println!(
        "{name:<34} fwd {:>7.2} → {:>6.2} ms ({:>4.1}×) | fwd+bwd {:>7.2} → {:>6.2} ms ({:>4.1}×) \
         | net of harness {:>7.2} → {:>6.2} ms ({:>4.1}×)",
        composite.0,
        fused.0,
        composite.0 / fused.0,
        composite.1,
        fused.1,
        composite.1 / fused.1,
        nc,
        nf,
        nc / nf.max(1e-3)
    );
}

/// Forward + backward time of the identity on `x` (the harness alone).
fn harness(x: &Tensor, r: &Tensor, iters: usize) -> Result<f64> {
    Ok(time(|t| Ok(t[0].clone()), std::slice::from_ref(x), r, iters)?.1)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let iters = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5usize);
    let dev = Device::Cpu;
    println!(
        "composite → fused, median of {iters} (rayon threads: {})",
        rayon::current_num_threads()
    );

    let x = Tensor::randn(0f32, 2., (80, 256, 256), &dev)?;
    let r = Tensor::randn(0f32, 1., x.shape(), &dev)?;
    let h = harness(&x, &r, iters)?;
    let c = time(
        |t| composite::softmax_last_dim(&t[0]),
        std::slice::from_ref(&x),
        &r,
        iters,
    )?;
    let f = time(|t| ops::softmax_last_dim_fused(&t[0]), &[x], &r, iters)?;
    report("softmax (80, 256, 256)", c, f, h);

    for (rows, ch) in [(20 * 256, 96), (8 * 64 * 64, 768)] {
        let x = Tensor::randn(0.5f32, 2., (rows, ch), &dev)?;
        let w = Tensor::randn(1f32, 0.5, ch, &dev)?;
        let b = Tensor::randn(0f32, 0.5, ch, &dev)?;
        let r = Tensor::randn(0f32, 1., x.shape(), &dev)?;
        let h = harness(&x, &r, iters)?;
        let inputs = [x, w, b];
        let c = time(
            |t| composite::layer_norm(&t[0], &t[1], &t[2], 1e-6),
            &inputs,
            &r,
            iters,
        )?;
        let f = time(
            |t| ops::layer_norm_fused(&t[0], &t[1], &t[2], 1e-6),
            &inputs,
            &r,
            iters,
        )?;
        report(&format!("LayerNorm ({rows}, {ch})"), c, f, h);
    }

    for shape in [(20, 16, 128, 128), (8, 256, 64, 64)] {
        let ch = shape.1;
        let x = Tensor::randn(0.5f32, 2., shape, &dev)?;
        let w = Tensor::randn(1f32, 0.5, ch, &dev)?;
        let b = Tensor::randn(0f32, 0.5, ch, &dev)?;
        let r = Tensor::randn(0f32, 1., x.shape(), &dev)?;
        let h = harness(&x, &r, iters)?;
        let inputs = [x, w, b];
        let c = time(
            |t| composite::layer_norm_2d(&t[0], &t[1], &t[2], 1e-6),
            &inputs,
            &r,
            iters,
        )?;
        let f = time(
            |t| ops::layer_norm_2d_fused(&t[0], &t[1], &t[2], 1e-6),
            &inputs,
            &r,
            iters,
        )?;
        report(&format!("LayerNorm2d {shape:?}"), c, f, h);
        // The alternative design: permute to channels-last, fused last-dim LayerNorm, permute back.
        let p = time(
            |t| {
                ops::layer_norm_fused(&t[0].permute((0, 2, 3, 1))?, &t[1], &t[2], 1e-6)?
                    .permute((0, 3, 1, 2))?
                    .contiguous()
            },
            &inputs,
            &r,
            iters,
        )?;
        report("  via permute + last-dim kernel", c, p, h);
    }
    Ok(())
}
