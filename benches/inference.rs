//! Memory and time of one prediction forward pass: the training model in eval mode (its `Var`
//! weights make candle record a graph and keep every intermediate) against
//! `MaSam::to_inference` (plain tensors, FacT merged). Prints JSON.
//!
//! `cargo bench --bench inference`; environment: `MASAM_BENCH_BACKBONE` (vit_b), `MASAM_BENCH_IMG`
//! (256; the paper's 512 needs about 16 GiB for the graph-recording forward), `MASAM_BENCH_RUNS`
//! (2). Each forward runs in a fresh process (the allocator keeps freed memory, so one process
//! cannot measure two peaks); the figure reported is that process's peak resident memory
//! (`VmHWM`, Linux), weights included.

use std::time::Instant;

use masam_adapter::candle::{Device, Tensor};
use masam_adapter::{ImageEncoderConfig, MaSam, MaSamConfig, Mode};

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs one forward pass in this process and prints `seconds peak_mib` (the process's
/// resident-memory high-water mark, weights included).
fn child(mode: &str, cfg: &MaSamConfig, img: usize) {
    let model = MaSam::random(cfg, 0, &Device::Cpu).expect("model");
    let model = if mode == "inference" {
        model.to_inference().expect("inference model")
    } else {
        model
    };
    let x = Tensor::rand(0f32, 1., (1, cfg.slices, 3, img, img), &Device::Cpu).expect("input");
    let t = Instant::now();
    let out = model.segment(&x, Mode::Eval).expect("forward");
    let secs = t.elapsed().as_secs_f64();
    drop(out);
    let peak = status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0;
    println!("{secs} {peak}");
}

/// (seconds, peak MiB) of a fresh process running `mode`.
fn measure(mode: &str) -> (f64, f64) {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .env("MASAM_BENCH_CHILD", mode)
        .output()
        .expect("child process");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    (it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    masam_adapter::nn::runtime::tune_allocator();
    let backbone = std::env::var("MASAM_BENCH_BACKBONE").unwrap_or_else(|_| "vit_b".into());
    let img: usize = std::env::var("MASAM_BENCH_IMG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let runs: usize = std::env::var("MASAM_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let enc = ImageEncoderConfig::preset(&backbone).expect("backbone preset");
    let cfg = MaSamConfig::from_backbone(enc, img, 12);
    if let Ok(mode) = std::env::var("MASAM_BENCH_CHILD") {
        return child(&mode, &cfg, img);
    }
    let (mut t_graph, mut m_graph, mut t_inf, mut m_inf) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        // alternate, so that machine load affects both alike
        let (t, m) = measure("graph");
        t_graph.push(t);
        m_graph.push(m);
        let (t, m) = measure("inference");
        t_inf.push(t);
        m_inf.push(m);
    }
    println!(
        "{{\"bench\": \"inference\", \"backbone\": \"{backbone}\", \"img\": {img}, \"slices\": {}, \
         \"runs\": {runs}, \"graph_s\": {:.2}, \"graph_peak_rss_mib\": {:.0}, \"inference_s\": {:.2}, \
         \"inference_peak_rss_mib\": {:.0}}}",
        cfg.slices,
        median(t_graph),
        median(m_graph),
        median(t_inf),
        median(m_inf)
    );
}
