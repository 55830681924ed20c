//! Peak memory and time of a training step with and without activation checkpointing of the
//! encoder blocks (`TrainerConfig::checkpoint_blocks`), each in a fresh process. Prints JSON.
//! See docs/gpu.md, "Memory planning".
//!
//! `cargo run --release --example checkpoint_memory -- [--case vit_b_256|small] [--steps N]`
//!
//! - `vit_b_256` (default): the BTCV model (ViT-B, FacT rank 32, adapters of 384 channels in
//!   every block, progressive decoder, 12 classes) at 256 × 256, one stack of 5 slices,
//!   frozen random encoder;
//! - `small`: the `train_small` model of `benches/side_by_side.rs` (C 192, 4 blocks, 256 × 256,
//!   5 slices, 4 classes).
//!
//! Each way runs in a child process (this program with `--child`): it builds the model, takes
//! `--steps` (default 2) AdamW steps of batch 1 on fixed synthetic images and labels (the same
//! in both processes), and reports the process's peak resident memory (`VmHWM` of `/proc/self/status`, Linux), the resident memory
//! before the first step, and the time of every step. Peak RSS is the whole process's: the
//! frozen weights, the optimiser state and the allocator's slack are in both numbers.

use std::process::Command;
use std::time::Instant;

use masam_adapter::candle::{Device, Tensor};
use masam_adapter::conv3d::Adapter3dConfig;
use masam_adapter::fact::FactConfig;
use masam_adapter::trainer::{Trainer, TrainerConfig};
use masam_adapter::{Batch, ImageEncoderConfig, MaSam, MaSamConfig};
use serde_json::json;

/// `VmHWM` (peak) or `VmRSS` (now) of this process in MiB.
fn status_mib(key: &str) -> anyhow::Result<f64> {
    let s = std::fs::read_to_string("/proc/self/status")?;
    let line = s
        .lines()
        .find(|l| l.starts_with(key))
        .ok_or_else(|| anyhow::anyhow!("no {key} in /proc/self/status"))?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("bad line {line}"))?
        .parse()?;
    Ok(kib / 1024.0)
}

fn model_config(case: &str) -> anyhow::Result<MaSamConfig> {
    match case {
        "vit_b_256" => Ok(MaSamConfig::from_backbone(
            ImageEncoderConfig::vit_b(),
            256,
            12,
        )),
        "small" => {
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
            Ok(cfg)
        }
        other => anyhow::bail!("unknown case {other}: vit_b_256 or small"),
    }
}

/// One way, in this process: JSON with the memory and the step times.
fn child(case: &str, checkpoint_blocks: bool, steps: usize) -> anyhow::Result<serde_json::Value> {
    let cfg = model_config(case)?;
    let dev = Device::Cpu;
    let img = cfg.sam.encoder.img_size;
    let model = MaSam::random(&cfg, 0, &dev)?;
    let tc = TrainerConfig {
        batch: 1,
        accumulation: 1,
        checkpoint_blocks,
        ..TrainerConfig::default()
    };
    let mut trainer = Trainer::new(&model, tc)?;
    // the same inputs in both processes (candle's random generator cannot be seeded), so that
    // both ways report the same losses
    let d = cfg.slices;
    let k = cfg.num_classes() + 1;
    let pixels: Vec<f32> = (0..d * 3 * img * img)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let images = Tensor::from_vec(pixels, (1, d, 3, img, img), &dev)?;
    let classes: Vec<i64> = (0..d * img * img)
        .map(|i| ((i % img) * k / img) as i64)
        .collect();
    let labels = Tensor::from_vec(classes, (d, img, img), &dev)?;
    let batch = Batch::new(images, labels);
    let rss_before = status_mib("VmRSS:")?;
    let mut seconds = vec![];
    let mut losses = vec![];
    for _ in 0..steps.max(1) {
        let t = Instant::now();
        let s = trainer.step(std::slice::from_ref(&batch))?;
        seconds.push(t.elapsed().as_secs_f64());
        losses.push(s.loss);
    }
    Ok(json!({
        "checkpoint_blocks": checkpoint_blocks,
        "peak_rss_mib": status_mib("VmHWM:")?,
        "rss_before_steps_mib": rss_before,
        "step_seconds": seconds,
        "losses": losses,
    }))
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn main() -> anyhow::Result<()> {
    masam_app::runtime::init_cpu_training();
    let args: Vec<String> = std::env::args().collect();
    let case = arg(&args, "--case").unwrap_or("vit_b_256").to_string();
    let steps: usize = arg(&args, "--steps").map_or(Ok(2), str::parse)?;
    if let Some(way) = arg(&args, "--child") {
        let v = child(&case, way == "on", steps)?;
        println!("{v}");
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut ways = vec![];
    for way in ["off", "on"] {
        let out = Command::new(&exe)
            .args([
                "--case",
                &case,
                "--steps",
                &steps.to_string(),
                "--child",
                way,
            ])
            .output()?;
        if !out.status.success() {
            anyhow::bail!(
                "the child with checkpointing {way} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8(out.stdout)?;
        let line = text
            .lines()
            .last()
            .ok_or_else(|| anyhow::anyhow!("the child printed nothing"))?;
        ways.push(serde_json::from_str::<serde_json::Value>(line)?);
    }
    let cfg = model_config(&case)?;
    let enc = &cfg.sam.encoder;
    let peak = |i: usize| ways[i]["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
    let before = |i: usize| ways[i]["rss_before_steps_mib"].as_f64().unwrap_or(f64::NAN);
    // the fastest step: the others include the first step's allocations and, on a shared
    // machine, other jobs
    let fastest = |i: usize| {
        ways[i]["step_seconds"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|s| s.as_f64())
                    .fold(f64::INFINITY, f64::min)
            })
            .unwrap_or(f64::NAN)
    };
    let report = json!({
        "case": case,
        "model": {
            "embed_dim": enc.embed_dim, "depth": enc.depth, "img": enc.img_size,
            "slices": cfg.slices, "classes": cfg.num_classes(),
            "decoder": format!("{:?}", cfg.sam.decoder.kind),
        },
        "batch": 1,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "without_checkpointing": ways[0],
        "with_checkpointing": ways[1],
        "peak_rss_ratio": peak(1) / peak(0),
        "step_memory_ratio": (peak(1) - before(1)) / (peak(0) - before(0)),
        "fastest_step_seconds": [fastest(0), fastest(1)],
        "fastest_step_time_ratio": fastest(1) / fastest(0),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
