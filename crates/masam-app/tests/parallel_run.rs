//! Whole fine-tuning runs with 2 data-parallel ranks (threads, CPU communicator): the same
//! model and losses as one process accumulating the ranks' shards, rank 0 alone writes the run
//! folder, and a diverging run stops every rank with the divergence error (no hang).

use std::path::PathBuf;

use masam_adapter::LrSchedule;
use masam_app::{finetune, parallel, AppError, FinetuneConfig};

mod common;
use common::temp_dir;

/// The shared tiny run at a constant learning rate `lr`, `accumulation` micro-batches per step.
fn config(out: PathBuf, steps: u64, accumulation: usize, lr: f64) -> FinetuneConfig {
    let mut cfg = common::tiny_run(out, steps, LrSchedule::Constant { lr }, 3);
    cfg.trainer.accumulation = accumulation;
    // class-balanced sampling draws its coin per (global) batch, so ranks sharing one batch of 2
    // and one process accumulating two batches of 1 see different stacks; uniform draws match
    cfg.sampling = masam_adapter::data::Sampling::Uniform;
    cfg
}

fn weights(m: &masam_adapter::MaSam) -> Vec<Vec<f32>> {
    m.trainable_vars()
        .values()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

#[test]
fn two_ranks_train_like_one_process_accumulating_their_shards() {
    let out2 = temp_dir("two");
    let (m2, r2) =
        parallel::run_threads(&config(out2.clone(), 3, 1, 1e-3), None, 2, |_| {}).unwrap();
    let out1 = temp_dir("one");
    let (m1, r1) = finetune::run(&config(out1.clone(), 3, 2, 1e-3), |_| {}).unwrap();
    assert_eq!(r2.steps, 3);
    for (a, b) in r2.history.iter().zip(&r1.history) {
        assert!((a.loss - b.loss).abs() < 1e-5, "{a} vs {b}");
    }
    let mut worst = 0f32;
    for (a, b) in weights(&m2).iter().zip(weights(&m1)) {
        for (x, y) in a.iter().zip(&b) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(worst < 1e-5, "weights differ by {worst}");
    // rank 0 wrote one loss history and the run's files
    let rows = masam_app::loss_log::read_losses(out2.join("loss.csv")).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.step).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(out2.join("model.safetensors").is_file());
    assert!(out2.join(finetune::TRAIN_STATE_FILE).is_file());
    std::fs::remove_dir_all(&out1).ok();
    std::fs::remove_dir_all(&out2).ok();
}

#[test]
fn a_diverging_two_rank_run_stops_every_rank_with_the_divergence() {
    let out = temp_dir("diverge");
    let Err(err) = parallel::run_threads(&config(out.clone(), 30, 1, 1e9), None, 2, |_| {}) else {
        panic!("a learning rate of 1e9 diverges");
    };
    assert!(matches!(err, AppError::Diverged { .. }), "{err}");
    assert!(!out.join("model.safetensors").exists());
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn zero_ranks_are_refused() {
    let out = temp_dir("zero");
    let e = parallel::run_threads(&config(out.clone(), 1, 1, 1e-3), None, 0, |_| {});
    assert!(matches!(e, Err(AppError::Config(_))));
    std::fs::remove_dir_all(&out).ok();
}
