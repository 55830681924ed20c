//! A run with a time budget and `fit_schedule_to_budget` decays its learning rate over the
//! steps its budget allows, measured during the run, and keeps that horizon when resumed.

use std::path::PathBuf;

use masam_adapter::{LrSchedule, MaSamConfig};
use masam_app::schedule_horizon::{read_horizon, write_horizon, PROBE_STEPS, SKIP_STEPS};
use masam_app::{finetune, FinetuneConfig};

mod common;
use common::temp_dir;

const BASE_LR: f64 = 1e-3;

/// The shared tiny run (FacT dropout on, as the default) with a poly schedule whose configured
/// horizon (a million steps) the budget could never reach.
fn config(out: PathBuf, budget_s: f64) -> FinetuneConfig {
    let schedule = LrSchedule::WarmupPoly {
        base_lr: BASE_LR,
        warmup_iters: 5,
        max_iter: 1_000_000,
        power: 1.0,
    };
    let mut cfg = common::tiny_run(out, 1_000_000, schedule, 5);
    cfg.model.fact = MaSamConfig::tiny().fact;
    cfg.time_budget_s = Some(budget_s);
    cfg.fit_schedule_to_budget = true;
    cfg.checkpoint_every = 0;
    cfg
}

/// The logged (step, lr) pairs of a run folder.
fn lrs(out: &std::path::Path) -> Vec<(u64, f64)> {
    masam_app::loss_log::read_losses(out.join("loss.csv"))
        .unwrap()
        .iter()
        .map(|s| (s.step, s.lr))
        .collect()
}

#[test]
fn the_decay_ends_with_the_budget_and_a_resumed_run_keeps_the_horizon() {
    let out = temp_dir("fit");
    let cfg = config(out.clone(), 6.0);
    let (_, report) = finetune::run(&cfg, |_| {}).unwrap();
    let probe = (SKIP_STEPS + PROBE_STEPS) as u64;
    assert!(
        report.steps > probe,
        "the budget allowed only {} steps, the measurement needs {probe}",
        report.steps
    );
    let horizon = read_horizon(&out)
        .unwrap()
        .expect("the fitted horizon is written");
    // the budget is the same for the steps after the measurement as for those before it:
    // the run ends close to the fitted number of steps (machine noise aside)
    let ratio = report.steps as f64 / horizon as f64;
    assert!(
        (0.6..=1.02).contains(&ratio),
        "{} steps run, {horizon} fitted",
        report.steps
    );
    let log = lrs(&out);
    let (_, last) = *log.last().unwrap();
    // with the configured horizon the rate would still be the full base rate
    assert!(last < 0.45 * BASE_LR, "last rate {last}");
    // before the measurement ended the configured schedule applied (warmup, then ~base)
    let (_, at_probe) = log[probe as usize - 2];
    assert!(
        (at_probe - BASE_LR).abs() < 1e-6 * BASE_LR * 100.0,
        "{at_probe}"
    );

    // a resumed run reads the horizon instead of measuring again
    write_horizon(&out, report.steps + 40).unwrap();
    let mut more = cfg.clone();
    more.resume = true;
    more.time_budget_s = Some(0.5);
    more.checkpoint_every = 0;
    finetune::run(&more, |_| {}).unwrap();
    assert_eq!(read_horizon(&out).unwrap(), Some(report.steps + 40));
    let resumed = lrs(&out);
    let want = cfg.trainer.schedule.ending_at(report.steps + 40);
    for &(step, lr) in resumed.iter().filter(|(s, _)| *s >= report.steps) {
        assert!(
            (lr - want.lr_at(step)).abs() <= 1e-9 + 1e-6 * lr.abs(),
            "step {step}: {lr} against {}",
            want.lr_at(step)
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
