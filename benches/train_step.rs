//! Time of one training step of the `btcv_finetune` phantom default (10 slices of 128 × 128,
//! forward, backward, AdamW), printed as JSON. `cargo bench --bench train_step`.
//!
//! Environment: `MASAM_NO_PIXEL_SKIP=1` turns the decoder's pixel skips off (the previous
//! default), `CANDLE_NUM_THREADS=1` runs candle's element-wise ops on one thread.

use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use masam_adapter::data::{BatchLoader, InMemoryStacks, StackSource};
use masam_adapter::trainer::Trainer;
use masam_adapter::MaSam;
use masam_app::FinetuneConfig;
use masam_volume::transforms::SliceStack;

const WARMUP: usize = 3;
const RUNS: usize = 15;

fn main() {
    masam_app::runtime::init_cpu_training();
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
    let mut times = Vec::with_capacity(RUNS);
    for (i, b) in batches.iter().cycle().take(WARMUP + RUNS).enumerate() {
        let t = Instant::now();
        trainer.step(std::slice::from_ref(b)).expect("step");
        if i >= WARMUP {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\": \"train_step\", \"slices\": {}, \"pixel_skip\": {}, \"runs\": {RUNS}, \
         \"median_ms\": {:.1}, \"min_ms\": {:.1}}}",
        cfg.trainer.batch * cfg.model.slices,
        cfg.model.sam.decoder.pixel_skip,
        times[RUNS / 2],
        times[0]
    );
}
