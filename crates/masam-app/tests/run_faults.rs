//! Runs that go wrong: a diverging run stops with a clear error and saves no NaN model; an
//! interrupted and resumed run keeps its whole loss history.

use std::path::PathBuf;

use masam_adapter::LrSchedule;
use masam_app::{finetune, AppError, FinetuneConfig};

mod common;
use common::temp_dir;

/// The shared tiny run at a constant learning rate `lr`.
fn config(out: PathBuf, steps: u64, lr: f64) -> FinetuneConfig {
    common::tiny_run(out, steps, LrSchedule::Constant { lr }, 3)
}

#[test]
fn a_diverging_run_stops_and_saves_no_nan_model() {
    let out = temp_dir("diverge");
    let cfg = config(out.clone(), 30, 1e9);
    let err = finetune::run(&cfg, |_| {}).unwrap_err();
    let AppError::Diverged { source, checkpoint } = &err else {
        panic!("expected a divergence error, got {err}");
    };
    assert!(
        matches!(**source, masam_adapter::Error::NonFinite { .. }),
        "{source}"
    );
    let msg = err.to_string();
    assert!(msg.contains("not finite"), "{msg}");
    assert!(
        !out.join("model.safetensors").exists(),
        "a diverged run must not leave a model as its result"
    );
    // the steps before the failure are in loss.csv, all finite
    let rows = masam_app::loss_log::read_losses(out.join("loss.csv")).unwrap();
    assert!(rows.iter().all(|r| r.loss.is_finite()));
    if let Some((path, step)) = checkpoint {
        assert!(path.is_file());
        assert!(*step as usize <= rows.len());
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_resumed_run_keeps_the_whole_loss_history() {
    let out = temp_dir("resume");
    // a first process trains 4 steps (checkpoint every 2), then the run continues to 6
    let first = config(out.clone(), 4, 1e-3);
    finetune::run(&first, |_| {}).unwrap();
    let mut second = config(out.clone(), 6, 1e-3);
    second.resume = true;
    let (_, report) = finetune::run(&second, |_| {}).unwrap();
    assert_eq!(report.steps, 6);
    assert_eq!(
        report.history.len(),
        2,
        "the second process trains steps 4 and 5"
    );
    let rows = masam_app::loss_log::read_losses(out.join("loss.csv")).unwrap();
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    assert_eq!(steps, vec![0, 1, 2, 3, 4, 5]);
    std::fs::remove_dir_all(&out).ok();
}
