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
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use clap::Parser;
use masam_adapter::data::{BatchLoader, InMemoryStacks, LabelledVolume, StackSource};
use masam_adapter::predict::predict_volume;
use masam_adapter::trainer::{Trainer, TrainerConfig};
use masam_adapter::{Finetune, MaSam, MaSamConfig};
use masam_metrics::{Classes, DiceConfig, DiceMetric, Metric};
use masam_train::{AdamWConfig, LrSchedule};
use masam_volume::augment::{Recipe, RecipeConfig};
use masam_volume::phantom::{Organ, Phantom, PhantomConfig};
use masam_volume::transforms::{SliceStack, StackConfig};

#[derive(Parser, Debug)]
#[command(
    about = "Fine-tune MA-SAM on BTCV (or, by default, on a synthetic abdomen phantom) and evaluate it"
)]
struct Args {
    /// BTCV folder (img/imgXXXX.nii.gz, label/labelXXXX.nii.gz). Default: the synthetic phantom.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Official SAM checkpoint (.pth or .safetensors) for the frozen backbone.
    #[arg(long)]
    sam_checkpoint: Option<PathBuf>,
    /// Backbone preset of the SAM checkpoint: vit_b, vit_l or vit_h.
    #[arg(long, default_value = "vit_b")]
    backbone: String,
    /// Training time budget in minutes (training stops at --steps or at this budget).
    #[arg(long, default_value_t = 7.0)]
    minutes: f64,
    /// Maximum optimiser steps.
    #[arg(long, default_value_t = 100_000)]
    steps: u64,
    /// Stacks per optimiser step.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Number of synthetic training / test volumes (phantom mode).
    #[arg(long, default_value_t = 12)]
    train_cases: usize,
    #[arg(long, default_value_t = 3)]
    test_cases: usize,
    /// Output folder (checkpoint, metrics).
    #[arg(long, default_value = "runs/btcv_finetune")]
    out: PathBuf,
    /// Run seed.
    #[arg(long, default_value_t = 1234)]
    seed: u64,
}

/// The embedded default: a small ViT on 128 px phantom slices, trained end to end.
fn phantom_model() -> MaSamConfig {
    let mut enc = masam_sam::ImageEncoderConfig::vit_b();
    enc.embed_dim = 96;
    enc.depth = 4;
    enc.num_heads = 4;
    enc.global_attn_indexes = vec![1, 3];
    enc.window_size = 4;
    enc.patch_size = 8;
    enc.out_chans = 64;
    let mut cfg = MaSamConfig::from_backbone(enc, 128, 12);
    cfg.sam.decoder.upscaling_channels = vec![32, 16, 8];
    cfg.sam.decoder.transformer.num_heads = 4;
    cfg.sam.decoder.transformer.mlp_dim = 256;
    cfg.fact = None;
    cfg.adapter = Some(masam_conv3d::Adapter3dConfig::for_dim(96).with_channels(48));
    cfg.finetune = Finetune::Full;
    cfg
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dev = Device::Cpu;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let (cfg, model, train, test, names) = if let Some(dir) = &args.data {
        let ckpt = args
            .sam_checkpoint
            .as_ref()
            .context("--data needs --sam-checkpoint (the official SAM weights)")?;
        let backbone = masam_sam::ImageEncoderConfig::preset(&args.backbone)?;
        let cfg = MaSamConfig::from_backbone(backbone, 512, 12);
        let sam = masam_sam::SamCheckpoint::load(ckpt)?;
        let model = MaSam::from_sam_checkpoint(&cfg, &sam, args.seed, &dev)?;
        let (train, test) = load_btcv(dir)?;
        let names: Vec<String> = (1..=12).map(|i| format!("class_{i}")).collect();
        (cfg, model, train, test, names)
    } else {
        println!("NOTE: no --data given: training on a SYNTHETIC abdomen phantom (not real CT),");
        println!(
            "      with a small randomly initialised backbone trained end to end (no SAM weights)."
        );
        let cfg = phantom_model();
        let model = MaSam::random(&cfg, args.seed, &dev)?;
        let phantom = Phantom::new(PhantomConfig::default())?;
        let case = |s: u64| {
            let (image, label) = phantom.case(s);
            LabelledVolume { image, label }
        };
        let train = (0..args.train_cases as u64).map(case).collect();
        let test = (0..args.test_cases as u64)
            .map(|i| case(10_000 + i))
            .collect();
        let names: Vec<String> = (1..=12u8)
            .map(|l| {
                Organ::from_label(l)
                    .map(|o| o.name().to_string())
                    .unwrap_or_default()
            })
            .collect();
        (cfg, model, train, test, names)
    };
    let img = cfg.sam.encoder.img_size;
    let orient = args.data.is_some();
    let stack_cfg = StackConfig {
        out_size: Some((img, img)),
        orient,
        ..StackConfig::default()
    }
    .with_depth(cfg.slices);
    let stack = SliceStack::new(stack_cfg)?;
    let recipe = Recipe::new(RecipeConfig::reference(), args.seed)?;
    let source = Arc::new(InMemoryStacks::new(
        train,
        SliceStack::new(stack_cfg)?,
        Some(recipe),
    )?);

    let n_params: usize = model
        .trainable_vars()
        .values()
        .map(|v| v.elem_count())
        .sum();
    let lr = args
        .lr
        .unwrap_or(if args.data.is_some() { 8e-4 } else { 2e-3 });
    let est_steps = args
        .steps
        .min(if args.data.is_some() { 100_000 } else { 3_000 });
    let tcfg = TrainerConfig {
        steps: args.steps,
        batch: args.batch,
        accumulation: 1,
        optimizer: AdamWConfig::default().with_weight_decay(if args.data.is_some() {
            0.1
        } else {
            0.01
        }),
        schedule: LrSchedule::WarmupPoly {
            base_lr: lr,
            warmup_iters: 50,
            max_iter: est_steps,
            power: 0.9,
        },
        seed: args.seed,
        ..TrainerConfig::default()
    };
    println!(
        "model: {} trainable parameters, {} stacks of {} slices at {img} px",
        n_params,
        source.len(),
        cfg.slices
    );
    let mut trainer = Trainer::new(&model, tcfg)?;
    let mut loader = BatchLoader::spawn(
        source.clone() as Arc<dyn StackSource>,
        args.batch,
        args.seed,
        0,
        4,
    )?;
    let start = Instant::now();
    let budget = args.minutes * 60.0;
    let mut log = String::from("step,seconds,lr,loss,ce,dice\n");
    let mut ema = None::<f32>;
    while trainer.current_step() < args.steps && start.elapsed().as_secs_f64() < budget {
        let (_, batch) = loader.next_batch()?;
        let s = trainer.step(&[batch])?;
        let e = ema.map_or(s.loss, |e| 0.95 * e + 0.05 * s.loss);
        ema = Some(e);
        log.push_str(&format!(
            "{},{:.1},{:.3e},{:.4},{:.4},{:.4}\n",
            s.step,
            start.elapsed().as_secs_f64(),
            s.lr,
            s.loss,
            s.ce,
            s.dice
        ));
        if s.step % 50 == 0 {
            println!(
                "step {:5}  {:6.1}s  lr {:.2e}  loss {:.4} (avg {:.4})",
                s.step,
                start.elapsed().as_secs_f64(),
                s.lr,
                s.loss,
                e
            );
        }
    }
    drop(loader);
    let train_s = start.elapsed().as_secs_f64();
    std::fs::write(args.out.join("loss.csv"), log)?;
    model.save_trainable(args.out.join("model.safetensors"))?;
    println!(
        "trained {} steps in {:.0} s; evaluating {} held-out volumes",
        trainer.current_step(),
        train_s,
        test.len()
    );

    let classes = Classes::foreground(12).with_names(names)?;
    let mut dice = DiceMetric::new(DiceConfig::default(), classes)?;
    for (i, case) in test.iter().enumerate() {
        let pred = predict_volume(&model, &case.image, &stack, 8, &dev)?;
        let s = case.image.spacing;
        dice.update_case(
            format!("case_{i}"),
            pred.data.view(),
            case.label.data.view(),
            [s[2], s[1], s[0]],
        )?;
    }
    let report = dice.aggregate();
    println!("{report}");
    report.write_csv(args.out.join("metrics.csv"))?;
    report.write_json(args.out.join("metrics.json"))?;
    println!(
        "mean Dice over 12 organs: {:.4} (train {:.0} s, {} steps)",
        report.mean(),
        train_s,
        trainer.current_step()
    );
    Ok(())
}

fn load_btcv(dir: &std::path::Path) -> Result<(Vec<LabelledVolume>, Vec<LabelledVolume>)> {
    let cases = masam_volume::dataset::btcv::cases(dir)?;
    let (mut train, mut test) = (vec![], vec![]);
    for c in cases {
        let Some(label_path) = &c.label else { continue };
        let image = masam_volume::io::nifti::read_nifti(&c.image)?;
        let mut label = masam_volume::io::nifti::read_nifti(label_path)?
            .map(|v: &f32| v.round().clamp(0.0, 255.0) as u8);
        label.data.mapv_inplace(|v| if v == 13 { 12 } else { v });
        let lv = LabelledVolume { image, label };
        let id: u32 =
            c.id.trim_start_matches(|ch: char| !ch.is_ascii_digit())
                .parse()
                .unwrap_or(0);
        if (35..=40).contains(&id) {
            test.push(lv)
        } else {
            train.push(lv)
        }
    }
    anyhow::ensure!(
        !train.is_empty(),
        "no labelled BTCV cases under {}",
        dir.display()
    );
    Ok((train, test))
}
