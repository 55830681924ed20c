//! The fused CPU Dice+CE loss: one custom op with an analytic gradient.
//!
//! [`DiceCeLoss::forward`](super::DiceCeLoss::forward) uses this path whenever logits and labels
//! live on the CPU. It computes exactly the formulas of the composite implementation
//! ([`cross_entropy`](super::cross_entropy()), [`soft_dice`](super::soft_dice())) but in two passes
//! over the logits instead of some thirty full-size tensor ops:
//!
//! - forward: per pixel the softmax over K, `−log p[label]` and the per-class Dice sums
//!   `I = Σ p·t·m`, `Y = Σ t·m`, `Z = Σ p²·m`, accumulated in f64;
//! - backward: the softmax is recomputed and `dL/dz` is written directly from the saved sums.
//!
//! Work is split into fixed chunks of pixels whose partial sums are added in chunk order, so the
//! loss and its gradient are bit-identical whatever the size of the rayon pool.
//!
//! - `op`: the `CustomOp2` glue and backward (`DiceCeOp`);
//! - `cpu`: the two kernels.

pub(crate) mod cpu;
pub(crate) mod op;

use candle_core::{DType, Storage, Tensor};
use rayon::prelude::*;

use self::cpu::{Geometry, CHUNK};
use self::op::{label_slice, with_labels, DiceCeOp, LabelSlice};
use super::dice_ce_config::DiceCeLossConfig;
use super::dice_ce_output::DiceCeOutput;
use crate::error::{Result, TrainError};

/// (counted pixels, invalid labels) of a label slice.
fn count_labels<L: cpu::Label>(labels: &[L], k: usize, ignore_index: i64) -> (u64, u64) {
    labels
        .par_chunks(16 * CHUNK)
        .map(|c| {
            let (mut valid, mut bad) = (0u64, 0u64);
            for &l in c {
                let l: i64 = l.into();
                if l == ignore_index {
                    continue;
                }
                if l >= 0 && l < k as i64 {
                    valid += 1;
                } else {
                    bad += 1;
                }
            }
            (valid, bad)
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// The fused loss. `logits` are (N, K, spatial...) f32 on the CPU, `labels` (N, spatial...) on the
/// CPU; the caller has checked that the shapes agree. Errors match the composite path.
pub(crate) fn dice_ce_fused(
    logits: &Tensor,
    labels: &Tensor,
    cfg: &DiceCeLossConfig,
) -> Result<DiceCeOutput> {
    let dims = logits.dims();
    let (n, k) = (dims[0], dims[1]);
    let s: usize = dims[2..].iter().product();
    if !matches!(labels.dtype(), DType::I64 | DType::U32 | DType::U8) {
        return Err(TrainError::UnsupportedDType {
            what: "labels".into(),
            dtype: labels.dtype(),
        });
    }
    if k == 0 {
        return Err(TrainError::ShapeMismatch {
            what: "labels (N, spatial...) with K >= 1 classes".into(),
            expected: vec![],
            got: labels.dims().to_vec(),
        });
    }
    let logits = logits.contiguous()?;
    let labels = labels.contiguous()?;
    let (n_valid, bad) = {
        let (st, l) = labels.storage_and_layout();
        let Storage::Cpu(cpu) = &*st else {
            return Err(TrainError::NotOnCpu {
                what: "labels of the fused Dice+CE loss",
                device: labels.device().location(),
            });
        };
        let ls = label_slice(cpu, l)?;
        with_labels!(ls, x => count_labels(x, k, cfg.ignore_index))
    };
    if bad > 0 {
        return Err(TrainError::LabelOutOfRange {
            count: bad,
            num_classes: k,
            ignore_index: cfg.ignore_index,
        });
    }
    if n_valid == 0 {
        return Err(TrainError::AllIgnored {
            ignore_index: cfg.ignore_index,
        });
    }
    let geom = Geometry {
        n,
        k,
        s,
        ignore_index: cfg.ignore_index,
    };
    let op = DiceCeOp::new(geom, cfg.ce_weight, cfg.dice_weight, cfg.smooth);
    let packed = logits.apply_op2(&labels, op)?;
    Ok(DiceCeOutput {
        total: packed.get(0)?,
        ce: packed.get(1)?,
        dice: packed.get(2)?,
    })
}
