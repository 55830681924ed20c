//! Forward + backward time of `DiceCeLoss`: composite candle ops vs the fused CPU op.
//!
//! ```text
//! cargo run --release -p masam-train --example loss_speed [-- reps [fused]]
//! ```
//!
//! With `fused` as second argument only the fused path runs (for profiling).
//!
//! Prints, for logits (20, 13, 128, 128) and (10, 4, 64, 64) f32 with 10% ignored labels, the
//! median over `reps` runs (default 7) of the forward and of the backward, for both paths, and the
//! rayon pool size used.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use masam_train::{DiceCeLoss, DiceCeLossConfig};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> masam_train::Result<()> {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let fused_only = std::env::args().nth(2).as_deref() == Some("fused");
    let dev = Device::Cpu;
    let loss = DiceCeLoss::new(DiceCeLossConfig::default())?;
    println!("rayon threads: {}", rayon::current_num_threads());
    for dims in [(20usize, 13usize, 128usize, 128usize), (10, 4, 64, 64)] {
        let (n, k, h, w) = dims;
        let logits = Var::from_tensor(&Tensor::randn(0f32, 2.0, dims, &dev)?)?;
        // Labels in 0..K, 10% ignored (−100).
        let u = Tensor::rand(0f32, 1.0, (n, h, w), &dev)?;
        let cls = (u.affine(k as f64 / 0.9, 0.0)?.floor()?).to_dtype(DType::I64)?;
        let ignored = u.ge(0.9)?;
        let labels = ignored.where_cond(&Tensor::full(-100i64, (n, h, w), &dev)?, &cls)?;
        let mut results = Vec::new();
        for fused in [false, true] {
            if fused_only && !fused {
                results.push(f64::NAN);
                continue;
            }
            let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
            for _ in 0..reps + 1 {
                let t0 = Instant::now();
                let out = if fused {
                    loss.forward_fused(logits.as_tensor(), &labels)?
                } else {
                    loss.forward_composite(logits.as_tensor(), &labels)?
                };
                let _ = out.total.to_scalar::<f32>()?;
                let t1 = Instant::now();
                let g = out.total.backward()?;
                let _ = g.get(logits.as_tensor()).expect("gradient");
                let t2 = Instant::now();
                fwd.push((t1 - t0).as_secs_f64());
                bwd.push((t2 - t1).as_secs_f64());
            }
            // The first run warms caches and the allocator.
            fwd.remove(0);
            bwd.remove(0);
            let (f, b) = (median(fwd), median(bwd));
            println!(
                "{dims:?} {:9}: forward {:8.2} ms, backward {:8.2} ms, total {:8.2} ms",
                if fused { "fused" } else { "composite" },
                f * 1e3,
                b * 1e3,
                (f + b) * 1e3
            );
            results.push(f + b);
        }
        println!("{dims:?} speed-up {:.1}x", results[0] / results[1]);
    }
    Ok(())
}
