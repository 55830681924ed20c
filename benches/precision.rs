//! Mixed precision on the CPU: candle's matrix product in f32, bf16 and f16, and one training
//! step of the `btcv_finetune` phantom default in each precision (time and peak resident
//! memory). Prints JSON.
//!
//! `cargo bench --bench precision`; environment: `MASAM_BENCH_RUNS` (5 timed training steps
//! after 2 warm-up steps). Each precision's training steps run in a fresh process, so that its
//! peak resident memory (`VmHWM`, Linux; weights, activations and the allocator's cache
//! included) is its own. The half types are meant for GPUs: candle's CPU backend has no
//! bf16/f16 kernels worth the name (its CPU GEMM widens the operands), so on the CPU they cost
//! time and save only the memory of the stored frozen weights and activations.

use std::sync::Arc;
use std::time::Instant;

use masam_adapter::candle::{DType, Device, Tensor};
use masam_adapter::data::{BatchLoader, InMemoryStacks, StackSource};
use masam_adapter::trainer::Trainer;
use masam_adapter::{MaSam, Precision};
use masam_app::FinetuneConfig;
use masam_volume::transforms::SliceStack;

const WARMUP: usize = 2;

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median milliseconds of `(m, k) · (k, n)` in `dtype` (ViT-B's qkv projection of one 32 × 32
/// token window batch: 1024 rows, 768 → 2304).
fn matmul_ms(dtype: DType) -> f64 {
    let (m, k, n) = (1024, 768, 2304);
    let dev = Device::Cpu;
    let a = Tensor::rand(-1f32, 1., (m, k), &dev)
        .and_then(|t| t.to_dtype(dtype))
        .expect("a");
    let b = Tensor::rand(-1f32, 1., (k, n), &dev)
        .and_then(|t| t.to_dtype(dtype))
        .expect("b");
    let mut times = vec![];
    for i in 0..12 {
        let t = Instant::now();
        let c = a.matmul(&b).expect("matmul");
        drop(c);
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    median(times)
}

/// Training steps of the phantom default in `precision`, in this process: prints
/// `median_ms peak_mib skipped`.
fn child(precision: Precision, runs: usize) {
    masam_app::runtime::init_cpu_training();
    let mut cfg = FinetuneConfig::phantom_default(100, 1, std::env::temp_dir());
    cfg.trainer.precision = precision;
    let train = cfg.data.load().expect("phantom").train;
    let model = MaSam::random(&cfg.model, 0, &Device::Cpu)
        .and_then(|m| m.with_precision(precision))
        .expect("model");
    let stack = SliceStack::new(cfg.stack_config()).expect("stack config");
    let source: Arc<dyn StackSource> =
        Arc::new(InMemoryStacks::new(train, stack, None).expect("stacks"));
    let mut loader = BatchLoader::spawn(source, cfg.trainer.batch, 1, 0, 2).expect("loader");
    let batches: Vec<_> = (0..4)
        .map(|_| loader.next_batch().expect("batch").1)
        .collect();
    drop(loader);
    let mut trainer = Trainer::new(&model, cfg.trainer.clone()).expect("trainer");
    let mut times = Vec::with_capacity(runs);
    for (i, b) in batches.iter().cycle().take(WARMUP + runs).enumerate() {
        let t = Instant::now();
        trainer.step(std::slice::from_ref(b)).expect("step");
        if i >= WARMUP {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let peak = status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0;
    println!("{} {peak} {}", median(times), trainer.skipped_steps());
}

fn main() {
    let runs: usize = std::env::var("MASAM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    if let Some(p) = std::env::var("MASAM_BENCH_CHILD")
        .ok()
        .and_then(|v| v.parse::<Precision>().ok())
    {
        child(p, runs);
        return;
    }
    let mut matmul = vec![];
    for p in Precision::ALL {
        matmul.push(format!("\"{p}\": {:.2}", matmul_ms(p.dtype())));
    }
    let mut steps = vec![];
    for p in Precision::ALL {
        let exe = std::env::current_exe().expect("own path");
        let out = std::process::Command::new(exe)
            .env("MASAM_BENCH_CHILD", p.name())
            .env("MASAM_BENCH_RUNS", runs.to_string())
            .output()
            .expect("child process");
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<f64> = text
            .split_whitespace()
            .map(|v| v.parse::<f64>().unwrap_or(f64::NAN))
            .collect();
        let get = |i: usize| v.get(i).copied().unwrap_or(f64::NAN);
        steps.push(format!(
            "\"{p}\": {{\"median_ms\": {:.0}, \"peak_rss_mib\": {:.0}, \"skipped\": {}}}",
            get(0),
            get(1),
            get(2)
        ));
    }
    println!(
        "{{\"bench\": \"precision\", \"matmul_1024x768x2304_ms\": {{{}}}, \
         \"phantom_train_step\": {{\"runs\": {runs}, {}}}}}",
        matmul.join(", "),
        steps.join(", ")
    );
}
