//! The fused ops give bit-identical gradients whatever the number of threads: their parallel
//! reductions (LayerNorm's weight and bias gradients summed over rows or positions) use a fixed
//! chunking and add the partial sums in chunk order, so neither the pool size nor work stealing
//! changes the rounding. A training run resumed on another machine, or after a crash, depends on
//! this to repeat the uninterrupted run bit for bit.

use candle_core::{Device, Result, Tensor, Var};
use masam_nn::{LayerNorm, LayerNorm2d};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

fn randn(rng: &mut ChaCha8Rng, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let d = Normal::new(0.5f32, 2.0).expect("valid normal");
    let v: Vec<f32> = (0..n).map(|_| d.sample(rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// Bits of the weight and bias gradients of one LayerNorm (or LayerNorm2d) forward + backward.
fn grad_bits(x: &Tensor, channels_first: bool) -> Result<Vec<u32>> {
    let c = x.dim(1)?; // (rows, C) or (N, C, H, W)
    let ramp = |lo: f32, hi: f32| {
        let v: Vec<f32> = (0..c)
            .map(|i| lo + (hi - lo) * i as f32 / c as f32)
            .collect();
        Tensor::from_vec(v, c, &Device::Cpu)
    };
    let w = Var::from_tensor(&ramp(0.5, 1.5)?)?;
    let b = Var::from_tensor(&ramp(-0.2, 0.3)?)?;
    let y = if channels_first {
        LayerNorm2d::new(w.as_tensor().clone(), b.as_tensor().clone(), 1e-6).forward(x)?
    } else {
        LayerNorm::new(w.as_tensor().clone(), b.as_tensor().clone(), 1e-6).forward(x)?
    };
    // a weighting that is not constant along rows, so every row's contribution matters
    let g = y.sqr()?.sum_all()?.backward()?;
    let mut bits = vec![];
    for v in [&w, &b] {
        let t = g
            .get(v.as_tensor())
            .expect("a gradient for each affine parameter");
        bits.extend(t.to_vec1::<f32>()?.into_iter().map(f32::to_bits));
    }
    Ok(bits)
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(f)
}

#[test]
fn layer_norm_gradients_do_not_depend_on_the_thread_count() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // many row chunks (rows per task × 40) and a width that is not a multiple of the lanes
    let rows = randn(&mut rng, &[20_000, 37])?;
    // (N, C, H, W): several position blocks per sample
    let maps = randn(&mut rng, &[3, 24, 70, 70])?;
    for (x, cf) in [(&rows, false), (&maps, true)] {
        let one = in_pool(1, || grad_bits(x, cf))?;
        for threads in [2, 3, 4, 7] {
            for _ in 0..3 {
                let many = in_pool(threads, || grad_bits(x, cf))?;
                assert!(
                    one == many,
                    "LayerNorm{} gradients differ between 1 and {threads} threads",
                    if cf { "2d" } else { "" }
                );
            }
        }
    }
    Ok(())
}
