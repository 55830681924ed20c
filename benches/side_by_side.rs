//! The Rust half of the side-by-side comparison with the PyTorch reference
//! (`scripts/side_by_side.py` runs it against `scripts/bench_reference.py`, alternately, each
//! case in a fresh process). One case per process, chosen by `MASAM_SBS_CASE`; prints one JSON
//! object with the case's median time and the process's peak resident memory (`VmHWM`, weights
//! and everything else included, as `ru_maxrss` on the Python side).
//!
//! Cases (each computes what the same-named case of `bench_reference.py` computes):
//! - `encoder`: one prediction forward of the whole model (ViT-B MA-SAM, FacT rank 32, both
//!   adapters of 384 channels, 12 classes, 512 × 512, one window of 5 slices) through
//!   `MaSam::to_inference` (no graph; the reference runs under `torch.no_grad` in eval mode).
//!   `MASAM_SBS_IMG` changes the input size; `MASAM_SBS_ITERS` (1) forwards are timed after
//!   `MASAM_SBS_WARMUP` (0) untimed ones.
//! - `train_small`: one training step (forward in training mode with FacT dropout, Dice + CE
//!   loss, backward, AdamW) of a small MA-SAM: C 192, 4 blocks, 4 heads, global attention in
//!   blocks 1 and 3, window 14, 256 × 256, one volume of 5 slices, 4 classes (+ background), FacT
//!   rank 8, adapters of 64 channels; SAM's decoder widths (256). 2 warm-up steps, median of 5
//!   (`MASAM_SBS_WARMUP`, `MASAM_SBS_ITERS`).
//! - `conv3d`: the adapter Conv3d (1 × 384 × 5 × 32 × 32, kernel 3×1×1, 'same', bias), forward
//!   and backward of `sum(y · g)` with a dense random `g` (so that the output gradient is `g`);
//!   2 warm-up runs, median of 10.
//! - `volume`: `predict_volume_with` on a 512 × 512 × `MASAM_SBS_SLICES` (24) volume with the
//!   `encoder` model, one window per forward pass, window stride `MASAM_SBS_STRIDE` (1 = the
//!   reference's window on every slice); the model is converted to the inference model before
//!   the clock starts.
//!
//! `cargo bench --bench side_by_side` without `MASAM_SBS_CASE` prints the list of cases.
//! Threads: candle and gemm follow `RAYON_NUM_THREADS`.

use std::time::Instant;

use masam_adapter::candle::{DType, Device, Tensor, Var};
use masam_adapter::conv3d::{conv3d_op, Adapter3dConfig, Conv3dPadding};
use masam_adapter::fact::FactConfig;
use masam_adapter::predict::{predict_volume_with, PredictOptions};
use masam_adapter::trainer::{Trainer, TrainerConfig};
use masam_adapter::volume::transforms::{IntensityConfig, SliceStack, StackConfig};
use masam_adapter::volume::Volume;
use masam_adapter::{Batch, ImageEncoderConfig, MaSam, MaSamConfig, Mode};

/// What a case measured: median and all timed seconds, and free-form details.
struct Measured {
    seconds: Vec<f64>,
    details: serde_json::Value,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The process's peak resident memory in MiB (`VmHWM`), `None` off Linux.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs `f` `warmup` times untimed, then `iters` times timed (seconds).
fn timed(
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    let mut out = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        f()?;
        out.push(t.elapsed().as_secs_f64());
    }
    Ok(out)
}

/// ViT-B MA-SAM as in the paper (FacT rank 32, adapters of 384), 12 classes, at `img` pixels.
fn vit_b(img: usize) -> MaSamConfig {
    MaSamConfig::from_backbone(ImageEncoderConfig::vit_b(), img, 12)
}

fn encoder() -> anyhow::Result<Measured> {
    let img = env_usize("MASAM_SBS_IMG", 512);
    let cfg = vit_b(img);
    let model = MaSam::random(&cfg, 0, &Device::Cpu)?.to_inference()?;
    let x = Tensor::rand(0f32, 1., (1, cfg.slices, 3, img, img), &Device::Cpu)?;
    let seconds = timed(
        env_usize("MASAM_SBS_WARMUP", 0),
        env_usize("MASAM_SBS_ITERS", 1),
        || {
            let out = model.segment(&x, Mode::Eval)?;
            drop(out);
            Ok(())
        },
    )?;
    let details = serde_json::json!({
        "backbone": "vit_b", "img": img, "slices": cfg.slices, "classes": 12,
        "fact_rank": 32, "adapter_channels": 384, "model": "to_inference (FacT merged, no graph)",
    });
    Ok(Measured { seconds, details })
}

/// The small configuration of the training-step comparison.
fn small_config() -> MaSamConfig {
    let mut enc = ImageEncoderConfig::vit_b();
    enc.embed_dim = 192;
    enc.depth = 4;
    enc.num_heads = 4;
    enc.global_attn_indexes = vec![1, 3];
    let mut cfg = MaSamConfig::from_backbone(enc, 256, 4);
    cfg.fact = Some(FactConfig {
        rank: 8,
        ..FactConfig::ma_sam()
    });
    cfg.adapter = Some(Adapter3dConfig::for_dim(192).with_channels(64));
    cfg
}

fn train_small() -> anyhow::Result<Measured> {
    let cfg = small_config();
    let img = cfg.sam.encoder.img_size;
    let model = MaSam::random(&cfg, 0, &Device::Cpu)?;
    let tc = TrainerConfig {
        batch: 1,
        accumulation: 1,
        ..TrainerConfig::default()
    };
    let mut trainer = Trainer::new(&model, tc)?;
    let images = Tensor::rand(0f32, 1., (1, cfg.slices, 3, img, img), &Device::Cpu)?;
    let classes = (cfg.num_classes() + 1) as f32;
    let labels = (Tensor::rand(0f32, classes, (cfg.slices, img, img), &Device::Cpu)?
        .floor()?
        .clamp(0f32, classes - 1.0)?)
    .to_dtype(DType::I64)?;
    let batch = Batch::new(images, labels);
    let seconds = timed(
        env_usize("MASAM_SBS_WARMUP", 2),
        env_usize("MASAM_SBS_ITERS", 5),
        || {
            trainer.step(std::slice::from_ref(&batch))?;
            Ok(())
        },
    )?;
    let details = serde_json::json!({
        "embed_dim": 192, "depth": 4, "heads": 4, "global": [1, 3], "window": 14, "img": img,
        "slices": cfg.slices, "classes": cfg.num_classes(), "fact_rank": 8, "adapter_channels": 64,
        "loss": "0.2 CE + 0.8 Dice", "optimizer": "AdamW wd 0.1",
    });
    Ok(Measured { seconds, details })
}

fn conv3d() -> anyhow::Result<Measured> {
    let dev = Device::Cpu;
    let shape = (1, 384, 5, 32, 32);
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., shape, &dev)?)?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.05, (384, 384, 3, 1, 1), &dev)?)?;
    let b = Var::from_tensor(&Tensor::randn(0f32, 0.05, 384, &dev)?)?;
    let gy = Tensor::randn(0f32, 1., shape, &dev)?;
    let seconds = timed(
        env_usize("MASAM_SBS_WARMUP", 2),
        env_usize("MASAM_SBS_ITERS", 10),
        || {
            let y = conv3d_op(
                x.as_tensor(),
                w.as_tensor(),
                Some(b.as_tensor()),
                Conv3dPadding::Same,
            )?;
            let grads = (y * &gy)?.sum_all()?.backward()?;
            anyhow::ensure!(grads.get(w.as_tensor()).is_some(), "no weight gradient");
            Ok(())
        },
    )?;
    let details = serde_json::json!({
        "shape": [1, 384, 5, 32, 32], "kernel": [3, 1, 1], "padding": "same", "bias": true,
        "backward": "sum(y * g), dense g",
    });
    Ok(Measured { seconds, details })
}

fn volume() -> anyhow::Result<Measured> {
    let img = env_usize("MASAM_SBS_IMG", 512);
    let slices = env_usize("MASAM_SBS_SLICES", 24);
    let stride = env_usize("MASAM_SBS_STRIDE", 1);
    let cfg = vit_b(img);
    let model = MaSam::random(&cfg, 0, &Device::Cpu)?.to_inference()?;
    // intensities already in the model's range: the stack only cuts windows and scales
    let data =
        masam_adapter::volume::ndarray::Array3::from_shape_fn((slices, img, img), |(z, y, x)| {
            ((z * 7 + y * 3 + x) % 255) as f32
        });
    let vol = Volume::with_spacing(data, [0.8, 0.8, 2.5]);
    let stack = SliceStack::new(
        StackConfig {
            out_size: Some((img, img)),
            orient: false,
            intensity: IntensityConfig::default(),
            ..StackConfig::default()
        }
        .with_depth(cfg.slices),
    )?;
    let opts = PredictOptions {
        batch: 1,
        stride,
        device: Device::Cpu,
    };
    let seconds = timed(0, 1, || {
        let out = predict_volume_with(&model, &vol, &stack, &opts, None)?;
        drop(out);
        Ok(())
    })?;
    let details = serde_json::json!({
        "backbone": "vit_b", "img": img, "volume_slices": slices, "stride": stride,
        "windows_per_forward": 1, "classes": 12,
    });
    Ok(Measured { seconds, details })
}

fn main() -> anyhow::Result<()> {
    masam_adapter::nn::runtime::tune_allocator();
    let Ok(case) = std::env::var("MASAM_SBS_CASE") else {
        println!(
            "{{\"bench\": \"side_by_side\", \"cases\": [\"encoder\", \"train_small\", \"conv3d\", \
             \"volume\"], \"note\": \"set MASAM_SBS_CASE; scripts/side_by_side.py runs them\"}}"
        );
        return Ok(());
    };
    let m = match case.as_str() {
        "encoder" => encoder()?,
        "train_small" => train_small()?,
        "conv3d" => conv3d()?,
        "volume" => volume()?,
        other => anyhow::bail!("unknown MASAM_SBS_CASE `{other}`"),
    };
    let mut sorted = m.seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let json = serde_json::json!({
        "side": "masam",
        "case": case,
        "median_s": sorted[sorted.len() / 2],
        "min_s": sorted[0],
        "times_s": m.seconds,
        "peak_rss_mib": peak_rss_mib(),
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "details": m.details,
    });
    println!("{json}");
    Ok(())
}
