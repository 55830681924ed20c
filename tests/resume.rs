//! Training can be interrupted and resumed: the loss sequence equals an uninterrupted run.

use candle_core::{DType, Device, Tensor};
use masam_adapter::data::Batch;
use masam_adapter::trainer::{Trainer, TrainerConfig};
use masam_adapter::{MaSam, MaSamConfig};
use masam_train::LrSchedule;

fn batch(k: usize) -> Batch {
    let dev = Device::Cpu;
    let n = 5 * 3 * 64 * 64;
    let img: Vec<f32> = (0..n)
        .map(|i| (((i * 31 + k * 7) % 97) as f32) / 97.0)
        .collect();
    let lab: Vec<i64> = (0..5 * 64 * 64)
        .map(|i| ((i / 64 + k) % 4) as i64)
        .collect();
    Batch::new(
        Tensor::from_vec(img, (1, 5, 3, 64, 64), &dev).unwrap(),
        Tensor::from_vec(lab, (5, 64, 64), &dev).unwrap(),
    )
}

fn config() -> MaSamConfig {
    let mut cfg = MaSamConfig::tiny();
    // FacT dropout draws from candle's unseeded RNG: switch it off for an exact comparison
    cfg.fact = cfg.fact.map(|f| f.with_dropout(0.0));
    cfg
}

fn trainer_cfg() -> TrainerConfig {
    TrainerConfig {
        steps: 4,
        batch: 1,
        accumulation: 1,
        schedule: LrSchedule::WarmupPoly {
            base_lr: 1e-3,
            warmup_iters: 2,
            max_iter: 10,
            power: 0.9,
        },
        ..TrainerConfig::default()
    }
}

#[test]
fn resumed_run_reproduces_the_uninterrupted_loss_sequence() {
    let dev = Device::Cpu;
    let model = MaSam::random(&config(), 7, &dev).unwrap();
    let mut t = Trainer::new(&model, trainer_cfg()).unwrap();
    let full: Vec<f32> = (0..4).map(|k| t.step(&[batch(k)]).unwrap().loss).collect();

    let dir = std::env::temp_dir().join(format!("masam-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("state.safetensors");
    let first = MaSam::random(&config(), 7, &dev).unwrap();
    let mut t1 = Trainer::new(&first, trainer_cfg()).unwrap();
    let mut resumed: Vec<f32> = (0..2).map(|k| t1.step(&[batch(k)]).unwrap().loss).collect();
    t1.save(&ckpt).unwrap();
    drop(t1);

    // a fresh process: the same frozen encoder (same seed; with real weights it comes from the
    // SAM checkpoint), trainable parameters at their initial values until the resume
    let second = MaSam::random(&config(), 7, &dev).unwrap();
    let mut t2 = Trainer::new(&second, trainer_cfg()).unwrap();
    t2.resume(&ckpt).unwrap();
    assert_eq!(t2.current_step(), 2);
    resumed.extend((2..4).map(|k| t2.step(&[batch(k)]).unwrap().loss));
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(full, resumed, "loss sequence after resume differs");
    // without the resume, step 2 would start from the initial weights and give another loss
    let fresh = MaSam::random(&config(), 7, &dev).unwrap();
    let mut t3 = Trainer::new(&fresh, trainer_cfg()).unwrap();
    assert_ne!(t3.step(&[batch(2)]).unwrap().loss, full[2]);
}

#[test]
fn resume_from_a_missing_or_foreign_file_fails_cleanly() {
    let dev = Device::Cpu;
    let model = MaSam::random(&config(), 1, &dev).unwrap();
    let mut t = Trainer::new(&model, trainer_cfg()).unwrap();
    assert!(t.resume("/nonexistent/state.safetensors").is_err());
    let dir = std::env::temp_dir().join(format!("masam-resume-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("foreign.safetensors");
    let mut m = std::collections::HashMap::new();
    m.insert("x".to_string(), Tensor::zeros(3, DType::F32, &dev).unwrap());
    candle_core::safetensors::save(&m, &p).unwrap();
    assert!(t.resume(&p).is_err());
    assert_eq!(t.current_step(), 0);
    std::fs::remove_dir_all(&dir).ok();
}
