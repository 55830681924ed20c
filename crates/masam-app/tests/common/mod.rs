//! Shared set-up of the run tests: a fresh scratch folder and the fixtures' tiny model on a
//! small phantom (64 px, 12 slices: 12 stacks, one training case, no held-out one).

use std::path::PathBuf;

use masam_adapter::volume::phantom::PhantomConfig;
use masam_adapter::{LrSchedule, MaSamConfig, TrainerConfig};
use masam_app::{DataSource, FinetuneConfig};

/// An empty folder under the system's temporary directory, unique to this process and `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("masam-app-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The tiny model (12 classes, FacT without dropout), batch 1, `steps` steps of `schedule`,
/// writing to `out`, no time budget, a checkpoint every 2 steps.
pub fn tiny_run(out: PathBuf, steps: u64, schedule: LrSchedule, seed: u64) -> FinetuneConfig {
    let mut model = MaSamConfig::tiny();
    model.sam.decoder.num_multimask_outputs = 12;
    model.fact = model.fact.map(|f| f.with_dropout(0.0));
    let mut cfg = FinetuneConfig::phantom_default(steps, seed, out);
    cfg.model = model;
    cfg.trainer = TrainerConfig {
        steps,
        batch: 1,
        accumulation: 1,
        schedule,
        seed,
        ..TrainerConfig::default()
    };
    cfg.data = DataSource::Phantom {
        phantom: PhantomConfig {
            height: 64,
            width: 64,
            slices: 12,
            spacing: [6.0, 6.0, 20.0],
            noise_sd_hu: 12.0,
        },
        train_cases: 1,
        test_cases: 0,
    };
    cfg.time_budget_s = None;
    cfg.checkpoint_every = 2;
    cfg
}
