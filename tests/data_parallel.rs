//! Data-parallel training on the CPU communicator: ranks as threads, each with its own model.
//!
//! - with a per-pixel loss (cross-entropy), 2 ranks with batch b take the same steps as one
//!   process with batch 2b;
//! - with the reference Dice + CE loss (Dice sums over the batch), 2 ranks with batch b take
//!   the same steps as one process with batch b and 2 accumulated micro-batches;
//! - rank 0's trainable weights reach every rank at the start; every rank ends with the same
//!   weights; a 2-rank run resumed from rank 0's checkpoint continues identically.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use masam_adapter::data::Batch;
use masam_adapter::dist::{buckets, Communicator, ThreadComm, ThreadGroup};
use masam_adapter::trainer::{Trainer, TrainerConfig};
use masam_adapter::{MaSam, MaSamConfig};
use masam_train::losses::DiceCeLossConfig;
use masam_train::LrSchedule;

const STEPS: usize = 3;

/// Stack `k`: one volume of 5 slices of 64², labels in 0..4.
fn batch(k: usize) -> Batch {
    let dev = Device::Cpu;
    let n = 5 * 3 * 64 * 64;
    let img: Vec<f32> = (0..n)
        .map(|i| (((i * 31 + k * 7) % 97) as f32) / 97.0)
        .collect();
    let lab: Vec<i64> = (0..5 * 64 * 64)
        .map(|i| ((i / 64 + 3 * k) % 4) as i64)
        .collect();
    Batch::new(
        Tensor::from_vec(img, (1, 5, 3, 64, 64), &dev).unwrap(),
        Tensor::from_vec(lab, (5, 64, 64), &dev).unwrap(),
    )
}

/// Stacks `ks` as one batch.
fn joined(ks: &[usize]) -> Batch {
    let bs: Vec<Batch> = ks.iter().map(|&k| batch(k)).collect();
    let images: Vec<&Tensor> = bs.iter().map(|b| &b.images).collect();
    let labels: Vec<&Tensor> = bs.iter().map(|b| &b.labels).collect();
    Batch::new(
        Tensor::cat(&images, 0).unwrap(),
        Tensor::cat(&labels, 0).unwrap(),
    )
}

fn model(seed: u64) -> MaSam {
    let mut cfg = MaSamConfig::tiny();
    // FacT dropout draws from candle's unseeded RNG: off for an exact comparison
    cfg.fact = cfg.fact.map(|f| f.with_dropout(0.0));
    MaSam::random(&cfg, seed, &Device::Cpu).unwrap()
}

fn trainer_cfg(loss: DiceCeLossConfig, accumulation: usize) -> TrainerConfig {
    TrainerConfig {
        steps: STEPS as u64,
        batch: 1,
        accumulation,
        schedule: LrSchedule::Constant { lr: 1e-3 },
        loss,
        ..TrainerConfig::default()
    }
}

fn ce_only() -> DiceCeLossConfig {
    DiceCeLossConfig {
        ce_weight: 1.0,
        dice_weight: 0.0,
        ..DiceCeLossConfig::default()
    }
}

/// Every trainable tensor, flattened, in name order.
fn weights(m: &MaSam) -> Vec<(String, Vec<f32>)> {
    m.trainable_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

fn max_abs_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> (f32, String) {
    let mut worst = (0f32, String::new());
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        for (x, y) in va.iter().zip(vb) {
            let d = (x - y).abs();
            if d > worst.0 {
                worst = (d, na.clone());
            }
        }
    }
    worst
}

/// Runs `f(comm)` on one thread per rank; returns the ranks' results in rank order.
fn on_ranks<T: Send + 'static>(
    world: usize,
    f: impl Fn(ThreadComm) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let hs: Vec<_> = ThreadGroup::new(world)
        .unwrap()
        .into_iter()
        .map(|c| {
            let f = f.clone();
            std::thread::spawn(move || f(c))
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Two ranks, rank r training on stacks 2k + r at step k; returns each rank's losses and
/// final weights.
/// One rank's losses per step and its named trainable weights.
type RankResult = (Vec<f32>, Vec<(String, Vec<f32>)>);

fn two_ranks(loss: DiceCeLossConfig) -> Vec<RankResult> {
    on_ranks(2, move |c| {
        let r = c.rank();
        let m = model(7);
        let mut t = Trainer::new(&m, trainer_cfg(loss, 1)).unwrap();
        t.set_communicator(Arc::new(c), buckets::DEFAULT_BUCKET_BYTES)
            .unwrap();
        let losses = (0..STEPS)
            .map(|k| t.step(&[batch(2 * k + r)]).unwrap().loss)
            .collect();
        (losses, weights(&m))
    })
}

#[test]
fn two_ranks_with_batch_b_match_one_process_with_batch_2b_on_a_per_pixel_loss() {
    let ranks = two_ranks(ce_only());
    let m = model(7);
    let mut t = Trainer::new(&m, trainer_cfg(ce_only(), 1)).unwrap();
    let losses: Vec<f32> = (0..STEPS)
        .map(|k| t.step(&[joined(&[2 * k, 2 * k + 1])]).unwrap().loss)
        .collect();
    let single = weights(&m);
    // the ranks agree bit for bit: the same averaged gradients, the same AdamW step
    assert_eq!(ranks[0].1, ranks[1].1);
    assert_eq!(ranks[0].0, ranks[1].0);
    for (a, b) in ranks[0].0.iter().zip(&losses) {
        assert!(
            (a - b).abs() < 1e-5,
            "losses {:?} vs {losses:?}",
            ranks[0].0
        );
    }
    let (d, name) = max_abs_diff(&ranks[0].1, &single);
    assert!(d < 1e-5, "`{name}` differs by {d}");
    // and training moved the weights (the comparison is not between two untouched models)
    let (moved, _) = max_abs_diff(&single, &weights(&model(7)));
    assert!(moved > 1e-4, "{moved}");
}

#[test]
fn two_ranks_with_dice_match_one_process_accumulating_the_two_shards() {
    let ranks = two_ranks(DiceCeLossConfig::default());
    let m = model(7);
    let mut t = Trainer::new(&m, trainer_cfg(DiceCeLossConfig::default(), 2)).unwrap();
    let losses: Vec<f32> = (0..STEPS)
        .map(|k| t.step(&[batch(2 * k), batch(2 * k + 1)]).unwrap().loss)
        .collect();
    assert_eq!(ranks[0].1, ranks[1].1);
    for (a, b) in ranks[0].0.iter().zip(&losses) {
        assert!(
            (a - b).abs() < 1e-6,
            "losses {:?} vs {losses:?}",
            ranks[0].0
        );
    }
    let (d, name) = max_abs_diff(&ranks[0].1, &weights(&m));
    assert!(d < 1e-6, "`{name}` differs by {d}");
}

#[test]
fn rank_zero_weights_reach_every_rank() {
    let out = on_ranks(2, |c| {
        // rank 1 starts from other trainable weights (another seed)
        let m = model(7 + c.rank() as u64);
        let mut t = Trainer::new(&m, trainer_cfg(ce_only(), 1)).unwrap();
        let before = weights(&m);
        t.set_communicator(Arc::new(c), 64 * 1024).unwrap();
        (before, weights(&m))
    });
    assert_ne!(out[0].0, out[1].0);
    assert_eq!(out[0].1, out[0].0);
    assert_eq!(out[1].1, out[0].0);
}

#[test]
fn a_two_rank_run_resumed_from_rank_zeros_checkpoint_continues_identically() {
    let dir = std::env::temp_dir().join(format!("masam-ddp-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("train_state.safetensors");
    fn cfg() -> TrainerConfig {
        TrainerConfig {
            steps: 4,
            ..trainer_cfg(DiceCeLossConfig::default(), 1)
        }
    }
    // steps 0..4 without interruption
    let full = on_ranks(2, |c| {
        let r = c.rank();
        let m = model(7);
        let mut t = Trainer::new(&m, cfg()).unwrap();
        t.set_communicator(Arc::new(c), buckets::DEFAULT_BUCKET_BYTES)
            .unwrap();
        let l: Vec<f32> = (0..4)
            .map(|k| t.step(&[batch(2 * k + r)]).unwrap().loss)
            .collect();
        (l, weights(&m))
    });
    // steps 0..2, then a checkpoint written by rank 0
    let p = ckpt.clone();
    let first = on_ranks(2, move |c| {
        let r = c.rank();
        let m = model(7);
        let mut t = Trainer::new(&m, cfg()).unwrap();
        let c = Arc::new(c);
        t.set_communicator(c.clone(), buckets::DEFAULT_BUCKET_BYTES)
            .unwrap();
        let l: Vec<f32> = (0..2)
            .map(|k| t.step(&[batch(2 * k + r)]).unwrap().loss)
            .collect();
        if c.is_root() {
            t.save(&p).unwrap();
        }
        c.barrier().unwrap();
        l
    });
    // a new group: every rank resumes from that checkpoint
    let p = ckpt.clone();
    let second = on_ranks(2, move |c| {
        let r = c.rank();
        let m = model(7);
        let mut t = Trainer::new(&m, cfg()).unwrap();
        t.resume(&p).unwrap();
        t.set_communicator(Arc::new(c), buckets::DEFAULT_BUCKET_BYTES)
            .unwrap();
        assert_eq!(t.current_step(), 2);
        let l: Vec<f32> = (2..4)
            .map(|k| t.step(&[batch(2 * k + r)]).unwrap().loss)
            .collect();
        (l, weights(&m))
    });
    std::fs::remove_dir_all(&dir).ok();
    let mut resumed = first[0].clone();
    resumed.extend(&second[0].0);
    assert_eq!(resumed, full[0].0);
    assert_eq!(second[0].1, full[0].1);
    assert_eq!(second[1].1, full[0].1);
}
