//! Memory and time of prediction, printed as JSON lines.
//!
//! 1. One forward pass of one 5-slice window: the training model in eval mode (its `Var`
//!    weights make candle record a graph and keep every intermediate) against
//!    `MaSam::to_inference` (plain tensors, FacT merged).
//! 2. With `MASAM_BENCH_VOLUME` set: `predict_volume_with` (what `masam predict` runs) on random
//!    CT volumes of `img × img × N` voxels, N from the list in `MASAM_BENCH_VOLUME` (e.g.
//!    `24,96`), at every stride of `MASAM_BENCH_STRIDES` (default `1,5`): wall time per volume
//!    and per window, slices per second, peak resident memory.
//!
//! `cargo bench --bench inference`; environment: `MASAM_BENCH_BACKBONE` (vit_b), `MASAM_BENCH_IMG`
//! (256; the paper's 512 needs about 16 GiB for the graph-recording forward; `MASAM_BENCH_SKIP_GRAPH=1`
//! leaves that case out), `MASAM_BENCH_RUNS` (2), `MASAM_BENCH_BATCH` (windows per forward pass of
//! the volume case, 4 as `masam predict`). Each measurement runs in a fresh process (the
//! allocator keeps freed memory, so one process cannot measure two peaks); the memory reported
//! is that process's peak resident memory (`VmHWM`, Linux), weights and volume included.

use std::time::Instant;

use masam_adapter::candle::{Device, Tensor};
use masam_adapter::predict::{predict_volume_with, PredictOptions};
use masam_adapter::volume::ndarray::Array3;
use masam_adapter::volume::transforms::{SliceStack, StackConfig};
use masam_adapter::volume::Volume;
use masam_adapter::{ImageEncoderConfig, MaSam, MaSamConfig, Mode};

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn peak_mib() -> f64 {
    status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0
}

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat` (clock
/// ticks of 1/100 s); NaN where unavailable. On a shared machine it varies less than wall time.
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() == 2 {
        (f[0] + f[1]) / 100.0
    } else {
        f64::NAN
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Runs one forward pass in this process and prints `seconds peak_mib cpu_seconds`.
fn child_forward(mode: &str, cfg: &MaSamConfig, img: usize) {
    let model = MaSam::random(cfg, 0, &Device::Cpu).expect("model");
    let model = if mode == "inference" {
        model.to_inference().expect("inference model")
    } else {
        model
    };
    let x = Tensor::rand(0f32, 1., (1, cfg.slices, 3, img, img), &Device::Cpu).expect("input");
    let (t, c) = (Instant::now(), cpu_seconds());
    let out = model.segment(&x, Mode::Eval).expect("forward");
    let (secs, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    drop(out);
    println!("{secs} {} {cpu}", peak_mib());
}

/// Predicts one random `img × img × slices` CT volume in this process and prints
/// `seconds peak_mib windows cpu_seconds`.
fn child_volume(cfg: &MaSamConfig, img: usize, slices: usize, stride: usize, batch: usize) {
    let model = MaSam::random(cfg, 0, &Device::Cpu)
        .expect("model")
        .to_inference()
        .expect("inference model");
    // HU-like values, deterministic (no random generator needed)
    let data = Array3::from_shape_fn((slices, img, img), |(z, y, x)| {
        ((z * 7 + y * 13 + x * 31) % 2000) as f32 - 1000.0
    });
    let volume = Volume::with_spacing(data, [0.8, 0.8, 2.5]);
    let stack = SliceStack::new(
        StackConfig::default()
            .with_out_size(img, img)
            .with_depth(cfg.slices),
    )
    .expect("stack config");
    let opts = PredictOptions {
        batch,
        stride,
        device: Device::Cpu,
    };
    let windows =
        (0..slices).step_by(stride).count() + usize::from(!(slices - 1).is_multiple_of(stride));
    let (t, c) = (Instant::now(), cpu_seconds());
    let labels = predict_volume_with(&model, &volume, &stack, &opts, None).expect("prediction");
    let (secs, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    assert_eq!(labels.shape_zyx(), [slices, img, img]);
    println!("{secs} {} {windows} {cpu}", peak_mib());
}

/// The numbers a fresh child process printed for `mode`.
fn measure(mode: &str) -> Vec<f64> {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .env("MASAM_BENCH_CHILD", mode)
        .output()
        .expect("child process");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN))
        .collect();
    if v.len() < 4 {
        let mut v = v;
        v.resize(4, f64::NAN);
        v
    } else {
        v
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    masam_adapter::nn::runtime::tune_allocator();
    let backbone = std::env::var("MASAM_BENCH_BACKBONE").unwrap_or_else(|_| "vit_b".into());
    let img = env_usize("MASAM_BENCH_IMG", 256);
    let runs = env_usize("MASAM_BENCH_RUNS", 2).max(1);
    let batch = env_usize("MASAM_BENCH_BATCH", 4).max(1);
    let enc = ImageEncoderConfig::preset(&backbone).expect("backbone preset");
    let cfg = MaSamConfig::from_backbone(enc, img, 12);
    if let Ok(mode) = std::env::var("MASAM_BENCH_CHILD") {
        if let Some(rest) = mode.strip_prefix("volume:") {
            let mut it = rest.split(':').filter_map(|s| s.parse().ok());
            let (slices, stride) = (it.next().unwrap_or(24), it.next().unwrap_or(1));
            return child_volume(&cfg, img, slices, stride, batch);
        }
        return child_forward(&mode, &cfg, img);
    }
    let skip_graph = std::env::var_os("MASAM_BENCH_SKIP_GRAPH").is_some();
    let (mut t_graph, mut m_graph, mut t_inf, mut m_inf) = (vec![], vec![], vec![], vec![]);
    let mut c_inf = vec![];
    for _ in 0..runs {
        // alternate, so that machine load affects both alike
        if !skip_graph {
            let v = measure("graph");
            t_graph.push(v[0]);
            m_graph.push(v[1]);
        }
        let v = measure("inference");
        t_inf.push(v[0]);
        m_inf.push(v[1]);
        c_inf.push(v[2]);
    }
    println!(
        "{{\"bench\": \"inference\", \"backbone\": \"{backbone}\", \"img\": {img}, \"slices\": {}, \
         \"runs\": {runs}, \"graph_s\": {:.2}, \"graph_peak_rss_mib\": {:.0}, \"inference_s\": {:.2}, \
         \"inference_peak_rss_mib\": {:.0}, \"inference_cpu_s\": {:.2}, \"inference_all_s\": {:?}}}",
        cfg.slices,
        median(t_graph),
        median(m_graph),
        median(t_inf.clone()),
        median(m_inf),
        median(c_inf),
        t_inf
    );
    if std::env::var_os("MASAM_BENCH_VOLUME").is_none() {
        return;
    }
    for slices in env_list("MASAM_BENCH_VOLUME", "24") {
        for stride in env_list("MASAM_BENCH_STRIDES", "1,5") {
            if slices == 0 || stride == 0 {
                continue;
            }
            let v = measure(&format!("volume:{slices}:{stride}"));
            let (secs, peak, windows, cpu) = (v[0], v[1], v[2], v[3]);
            println!(
                "{{\"bench\": \"predict_volume\", \"backbone\": \"{backbone}\", \"img\": {img}, \
                 \"volume_slices\": {slices}, \"stride\": {stride}, \"batch\": {batch}, \
                 \"windows\": {windows}, \"volume_s\": {secs:.2}, \"window_s\": {:.2}, \
                 \"slices_per_s\": {:.3}, \"cpu_s\": {cpu:.1}, \"peak_rss_mib\": {peak:.0}}}",
                secs / windows,
                slices as f64 / secs
            );
        }
    }
}
