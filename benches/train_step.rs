//! Time of one training step of the `btcv_finetune` phantom default (10 slices of 128 × 128,
//! forward, backward, AdamW), printed as JSON. `cargo bench --bench train_step`.
//!
//! Environment: `MASAM_NO_PIXEL_SKIP=1` turns the decoder's pixel skips off (the previous
//! default), `CANDLE_NUM_THREADS=1` runs candle's element-wise ops on one thread.
//! `MASAM_BENCH_CONFIG=small` times instead the small parameter-efficient model of the PyTorch
//! comparison (C 192, 4 blocks, 4 heads, global attention in blocks 1 and 3, window 14, 256 ×
//! 256, one volume of 5 slices, 4 classes, FacT rank 8, adapters of 64 channels; random weights
//! and data). The JSON also has the process's peak resident memory.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use masam_adapter::conv3d::Adapter3dConfig;
use masam_adapter::data::{BatchLoader, InMemoryStacks, StackSource};
use masam_adapter::fact::FactConfig;
use masam_adapter::trainer::Trainer;
use masam_adapter::{Batch, ImageEncoderConfig, MaSam, MaSamConfig, TrainerConfig};
use masam_app::FinetuneConfig;
use masam_volume::transforms::SliceStack;

const WARMUP: usize = 3;
const RUNS: usize = 15;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Median and minimum milliseconds of `RUNS` steps after `WARMUP`.
fn time_steps(mut step: impl FnMut(usize)) -> (f64, f64) {
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..WARMUP + RUNS {
        let t = Instant::now();
        step(i);
        if i >= WARMUP {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    (times[RUNS / 2], times[0])
}

/// The small parameter-efficient configuration (see the module documentation).
fn small() {
    let mut enc = ImageEncoderConfig::vit_b();
    enc.embed_dim = 192;
    enc.depth = 4;
    enc.num_heads = 4;
    enc.global_attn_indexes = vec![1, 3];
    let mut cfg = MaSamConfig::from_backbone(enc, 256, 4);
    cfg.fact = Some(FactConfig::ma_sam().with_rank(8));
    cfg.adapter = Some(Adapter3dConfig::for_dim(192).with_channels(64));
    let model = MaSam::random(&cfg, 0, &Device::Cpu).expect("model");
    let tc = TrainerConfig {
        batch: 1,
        accumulation: 1,
        ..TrainerConfig::default()
    };
    let mut trainer = Trainer::new(&model, tc).expect("trainer");
    let (d, img, k) = (cfg.slices, 256, cfg.num_classes() + 1);
    let images = Tensor::rand(0f32, 1., (1, d, 3, img, img), &Device::Cpu).expect("images");
    let labels = Tensor::rand(0f32, k as f32, (d, img, img), &Device::Cpu)
        .and_then(|t| t.floor()?.clamp(0f32, (k - 1) as f32)?.to_dtype(DType::I64))
        .expect("labels");
    let batch = Batch::new(images, labels);
    let (median, min) = time_steps(|_| {
        trainer.step(std::slice::from_ref(&batch)).expect("step");
    });
    println!(
        "{{\"bench\": \"train_step\", \"config\": \"small\", \"slices\": {d}, \"img\": {img}, \
         \"runs\": {RUNS}, \"median_ms\": {median:.1}, \"min_ms\": {min:.1}, \
         \"peak_rss_mib\": {:.0}}}",
        peak_rss_mib()
    );
}

fn main() {
    masam_app::runtime::init_cpu_training();
    if std::env::var("MASAM_BENCH_CONFIG").as_deref() == Ok("small") {
        return small();
    }
    let mut cfg = FinetuneConfig::phantom_default(100, 1, std::env::temp_dir());
    if std::env::var_os("MASAM_NO_PIXEL_SKIP").is_some() {
        cfg.model.sam.decoder.pixel_skip = false;
    }
    let train = cfg.data.load().expect("phantom").train;
    let model = MaSam::random(&cfg.model, 0, &Device::Cpu).expect("model");
    let stack = SliceStack::new(cfg.stack_config()).expect("stack config");
    let source: Arc<dyn StackSource> =
        Arc::new(InMemoryStacks::new(train, stack, None).expect("stacks"));
    let mut loader = BatchLoader::spawn(source, cfg.trainer.batch, 1, 0, 2).expect("loader");
    let batches: Vec<_> = (0..8)
        .map(|_| loader.next_batch().expect("batch").1)
        .collect();
    drop(loader);
    let mut trainer = Trainer::new(&model, cfg.trainer.clone()).expect("trainer");
    let (median, min) = time_steps(|i| {
        let b = &batches[i % batches.len()];
        trainer.step(std::slice::from_ref(b)).expect("step");
    });
    println!(
        "{{\"bench\": \"train_step\", \"slices\": {}, \"pixel_skip\": {}, \"runs\": {RUNS}, \
         \"median_ms\": {median:.1}, \"min_ms\": {min:.1}, \"peak_rss_mib\": {:.0}}}",
        cfg.trainer.batch * cfg.model.slices,
        cfg.model.sam.decoder.pixel_skip,
        peak_rss_mib()
    );
}
