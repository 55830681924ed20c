//! Fine-tune MA-SAM for abdominal multi-organ CT segmentation (BTCV), then evaluate held-out volumes.
//!
//! With no arguments it runs on its embedded default: a SYNTHETIC abdomen phantom (12 organs,
//! BTCV label order) and a small randomly initialised backbone trained end to end (no SAM weights,
//! so nothing to freeze: the paper's full fine-tuning ablation). With `--data <BTCV dir>
//! --sam-checkpoint sam_vit_b_01ec64.pth --backbone vit_b` it runs the paper's recipe.
//!
//! ```text
//! cargo run --release --example btcv_finetune
//! cargo run --release --example btcv_finetune -- --data BTCV --sam-checkpoint sam_vit_b_01ec64.pth --backbone vit_b
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use masam_adapter::ImageEncoderConfig;
use masam_app::{finetune, DataSource, FinetuneConfig};

#[derive(Parser, Debug)]
#[command(
    about = "Fine-tune MA-SAM on BTCV (or, by default, on a synthetic abdomen phantom) and evaluate it"
)]
struct Args {
    /// BTCV folder (img/imgXXXX.nii.gz, label/labelXXXX.nii.gz). Default: the synthetic phantom.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Official SAM checkpoint (.pth or .safetensors) for the frozen backbone (needed with --data).
    #[arg(long)]
    sam_checkpoint: Option<PathBuf>,
    /// Backbone preset of the SAM checkpoint: vit_b, vit_l or vit_h.
    #[arg(long, default_value = "vit_b")]
    backbone: String,
    /// Training time budget in minutes.
    #[arg(long)]
    minutes: Option<f64>,
    /// Maximum optimiser steps.
    #[arg(long)]
    steps: Option<u64>,
    /// Output folder (config, checkpoints, metrics, curves).
    #[arg(long, default_value = "runs/btcv_finetune")]
    out: PathBuf,
    /// Continue an interrupted run from its folder.
    #[arg(long)]
    resume: bool,
    /// Run seed.
    #[arg(long, default_value_t = 1234)]
    seed: u64,
    /// Device: cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> Result<()> {
    masam_app::runtime::init_cpu_training();
    let args = Args::parse();
    let mut cfg = match &args.data {
        Some(dir) => {
            let ckpt = args
                .sam_checkpoint
                .clone()
                .context("--data needs --sam-checkpoint (the official SAM weights)")?;
            let backbone = ImageEncoderConfig::preset(&args.backbone)?;
            let data = DataSource::Btcv { root: dir.clone() };
            let steps = args.steps.unwrap_or(30_000);
            let mut cfg = FinetuneConfig::paper(data, backbone, 12, steps, args.out.clone())
                .with_sam_checkpoint(ckpt)
                .with_seed(args.seed);
            cfg.export_reference = true;
            cfg
        }
        None => {
            println!("{}", masam_app::run_config::PHANTOM_NOTE);
            FinetuneConfig::phantom_default(
                args.steps.unwrap_or(5_000),
                args.seed,
                args.out.clone(),
            )
        }
    };
    if let Some(m) = args.minutes {
        cfg.time_budget_s = Some(m * 60.0);
    }
    cfg.resume = args.resume;
    masam_app::device::parse_device(&args.device)?;
    cfg.device = args.device.clone();

    let t0 = Instant::now();
    let (model, report) = finetune::run(&cfg, |s| {
        if s.step % 25 == 0 {
            println!("{:6.1}s  {s}", t0.elapsed().as_secs_f64());
        }
    })?;
    println!("{}", report.summary(&model, &cfg.out_dir));
    println!("total wall time {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}
