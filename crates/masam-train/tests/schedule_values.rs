//! Learning-rate schedule values at the reference's boundary steps: warmup to 8e-4 over 250
//! steps, then poly decay with power 7, as the authors' `trainer.py` sets them.

use masam_train::LrSchedule;

const BASE: f64 = 8e-4;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-15 * b.abs().max(1e-30)
}

#[test]
fn reference_warmup_poly_boundaries() {
    let iters_per_epoch = 1000;
    let max_iter = 400 * iters_per_epoch;
    let s = LrSchedule::reference(max_iter);
    s.validate().unwrap();
    // i = 0: the lr the optimiser is built with.
    assert!(close(s.lr_at(0), BASE / 250.0));
    // 1 ≤ i ≤ 250: base·i/250 (so step 1 repeats step 0's value).
    assert!(close(s.lr_at(1), BASE / 250.0));
    assert!(close(s.lr_at(2), BASE * 2.0 / 250.0));
    assert!(close(s.lr_at(125), BASE * 125.0 / 250.0));
    assert!(close(s.lr_at(250), BASE));
    // i ≥ 251: base·(1 − (i − 251)/max_iter)^7.
    assert!(close(s.lr_at(251), BASE));
    assert!(close(
        s.lr_at(252),
        BASE * (1.0 - 1.0 / max_iter as f64).powf(7.0)
    ));
    let i = 1000u64;
    assert!(close(
        s.lr_at(i),
        BASE * (1.0 - (i - 251) as f64 / max_iter as f64).powf(7.0)
    ));
    // The reference stops at epoch 300 of 400: lr ≈ base·0.25^7 ≈ 4.9e-8.
    let stop = 300 * iters_per_epoch - 1;
    let want = BASE * (1.0 - (stop - 251) as f64 / max_iter as f64).powf(7.0);
    assert!(close(s.lr_at(stop), want));
    assert!((s.lr_at(stop) - 4.9e-8).abs() < 1e-9, "{}", s.lr_at(stop));
    // i = max_iter: base·(251/max_iter)^7.
    let want = BASE * (251.0 / max_iter as f64).powf(7.0);
    // (1 − (max − 251)/max) cancels catastrophically, so compare at 1e-9 relative here.
    assert!((s.lr_at(max_iter) - want).abs() <= 1e-9 * want);
    assert!(s.lr_at(max_iter) > 0.0);
    // i = max_iter + 251: exactly 0, and clamped at 0 afterwards (no negative base^odd power).
    assert_eq!(s.lr_at(max_iter + 251), 0.0);
    assert_eq!(s.lr_at(max_iter + 10_000), 0.0);
}

#[test]
fn configurable_warmup_power_and_no_warmup() {
    let s = LrSchedule::WarmupPoly {
        base_lr: 1.0,
        warmup_iters: 10,
        max_iter: 100,
        power: 0.9,
    };
    assert_eq!(s.lr_at(0), 0.1);
    assert_eq!(s.lr_at(10), 1.0);
    assert!(close(s.lr_at(61), 0.5f64.powf(0.9)));
    let s = LrSchedule::WarmupPoly {
        base_lr: 1.0,
        warmup_iters: 0,
        max_iter: 100,
        power: 1.0,
    };
    assert_eq!(s.lr_at(0), 1.0);
    assert_eq!(s.lr_at(1), 1.0);
    assert!(close(s.lr_at(51), 0.5));
}

#[test]
fn constant_and_cosine() {
    assert_eq!(LrSchedule::Constant { lr: 3e-4 }.lr_at(12345), 3e-4);
    let s = LrSchedule::WarmupCosine {
        base_lr: 1.0,
        warmup_iters: 4,
        max_iter: 100,
        min_lr: 0.1,
    };
    s.validate().unwrap();
    assert_eq!(s.lr_at(0), 0.25);
    assert_eq!(s.lr_at(4), 1.0);
    assert_eq!(s.lr_at(5), 1.0);
    assert!(close(s.lr_at(55), 0.55));
    assert!(close(s.lr_at(105), 0.1));
    assert!(close(s.lr_at(1000), 0.1));
}

#[test]
fn invalid_schedules_are_rejected_and_serde_round_trips() {
    assert!(LrSchedule::reference(0).validate().is_err());
    assert!(LrSchedule::Constant { lr: f64::NAN }.validate().is_err());
    assert!(LrSchedule::WarmupCosine {
        base_lr: 0.1,
        warmup_iters: 0,
        max_iter: 10,
        min_lr: 0.2
    }
    .validate()
    .is_err());
    let s = LrSchedule::reference(5000);
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"kind\":\"warmup_poly\""));
    assert_eq!(serde_json::from_str::<LrSchedule>(&json).unwrap(), s);
    assert_eq!(LrSchedule::default(), LrSchedule::reference(40_000));
}
