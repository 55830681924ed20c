//! FacT cost on one ViT-B-sized fused qkv projection (768 → 2304, 1024 tokens, rank 32, q and
//! v adapted as in MA-SAM), and FrozenLinear vs a plain linear in the backward pass.
//!
//! Run with `cargo bench --bench fact`; prints one JSON object (times in milliseconds, medians).
//! Uses CUDA when the crate is built with `--features cuda` and a GPU is present.

use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Init;
use masam_fact::{Fact, FactConfig, FactLinear};
use masam_nn::{FrozenLinear, Linear, SeededVarMap};

const DIM: usize = 768;
const TOKENS: usize = 1024;
const RANK: usize = 32;
const REPS: usize = 7;

fn randn(seed: u64, shape: &[usize], std: f64, dev: &Device) -> candle_core::Result<Tensor> {
    SeededVarMap::new(seed).sample(
        &shape.into(),
        Init::Randn {
            mean: 0.0,
            stdev: std,
        },
        DType::F32,
        dev,
    )
}

/// Median wall time of `f` in ms over `REPS` runs after one warm-up.
fn time<T>(
    dev: &Device,
    mut f: impl FnMut() -> candle_core::Result<T>,
) -> candle_core::Result<f64> {
    f()?;
    dev.synchronize()?;
    let mut v = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let t = Instant::now();
        let out = f()?;
        dev.synchronize()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
        drop(out);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(v[REPS / 2])
}

fn store_stats(g: &GradStore) -> (usize, usize) {
    let mut bytes = 0;
    let ids: Vec<_> = g.get_ids().copied().collect();
    for id in &ids {
        if let Some(t) = g.get_id(*id) {
            bytes += t.elem_count() * t.dtype().size_in_bytes();
        }
    }
    (ids.len(), bytes)
}

fn main() -> anyhow::Result<()> {
    let dev = Device::cuda_if_available(0)?;
    let w = randn(1, &[3 * DIM, DIM], 0.02, &dev)?;
    let b = randn(2, &[3 * DIM], 0.02, &dev)?;
    let x = randn(3, &[TOKENS, DIM], 1.0, &dev)?;
    let g_up = randn(4, &[TOKENS, 3 * DIM], 1.0, &dev)?;

    let params = SeededVarMap::new(5);
    // A non-zero V, as after some training (the cost does not depend on it).
    params.insert("FacTv.weight", &randn(6, &[DIM, RANK], 0.02, &dev)?)?;
    let cfg = FactConfig::ma_sam().with_rank(RANK);
    let fact = Fact::new(&cfg, DIM, 1, params.var_builder(DType::F32, &dev))?;
    let hook = fact.qkv(0)?.expect("q and v adapted");
    let frozen = FrozenLinear::new(w.clone(), Some(b.clone()));
    let plain = Linear::new(w.clone(), Some(b.clone()));
    let mut fact_layer = FactLinear::new(frozen.clone(), hook.clone())?;

    // ---- forward, inference (no graph) ----
    let fwd_plain = time(&dev, || frozen.forward_detached(&x))?;
    let y0 = frozen.forward_detached(&x)?;
    let fwd_increment_only = time(&dev, || hook.forward(&x, &y0, false))?;
    let fwd_unmerged = time(&dev, || fact_layer.forward(&x, false))?;
    let merge_ms = time(&dev, || fact_layer.merged_linear())?;
    let unmerged_out = fact_layer.forward(&x, false)?;
    fact_layer.merge()?;
    let fwd_merged = time(&dev, || fact_layer.forward(&x, false))?;
    let merged_out = fact_layer.forward(&x, false)?;
    let merge_max_abs_diff: f32 = (&merged_out - &unmerged_out)?
        .abs()?
        .max_all()?
        .to_scalar()?;
    fact_layer.unmerge();

    // ---- forward + backward with the input in the graph (as inside a network) ----
    let xv = Var::from_tensor(&x)?;
    let step = |f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>| {
        let y = f(xv.as_tensor())?;
        (y * &g_up)?.sum_all()?.backward()
    };
    let plain_fn = |t: &Tensor| plain.forward(t);
    let frozen_fn = |t: &Tensor| frozen.forward(t);
    let fact_plain_fn = |t: &Tensor| hook.forward(t, &plain.forward(t)?, false);
    let fact_frozen_fn = |t: &Tensor| fact_layer.forward(t, false);
    let bwd_plain = time(&dev, || step(&plain_fn))?;
    let bwd_frozen = time(&dev, || step(&frozen_fn))?;
    let bwd_fact_plain = time(&dev, || step(&fact_plain_fn))?;
    let bwd_fact_frozen = time(&dev, || step(&fact_frozen_fn))?;
    let (n_plain, bytes_plain) = store_stats(&step(&plain_fn)?);
    let (n_frozen, bytes_frozen) = store_stats(&step(&frozen_fn)?);
    let (n_fact_plain, bytes_fact_plain) = store_stats(&step(&fact_plain_fn)?);
    let (n_fact_frozen, bytes_fact_frozen) = store_stats(&step(&fact_frozen_fn)?);
    // Same input gradient either way.
    let dx_plain = step(&plain_fn)?.get(&xv).unwrap().clone();
    let dx_frozen = step(&frozen_fn)?.get(&xv).unwrap().clone();
    let dx_rel: f32 = ((&dx_plain - &dx_frozen)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?)
        / (dx_plain.abs()?.max_all()?.to_scalar::<f32>()? + 1e-6);

    let out = serde_json::json!({
        "bench": "fact",
        "device": format!("{dev:?}"),
        "threads": candle_core::utils::get_num_threads(),
        "shape": {"tokens": TOKENS, "in": DIM, "out": 3 * DIM, "rank": RANK, "adapted": "q,v"},
        "reps": REPS,
        "forward_ms": {
            "plain_linear": fwd_plain,
            "fact_unmerged": fwd_unmerged,
            "fact_increment_only": fwd_increment_only,
            "fact_merged": fwd_merged,
            "merge_weights_once": merge_ms,
        },
        "merge_max_abs_diff": merge_max_abs_diff,
        "forward_backward_ms": {
            "plain_linear": bwd_plain,
            "frozen_linear": bwd_frozen,
            "fact_on_plain_linear": bwd_fact_plain,
            "fact_on_frozen_linear": bwd_fact_frozen,
        },
        "grad_store": {
            "plain_linear": {"entries": n_plain, "bytes": bytes_plain},
            "frozen_linear": {"entries": n_frozen, "bytes": bytes_frozen},
            "fact_on_plain_linear": {"entries": n_fact_plain, "bytes": bytes_fact_plain},
            "fact_on_frozen_linear": {"entries": n_fact_frozen, "bytes": bytes_fact_frozen},
        },
        "frozen_vs_plain_dx_rel_err": dx_rel,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
